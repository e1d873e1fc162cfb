#include "source.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace mgd::serialize::detail {
namespace {

constexpr size_t kCursorBuffer = 1 << 16;

class FileSource final : public Source {
 public:
  FileSource(std::string path, int fd, uint64_t size)
      : Source(std::move(path)), fd_(fd), size_(size) {}
  ~FileSource() override { ::close(fd_); }
  uint64_t size() const override { return size_; }

 protected:
  void read_checked(uint64_t offset, void* dst, uint64_t n) const override {
    auto* out = static_cast<char*>(dst);
    while (n > 0) {
      const size_t chunk = static_cast<size_t>(std::min<uint64_t>(n, 1 << 30));
      const ssize_t got = ::pread(fd_, out, chunk, static_cast<off_t>(offset));
      if (got < 0 && errno == EINTR) continue;
      if (got < 0) fail(name(), ": read failed: ", std::strerror(errno));
      if (got == 0) fail(name(), ": unexpected end of file (did it shrink while being read?)");
      out += got;
      offset += static_cast<uint64_t>(got);
      n -= static_cast<uint64_t>(got);
    }
  }

 private:
  int fd_;
  uint64_t size_;
};

class MemorySource final : public Source {
 public:
  MemorySource(const void* data, size_t size, std::string name)
      : Source(std::move(name)), data_(static_cast<const char*>(data)), size_(size) {}
  uint64_t size() const override { return size_; }

 protected:
  void read_checked(uint64_t offset, void* dst, uint64_t n) const override {
    if (n > 0) std::memcpy(dst, data_ + offset, static_cast<size_t>(n));
  }

 private:
  const char* data_;
  size_t size_;
};

}  // namespace

void throw_error(std::string message) {
  throw c10::Error(std::move(message), "");
}

void Source::read(uint64_t offset, void* dst, uint64_t n, const char* what) const {
  if (offset > size() || n > size() - offset) {
    fail(name_, ": truncated or corrupt file: ", what, " needs bytes ", offset, "..", offset + n,
         " but the file has ", size());
  }
  read_checked(offset, dst, n);
}

std::unique_ptr<Source> open_file_source(const std::string& path) {
  // O_NONBLOCK: opening a FIFO must not wait for a writer; it is rejected below anyway.
  int fd;
  do {
    fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) fail(path, ": cannot open: ", std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    fail(path, ": cannot stat: ", std::strerror(err));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    fail(path, ": not a regular file");
  }
  return std::make_unique<FileSource>(path, fd, static_cast<uint64_t>(st.st_size));
}

std::unique_ptr<Source> memory_source(const void* data, size_t size, std::string name) {
  return std::make_unique<MemorySource>(data, size, std::move(name));
}

Cursor::Cursor(const Source& source, uint64_t begin, uint64_t end, std::string what)
    : source_(source), begin_(begin), end_(end), pos_(begin), what_(std::move(what)) {
  if (begin > end || end > source.size()) {
    detail::fail(source.name(), ": ", what_, " lies outside the file (bytes ", begin, "..", end,
                 " of ", source.size(), ")");
  }
}

void Cursor::need(uint64_t n) const {
  if (n > remaining()) {
    fail("truncated or corrupt: unexpected end of data (", n, " more bytes needed, ", remaining(),
         " left)");
  }
}

void Cursor::fill() {
  const uint64_t n = std::min<uint64_t>(kCursorBuffer, end_ - pos_);
  if (buffer_.size() < kCursorBuffer) buffer_.resize(kCursorBuffer);
  source_.read(pos_, buffer_.data(), n, what_.c_str());
  buffer_start_ = pos_;
  buffer_size_ = static_cast<size_t>(n);
}

uint8_t Cursor::byte() {
  need(1);
  if (pos_ < buffer_start_ || pos_ >= buffer_start_ + buffer_size_) fill();
  return static_cast<uint8_t>(buffer_[static_cast<size_t>(pos_++ - buffer_start_)]);
}

void Cursor::read(void* dst, uint64_t n) {
  need(n);
  auto* out = static_cast<char*>(dst);
  while (n > 0) {
    if (pos_ < buffer_start_ || pos_ >= buffer_start_ + buffer_size_) {
      if (n >= kCursorBuffer) {  // large reads go straight to the destination
        source_.read(pos_, out, n, what_.c_str());
        pos_ += n;
        return;
      }
      fill();
    }
    const size_t at = static_cast<size_t>(pos_ - buffer_start_);
    const size_t take = static_cast<size_t>(std::min<uint64_t>(n, buffer_size_ - at));
    std::memcpy(out, buffer_.data() + at, take);
    out += take;
    pos_ += take;
    n -= take;
  }
}

std::string Cursor::string(uint64_t n) {
  need(n);
  std::string s(static_cast<size_t>(n), '\0');
  read(s.data(), n);
  return s;
}

std::string Cursor::line(size_t max_length) {
  std::string s;
  while (true) {
    if (remaining() == 0) fail("truncated or corrupt: unexpected end of data in a text field");
    const char c = static_cast<char>(byte());
    if (c == '\n') return s;
    if (s.size() >= max_length) fail("text field longer than ", max_length, " bytes");
    s.push_back(c);
  }
}

void Cursor::skip(uint64_t n) {
  need(n);
  pos_ += n;
}

}  // namespace mgd::serialize::detail
