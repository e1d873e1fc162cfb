// What one kind of training learns from, for the one training loop.
//
// The engine (engine.cpp) owns everything a run has whatever it learns: the learning-rate and
// matching schedules, checkpoints and exact resume, SIGINT/SIGTERM, the non-finite-loss check,
// data-parallel training, metrics.jsonl / TensorBoard / progress. A Task supplies the rest:
// its batches, the step's loss and its named parts, its evaluation and the metric that picks
// best.pth, the tracking pass of MGD's matching when it distills, and any state of its own
// that a checkpoint must carry. (The pattern of Detectron2's SimpleTrainer + hooks and of
// PyTorch Lightning's LightningModule: the loop knows no task.)
//
// The engine drives a task like this (one process; data-parallel runs add all-reduces):
//   for epoch:
//     if a matching is due: task.track(...) then the engine solves and installs it
//     task.train(true); n = task.start_epoch(epoch, first_batch)
//     while (task.next_batch()) {
//       StepResult r = task.step();        // forward + loss (graph kept)
//       check r.loss, backward, average gradients, optimizer step, logs
//       task.after_step(r);                // e.g. the epoch's training accuracy
//     }
//     Evaluation e = task.evaluate();      // picks best.pth by task.best_metric()
#pragma once

#include <torch/nn/module.h>
#include <torch/types.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "mgd/data/loader.h"
#include "mgd/distiller/distiller.h"
#include "mgd/serialize/value.h"
#include "mgd/distributed/communicator.h"
#include "mgd/training/options.h"

namespace mgd::training {

/// Named numbers in the order they are reported (metrics.jsonl keys, TensorBoard tags).
using NamedValues = std::vector<std::pair<std::string, double>>;

/// The value of `name` in `values`, or NaN when it is not there (not applicable).
double value_of(const NamedValues& values, const std::string& name);

/// One training step's loss.
struct StepResult {
  torch::Tensor loss;  ///< the scalar to minimize, with its autograd graph
  /// Its parts for the logs, in order (e.g. task_loss, distill_loss, kd_loss,
  /// distill_loss_<i>); parts that do not apply are absent.
  NamedValues parts;
  int64_t images = 0;  ///< images in this rank's batch
};

/// One evaluation pass over the evaluation split (summed over ranks).
struct Evaluation {
  NamedValues metrics;  ///< e.g. acc1, acc5, loss; or AP, AP50, ...
  int64_t images = 0;
};

/// Everything a task needs from the engine besides its options.
struct TaskContext {
  std::shared_ptr<distributed::Communicator> comm;
  torch::Device device{torch::kCPU};
  /// True while the engine wants the current pass abandoned (a requested stop, one process).
  std::function<bool()> stop_requested;
};

/// Thrown by a task inside an interruptible pass when ctx.stop_requested() says so.
struct PassAbandoned {};

class Task {
 public:
  virtual ~Task() = default;

  /// "classification", "detection", ...
  virtual std::string name() const = 0;

  // --- what is trained ---
  /// The network trained; its state_dict is the checkpoint's "state_dict".
  virtual torch::nn::Module& network() = 0;
  /// The distiller when the run distills with MGD, else null. Its own state (matchings,
  /// margins, norms) is the checkpoint's "distiller".
  virtual Distiller distiller() { return Distiller(nullptr); }
  /// Parameters the optimizer updates.
  virtual std::vector<torch::Tensor> parameters() = 0;
  /// Training or evaluation mode of everything trained (a teacher stays in eval mode).
  virtual void train(bool on) = 0;

  // --- training data ---
  /// Positions the epoch's stream at `first_batch` (> 0 when resuming inside the epoch);
  /// returns the epoch's number of batches on this rank.
  virtual int64_t start_epoch(int64_t epoch, int64_t first_batch) = 0;
  /// Loads the next batch; false at the epoch's end.
  virtual bool next_batch() = 0;
  /// Index of the current batch in its epoch.
  virtual int64_t batch_index() const = 0;
  /// The current batch's forward pass and loss.
  virtual StepResult step() = 0;
  /// After the optimizer step, with the step's result (its loss was finite).
  virtual void after_step(const StepResult& /*result*/) {}
  /// Named values shown by the progress display and logged with each step (e.g. acc1).
  virtual NamedValues step_metrics() const { return {}; }
  /// The epoch's training summary (e.g. train_loss, train_acc1).
  virtual NamedValues epoch_metrics() const { return {}; }

  // --- evaluation ---
  /// The evaluation split, sharded over ranks and summed. Throws PassAbandoned when
  /// `interruptible` and a stop is requested.
  virtual Evaluation evaluate(bool interruptible) = 0;
  /// The teacher's evaluation (distillation runs), or none.
  virtual bool has_teacher() const { return false; }
  virtual Evaluation evaluate_teacher(bool /*interruptible*/) { return {}; }
  /// The evaluation metric that picks best.pth (higher is better), e.g. "acc1" or "AP".
  virtual std::string best_metric() const = 0;

