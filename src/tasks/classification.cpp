#include "mgd/tasks/classification.h"

#include <torch/torch.h>

#include <algorithm>
#include <limits>
#include <sstream>

#include "mgd/data/dataset.h"
#include "mgd/data/loader.h"
#include "mgd/distributed/communicator.h"
#include "mgd/loss/loss.h"
#include "mgd/models/registry.h"
#include "mgd/training/checkpoint.h"
#include "mgd/training/metrics.h"

namespace mgd::tasks {

using training::Evaluation;
using training::Method;
using training::NamedValues;
using training::StepResult;
using training::TaskContext;
using training::TrainOptions;

namespace {

bool uses_teacher(Method m) { return m != Method::kNone; }
bool uses_mgd(Method m) { return m == Method::kMgd || m == Method::kMgdKd; }
bool uses_kd(Method m) { return m == Method::kKd || m == Method::kMgdKd; }

class ClassificationTask : public training::Task {
 public:
  ClassificationTask(const TrainOptions& options, const TaskContext& context)
      : o_(options), ctx_(context) {
    open_data();
    build_models();
  }

  std::string name() const override { return "classification"; }
  torch::nn::Module& network() override { return *student_; }
  Distiller distiller() override { return distiller_; }
  std::vector<torch::Tensor> parameters() override {
    return distiller_ ? distiller_->trainable_parameters() : student_->parameters();
  }
  void train(bool on) override {
    if (distiller_) distiller_->train(on);
    else student_->train(on);
  }

  int64_t start_epoch(int64_t epoch, int64_t first_batch) override {
    if (!loader_) {
      loader_ = std::make_unique<data::Loader>(train_set_, shard(/*pad=*/true)
                                                               .batch_size(o_.batch_size)
                                                               .shuffle(true)
                                                               .drop_last(true)
                                                               .workers(o_.workers)
                                                               .seed(o_.seed)
                                                               .max_samples(o_.train_subset));
    }
    const int64_t batches = training::start_epoch_at(*loader_, epoch, first_batch, o_.resume);
    // Inside an epoch the meter holds the batches done before the checkpoint.
    if (first_batch == 0) meter_ = training::AccuracyMeter();
    return batches;
  }

  bool next_batch() override { return training::next_batch_of(*loader_, batch_); }
  int64_t batch_index() const override { return batch_.index; }

  StepResult step() override {
    auto x = batch_.images.to(ctx_.device);
    labels_ = batch_.labels.to(ctx_.device);
    const auto ce_opts = torch::nn::functional::CrossEntropyFuncOptions();
    StepResult r;
    r.images = x.size(0);
    NamedValues positions;
    double task = 0, distill = std::numeric_limits<double>::quiet_NaN(),
           kd = std::numeric_limits<double>::quiet_NaN();
    if (distiller_) {
      auto out = distiller_->forward(x);
      logits_ = out.logits;
      auto ce = torch::nn::functional::cross_entropy(logits_, labels_, ce_opts);
      auto d = out.loss / static_cast<double>(x.size(0)) / o_.loss_factor;
      r.loss = ce + d;
      task = ce.item<double>();
      distill = d.item<double>();
      for (size_t i = 0; i < out.position_losses.size(); ++i) {
        if (!out.position_losses[i].defined()) continue;  // not distilled
        positions.emplace_back("distill_loss_" + std::to_string(i),
                               out.position_losses[i].item<double>() /
                                   static_cast<double>(x.size(0)) / o_.loss_factor);
      }
      if (out.kd_loss.defined()) {
        r.loss = r.loss + o_.kd_weight * out.kd_loss;
        kd = out.kd_loss.item<double>();
      }
    } else {
      logits_ = student_->forward(x);
      auto ce = torch::nn::functional::cross_entropy(logits_, labels_, ce_opts);
      r.loss = ce;
      task = ce.item<double>();
      if (teacher_) {  // KD alone
        auto teacher_logits = teacher_->extract_frozen(x).logits;
        auto kd_loss = functional::kd_loss(logits_, teacher_logits, o_.kd_temperature);
        r.loss = r.loss + o_.kd_weight * kd_loss;
        kd = kd_loss.item<double>();
      }
    }
    r.parts.emplace_back("task_loss", task);
    if (distiller_) r.parts.emplace_back("distill_loss", distill);
    if (teacher_ && uses_kd(o_.method)) r.parts.emplace_back("kd_loss", kd);
    r.parts.insert(r.parts.end(), positions.begin(), positions.end());
    return r;
  }

