// One run directory, two records: metrics.jsonl (metrics_log.h) for scripts and an event
// file (event_writer.h) for TensorBoard, written from one call.
//
// Usage:
//   mgd::logging::RunLogger run("runs/resnet18_mgd");
//   run.log("train", epoch, step, {{"loss", loss}, {"acc1", acc1}, {"lr", lr}});
//     // metrics.jsonl: {"kind": "train", "epoch": 3, "step": 1200, "time": ..., "loss": ...}
//     // TensorBoard:   train/loss, train/acc1, train/lr at step 1200
//   run.add_image("matching/cost_0", mgd::logging::heat_map(cost), step);
#pragma once

#include <torch/arg.h>
#include <torch/types.h>

#include <cstdint>
#include <memory>
#include <limits>
#include <string>

#include "mgd/logging/event_writer.h"
#include "mgd/logging/metrics_log.h"

namespace mgd::logging {

struct RunLoggerOptions {
  /// Also write a TensorBoard event file.
  TORCH_ARG(bool, tensorboard) = true;
  /// Options of the event file.
  TORCH_ARG(EventWriterOptions, events) = {};
};

class RunLogger {
 public:
  /// Creates `run_dir` with metrics.jsonl and (unless disabled) an event file in it.
  explicit RunLogger(std::string run_dir, RunLoggerOptions options = {});

  /// One metrics.jsonl line; every number (not strings or bools) also goes to TensorBoard as
  /// the scalar "<kind>/<name>" at `step`, all in one event.
  /// `time`: the line's stamp (seconds since the Unix epoch; NaN: now).
  void log(const std::string& kind, int64_t epoch, int64_t step, const Metrics& values,
           double time = std::numeric_limits<double>::quiet_NaN());
  /// An image to TensorBoard only (nothing when it is disabled); see EventWriter::add_image.
  void add_image(const std::string& tag, const torch::Tensor& image, int64_t step);
  /// Flushes the event file (metrics.jsonl is never buffered).
  void flush();

  const std::string& run_dir() const { return run_dir_; }
  MetricsLog& metrics() { return *metrics_; }
  /// The event writer; null when TensorBoard output is disabled.
  EventWriter* events() { return events_.get(); }

 private:
  std::string run_dir_;
  std::unique_ptr<MetricsLog> metrics_;
  std::unique_ptr<EventWriter> events_;
};

}  // namespace mgd::logging
