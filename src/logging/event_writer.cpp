#include "mgd/logging/event_writer.h"

#include <fcntl.h>
#include <torch/torch.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <mutex>
#include <system_error>
#include <thread>

#include "mgd/logging/crc32c.h"
#include "mgd/logging/image.h"
#include "mgd/util/messages.h"

namespace mgd::logging {
namespace {

// Flush early past this much buffered data, so image-heavy runs do not pile up memory.
constexpr size_t kFlushBytes = size_t{1} << 20;

void put_le(std::string& out, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
}

// --- protobuf wire format (protobuf.dev/programming-guides/encoding): each field is a key
// varint (field number << 3 | wire type) followed by its payload.
enum WireType { kVarint = 0, kFixed64 = 1, kLengthDelimited = 2, kFixed32 = 5 };

void put_varint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7F) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}

void put_key(std::string& out, int field, WireType type) {
  put_varint(out, (static_cast<uint64_t>(field) << 3) | type);
}

// int32 and int64 fields: negative values are sign-extended to 64 bits (10 varint bytes).
void put_int(std::string& out, int field, int64_t v) {
  put_key(out, field, kVarint);
  put_varint(out, static_cast<uint64_t>(v));
}

void put_double(std::string& out, int field, double v) {
  uint64_t bits;
  std::memcpy(&bits, &v, sizeof bits);
  put_key(out, field, kFixed64);
  put_le(out, bits, 8);
}

void put_float(std::string& out, int field, float v) {
  uint32_t bits;
  std::memcpy(&bits, &v, sizeof bits);
  put_key(out, field, kFixed32);
  put_le(out, bits, 4);
}

void put_bytes(std::string& out, int field, std::string_view bytes) {
  put_key(out, field, kLengthDelimited);
  put_varint(out, bytes.size());
  out.append(bytes);
}

// Field numbers of event.proto and summary.proto.
namespace event {
constexpr int kWallTime = 1, kStep = 2, kFileVersion = 3, kSummary = 5;
}
namespace summary {
constexpr int kValue = 1;
}
namespace value {
constexpr int kTag = 1, kSimpleValue = 2, kImage = 4;
}
namespace image {
constexpr int kHeight = 1, kWidth = 2, kColorspace = 3, kEncoded = 4;
}

double unix_time() {
  using namespace std::chrono;
  return duration<double>(system_clock::now().time_since_epoch()).count();
}

std::string summary_event(const std::string& values, int64_t step) {
  std::string e;
  put_double(e, event::kWallTime, unix_time());
  put_int(e, event::kStep, step);
  put_bytes(e, event::kSummary, values);
  return e;
}

std::string scalar_value(const std::string& tag, double v) {
  TORCH_CHECK(!tag.empty(), "EventWriter: empty tag");
  std::string value_msg;
  put_bytes(value_msg, value::kTag, tag);
  put_float(value_msg, value::kSimpleValue, static_cast<float>(v));
  std::string s;
  put_bytes(s, summary::kValue, value_msg);
  return s;
}

std::string hostname() {
  char name[256] = {};
  if (gethostname(name, sizeof name - 1) != 0 || name[0] == '\0') return "localhost";
  return name;
}

}  // namespace

std::string frame_record(std::string_view data) {
  std::string out;
  out.reserve(data.size() + 16);
  put_le(out, data.size(), 8);
  put_le(out, masked_crc32c(out.data(), 8), 4);
  out.append(data);
  put_le(out, masked_crc32c(data.data(), data.size()), 4);
  return out;
}

// --- RecordWriter

RecordWriter::RecordWriter(std::string path, bool exclusive) : path_(std::move(path)) {
  const int flags = O_WRONLY | O_CREAT | O_CLOEXEC | (exclusive ? O_EXCL : O_TRUNC);
  fd_ = ::open(path_.c_str(), flags, 0644);
  TORCH_CHECK(fd_ >= 0, "cannot create event file '", path_, "': ", std::strerror(errno));
}

RecordWriter::~RecordWriter() {
  try {
    flush();
  } catch (const c10::Error& e) {
    mgd::warn(e.what_without_backtrace());
  }
  if (fd_ >= 0) ::close(fd_);
}

void RecordWriter::write(std::string_view data) {
  if (failed_) return;
  buffer_ += frame_record(data);
  if (buffer_.size() >= kFlushBytes) flush();
}

void RecordWriter::flush() {
  if (failed_ || buffer_.empty()) return;
  size_t done = 0;
  while (done < buffer_.size()) {
    const ssize_t n = ::write(fd_, buffer_.data() + done, buffer_.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int err = n < 0 ? errno : EIO;
      failed_ = true;
      buffer_.clear();
      TORCH_CHECK(false, "cannot write to event file '", path_, "': ", std::strerror(err),
                  " (TensorBoard logging to this file stops here)");
    }
    done += static_cast<size_t>(n);
  }
  buffer_.clear();
}

// --- EventWriter

struct EventWriter::Impl {
  Impl(std::string path, double flush_secs) : records(std::move(path), /*exclusive=*/true) {
    std::string e;
    put_double(e, event::kWallTime, unix_time());
    put_bytes(e, event::kFileVersion, "brain.Event:2");
    records.write(e);
    records.flush();  // an empty-but-valid file appears at once, as TensorFlow's does
    flusher = std::thread([this, flush_secs] { flush_loop(flush_secs); });
  }