  void after_step(const StepResult& r) override {
    meter_.add(logits_.detach(), labels_, r.loss.item<double>() * static_cast<double>(r.images));
  }
  NamedValues step_metrics() const override { return {{"acc1", meter_.top1_percent()}}; }
  NamedValues epoch_metrics() const override {
    return {{"train_loss", meter_.mean_loss()}, {"train_acc1", meter_.top1_percent()}};
  }

  Evaluation evaluate(bool interruptible) override { return evaluate_net(*student_, interruptible); }
  bool has_teacher() const override { return teacher_ != nullptr; }
  Evaluation evaluate_teacher(bool interruptible) override {
    return evaluate_net(*teacher_, interruptible);
  }
  std::string best_metric() const override { return "acc1"; }

  void track(uint64_t seed, bool interruptible,
             const std::function<bool(const c10::Error&, int64_t)>& on_error) override {
    // A deterministic, shuffled, un-augmented view of the training set, capped at
    // tracking_images; each rank tracks its own shard of it (spec 8).
    data::Loader loader(tracking_set_,
                        shard(/*pad=*/false)
                            .batch_size(o_.batch_size)
                            .shuffle(true)
                            .workers(o_.workers)
                            .seed(seed)
                            .max_samples(std::min(o_.tracking_images, tracking_set_->size())));
    training::track_batches<data::Batch>(
        loader, ctx_, interruptible, on_error,
        [&](const data::Batch& b) { distiller_->track(b.images.to(ctx_.device)); });
  }

  serialize::Value state() const override {
    return serialize::Value::list({serialize::Value(meter_.count), serialize::Value(meter_.top1),
                                   serialize::Value(meter_.top5), serialize::Value(meter_.loss_sum)});
  }
  void load_state(const serialize::Value& state) override {
    TORCH_CHECK(state.is_list() && state.items().size() == 4,
                "the checkpoint's epoch meter is not a list of 4 numbers");
    const auto& m = state.items();
    meter_.count = m[0].to_int();
    meter_.top1 = m[1].to_int();
    meter_.top5 = m[2].to_int();
    meter_.loss_sum = m[3].to_double();
  }

 private:
  void open_data();
  void build_models();
  Evaluation evaluate_net(FeatureNetImpl& net, bool interruptible);
  data::LoaderOptions shard(bool pad) const { return training::shard_options(ctx_, pad); }

