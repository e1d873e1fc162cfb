#include "mgd/logging/metrics_log.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <torch/torch.h>
#include <unistd.h>

#include <charconv>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <system_error>

namespace mgd::logging {
namespace {

// The shortest text that reads back to the same value, with ".0" added to integral values so
// readers keep the column floating point.
template <typename T>
std::string shortest(T v) {
  char buf[64];
  const auto r = std::to_chars(buf, buf + sizeof buf, v);
  std::string s(buf, r.ptr);
  if (s.find_first_of(".e") == std::string::npos) s += ".0";
  return s;
}

// Length of the valid UTF-8 sequence starting at s[i], or 0 if it is not one (RFC 3629
// section 4: no overlong forms, no surrogates, nothing above U+10FFFF).
size_t utf8_sequence(std::string_view s, size_t i) {
  const auto byte = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char c = byte(i);
  size_t len;
  unsigned char lo = 0x80, hi = 0xBF;  // range of the second byte
  if (c >= 0xC2 && c <= 0xDF) {
    len = 2;
  } else if (c >= 0xE0 && c <= 0xEF) {
    len = 3;
    if (c == 0xE0) lo = 0xA0;
    if (c == 0xED) hi = 0x9F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    len = 4;
    if (c == 0xF0) lo = 0x90;
    if (c == 0xF4) hi = 0x8F;
  } else {
    return 0;
  }
  if (i + len > s.size()) return 0;
  if (byte(i + 1) < lo || byte(i + 1) > hi) return 0;
  for (size_t k = 2; k < len; ++k) {
    if (byte(i + k) < 0x80 || byte(i + k) > 0xBF) return 0;
  }
  return len;
}

void check_name(const std::string& name, const Metrics& values, size_t index) {
  TORCH_CHECK(!name.empty(), "metrics: empty value name");
  for (const char* fixed : {"kind", "epoch", "step", "time"}) {
    TORCH_CHECK(name != fixed, "metrics: value name '", name, "' is reserved");
  }
  for (size_t k = 0; k < index; ++k) {
    TORCH_CHECK(values[k].first != name, "metrics: value name '", name, "' given twice");
  }
}

}  // namespace

MetricValue::MetricValue(const torch::Tensor& v) {
  TORCH_CHECK(v.defined() && v.numel() == 1, "metrics: expected a one-element tensor, got ",
              v.defined() ? v.sizes() : torch::IntArrayRef{});
  const auto t = v.detach().to(torch::kCPU);
  if (t.scalar_type() == torch::kBool) {
    type_ = Type::kBool;
    int_ = t.item<bool>() ? 1 : 0;
  } else if (!t.is_floating_point() && !t.is_complex()) {
    type_ = Type::kInt;
    int_ = t.item<int64_t>();
  } else if (t.scalar_type() == torch::kDouble) {
    type_ = Type::kDouble;
    double_ = t.item<double>();
  } else {
    TORCH_CHECK(!t.is_complex(), "metrics: complex tensors are not supported");
    type_ = Type::kFloat;
    double_ = t.item<float>();
  }
}

double MetricValue::to_double() const {
  switch (type_) {
    case Type::kInt:
    case Type::kBool:
      return static_cast<double>(int_);
    case Type::kDouble:
    case Type::kFloat:
      return double_;
    case Type::kString:
      break;
  }
  TORCH_CHECK(false, "metrics: '", string_, "' is a string, not a number");
}

int64_t MetricValue::to_int() const {
  TORCH_CHECK(type_ == Type::kInt || type_ == Type::kBool, "metrics: value is not an integer");
  return int_;
}

const std::string& MetricValue::str() const {
  TORCH_CHECK(type_ == Type::kString, "metrics: value is not a string");
  return string_;
}

std::string json_string(std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(s.size() + 2);
  out.push_back('"');
  for (size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x80) {
      const size_t len = utf8_sequence(s, i);
      if (len == 0) {
        out += "\\ufffd";
        ++i;
      } else {
        out.append(s.substr(i, len));
        i += len;
      }
      continue;
    }
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (c < 0x20) {
          out += "\\u00";
          out.push_back(kHex[c >> 4]);
          out.push_back(kHex[c & 0xF]);
        } else {
          out.push_back(static_cast<char>(c));
        }
    }
    ++i;
  }
  out.push_back('"');
  return out;
}

