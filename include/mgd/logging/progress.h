// Console progress for training and evaluation passes.
//
// On a terminal (stderr is a tty and TERM is not "dumb") one line is redrawn in place, at
// most every redraw_secs (~10 per second), because redrawing at every batch of a fast model
// costs more than the batch:
//   epoch 3 train  31% [=======>                ] 120/391  1523.4 img/s  eta 0:00:17  loss 0.4123
// Elsewhere (a log file, a pipe, a batch job) it prints plain lines every print_freq batches
// and at the last one, with no carriage returns or escape sequences:
//   epoch 3 train [120/391]  1523.4 img/s  eta 0:00:17  loss 0.4123  acc1 87.53
// Rates are images per second of wall time since start(); the ETA extrapolates the mean
// batch time. The caller's values follow in the caller's order.
//
// Usage:
//   mgd::logging::Progress progress(mgd::logging::ProgressOptions().print_freq(50));
//   progress.start(epoch, loader_batches);
//   for (...) { ...; progress.update(i + 1, images.size(0), {{"loss", loss}, {"acc1", acc}}); }
//   double seconds = progress.finish();
//   std::cerr << mgd::logging::epoch_summary(epoch, seconds, {{"val_acc1", acc1}}) << "\n";
#pragma once

#include <torch/arg.h>

#include <cstdint>
#include <functional>
#include <iosfwd>
#include <string>

#include "mgd/logging/metrics_log.h"

namespace mgd::logging {

enum class ProgressStyle {
  kAuto,   ///< kBar on a terminal, kLines otherwise
  kBar,    ///< one line redrawn in place (carriage return + ANSI erase-to-end-of-line)
  kLines,  ///< a plain line every print_freq batches
};

struct ProgressOptions {
  /// kLines: print every print_freq batches (and at the last batch).
  TORCH_ARG(int64_t, print_freq) = 10;
  /// kBar: the least seconds between two redraws (the last batch is always drawn).
  TORCH_ARG(double, redraw_secs) = 0.1;
  /// Bar or lines; kAuto decides from the output.
  TORCH_ARG(ProgressStyle, style) = ProgressStyle::kAuto;
  /// kBar: characters between the brackets.
  TORCH_ARG(int64_t, bar_width) = 24;
  /// Monotonic clock in seconds; empty means std::chrono::steady_clock. Lets tests fix time.
  TORCH_ARG(std::function<double()>, clock) = nullptr;
};

/// Progress of one pass (an epoch's training or an evaluation) at a time.
class Progress {
 public:
  /// Writes to stderr; kAuto is kBar when stderr is a terminal.
  explicit Progress(ProgressOptions options = {});
  /// Writes to `out`, which must outlive this; kAuto means kLines (a stream is no terminal).
  explicit Progress(std::ostream& out, ProgressOptions options = {});
  /// Ends an open bar line, so later output starts on a line of its own.
  ~Progress();
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

  /// Starts a pass of `batches` batches (0 if unknown: no percentage or ETA). `phase` labels
  /// the lines ("train", "eval", ...).
  void start(int64_t epoch, int64_t batches, std::string phase = "train");
  /// Reports that batches 1..`batch` are done, `images` of them in this batch.
  void update(int64_t batch, int64_t images, const Metrics& values = {});
  /// Ends the pass: shows the final state if it was not shown and ends a bar line. Returns the
  /// seconds since start().
  double finish();

  /// True when drawing a bar.
  bool bar() const { return bar_; }
  /// Seconds since start().
  double elapsed() const;
  /// Images per second since start().
  double images_per_sec() const;

 private:
  std::string render(bool for_bar) const;
  void draw();
  double now() const;

  ProgressOptions options_;
  std::ostream* out_;
  bool bar_;
  bool to_terminal_ = false;  // drawing on stderr's tty: truncate lines to its width
  int64_t epoch_ = 0, batches_ = 0, batch_ = 0, images_ = 0;
  std::string phase_;
  Metrics values_;
  double start_ = 0, last_draw_ = 0;
  bool started_ = false, shown_ = true, line_open_ = false;
};

/// "H:MM:SS" ("0:01:23"); "?" for a negative or non-finite time.
std::string format_duration(double seconds);
/// A value for people: integers in full, other numbers with 4 significant digits (no exponent
/// from 10^4 up to 10^15), strings as they are.
std::string format_value(const MetricValue& value);
/// The closing line of an epoch: "epoch 3 done in 0:01:45  loss 0.4123  val_acc1 85.1".
std::string epoch_summary(int64_t epoch, double seconds, const Metrics& values);

}  // namespace mgd::logging
