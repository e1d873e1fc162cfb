// What a training run reports, and where: the progress display on stderr, metrics.jsonl and
// TensorBoard event files in the run directory (mgd/logging). The engine calls these hooks;
// they decide the formats.
//
// Nothing is written into the run directory before commit(), which the engine calls just
// before the run's first checkpoint: until then the records wait in memory, so a run that
// fails before it has saved anything leaves the directory exactly as it found it.
#pragma once

#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "mgd/distiller/distiller.h"
#include "mgd/training/loss_scale.h"
#include "mgd/training/task.h"

namespace mgd::training {

/// How a run treats the files already in its directory when it commits.
enum class RunDirMode {
  kNew,        ///< a directory without another run's files
  kOverwrite,  ///< another run's files, replaced (--overwrite): its metrics and events go
  kResume,     ///< the run continues: metrics.jsonl cut back to the checkpoint, events kept
};

class RunLog {
 public:
  /// `metrics_bytes` (kResume): metrics.jsonl's size when the resumed checkpoint was written
  /// (-1: unknown, nothing is cut).
  RunLog(const std::string& dir, int64_t print_freq, RunDirMode mode, int64_t metrics_bytes = -1);
  ~RunLog();

  /// Applies `mode` to the directory and writes out every record held so far; later records
  /// go straight to the files. Idempotent.
  void commit();
  bool committed() const;
  /// metrics.jsonl's size now (after commit; -1 before).
  int64_t metrics_bytes() const;

  void begin_epoch(int64_t epoch, int64_t epochs, int64_t batches);
  /// One step: its total loss, the loss's named parts and the task's running metrics (shown
  /// by the progress display too).
  void step(int64_t epoch, int64_t batch, int64_t global_step, int64_t images, double lr,
            double loss, const NamedValues& parts, const NamedValues& running);
  /// The epoch's training summary and evaluation.
  void end_epoch(int64_t epoch, int64_t global_step, const NamedValues& train,
                 const NamedValues& evaluation, double lr, double elapsed_seconds);
  /// After a tracking pass and matching: mean matched cost per position, and the cost
  /// matrices as images.
  void matching(int64_t epoch, int64_t global_step, Distiller& distiller,
                const std::vector<double>& mean_costs, double seconds);
  /// An evaluation of `who` (e.g. the teacher) outside the epochs.
  void evaluation(const std::string& who, int64_t epoch, int64_t global_step,
                  const NamedValues& metrics);
  void warning(const std::string& message);
  /// The distillation loss's scale at the run's first step (see loss_scale.h).
  void loss_scale(int64_t epoch, int64_t global_step, const LossScale& scale);
  /// The run's end: the final evaluation's and the best value of the metric picking best.pth.
  void finish(const NamedValues& final_metrics, const std::string& best_metric, double best,
              double seconds);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace mgd::training
