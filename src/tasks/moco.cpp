#include "mgd/tasks/moco.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <iomanip>
#include <sstream>

#include "mgd/data/contrastive.h"
#include "mgd/data/dataset.h"
#include "mgd/data/loader.h"
#include "mgd/data/rng.h"
#include "mgd/distributed/communicator.h"
#include "mgd/margins/margins.h"
#include "mgd/models/moco.h"
#include "mgd/training/metrics.h"

namespace mgd::tasks {

using training::Evaluation;
using training::Method;
using training::NamedValues;
using training::StepResult;
using training::TaskContext;
using training::TrainOptions;

namespace {

bool uses_mgd(Method m) {
  return m == Method::kMgd || m == Method::kMgdKd;
}

torch::Tensor unit(const torch::Tensor& x) {
  return torch::nn::functional::normalize(x, torch::nn::functional::NormalizeFuncOptions().dim(1));
}

// Every rank's `rows` (the same count on each), in rank order: an all-gather on all_reduce_sum
// (each rank fills its own slot of zeros; x + 0 is exact).
torch::Tensor gather_equal(const torch::Tensor& rows, distributed::Communicator& comm,
                           const char* what) {
  if (comm.world_size() == 1) return rows;
  auto shape = rows.sizes().vec();
  const int64_t n = shape[0];
  shape[0] = n * comm.world_size();
  auto all = torch::zeros(shape, rows.options());
  all.narrow(0, comm.rank() * n, n).copy_(rows);
  comm.all_reduce_sum({all}, what);
  return all;
}

// Every rank's `rows` (counts may differ), in rank order.
torch::Tensor gather_rows(const torch::Tensor& rows, distributed::Communicator& comm,
                          const char* what) {
  if (comm.world_size() == 1) return rows;
  const int64_t world = comm.world_size();
  auto counts = torch::zeros({world}, torch::kDouble);
  counts[comm.rank()] = static_cast<double>(rows.size(0));
  comm.all_reduce_sum({counts}, what);
  std::vector<int64_t> n(static_cast<size_t>(world));
  int64_t most = 0;
  for (int64_t r = 0; r < world; ++r) {
    n[r] = static_cast<int64_t>(counts[r].item<double>());
    most = std::max(most, n[r]);
  }
  auto shape = rows.sizes().vec();
  shape[0] = most;
  auto padded = torch::zeros(shape, rows.options());
  if (rows.size(0) > 0) padded.narrow(0, 0, rows.size(0)).copy_(rows);
  auto all = gather_equal(padded, comm, what);
  std::vector<torch::Tensor> parts;
  for (int64_t r = 0; r < world; ++r) parts.push_back(all.narrow(0, r * most, n[r]));
  return torch::cat(parts, 0);
}

class MoCoTask : public training::Task {
 public:
  MoCoTask(const TrainOptions& options, const TaskContext& context) : o_(options), ctx_(context) {
    TORCH_CHECK(o_.method == Method::kNone || o_.method == Method::kMgd,
                "MoCo distils with MGD only (--method mgd), not ",
                training::method_name(o_.method));
    TORCH_CHECK(o_.moco_k >= 1, "Invalid --moco-k: ", o_.moco_k, " (queue size, expected >= 1)");
    TORCH_CHECK(o_.moco_dim >= 1, "Invalid --moco-dim: ", o_.moco_dim);
    TORCH_CHECK(o_.moco_m >= 0 && o_.moco_m <= 1, "Invalid --moco-m: ", o_.moco_m,
                " (expected 0..1)");
    TORCH_CHECK(o_.moco_t > 0 && std::isfinite(o_.moco_t), "Invalid --moco-t: ", o_.moco_t);
    TORCH_CHECK(o_.moco_bn_splits >= 1 && o_.batch_size % o_.moco_bn_splits == 0,
                "Invalid --moco-bn-splits ", o_.moco_bn_splits, ": the batch of ", o_.batch_size,
                " must split into that many equal BatchNorm groups");
    TORCH_CHECK(o_.knn_k >= 1 && o_.knn_t > 0, "Invalid kNN monitor: k ", o_.knn_k,
                ", temperature ", o_.knn_t);
    TORCH_CHECK(o_.margins == "teacher" || o_.margins == "reference", "Unknown --margins '",
                o_.margins, "' (expected teacher or reference)");
    open_data();
    build_models();
  }