  // --- MGD's tracking pass (only when distiller() is set) ---
  /// Feeds one tracking pass to the distiller (reset_tracking() is done by the engine):
  /// this rank's shard of the pass's images, chosen by `seed`. `on_error` receives each
  /// batch's c10::Error with the batch's 0-based index and returns true to skip the batch.
  /// Throws PassAbandoned when `interruptible` and a stop is requested.
  virtual void track(uint64_t seed, bool interruptible,
                     const std::function<bool(const c10::Error&, int64_t batch)>& on_error) {
    (void)seed, (void)interruptible, (void)on_error;
  }

  // --- state of its own ---
  /// State a checkpoint must carry for an exact resume (the epoch's running metrics, a loss
  /// normalizer, a queue); saved in every checkpoint, restored by load_state().
  virtual serialize::Value state() const { return serialize::Value(); }
  virtual void load_state(const serialize::Value& /*state*/) {}
  /// Keys of config.yaml that only this task has (each line "key: value\n").
  virtual std::string config_text() const { return ""; }
};

// --- helpers shared by the tasks ---

/// Loader options for this rank's shard of a data set; `pad` false gives every sample exactly
/// once over the ranks (evaluation, tracking).
inline data::LoaderOptions shard_options(const TaskContext& context, bool pad);

/// Positions `loader` at batch `first_batch` of `epoch` (> 0 when resuming inside it) and
/// returns the epoch's batches; a position past the epoch's end names the checkpoint `resume`.
template <typename BatchT>
int64_t start_epoch_at(data::BasicLoader<BatchT>& loader, int64_t epoch, int64_t first_batch,
                       const std::string& resume) {
  loader.set_epoch(epoch);
  const int64_t batches = loader.num_batches();
  TORCH_CHECK(first_batch <= batches, "Cannot resume '", resume, "' at batch ", first_batch,
              " of epoch ", epoch + 1, ": this run's epochs have ", batches,
              " batches (the data, subset or batch size differ from the checkpoint's run)");
  loader.start(first_batch);
  return batches;
}

/// Moves `loader`'s next batch into `batch`; false at the epoch's end.
template <typename BatchT>
bool next_batch_of(data::BasicLoader<BatchT>& loader, BatchT& batch) {
  auto next = loader.next();
  if (!next) return false;
  batch = std::move(*next);
  return true;
}

/// One tracking pass of MGD over every batch of `loader`: `track_one` feeds a batch to the
/// distiller (e.g. distiller->track(batch.images)). Throws PassAbandoned when `interruptible`
/// and a stop is requested; a batch's c10::Error goes to `on_error`, which returns true to
/// skip the batch.
template <typename BatchT>
void track_batches(data::BasicLoader<BatchT>& loader, const TaskContext& context,
                   bool interruptible,
                   const std::function<bool(const c10::Error&, int64_t)>& on_error,
                   const std::function<void(const BatchT&)>& track_one) {
  for (auto& batch : loader) {
    if (interruptible && context.stop_requested()) throw PassAbandoned{};
    try {
      track_one(batch);
    } catch (const c10::Error& e) {
      if (!on_error(e, batch.index)) throw;
    }
  }
}

/// Adds MGD's loss to `result`: `distilled`'s loss times `scale` (1 / images / loss factor,
/// spec 6), with its parts "distill_loss" and "distill_loss_<i>" per distilled position.
inline void add_distillation(StepResult& result, const DistillOutput& distilled, double scale) {
  auto distill = distilled.loss * scale;
  result.loss = result.loss + distill;
  result.parts.emplace_back("distill_loss", distill.item<double>());
  for (size_t i = 0; i < distilled.position_losses.size(); ++i) {
    if (!distilled.position_losses[i].defined()) continue;  // not distilled
    result.parts.emplace_back("distill_loss_" + std::to_string(i),
                              distilled.position_losses[i].item<double>() * scale);
  }
}

/// "[a, b, c]": a list in config.yaml.
std::string yaml_list(const std::vector<int64_t>& values);
std::string yaml_list(const std::vector<double>& values);

/// Fills the options left at "the task's default" (loss_factor 0, update_freq 0, ...) with the
/// values of the task `options.task` names (the engine calls it; presets a user's config then
/// overrides are apply_task_defaults() in options.h).
void resolve_task_defaults(TrainOptions& options);

/// The task `options.task` names, built from the options (networks, data, distiller).
std::unique_ptr<Task> make_task(const TrainOptions& options, const TaskContext& context);

inline data::LoaderOptions shard_options(const TaskContext& context, bool pad) {
  return data::LoaderOptions()
      .rank(context.comm->rank())
      .world_size(context.comm->world_size())
      .pad(pad);
}

}  // namespace mgd::training
