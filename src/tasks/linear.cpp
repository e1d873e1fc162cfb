#include "mgd/tasks/linear.h"

#include <torch/torch.h>

#include <algorithm>
#include <sstream>

#include "mgd/data/dataset.h"
#include "mgd/data/loader.h"
#include "mgd/distributed/communicator.h"
#include "mgd/models/registry.h"
#include "mgd/serialize/state_dict.h"
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

bool is_classifier(const std::string& name) {
  return name.rfind("fc.", 0) == 0;
}

class LinearTask : public training::Task {
 public:
  LinearTask(const TrainOptions& options, const TaskContext& context) : o_(options), ctx_(context) {
    TORCH_CHECK(o_.method == Method::kNone,
                "The linear protocol trains a classifier on a frozen body; it does not distil");
    open_data();
    build_model();
  }

  std::string name() const override { return "linear"; }
  torch::nn::Module& network() override { return *net_; }
  std::vector<torch::Tensor> parameters() override { return {fc_weight_, fc_bias_}; }
  // MoCo's main_lincls: the whole network in evaluation mode, also while the classifier
  // trains (the body's BatchNorm statistics stay those of the pretraining).
  void train(bool /*on*/) override { net_->eval(); }

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
    if (first_batch == 0) meter_ = training::AccuracyMeter();
    return batches;
  }
  bool next_batch() override { return training::next_batch_of(*loader_, batch_); }
  int64_t batch_index() const override { return batch_.index; }

  StepResult step() override {
    auto x = batch_.images.to(ctx_.device);
    labels_ = batch_.labels.to(ctx_.device);
    logits_ = net_->forward(x);
    StepResult r;
    r.images = x.size(0);
    r.loss = torch::nn::functional::cross_entropy(logits_, labels_);
    r.parts.emplace_back("task_loss", r.loss.item<double>());
    return r;
  }
  void after_step(const StepResult& r) override {
    meter_.add(logits_.detach(), labels_, r.loss.item<double>() * static_cast<double>(r.images));
  }
  NamedValues step_metrics() const override { return {{"acc1", meter_.top1_percent()}}; }
  NamedValues epoch_metrics() const override {
    return {{"train_loss", meter_.mean_loss()}, {"train_acc1", meter_.top1_percent()}};
  }

  Evaluation evaluate(bool interruptible) override;
  std::string best_metric() const override { return "acc1"; }

  serialize::Value state() const override {
    return serialize::Value::list({serialize::Value(meter_.count), serialize::Value(meter_.top1),
                                   serialize::Value(meter_.top5),
                                   serialize::Value(meter_.loss_sum)});
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
  std::string config_text() const override {
    return "init_backbone: " + (o_.init_backbone.empty() ? std::string("null") : o_.init_backbone) +
           "\n";
  }

 private:
  void open_data();
  void build_model();
  data::LoaderOptions shard(bool pad) const { return training::shard_options(ctx_, pad); }

  TrainOptions o_;
  TaskContext ctx_;
  std::shared_ptr<data::Dataset> train_set_, test_set_;
  FeatureNet net_;
  torch::Tensor fc_weight_, fc_bias_;
  std::unique_ptr<data::Loader> loader_;
  data::Batch batch_;
  torch::Tensor logits_, labels_;
  training::AccuracyMeter meter_;
};

void LinearTask::open_data() {
  auto opts = [&](const std::string& split, bool augment) {
    return data::DatasetOptions(o_.data_format, o_.data_root)
        .split(split)
        .augment(augment)
        .image_size(o_.image_size);
  };
  test_set_ = data::make_dataset(opts("test", false));
  if (o_.evaluate_only) return;
  train_set_ = data::make_dataset(opts("train", o_.augment));
  const int64_t n =
      o_.train_subset > 0 ? std::min(o_.train_subset, train_set_->size()) : train_set_->size();
  TORCH_CHECK(o_.batch_size <= n, "Batch size ", o_.batch_size, " is larger than the ", n,
              " training images of ", o_.data_format, " (every epoch would be empty)");
}

