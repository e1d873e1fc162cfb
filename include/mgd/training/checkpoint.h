// Training checkpoints: everything needed to continue a run exactly where it stopped.
//
// A checkpoint is a torch.save-compatible file (mgd/serialize), readable by Python's
// torch.load and parsed -- never executed -- by mgd:
//   {"format": "mgd-checkpoint", "version": 1,
//    "arch", "teacher_arch", "method", "config": str,
//    "state_dict": the trained network's parameters and buffers (torchvision names),
//    "distiller": the distiller's own state (norm layers, margins, matchings, cost sums),
//    "momentum": [one SGD momentum buffer per optimized parameter, or None],
//    "epoch": completed epochs, "global_step",
//    "best_top1": the best value of the task's best metric (top-1 for classification),
//    "best_top5", "teacher_top1": the teacher's value of that metric,
//    "rng": the CPU generator's state,
//    "batch": batches done in epoch "epoch" (> 0 for a checkpoint written inside an epoch),
//    "task_state": the task's own state (classification: the epoch's [images, top-1 hits,
//                  top-5 hits, loss sum]; "epoch_meter" in older files),
//    "metrics_bytes": metrics.jsonl's size when the checkpoint was written}
// Files are written atomically (a temporary file, fsync, rename), so a crash never leaves a
// half-written checkpoint under the final name.
#pragma once

#include <torch/nn/module.h>

#include "mgd/serialize/value.h"
#include "mgd/training/metrics.h"
#include <torch/types.h>

#include <string>
#include <vector>

namespace mgd::training {

struct TrainingState {
  std::string arch, teacher_arch, method, config;
  int64_t epoch = 0;        ///< completed epochs
  int64_t global_step = 0;  ///< completed optimizer steps
  double best_top1 = 0, best_top5 = 0;
  double teacher_top1 = -1;
  torch::Tensor rng_state;  ///< CPU generator state (uint8)
  int64_t batch = 0;        ///< batches done in epoch `epoch` (inside an epoch: > 0)
  /// The task's own state (Task::state(); classification: the epoch's accuracy meter [images,
  /// top-1 hits, top-5 hits, loss sum]).
  serialize::Value task_state;
  /// Size of the run's metrics.jsonl when this checkpoint was written (-1: unknown); a resumed
  /// run cuts the lines its killed predecessor wrote after it.
  int64_t metrics_bytes = -1;
};

/// Parameters and buffers of `module` whose names do not start with one of `exclude`.
std::vector<std::pair<std::string, torch::Tensor>> module_state(
    torch::nn::Module& module, const std::vector<std::string>& exclude = {});

/// Writes a checkpoint atomically. `distiller` may be null (base training); its teacher and
/// student are not stored in its entry. `momentum` may hold undefined tensors.
void save_checkpoint(const std::string& path, torch::nn::Module& model,
                     torch::nn::Module* distiller, const std::vector<torch::Tensor>& momentum,
                     const TrainingState& state);

/// Reads a checkpoint written by save_checkpoint into `model`, `distiller` (if not null) and
/// `momentum` (resized to the stored count; must match the optimizer's parameter count).
/// Throws c10::Error naming the file on a missing, corrupt or mismatched checkpoint.
TrainingState load_checkpoint(const std::string& path, torch::nn::Module& model,
                              torch::nn::Module* distiller, std::vector<torch::Tensor>* momentum);

/// Loads network weights from `path` into `model`: an mgd checkpoint, a Python state_dict or
/// training checkpoint ({"state_dict": ...}, DataParallel "module." prefixes). If the file is
/// an mgd checkpoint whose "arch" differs from `arch` (when given), that is the error.
void load_weights(const std::string& path, torch::nn::Module& model, const std::string& arch = "");

}  // namespace mgd::training
