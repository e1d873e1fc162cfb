// TensorBoard event files, written without TensorFlow or libprotobuf.
//
// FORMAT
//
// An event file is a TFRecord file (tensorflow/core/lib/io/record_writer.cc): records of
//   uint64 length | uint32 masked CRC-32C of the 8 length bytes | data | uint32 masked CRC-32C
//   of the data,
// all little-endian (masking: crc32c.h). Each record's data is one serialized
// tensorflow.Event protobuf (tensorflow/core/util/event.proto, summary.proto); the first
// carries file_version "brain.Event:2", the rest a Summary. The protobuf wire format is
// written by hand: only these fields are ever produced,
//   Event   { double wall_time = 1; int64 step = 2; string file_version = 3;
//             Summary summary = 5; }
//   Summary { repeated Value value = 1; }
//   Value   { string tag = 1; float simple_value = 2; Image image = 4; }
//   Image   { int32 height = 1; int32 width = 2; int32 colorspace = 3;
//             bytes encoded_image_string = 4; }      // PNG; colorspace = channel count
// which TensorBoard's data_compat layer reads as scalars and images.
//
// BUFFERING AND ERRORS
//
// Records are buffered in memory and written on flush(), by a background thread every
// flush_secs, when the buffer passes 1 MiB, and on destruction, so a crash loses at most a few
// seconds of events. The first failure to create or write the file (unwritable directory,
// disk full) throws c10::Error naming the file, from the call that meets it or, when the
// background thread met it, from the next call; after that the writer drops events silently,
// so a run whose logging broke is told once, not at every step.
//
// STEPS
//
// Keep the steps of one tag increasing: TensorBoard may take a step that goes back for a
// restart of the run and drop the points after it. A resumed run should continue its steps.
//
// Usage:
//   mgd::logging::EventWriter tb("runs/resnet18_mgd");   // events.out.tfevents.<time>.<host>
//   tb.add_scalar("train/loss", loss, step);
//   tb.add_image("matching/cost_0", mgd::logging::heat_map(cost), step);
//   // tensorboard --logdir runs
#pragma once

#include <torch/arg.h>
#include <torch/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace mgd::logging {

/// A buffered TFRecord file writer. Not thread-safe (EventWriter adds the locking).
class RecordWriter {
 public:
  /// Creates `path` (truncating an existing file, or failing if it exists when `exclusive`).
  /// Throws c10::Error naming the path when it cannot be created.
  explicit RecordWriter(std::string path, bool exclusive = false);
  /// Flushes; a failure here is reported with TORCH_WARN, never thrown.
  ~RecordWriter();
  RecordWriter(const RecordWriter&) = delete;
  RecordWriter& operator=(const RecordWriter&) = delete;

  /// Appends one framed record to the buffer; flushes when the buffer passes 1 MiB.
  void write(std::string_view data);
  /// Writes the buffer to the file. Throws c10::Error naming the path at the first failure.
  void flush();

  const std::string& path() const { return path_; }
  /// True after a write failure: later records are dropped.
  bool failed() const { return failed_; }
  /// Bytes waiting in the buffer.
  size_t buffered() const { return buffer_.size(); }

 private:
  std::string path_;
  int fd_ = -1;
  std::string buffer_;
  bool failed_ = false;
};

/// The TFRecord framing of one record (what RecordWriter::write appends).
std::string frame_record(std::string_view data);

struct EventWriterOptions {
  /// Seconds between background flushes of buffered events.
  TORCH_ARG(double, flush_secs) = 5.0;
  /// Appended to the file name, e.g. ".student" (TensorBoard reads any name with "tfevents").
  TORCH_ARG(std::string, filename_suffix) = "";
};

/// Writes one TensorBoard event file in a run directory. Thread-safe. Movable; a moved-from
/// writer may only be destroyed or assigned to.
class EventWriter {
 public:
  /// Creates `log_dir` (and parents) and events.out.tfevents.<unix time>.<hostname><suffix> in
  /// it (".1", ".2", ... appended if that name is taken), then writes the file_version event.
  /// Throws c10::Error naming the path when the directory or file cannot be created.
  explicit EventWriter(const std::string& log_dir, EventWriterOptions options = {});
  /// Flushes; never throws (a failure not yet reported is reported with TORCH_WARN).
  ~EventWriter();
  EventWriter(EventWriter&&) noexcept;
  EventWriter& operator=(EventWriter&&) noexcept;

  /// A scalar (stored as float32, as TensorBoard does) at `step`.
  void add_scalar(const std::string& tag, double value, int64_t step);
  /// Several scalars in one event, all at `step`.
  void add_scalars(const std::vector<std::pair<std::string, double>>& values, int64_t step);
  /// An image: H x W (gray) or C x H x W (C = 1, 3, 4), uint8 or floating point in [0, 1]
  /// (see to_hwc_uint8), stored as PNG.
  void add_image(const std::string& tag, const torch::Tensor& image, int64_t step);
  /// Writes everything buffered to the file.
  void flush();

  /// The event file.
  const std::string& path() const;
  /// True once writing failed (the error was or will be thrown once; events are dropped).
  bool failed() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace mgd::logging