  TrainOptions o_;
  TaskContext ctx_;
  std::shared_ptr<data::Dataset> train_set_, test_set_, tracking_set_;
  FeatureNet student_, teacher_;
  Distiller distiller_{nullptr};
  std::unique_ptr<data::Loader> loader_;
  data::Batch batch_;
  torch::Tensor logits_, labels_;
  training::AccuracyMeter meter_;
};

// The reference does not distill the first position of these students (spec 1).
std::vector<int64_t> default_ignored_positions(const std::string& student) {
  if (student.rfind("mobilenet_v2", 0) == 0 || student.rfind("shufflenet_v2", 0) == 0) return {0};
  return {};
}

void ClassificationTask::open_data() {
  auto opts = [&](const std::string& split, bool augment) {
    return data::DatasetOptions(o_.data_format, o_.data_root)
        .split(split)
        .augment(augment)
        .image_size(o_.image_size);
  };
  test_set_ = data::make_dataset(opts("test", false));
  if (!o_.evaluate_only) {
    train_set_ = data::make_dataset(opts("train", o_.augment));
    if (uses_mgd(o_.method)) tracking_set_ = data::make_dataset(opts("train", false));
    const int64_t n = o_.train_subset > 0 ? std::min(o_.train_subset, train_set_->size())
                                          : train_set_->size();
    const std::string root =
        o_.data_root.empty() ? data::default_root(o_.data_format) : o_.data_root;
    TORCH_CHECK(o_.batch_size <= n, "Batch size ", o_.batch_size, " is larger than the ", n,
                " training images of ", o_.data_format,
                root.empty() ? std::string() : " at '" + root + "'",
                " (every epoch would be empty)");
  }
}

void ClassificationTask::build_models() {
  const auto classes = test_set_->num_classes();
  const auto channels = test_set_->channels();
  auto model_opts = models::ModelOptions().classes(classes).in_channels(channels);
  student_ = models::make_model(o_.arch, model_opts);
  if (!o_.init_checkpoint.empty()) training::load_weights(o_.init_checkpoint, *student_, o_.arch);
  if (uses_teacher(o_.method)) {
    teacher_ = models::make_model(o_.teacher_arch, model_opts);
    // A scripted teacher carries its weights; a checkpoint, if given, replaces them.
    if (!o_.teacher_checkpoint.empty()) {
      training::load_weights(o_.teacher_checkpoint, *teacher_, o_.teacher_arch);
    }
    teacher_->eval();
    for (auto& p : teacher_->parameters()) p.requires_grad_(false);
  }
  if (uses_mgd(o_.method)) {
    auto ignore =
        o_.ignore_positions_set ? o_.ignore_positions : default_ignored_positions(o_.arch);
    distiller_ = Distiller(teacher_, student_,
                           DistillerOptions()
                               .reducer(o_.reducer)
                               .ignore_positions(ignore)
                               .pre_relu(o_.pre_relu)
                               .shave(o_.shave == "best" ? ShaveRule::kBest : ShaveRule::kFirst)
                               .with_kd(uses_kd(o_.method))
                               .kd_temperature(o_.kd_temperature));
    distiller_->to(ctx_.device);
  } else {
    student_->to(ctx_.device);
    if (teacher_) teacher_->to(ctx_.device);
  }
}

Evaluation ClassificationTask::evaluate_net(FeatureNetImpl& net, bool interruptible) {
  torch::NoGradGuard no_grad;
  const bool was_training = net.is_training();
  net.eval();
  // Every rank evaluates its own test images, none twice; the counts are summed.
  data::Loader loader(test_set_, shard(/*pad=*/false)
                                     .batch_size(o_.batch_size)
                                     .shuffle(false)
                                     .workers(o_.workers)
                                     // the same test subset whatever the run's seed
                                     .seed(0)
                                     .max_samples(o_.test_subset));
  training::AccuracyMeter meter;
  for (auto& batch : loader) {
    if (interruptible && ctx_.stop_requested()) throw training::PassAbandoned{};
    auto x = batch.images.to(ctx_.device);
    auto y = batch.labels.to(ctx_.device);
    // In eval mode: the network's frozen program where it has one (models/frozen.h).
    auto logits = net.extract_frozen(x).logits;
    auto loss = torch::nn::functional::cross_entropy(
        logits, y, torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum));
    meter.add(logits, y, loss.item<double>());
  }
  if (ctx_.comm->world_size() > 1) {
    auto totals = torch::tensor({static_cast<double>(meter.count), static_cast<double>(meter.top1),
                                 static_cast<double>(meter.top5), meter.loss_sum},
                                torch::kDouble);
    ctx_.comm->all_reduce_sum({totals}, "all-reduce of the evaluation counts");
    meter.count = static_cast<int64_t>(totals[0].item<double>());
    meter.top1 = static_cast<int64_t>(totals[1].item<double>());
    meter.top5 = static_cast<int64_t>(totals[2].item<double>());
    meter.loss_sum = totals[3].item<double>();
  }
  net.train(was_training);
  const double top1 = meter.top1_percent(), top5 = meter.top5_percent();
  return {{{"acc1", top1},
           {"acc5", top5},
           {"err1", 100.0 - top1},
           {"err5", 100.0 - top5},
           {"loss", meter.mean_loss()}},
          meter.count};
}

}  // namespace

std::unique_ptr<training::Task> make_classification_task(const TrainOptions& options,
                                                         const TaskContext& context) {
  return std::make_unique<ClassificationTask>(options, context);
}

}  // namespace mgd::tasks
