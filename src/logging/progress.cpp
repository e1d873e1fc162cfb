#include "mgd/logging/progress.h"

#include <sys/ioctl.h>
#include <torch/torch.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <limits>

namespace mgd::logging {
namespace {

bool stderr_is_terminal() {
  const char* term = std::getenv("TERM");
  return isatty(STDERR_FILENO) && !(term && std::strcmp(term, "dumb") == 0);
}

int stderr_columns() {
  winsize ws{};
  if (ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) return ws.ws_col;
  return 0;
}

void append_values(std::string& out, const Metrics& values) {
  for (const auto& [name, value] : values) out += "  " + name + " " + format_value(value);
}

std::string format_double(const char* format, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, format, v);
  return buf;
}

}  // namespace

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  const auto total = static_cast<long long>(std::llround(seconds));
  char buf[48];
  std::snprintf(buf, sizeof buf, "%lld:%02lld:%02lld", total / 3600, total / 60 % 60, total % 60);
  return buf;
}

std::string format_value(const MetricValue& value) {
  switch (value.type()) {
    case MetricValue::Type::kString:
      return value.str();
    case MetricValue::Type::kBool:
      return value.to_int() ? "true" : "false";
    case MetricValue::Type::kInt:
      return std::to_string(value.to_int());
    case MetricValue::Type::kDouble:
    case MetricValue::Type::kFloat:
      break;
  }
  const double v = value.to_double();
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  if (std::abs(v) >= 1e4 && std::abs(v) < 1e15) return format_double("%.0f", v);
  return format_double("%.4g", v);
}

std::string epoch_summary(int64_t epoch, double seconds, const Metrics& values) {
  std::string out = "epoch " + std::to_string(epoch) + " done in " + format_duration(seconds);
  append_values(out, values);
  return out;
}

Progress::Progress(ProgressOptions options) : Progress(std::cerr, std::move(options)) {
  if (options_.style() == ProgressStyle::kAuto) bar_ = stderr_is_terminal();
  to_terminal_ = bar_ && isatty(STDERR_FILENO);
}

Progress::Progress(std::ostream& out, ProgressOptions options)
    : options_(std::move(options)), out_(&out), bar_(options_.style() == ProgressStyle::kBar) {
  TORCH_CHECK(options_.print_freq() > 0, "Progress: invalid print_freq ", options_.print_freq(),
              " (expected > 0)");
  TORCH_CHECK(options_.redraw_secs() >= 0, "Progress: invalid redraw_secs ",
              options_.redraw_secs());
  TORCH_CHECK(options_.bar_width() > 0, "Progress: invalid bar_width ", options_.bar_width());
}

Progress::~Progress() {
  if (line_open_) *out_ << "\n" << std::flush;
}

double Progress::now() const {
  if (options_.clock()) return options_.clock()();
  using namespace std::chrono;
  return duration<double>(steady_clock::now().time_since_epoch()).count();
}

void Progress::start(int64_t epoch, int64_t batches, std::string phase) {
  TORCH_CHECK(batches >= 0, "Progress: invalid batch count ", batches);
  if (line_open_) {
    *out_ << "\n";
    line_open_ = false;
  }
  epoch_ = epoch;
  batches_ = batches;
  phase_ = std::move(phase);
  batch_ = images_ = 0;
  values_.clear();
  start_ = now();
  last_draw_ = -std::numeric_limits<double>::infinity();
  started_ = true;
  shown_ = true;  // nothing to show yet
}

double Progress::elapsed() const {
  return started_ ? now() - start_ : 0.0;
}

double Progress::images_per_sec() const {
  const double t = elapsed();
  return t > 0 ? static_cast<double>(images_) / t : 0.0;
}

void Progress::update(int64_t batch, int64_t images, const Metrics& values) {
  TORCH_CHECK(started_, "Progress: update() before start()");
  TORCH_CHECK(batch > 0 && (batches_ == 0 || batch <= batches_), "Progress: batch ", batch,
              " out of range 1..", batches_);
  TORCH_CHECK(images >= 0, "Progress: invalid image count ", images);
  batch_ = batch;
  images_ += images;
  values_ = values;
  shown_ = false;
  const bool last = batch == batches_;
  if (bar_) {
    const double t = now();
    if (last || t - last_draw_ >= options_.redraw_secs()) {
      last_draw_ = t;
      draw();
    }
  } else if (last || batch % options_.print_freq() == 0) {
    draw();
  }
}

double Progress::finish() {
  TORCH_CHECK(started_, "Progress: finish() before start()");
  if (!shown_) draw();
  if (line_open_) {
    *out_ << "\n" << std::flush;
    line_open_ = false;
  }
  started_ = false;
  return now() - start_;
}

std::string Progress::render(bool for_bar) const {
  const double t = now() - start_;
  std::string s = "epoch " + std::to_string(epoch_) + " " + phase_;
  if (for_bar && batches_ > 0) {
    const double frac = static_cast<double>(batch_) / static_cast<double>(batches_);
    const int64_t width = options_.bar_width();
    const auto filled = std::min<int64_t>(width, static_cast<int64_t>(frac * width));
    std::string bar(static_cast<size_t>(width), ' ');
    std::fill_n(bar.begin(), filled, '=');
    if (filled < width && filled > 0) bar[static_cast<size_t>(filled - 1)] = '>';
    s += format_double(" %3.0f%%", std::floor(frac * 100.0)) + " [" + bar + "] " +
         std::to_string(batch_) + "/" + std::to_string(batches_);
  } else if (batches_ > 0) {
    const std::string total = std::to_string(batches_);
    std::string done = std::to_string(batch_);
    done.insert(0, total.size() - std::min(total.size(), done.size()), ' ');
    s += " [" + done + "/" + total + "]";
  } else {
    s += " [" + std::to_string(batch_) + "]";
  }
  s += "  " + format_double("%.1f", t > 0 ? static_cast<double>(images_) / t : 0.0) + " img/s";
  if (batches_ > 0) {
    const double eta =
        batch_ > 0 ? t / static_cast<double>(batch_) * static_cast<double>(batches_ - batch_) : NAN;
    s += "  eta " + format_duration(eta);
  }
  append_values(s, values_);
  return s;
}

void Progress::draw() {
  shown_ = true;
  if (bar_) {
    std::string line = render(true);
    // A line wider than the terminal wraps, and "\r" then redraws only its last part. The
    // width is asked at every draw (a cheap ioctl): the window may have been resized.
    const int columns = to_terminal_ ? stderr_columns() : 0;
    if (columns > 1 && line.size() >= static_cast<size_t>(columns)) {
      line.resize(static_cast<size_t>(columns - 1));
    }
    *out_ << ("\r" + line + "\x1b[K") << std::flush;
    line_open_ = true;
  } else {
    *out_ << (render(false) + "\n") << std::flush;
  }
}

}  // namespace mgd::logging