void LinearTask::build_model() {
  net_ = models::make_model(
      o_.arch,
      models::ModelOptions().classes(test_set_->num_classes()).in_channels(test_set_->channels()));
  auto params = net_->named_parameters();
  TORCH_CHECK(params.contains("fc.weight") && params.contains("fc.bias"), "The linear protocol ",
              "needs a network whose classifier is one Linear layer `fc` (a zoo ResNet), not '",
              o_.arch, "'");
  fc_weight_ = params["fc.weight"];
  fc_bias_ = params["fc.bias"];
  if (!o_.init_checkpoint.empty()) {
    // A linear run's own weights (evaluation; or to continue from them).
    training::load_weights(o_.init_checkpoint, *net_, o_.arch);
  } else {
    TORCH_CHECK(o_.evaluate_only || !o_.init_backbone.empty(),
                "The linear protocol needs the pretrained body: pass --init-backbone with a "
                "MoCo checkpoint (or --init-checkpoint with a linear run's)");
    if (!o_.init_backbone.empty()) load_backbone(o_.init_backbone, *net_);
    torch::NoGradGuard no_grad;
    torch::nn::init::normal_(fc_weight_, 0.0, 0.01);
    torch::nn::init::zeros_(fc_bias_);
  }
  for (auto& p : net_->named_parameters()) p.value().set_requires_grad(is_classifier(p.key()));
  net_->to(ctx_.device);
  net_->eval();
}

Evaluation LinearTask::evaluate(bool interruptible) {
  torch::NoGradGuard no_grad;
  net_->eval();
  data::Loader loader(test_set_, shard(/*pad=*/false)
                                     .batch_size(o_.batch_size)
                                     .shuffle(false)
                                     .workers(o_.workers)
                                     .seed(0)
                                     .max_samples(o_.test_subset));
  training::AccuracyMeter meter;
  for (auto& batch : loader) {
    if (interruptible && ctx_.stop_requested()) throw training::PassAbandoned{};
    auto y = batch.labels.to(ctx_.device);
    auto logits = net_->forward(batch.images.to(ctx_.device));
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
  const double top1 = meter.top1_percent(), top5 = meter.top5_percent();
  return {{{"acc1", top1},
           {"acc5", top5},
           {"err1", 100.0 - top1},
           {"err5", 100.0 - top5},
           {"loss", meter.mean_loss()}},
          meter.count};
}

}  // namespace

void load_backbone(const std::string& path, torch::nn::Module& net) {
  serialize::StateDict state;
  try {
    state = serialize::load_state_dict(path);
  } catch (const c10::Error& e) {
    TORCH_CHECK(false, "Cannot read the backbone weights '", path,
                "': ", e.what_without_backtrace());
  }
  const std::string prefix = "encoder_q.";
  bool moco = false;
  for (const auto& item : state) moco = moco || item.key().rfind(prefix, 0) == 0;
  serialize::StateDict body;
  for (const auto& item : state) {
    std::string key = item.key();
    if (moco) {
      if (key.rfind(prefix, 0) != 0) continue;  // the key encoder, the queue
      key = key.substr(prefix.size());
    }
    if (!is_classifier(key)) body.insert(key, item.value());
  }
  std::vector<std::string> missing;
  for (const auto& item : serialize::module_state_dict(net)) {
    if (!is_classifier(item.key()) && !body.contains(item.key())) missing.push_back(item.key());
  }
  if (!missing.empty()) {
    std::ostringstream names;
    for (size_t i = 0; i < missing.size() && i < 5; ++i) names << (i ? ", " : "") << missing[i];
    if (missing.size() > 5) names << ", ... (" << missing.size() << " in all)";
    TORCH_CHECK(false, "Cannot load the backbone from '", path, "': ", missing.size(),
                " of the network's body weights are not in it (", names.str(),
                "); is it a checkpoint of this architecture?");
  }
  try {
    serialize::load_state_dict_into(net, body, /*strict=*/false);
  } catch (const c10::Error& e) {
    TORCH_CHECK(false, "Cannot load the backbone from '", path, "': ", e.what_without_backtrace());
  }
}

std::unique_ptr<training::Task> make_linear_task(const TrainOptions& options,
                                                 const TaskContext& context) {
  return std::make_unique<LinearTask>(options, context);
}

}  // namespace mgd::tasks