  std::string name() const override { return "moco"; }
  torch::nn::Module& network() override { return *moco_; }
  Distiller distiller() override { return distiller_; }
  std::vector<torch::Tensor> parameters() override {
    return distiller_ ? distiller_->trainable_parameters() : moco_->encoder_q->parameters();
  }
  void train(bool on) override {
    moco_->train(on);  // the key encoder too: its BatchNorms normalize by batch, as MoCo's
    if (distiller_) distiller_->train(on);
  }

  int64_t start_epoch(int64_t epoch, int64_t first_batch) override {
    if (!loader_) {
      loader_ = std::make_unique<data::Loader>(views_, shard(/*pad=*/true)
                                                           .batch_size(o_.batch_size)
                                                           .shuffle(true)
                                                           .drop_last(true)
                                                           .workers(o_.workers)
                                                           .seed(o_.seed)
                                                           .max_samples(o_.train_subset));
    }
    epoch_ = epoch;
    batches_ = training::start_epoch_at(*loader_, epoch, first_batch, o_.resume);
    if (first_batch == 0) meter_ = training::AccuracyMeter();
    return batches_;
  }
  bool next_batch() override { return training::next_batch_of(*loader_, batch_); }
  int64_t batch_index() const override { return batch_.index; }

  StepResult step() override {
    auto x = batch_.images.to(ctx_.device);
    const int64_t c = channels_;
    auto im_q = x.narrow(1, 0, c), im_k = x.narrow(1, c, c);
    Features fq = functional::grouped_extract(*moco_->encoder_q, im_q, o_.moco_bn_splits);
    auto q = unit(fq.logits);
    torch::Tensor k;
    {
      torch::NoGradGuard no_grad;
      k = keys(im_k);
    }
    logits_ = moco_->logits(q, k);
    auto target = torch::zeros({q.size(0)}, torch::TensorOptions(torch::kLong).device(q.device()));
    auto contrast = torch::nn::functional::cross_entropy(logits_, target);
    StepResult r;
    r.images = q.size(0);
    r.loss = contrast;
    r.parts.emplace_back("task_loss", contrast.item<double>());
    if (distiller_) {
      // The distiller sees the query view only (tasks-spec B2), the student's features from
      // the pass above.
      Features ft = teacher_->extract_frozen(im_q);
      auto d = distiller_->forward_features(ft, fq);
      training::add_distillation(r, d, 1.0 / static_cast<double>(r.images) / o_.loss_factor);
    }
    return r;
  }

  void after_step(const StepResult& r) override {
    // MoCo updates the key encoder before its next keys, from the query encoder the last
    // optimizer step left: here, right after that step.
    moco_->momentum_update();
    moco_->enqueue(all_keys_);
    auto target = torch::zeros({logits_.size(0)}, torch::kLong);
    meter_.add(logits_.detach().to(torch::kCPU), target,
               r.loss.item<double>() * static_cast<double>(r.images));
  }
  NamedValues step_metrics() const override { return {{"pretext_acc1", meter_.top1_percent()}}; }
  NamedValues epoch_metrics() const override {
    return {{"train_loss", meter_.mean_loss()}, {"train_pretext_acc1", meter_.top1_percent()}};
  }

  Evaluation evaluate(bool interruptible) override {
    share_statistics();
    return knn(*moco_->encoder_q, interruptible);
  }
  bool has_teacher() const override { return !teacher_.is_empty(); }
  Evaluation evaluate_teacher(bool interruptible) override { return knn(*teacher_, interruptible); }
  std::string best_metric() const override { return "knn_acc1"; }

