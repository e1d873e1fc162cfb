// The training engine: the one training loop of every task (training/task.h, tasks/) --
// base training, MGD / MGD+KD / KD distillation and evaluation (spec 7). The `mgd` command
// line only parses flags into TrainOptions and calls these functions; library users can call
// them directly.
#pragma once

#include <string>

#include "mgd/training/options.h"
#include "mgd/training/task.h"

namespace mgd::training {

struct EvalResult {
  NamedValues metrics;  ///< every metric of the task's evaluation, in its order
  double top1 = 0;      ///< classification: percent
  double top5 = 0;      ///< classification: percent
  double loss = 0;      ///< classification: mean cross-entropy
  int64_t images = 0;
};

struct RunSummary {
  std::string output_dir;
  EvalResult final_eval;         ///< after the last epoch
  std::string best_metric;       ///< the task's metric picking best.pth (acc1, AP, ...)
  double best_top1 = 0;          ///< best value of best_metric over the run's epochs
  double teacher_top1 = -1;      ///< distillation: the teacher's best_metric (-1 otherwise)
  double train_seconds = 0;      ///< wall time spent training (this process)
  int64_t epochs_done = 0;
  std::string checkpoint;        ///< last checkpoint written
  std::string best_checkpoint;   ///< best checkpoint
};

/// Trains `options.arch` (base training when options.method is kNone, else distills it
/// from the teacher), writing checkpoints, metrics.jsonl, TensorBoard events and the
/// configuration into options.output_dir. Throws c10::Error with a clear message on bad
/// input (unknown arch, bad data, mismatched checkpoint, non-finite loss, ...).
RunSummary run_training(const TrainOptions& options);

/// Evaluates `options.arch` with the weights of options.init_checkpoint (or options.resume)
/// on the test split.
EvalResult run_evaluation(const TrainOptions& options);

}  // namespace mgd::training