  ~Impl() {
    {
      std::lock_guard<std::mutex> lock(mutex);
      stop = true;
    }
    wake.notify_all();
    flusher.join();
    std::lock_guard<std::mutex> lock(mutex);
    if (!pending_error.empty()) mgd::warn(pending_error);
    // records' destructor flushes and warns on failure.
  }

  void flush_loop(double flush_secs) {
    const auto period = std::chrono::duration<double>(flush_secs);
    std::unique_lock<std::mutex> lock(mutex);
    while (!wake.wait_for(lock, period, [this] { return stop; })) {
      try {
        records.flush();
      } catch (const c10::Error& e) {
        pending_error = e.what_without_backtrace();
      }
    }
  }

  // Called with the lock held, at the start of every public call: the background thread's
  // failure, reported once, on the caller's thread.
  void raise_pending() {
    if (pending_error.empty()) return;
    const std::string message = std::move(pending_error);
    pending_error.clear();
    TORCH_CHECK(false, message);
  }

  void write(const std::string& event) {
    std::lock_guard<std::mutex> lock(mutex);
    raise_pending();
    records.write(event);
  }

  std::mutex mutex;
  std::condition_variable wake;
  bool stop = false;
  std::string pending_error;
  RecordWriter records;
  std::thread flusher;  // last: started once everything it touches exists
};

EventWriter::EventWriter(const std::string& log_dir, EventWriterOptions options) {
  TORCH_CHECK(options.flush_secs() > 0, "EventWriter: invalid flush_secs ", options.flush_secs(),
              " (expected > 0)");
  TORCH_CHECK(!log_dir.empty(), "EventWriter: empty log directory");
  std::error_code ec;
  std::filesystem::create_directories(log_dir, ec);
  TORCH_CHECK(!ec && std::filesystem::is_directory(log_dir, ec),
              "cannot create TensorBoard log directory '", log_dir,
              "': ", ec ? ec.message() : "not a directory");
  // TensorFlow's name (core/util/events_writer.cc): zero-padded seconds, then the host.
  char stamp[32];
  std::snprintf(stamp, sizeof stamp, "%010lld", static_cast<long long>(std::time(nullptr)));
  const std::string base = (std::filesystem::path(log_dir) /
                            ("events.out.tfevents." + std::string(stamp) + "." + hostname()))
                               .string() +
                           options.filename_suffix();
  std::string path = base;
  for (int n = 1; std::filesystem::exists(path, ec); ++n) path = base + "." + std::to_string(n);
  impl_ = std::make_unique<Impl>(path, options.flush_secs());
}

EventWriter::~EventWriter() = default;
EventWriter::EventWriter(EventWriter&&) noexcept = default;
EventWriter& EventWriter::operator=(EventWriter&&) noexcept = default;

void EventWriter::add_scalar(const std::string& tag, double value, int64_t step) {
  TORCH_CHECK(impl_, "EventWriter: used after move");
  impl_->write(summary_event(scalar_value(tag, value), step));
}

void EventWriter::add_scalars(const std::vector<std::pair<std::string, double>>& values,
                              int64_t step) {
  TORCH_CHECK(impl_, "EventWriter: used after move");
  if (values.empty()) return;
  std::string s;
  for (const auto& [tag, v] : values) s += scalar_value(tag, v);
  impl_->write(summary_event(s, step));
}

void EventWriter::add_image(const std::string& tag, const torch::Tensor& image, int64_t step) {
  TORCH_CHECK(impl_, "EventWriter: used after move");
  TORCH_CHECK(!tag.empty(), "EventWriter: empty tag");
  const auto hwc = to_hwc_uint8(image);
  std::string img;
  put_int(img, image::kHeight, hwc.size(0));
  put_int(img, image::kWidth, hwc.size(1));
  put_int(img, image::kColorspace, hwc.size(2));  // 1 gray, 2 gray+alpha, 3 RGB, 4 RGBA
  put_bytes(img, image::kEncoded,
            encode_png(hwc.data_ptr<uint8_t>(), hwc.size(0), hwc.size(1), hwc.size(2)));
  std::string value_msg;
  put_bytes(value_msg, value::kTag, tag);
  put_bytes(value_msg, value::kImage, img);
  std::string s;
  put_bytes(s, summary::kValue, value_msg);
  impl_->write(summary_event(s, step));
}

void EventWriter::flush() {
  TORCH_CHECK(impl_, "EventWriter: used after move");
  std::lock_guard<std::mutex> lock(impl_->mutex);
  impl_->raise_pending();
  impl_->records.flush();
}

bool EventWriter::failed() const {
  TORCH_CHECK(impl_, "EventWriter: used after move");
  std::lock_guard<std::mutex> lock(impl_->mutex);
  return impl_->records.failed();
}

const std::string& EventWriter::path() const {
  TORCH_CHECK(impl_, "EventWriter: used after move");
  return impl_->records.path();
}

}  // namespace mgd::logging