  void track(uint64_t /*seed*/, bool interruptible,
             const std::function<bool(const c10::Error&, int64_t)>& on_error) override {
    share_statistics();
    // Evaluation transforms on training images, the same fixed subset in every pass (the
    // reference's sampler never changes its epoch: the same ~20 000 images each time), each
    // rank its shard of it.
    data::Loader loader(plain_train_,
                        shard(/*pad=*/false)
                            .batch_size(o_.batch_size)
                            .shuffle(false)
                            .workers(o_.workers)
                            .seed(o_.seed)
                            .max_samples(std::min(o_.tracking_images, plain_train_->size())));
    training::track_batches<data::Batch>(
        loader, ctx_, interruptible, on_error,
        [&](const data::Batch& b) { distiller_->track(b.images.to(ctx_.device)); });
  }

  serialize::Value state() const override {
    return serialize::Value::list({serialize::Value(meter_.count), serialize::Value(meter_.top1),
                                   serialize::Value(meter_.top5),
                                   serialize::Value(meter_.loss_sum)});
  }
  void load_state(const serialize::Value& state) override {
    TORCH_CHECK(state.is_list() && state.items().size() == 4,
                "the checkpoint's MoCo state is not a list of 4 numbers");
    const auto& m = state.items();
    meter_.count = m[0].to_int();
    meter_.top1 = m[1].to_int();
    meter_.top5 = m[2].to_int();
    meter_.loss_sum = m[3].to_double();
  }

  std::string config_text() const override {
    std::ostringstream s;
    s << std::setprecision(17) << "moco_dim: " << o_.moco_dim << "\n"
      << "moco_k: " << o_.moco_k << "\n"
      << "moco_m: " << o_.moco_m << "\n"
      << "moco_t: " << o_.moco_t << "\n"
      << "moco_mlp: " << (o_.moco_mlp ? "true" : "false") << "\n"
      << "moco_bn_splits: " << o_.moco_bn_splits << "\n"
      << "knn_k: " << o_.knn_k << "\n"
      << "knn_t: " << o_.knn_t << "\n";
    if (uses_mgd(o_.method)) s << "margins: " << o_.margins << "\n";
    return s.str();
  }

 private:
  void open_data();
  void build_models();
  torch::Tensor keys(const torch::Tensor& im_k);
  // BatchNorm statistics are per rank (each normalizes its own batches, as in MoCo); they
  // matter only in evaluation mode, where every rank then uses rank 0's -- the checkpoint's.
  void share_statistics() {
    if (ctx_.comm->world_size() == 1) return;
    ctx_.comm->broadcast(moco_->encoder_q->buffers(), 0,
                         "broadcast of the query encoder's BatchNorm statistics");
  }
  Evaluation knn(models::MoCoEncoderImpl& encoder, bool interruptible);
  data::LoaderOptions shard(bool pad) const { return training::shard_options(ctx_, pad); }

