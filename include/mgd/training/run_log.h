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

namespace mgd::training {

/// The parts of one step's loss (NaN where a part does not apply).
struct StepLosses {
  static constexpr double kNone = std::numeric_limits<double>::quiet_NaN();
  double total = kNone;
  double task = kNone;               ///< cross-entropy
  double distill = kNone;            ///< d_loss / batch / loss_factor
  double kd = kNone;                 ///< KD loss (before its weight)
  std::vector<double> positions;     ///< per position, scaled like `distill`
};

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
  void step(int64_t epoch, int64_t batch, int64_t global_step, int64_t images, double lr,
            const StepLosses& losses, double train_top1);
  void end_epoch(int64_t epoch, int64_t global_step, double train_top1, double train_loss,
                 double top1, double top5, double test_loss, double lr, double elapsed_seconds);
  /// After a tracking pass and matching: mean matched cost per position, and the cost
  /// matrices as images.
  void matching(int64_t epoch, int64_t global_step, Distiller& distiller,
                const std::vector<double>& mean_costs, double seconds);
  void evaluation(const std::string& who, int64_t epoch, int64_t global_step, double top1,
                  double top5, double loss);
  void warning(const std::string& message);
  void finish(double final_top1, double best_top1, double seconds);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace mgd::training
