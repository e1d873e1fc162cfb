// Internal: bounds-checked random-access input (a file or a memory buffer) and a buffered
// sequential cursor over part of it. Every read is checked against the input's size, so a
// length field read from a corrupt file can never make the reader read past the end or
// allocate more than the file holds.
#pragma once

#include <c10/util/Exception.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace mgd::serialize::detail {

/// Throws the c10::Error every reader and writer error becomes: `message` only, without the
/// C++ backtrace c10 would otherwise attach (and spend time computing).
[[noreturn]] void throw_error(std::string message);

/// Concatenates its arguments into an error message (c10::str) and throws it.
template <typename... Args>
[[noreturn]] void fail(const Args&... args) {
  throw_error(c10::str(args...));
}

class Source {
 public:
  explicit Source(std::string name) : name_(std::move(name)) {}
  virtual ~Source() = default;
  Source(const Source&) = delete;
  Source& operator=(const Source&) = delete;

  /// How the source is named in error messages (the path of a file).
  const std::string& name() const { return name_; }
  virtual uint64_t size() const = 0;
  /// Copies bytes [offset, offset + n) to `dst`; throws (naming the source and `what`) when
  /// they are not all there.
  void read(uint64_t offset, void* dst, uint64_t n, const char* what) const;

 protected:
  // Copies exactly n bytes that are known to lie inside [0, size()).
  virtual void read_checked(uint64_t offset, void* dst, uint64_t n) const = 0;

 private:
  std::string name_;
};

/// Opens a regular file for reading; throws naming `path` when it cannot.
std::unique_ptr<Source> open_file_source(const std::string& path);
/// A source over `size` bytes at `data`, which must outlive it.
std::unique_ptr<Source> memory_source(const void* data, size_t size, std::string name);

/// Sequential reads of bytes [begin, end) of a source, through a small buffer.
class Cursor {
 public:
  /// `what` names the region in error messages (e.g. "data.pkl").
  Cursor(const Source& source, uint64_t begin, uint64_t end, std::string what);

  const Source& source() const { return source_; }
  const std::string& what() const { return what_; }
  /// Offset from `begin`.
  uint64_t position() const { return pos_ - begin_; }
  uint64_t remaining() const { return end_ - pos_; }

  uint8_t byte();
  void read(void* dst, uint64_t n);
  /// n bytes as a string; checks n against what is left before allocating.
  std::string string(uint64_t n);
  /// Bytes up to the next '\n' (not included); throws when there is none within max_length.
  std::string line(size_t max_length);
  void skip(uint64_t n);

  /// Throws "<source>: <message> (<what>, byte <position>)".
  template <typename... Args>
  [[noreturn]] void fail(const Args&... args) const {
    detail::fail(source_.name(), ": ", args..., " (", what_, ", byte ", position(), ")");
  }

 private:
  void need(uint64_t n) const;
  void fill();

  const Source& source_;
  uint64_t begin_, end_, pos_;
  std::string what_;
  std::vector<char> buffer_;
  uint64_t buffer_start_ = 0;  // source offset of buffer_[0]
  size_t buffer_size_ = 0;     // valid bytes in buffer_
};

}  // namespace mgd::serialize::detail