  TrainOptions o_;
  TaskContext ctx_;
  int64_t channels_ = 1;
  std::shared_ptr<data::Dataset> views_, plain_train_, test_set_;
  models::MoCo moco_{nullptr};
  models::MoCoEncoder teacher_{nullptr};
  Distiller distiller_{nullptr};
  std::unique_ptr<data::Loader> loader_;
  data::Batch batch_;
  int64_t epoch_ = 0, batches_ = 0;
  torch::Tensor logits_, all_keys_;
  training::AccuracyMeter meter_;
};

void MoCoTask::open_data() {
  auto opts = [&](const std::string& split) {
    return data::DatasetOptions(o_.data_format, o_.data_root)
        .split(split)
        .augment(false)
        .image_size(o_.image_size);
  };
  test_set_ = data::make_dataset(opts("test"));
  channels_ = test_set_->channels();
  // The kNN monitor's feature bank and MGD's tracking pass: training images, evaluation
  // transforms.
  plain_train_ = data::make_dataset(opts("train"));
  if (o_.evaluate_only) return;
  const int64_t size = data::moco_crop_size(o_.data_format, o_.image_size);
  auto augmented =
      o_.augment ? opts("train").transform(data::moco_v2_transform(o_.data_format, channels_, size))
                 : opts("train");
  views_ = std::make_shared<data::TwoViewDataset>(data::make_dataset(augmented));
  const int64_t n =
      o_.train_subset > 0 ? std::min(o_.train_subset, views_->size()) : views_->size();
  TORCH_CHECK(o_.batch_size <= n, "Batch size ", o_.batch_size, " is larger than the ", n,
              " training images of ", o_.data_format, " (every epoch would be empty)");
}

void MoCoTask::build_models() {
  moco_ = models::MoCo(models::MoCoOptions(o_.arch)
                           .in_channels(channels_)
                           .dim(o_.moco_dim)
                           .queue_size(o_.moco_k)
                           .momentum(o_.moco_m)
                           .temperature(o_.moco_t)
                           .mlp(o_.moco_mlp));
  if (!o_.init_checkpoint.empty()) {
    if (o_.evaluate_only) {
      // An evaluation reads the whole run (or a plain encoder): the query encoder is evaluated.
      models::load_moco_encoder(o_.init_checkpoint, *moco_->encoder_q);
    } else {
      // An initialization: MoCo starts its key encoder as a copy of the query encoder.
      models::load_moco_encoder(o_.init_checkpoint, *moco_->encoder_q);
      models::load_moco_encoder(o_.init_checkpoint, *moco_->encoder_k);
    }
  }
  moco_->to(ctx_.device);
  if (!uses_mgd(o_.method)) return;
  teacher_ = models::MoCoEncoder(models::MoCoEncoderOptions(o_.teacher_arch)
                                     .in_channels(channels_)
                                     .dim(o_.moco_dim)
                                     .mlp(o_.moco_mlp));
  models::load_moco_encoder(o_.teacher_checkpoint, *teacher_);
  teacher_->eval();
  for (auto& p : teacher_->parameters()) p.requires_grad_(false);
  // Reference settings (tasks-spec B2): all four stages, AMP, BatchNorm on the student side,
  // divisors 2^(n-1-i) = [8, 4, 2, 1], pre-ReLU. Margins from the loaded teacher.
  distiller_ = Distiller(teacher_, moco_->encoder_q,
                         DistillerOptions()
                             .reducer(o_.reducer)
                             .ignore_positions(o_.ignore_positions)
                             .pre_relu(o_.pre_relu)
                             .shave(o_.shave == "best" ? ShaveRule::kBest : ShaveRule::kFirst));
  if (o_.margins == "reference") {
    // The reference builds its distiller before it loads the teacher: every margin is that of
    // a freshly initialized BatchNorm (gamma 1, beta 0), -sqrt(2/pi).
    torch::NoGradGuard no_grad;
    for (auto& b : distiller_->named_buffers()) {
      const auto& name = b.key();
      if (name.size() >= 8 && name.compare(name.size() - 8, 8, ".margins") == 0) {
        auto& m = b.value();
        m.copy_(margins_from_bn(torch::ones_like(m), torch::zeros_like(m)));
      }
    }
  }
  distiller_->to(ctx_.device);
}

torch::Tensor MoCoTask::keys(const torch::Tensor& im_k) {
  // Shuffled BatchNorm (MoCo's _batch_shuffle_ddp / _batch_unshuffle_ddp): the key views of
  // every rank are permuted, each rank encodes its share in moco_bn_splits BatchNorm groups,
  // and the keys go back to their images. A key is thus normalized among other images than
  // its query, so BatchNorm cannot leak which key is the positive. The permutation is the
  // same on every rank and a function of the seed and the step (exact on resume).
  auto& comm = *ctx_.comm;
  const int64_t b = im_k.size(0);
  auto all_images = gather_equal(im_k, comm, "all-gather of the key views");
  const int64_t total = all_images.size(0);
  data::Rng rng(data::mix_seed(o_.seed ^ 0x6d6f636fULL,
                               static_cast<uint64_t>(epoch_ * batches_ + batch_.index)));
  const auto order = data::random_permutation(total, rng);
  auto perm = torch::tensor(order, torch::kLong).to(im_k.device());
  auto encoded = unit(functional::encode_shuffled_share(
      *moco_->encoder_k, all_images, perm, comm.rank(), comm.world_size(), o_.moco_bn_splits));
  // Row j of the gathered shares is the key of image perm[j].
  all_keys_ = functional::unshuffle(gather_equal(encoded, comm, "all-gather of the keys"), perm);
  return all_keys_.narrow(0, comm.rank() * b, b);
}

Evaluation MoCoTask::knn(models::MoCoEncoderImpl& encoder, bool interruptible) {
  torch::NoGradGuard no_grad;
  const bool was_training = encoder.is_training();
  encoder.eval();
  auto features_of = [&](const std::shared_ptr<data::Dataset>& set, int64_t subset, uint64_t seed,
                         std::vector<torch::Tensor>& labels) {
    data::Loader loader(set, shard(/*pad=*/false)
                                 .batch_size(o_.batch_size)
                                 .shuffle(false)
                                 .workers(o_.workers)
                                 .seed(seed)
                                 .max_samples(subset));
    std::vector<torch::Tensor> features;
    for (auto& batch : loader) {
      if (interruptible && ctx_.stop_requested()) throw training::PassAbandoned{};
      features.push_back(unit(encoder.extract(batch.images.to(ctx_.device)).logits));
      labels.push_back(batch.labels.to(ctx_.device));
    }
    return features;
  };
  // The bank: this run's training images (the same subset as training), every rank's.
  std::vector<torch::Tensor> bank_labels, test_labels;
  auto bank_parts = features_of(plain_train_, o_.train_subset, o_.seed, bank_labels);
  auto bank = gather_rows(torch::cat(bank_parts, 0), *ctx_.comm, "all-gather of the kNN bank");
  auto labels = gather_rows(torch::cat(bank_labels, 0).to(torch::kDouble), *ctx_.comm,
                            "all-gather of the bank labels")
                    .to(torch::kLong);
  training::AccuracyMeter meter;
  auto test_parts = features_of(test_set_, o_.test_subset, 0, test_labels);
  for (size_t i = 0; i < test_parts.size(); ++i) {
    auto scores = functional::knn_scores(test_parts[i], bank, labels, test_set_->num_classes(),
                                         o_.knn_k, o_.knn_t);
    meter.add(scores.to(torch::kCPU), test_labels[i].to(torch::kCPU));
  }
  if (ctx_.comm->world_size() > 1) {
    auto totals = torch::tensor({static_cast<double>(meter.count), static_cast<double>(meter.top1),
                                 static_cast<double>(meter.top5)},
                                torch::kDouble);
    ctx_.comm->all_reduce_sum({totals}, "all-reduce of the kNN counts");
    meter.count = static_cast<int64_t>(totals[0].item<double>());
    meter.top1 = static_cast<int64_t>(totals[1].item<double>());
    meter.top5 = static_cast<int64_t>(totals[2].item<double>());
  }
  encoder.train(was_training);
  return {{{"knn_acc1", meter.top1_percent()}, {"knn_acc5", meter.top5_percent()}}, meter.count};
}

}  // namespace

std::unique_ptr<training::Task> make_moco_task(const TrainOptions& options,
                                               const TaskContext& context) {
  return std::make_unique<MoCoTask>(options, context);
}

}  // namespace mgd::tasks
