// metrics.jsonl: one JSON object per line in the run directory, the machine-readable record
// of a run (plots, comparisons, resumption checks).
//
// Every line is
//   {"kind": "train", "epoch": 3, "step": 1200, "time": 1718031234.125, "loss": 0.4123, ...}
// with "time" the Unix time in seconds (millisecond resolution) and the caller's named values
// after it, in the caller's order. Numbers are written in the shortest form that reads back
// to the same double (or float, for float values); NaN and +-inf, which JSON cannot express,
// are written as null. Strings are escaped per RFC 8259, and invalid UTF-8 becomes U+FFFD, so
// every line parses with any JSON reader.
//
// Each line goes to the file in a single write(2) on a descriptor opened with O_APPEND, and
// nothing is buffered in the process: a killed run keeps every line it completed. A file
// left ending in a partial line (a crash mid-write, a full disk) gets a newline before the
// first new line, so only that partial line is lost. The first write failure throws
// c10::Error naming the file; later lines are then dropped silently.
//
// Usage:
//   mgd::logging::MetricsLog log("runs/resnet18_mgd");
//   log.write("train", epoch, step, {{"loss", 0.41}, {"acc1", 87.5}, {"lr", 0.1}});
//   log.write("matching", epoch, step, {{"position", 2}, {"mean_cost", 0.03}});
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <mutex>
#include <limits>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace mgd::logging {

/// A number, string or bool to log. Converts implicitly from each: integers stay integers,
/// floats keep float precision in the text, one-element tensors are read with item(), and
/// a string literal is a string (not a bool, as std::variant would make it in C++17).
class MetricValue {
 public:
  enum class Type { kInt, kDouble, kFloat, kString, kBool };

  template <typename T,
            std::enable_if_t<std::is_integral_v<T> && !std::is_same_v<T, bool>, int> = 0>
  MetricValue(T v) : type_(Type::kInt), int_(static_cast<int64_t>(v)) {}
  MetricValue(double v) : type_(Type::kDouble), double_(v) {}
  MetricValue(float v) : type_(Type::kFloat), double_(v) {}
  MetricValue(bool v) : type_(Type::kBool), int_(v ? 1 : 0) {}
  MetricValue(const char* v) : type_(Type::kString), string_(v ? v : "") {}
  MetricValue(std::string v) : type_(Type::kString), string_(std::move(v)) {}
  MetricValue(std::string_view v) : type_(Type::kString), string_(v) {}
  /// A one-element tensor (any device): integer and bool dtypes stay exact, float32 and
  /// lower precision keep float precision, double stays double.
  MetricValue(const torch::Tensor& v);

  Type type() const { return type_; }
  bool is_number() const { return type_ != Type::kString && type_ != Type::kBool; }
  /// The numeric value (bools as 0 or 1); throws c10::Error for strings.
  double to_double() const;
  /// The integer value of kInt or kBool; throws c10::Error for anything else.
  int64_t to_int() const;
  /// The string value; throws c10::Error for anything else.
  const std::string& str() const;

 private:
  Type type_;
  int64_t int_ = 0;
  double double_ = 0;
  std::string string_;
};

/// Named values, written in this order.
using Metrics = std::vector<std::pair<std::string, MetricValue>>;

/// `s` as a quoted JSON string (RFC 8259 escapes; invalid UTF-8 bytes become U+FFFD).
std::string json_string(std::string_view s);
/// `v` as JSON text: a number (shortest round-trip form, always with a '.' or exponent for
/// floating values), null for NaN or +-inf, true/false, or a string.
std::string json_value(const MetricValue& v);
/// One metrics line (without the newline). Throws c10::Error if a name is empty, repeated,
/// or one of the fixed keys "kind", "epoch", "step", "time".
std::string metrics_json_line(const std::string& kind, int64_t epoch, int64_t step, double time,
                              const Metrics& values);

/// Appends metrics lines to <run_dir>/metrics.jsonl. Thread-safe.
class MetricsLog {
 public:
  /// Creates `run_dir` (and parents) and opens metrics.jsonl for appending: a resumed run
  /// continues the file. Throws c10::Error naming the path on failure.
  explicit MetricsLog(const std::string& run_dir);
  ~MetricsLog();
  MetricsLog(const MetricsLog&) = delete;
  MetricsLog& operator=(const MetricsLog&) = delete;

  /// Writes one line, stamped with `time` (seconds since the Unix epoch; NaN: now).
  void write(const std::string& kind, int64_t epoch, int64_t step, const Metrics& values,
             double time = std::numeric_limits<double>::quiet_NaN());

  /// <run_dir>/metrics.jsonl.
  const std::string& path() const { return path_; }
  /// True after a write failure: later lines are dropped.
  bool failed() const;

 private:
  std::string path_;
  int fd_ = -1;
  bool failed_ = false;
  mutable std::mutex mutex_;
};

}  // namespace mgd::logging