std::string json_value(const MetricValue& v) {
  switch (v.type()) {
    case MetricValue::Type::kInt:
      return std::to_string(v.to_int());
    case MetricValue::Type::kBool:
      return v.to_int() != 0 ? "true" : "false";
    case MetricValue::Type::kString:
      return json_string(v.str());
    case MetricValue::Type::kDouble:
    case MetricValue::Type::kFloat:
      break;
  }
  const double d = v.to_double();
  if (!std::isfinite(d)) return "null";
  return v.type() == MetricValue::Type::kFloat ? shortest(static_cast<float>(d)) : shortest(d);
}

std::string metrics_json_line(const std::string& kind, int64_t epoch, int64_t step, double time,
                              const Metrics& values) {
  std::string line = "{\"kind\": " + json_string(kind) + ", \"epoch\": " + std::to_string(epoch) +
                     ", \"step\": " + std::to_string(step) + ", \"time\": " + json_value(time);
  for (size_t i = 0; i < values.size(); ++i) {
    const auto& [name, value] = values[i];
    check_name(name, values, i);
    line += ", " + json_string(name) + ": " + json_value(value);
  }
  line += "}";
  return line;
}

MetricsLog::MetricsLog(const std::string& run_dir) {
  TORCH_CHECK(!run_dir.empty(), "MetricsLog: empty run directory");
  std::error_code ec;
  std::filesystem::create_directories(run_dir, ec);
  TORCH_CHECK(!ec && std::filesystem::is_directory(run_dir, ec), "cannot create run directory '",
              run_dir, "': ", ec ? ec.message() : "not a directory");
  path_ = (std::filesystem::path(run_dir) / "metrics.jsonl").string();
  fd_ = ::open(path_.c_str(), O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  TORCH_CHECK(fd_ >= 0, "cannot open metrics log '", path_, "': ", std::strerror(errno));
  // Terminate a partial last line left by a crashed run, so that the next line stays whole.
  struct stat st {};
  char last = '\n';
  if (::fstat(fd_, &st) == 0 && st.st_size > 0 && ::pread(fd_, &last, 1, st.st_size - 1) == 1 &&
      last != '\n') {
    const bool ok = ::write(fd_, "\n", 1) == 1;
    if (!ok) {
      const int err = errno;
      ::close(fd_);
      fd_ = -1;
      TORCH_CHECK(false, "cannot write to metrics log '", path_, "': ", std::strerror(err));
    }
  }
}

MetricsLog::~MetricsLog() {
  if (fd_ >= 0) ::close(fd_);
}

bool MetricsLog::failed() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return failed_;
}

void MetricsLog::write(const std::string& kind, int64_t epoch, int64_t step,
                       const Metrics& values, double time) {
  using namespace std::chrono;
  const double now = std::isnan(time)
                         ? duration<double>(system_clock::now().time_since_epoch()).count()
                         : time;
  const std::string line =
      metrics_json_line(kind, epoch, step, std::round(now * 1000.0) / 1000.0, values) + "\n";
  std::lock_guard<std::mutex> lock(mutex_);
  if (failed_) return;
  size_t done = 0;
  while (done < line.size()) {
    const ssize_t n = ::write(fd_, line.data() + done, line.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int err = n < 0 ? errno : EIO;
      failed_ = true;
      TORCH_CHECK(false, "cannot write to metrics log '", path_, "': ", std::strerror(err),
                  " (metrics logging stops here)");
    }
    done += static_cast<size_t>(n);
  }
}

}  // namespace mgd::logging
