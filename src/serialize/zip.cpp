#include "zip.h"

#include <zlib.h>

#include <algorithm>

namespace mgd::serialize::detail {
namespace {

constexpr uint32_t kLocalHeaderSignature = 0x04034b50;
constexpr uint32_t kCentralHeaderSignature = 0x02014b50;
constexpr uint32_t kEndSignature = 0x06054b50;
constexpr uint32_t kZip64EndSignature = 0x06064b50;
constexpr uint32_t kZip64LocatorSignature = 0x07064b50;
constexpr uint64_t kLocalHeaderSize = 30;
constexpr uint64_t kCentralHeaderSize = 46;
constexpr uint64_t kEndSize = 22;
constexpr uint64_t kZip64EndSize = 56;
constexpr uint64_t kZip64LocatorSize = 20;
constexpr uint64_t kMaxComment = 0xffff;

uint16_t le16(const unsigned char* p) {
  return static_cast<uint16_t>(p[0] | (p[1] << 8));
}
uint32_t le32(const unsigned char* p) {
  return static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) |
         (static_cast<uint32_t>(p[2]) << 16) | (static_cast<uint32_t>(p[3]) << 24);
}
uint64_t le64(const unsigned char* p) {
  return static_cast<uint64_t>(le32(p)) | (static_cast<uint64_t>(le32(p + 4)) << 32);
}

uint32_t crc32_of(const void* data, uint64_t n) {
  uLong crc = crc32_z(0L, Z_NULL, 0);
  return static_cast<uint32_t>(
      crc32_z(crc, static_cast<const Bytef*>(data), static_cast<z_size_t>(n)));
}

}  // namespace

ZipReader::ZipReader(const Source& source) : source_(source) {
  const std::string& name = source.name();
  const uint64_t size = source.size();
  if (size < kEndSize) fail(name, ": truncated zip archive (", size, " bytes)");

  // The end-of-central-directory record sits in the last 22 + 65535 bytes (its comment can
  // be up to 64 KiB); search backwards for its signature.
  const uint64_t tail_size = std::min<uint64_t>(size, kEndSize + kMaxComment);
  const uint64_t tail_start = size - tail_size;
  std::vector<unsigned char> tail(static_cast<size_t>(tail_size));
  source.read(tail_start, tail.data(), tail_size, "zip end record");
  int64_t found = -1;
  for (int64_t i = static_cast<int64_t>(tail_size - kEndSize); i >= 0; --i) {
    const unsigned char* p = tail.data() + i;
    if (le32(p) == kEndSignature &&
        static_cast<uint64_t>(i) + kEndSize + le16(p + 20) <= tail_size) {
      found = i;
      break;
    }
  }
  if (found < 0) {
    fail(name, ": truncated or corrupt zip archive: no end-of-central-directory record");
  }
  const unsigned char* end = tail.data() + found;
  const uint64_t end_offset = tail_start + static_cast<uint64_t>(found);
  uint64_t count = le16(end + 10);
  uint64_t cd_size = le32(end + 12);
  uint64_t cd_offset = le32(end + 16);
  if (le16(end + 4) != 0 && le16(end + 4) != 0xffff) {
    fail(name, ": multi-disk zip archives are not supported");
  }
  uint64_t cd_limit = end_offset;  // the central directory ends before this

  // Zip64: a locator just before the end record points at the zip64 end record.
  if (end_offset >= kZip64LocatorSize) {
    unsigned char locator[kZip64LocatorSize];
    source.read(end_offset - kZip64LocatorSize, locator, kZip64LocatorSize, "zip64 locator");
    if (le32(locator) == kZip64LocatorSignature) {
      const uint64_t z = le64(locator + 8);
      if (z > end_offset - kZip64LocatorSize ||
          end_offset - kZip64LocatorSize - z < kZip64EndSize) {
        fail(name, ": corrupt zip archive: zip64 end record at ", z, " is out of place");
      }
      unsigned char z64[kZip64EndSize];
      source.read(z, z64, kZip64EndSize, "zip64 end record");
      if (le32(z64) != kZip64EndSignature) {
        fail(name, ": corrupt zip archive: bad zip64 end record signature");
      }
      count = le64(z64 + 32);
      cd_size = le64(z64 + 40);
      cd_offset = le64(z64 + 48);
      cd_limit = z;
    }
  }
  if (cd_offset > cd_limit || cd_size > cd_limit - cd_offset) {
    fail(name, ": truncated or corrupt zip archive: central directory (", cd_size, " bytes at ",
         cd_offset, ") lies outside the file");
  }
  if (count > cd_size / kCentralHeaderSize) {
    fail(name, ": corrupt zip archive: ", count, " entries cannot fit in a ", cd_size,
         "-byte central directory");
  }
  central_directory_offset_ = cd_offset;

  std::vector<unsigned char> cd(static_cast<size_t>(cd_size));
  source.read(cd_offset, cd.data(), cd_size, "zip central directory");
  uint64_t pos = 0;
  entries_.reserve(static_cast<size_t>(count));
  for (uint64_t i = 0; i < count; ++i) {
    if (cd_size - pos < kCentralHeaderSize || le32(cd.data() + pos) != kCentralHeaderSignature) {
      fail(name, ": corrupt zip archive: bad central directory entry ", i);
    }
    const unsigned char* h = cd.data() + pos;
    const uint64_t name_len = le16(h + 28), extra_len = le16(h + 30), comment_len = le16(h + 32);
    if (cd_size - pos - kCentralHeaderSize < name_len + extra_len + comment_len) {
      fail(name, ": corrupt zip archive: central directory entry ", i, " overruns it");
    }
    ZipEntry e;
    e.flags = le16(h + 8);
    e.method = le16(h + 10);
    e.crc32 = le32(h + 16);
    uint64_t compressed = le32(h + 20);
    uint64_t uncompressed = le32(h + 24);
    e.local_header_offset = le32(h + 42);
    e.name.assign(reinterpret_cast<const char*>(h + kCentralHeaderSize), name_len);

    // The zip64 extra field holds the 64-bit values of the fields saturated at 0xffffffff.
    const unsigned char* extra = h + kCentralHeaderSize + name_len;
    for (uint64_t x = 0; x + 4 <= extra_len;) {
      const uint16_t id = le16(extra + x), len = le16(extra + x + 2);
      if (x + 4 + len > extra_len) {
        fail(name, ": corrupt zip archive: bad extra field in entry '", e.name, "'");
      }
      if (id == 1) {
        const unsigned char* f = extra + x + 4;
        uint64_t left = len;
        auto take = [&](uint64_t& field) {
          if (field != 0xffffffffu) return;
          if (left < 8) fail(name, ": corrupt zip archive: short zip64 field in '", e.name, "'");
          field = le64(f);
          f += 8;
          left -= 8;
        };
        take(uncompressed);
        take(compressed);
        take(e.local_header_offset);
      }
      x += 4 + len;
    }
    if (e.flags & 1) fail(name, ": encrypted zip entry '", e.name, "' is not supported");
    if (e.method == 0 && compressed != uncompressed) {
      fail(name, ": corrupt zip archive: stored entry '", e.name, "' has compressed size ",
           compressed, " but size ", uncompressed);
    }
    e.size = compressed;
    e.uncompressed_size = uncompressed;
    if (e.local_header_offset > cd_offset || compressed > cd_offset - e.local_header_offset) {
      fail(name, ": corrupt zip archive: entry '", e.name, "' lies outside the file");
    }
    if (!by_name_.emplace(e.name, entries_.size()).second) {
      fail(name, ": corrupt zip archive: duplicate entry '", e.name, "'");
    }
    entries_.push_back(std::move(e));
    pos += kCentralHeaderSize + name_len + extra_len + comment_len;
  }
}

const ZipEntry* ZipReader::find(const std::string& name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : &entries_[it->second];
}

uint64_t ZipReader::data_offset(const ZipEntry& entry) const {
  if (entry.method != 0) {
    fail(source_.name(), ": zip record '", entry.name, "' is compressed (method ", entry.method,
         "); only uncompressed records, as torch.save writes them, are supported");
  }
  return data_start(entry);
}

uint64_t ZipReader::data_start(const ZipEntry& entry) const {
  const std::string& name = source_.name();
  const uint64_t local = entry.local_header_offset;
  if (local > central_directory_offset_ || central_directory_offset_ - local < kLocalHeaderSize) {
    fail(name, ": corrupt zip archive: local header of '", entry.name, "' is out of place");
  }
  unsigned char h[kLocalHeaderSize];
  source_.read(local, h, kLocalHeaderSize, "zip local header");
  if (le32(h) != kLocalHeaderSignature) {
    fail(name, ": corrupt zip archive: bad local header for '", entry.name, "'");
  }
  const uint64_t data = local + kLocalHeaderSize + le16(h + 26) + le16(h + 28);
  if (data > central_directory_offset_ || entry.size > central_directory_offset_ - data) {
    fail(name, ": truncated or corrupt zip archive: record '", entry.name, "' (", entry.size,
         " bytes at ", data, ") overruns the data area");
  }
  return data;
}

void ZipReader::read(const ZipEntry& entry, void* dst) const {
  const uint64_t offset = data_offset(entry);
  source_.read(offset, dst, entry.size, entry.name.c_str());
  const uint32_t crc = crc32_of(dst, entry.size);
  if (crc != entry.crc32) {
    fail(source_.name(), ": corrupt zip archive: checksum mismatch in record '", entry.name, "'");
  }
}

std::string ZipReader::read_string(const ZipEntry& entry, uint64_t max_size) const {
  if (entry.size > max_size) {
    fail(source_.name(), ": zip record '", entry.name, "' is ", entry.size,
         " bytes, more than the ", max_size, " expected");
  }
  std::string s(static_cast<size_t>(entry.size), '\0');
  read(entry, s.data());
  return s;
}

void ZipReader::verify(const ZipEntry& entry, uint64_t max_inflated) const {
  const std::string& name = source_.name();
  if (entry.method != 0 && entry.method != 8) {
    fail(name, ": zip record '", entry.name, "' uses compression method ", entry.method,
         " (only stored and deflated records are read)");
  }
  const uint64_t start = data_start(entry);
  constexpr uint64_t kChunk = 1 << 16;
  std::vector<unsigned char> in(kChunk), out(entry.method == 8 ? kChunk : 0);
  uLong crc = crc32_z(0L, Z_NULL, 0);
  if (entry.method == 0) {
    for (uint64_t done = 0; done < entry.size;) {
      const uint64_t n = std::min(kChunk, entry.size - done);
      source_.read(start + done, in.data(), n, entry.name.c_str());
      crc = crc32_z(crc, in.data(), static_cast<z_size_t>(n));
      done += n;
    }
  } else {
    if (entry.uncompressed_size > max_inflated) {
      fail(name, ": zip record '", entry.name, "' inflates to ", entry.uncompressed_size,
           " bytes, more than the ", max_inflated, " expected");
    }
    z_stream z{};
    if (inflateInit2(&z, -MAX_WBITS) != Z_OK) fail(name, ": cannot start zlib");
    struct End {
      z_stream* z;
      ~End() { inflateEnd(z); }
    } end{&z};
    uint64_t read = 0, inflated = 0;
    int rc = Z_OK;
    while (rc != Z_STREAM_END) {
      if (z.avail_in == 0) {
        if (read == entry.size) {
          fail(name, ": corrupt zip archive: record '", entry.name, "' ends before its data");
        }
        const uint64_t n = std::min(kChunk, entry.size - read);
        source_.read(start + read, in.data(), n, entry.name.c_str());
        read += n;
        z.next_in = in.data();
        z.avail_in = static_cast<uInt>(n);
      }
      z.next_out = out.data();
      z.avail_out = static_cast<uInt>(kChunk);
      rc = inflate(&z, Z_NO_FLUSH);
      if (rc != Z_OK && rc != Z_STREAM_END) {
        fail(name, ": corrupt zip archive: record '", entry.name, "' does not inflate (",
             z.msg ? z.msg : "zlib error", ")");
      }
      const uint64_t produced = kChunk - z.avail_out;
      inflated += produced;
      if (inflated > entry.uncompressed_size) {
        fail(name, ": corrupt zip archive: record '", entry.name, "' inflates past its size ",
             entry.uncompressed_size);
      }
      crc = crc32_z(crc, out.data(), static_cast<z_size_t>(produced));
    }
    if (inflated != entry.uncompressed_size) {
      fail(name, ": corrupt zip archive: record '", entry.name, "' inflates to ", inflated,
           " bytes, not ", entry.uncompressed_size);
    }
  }
  if (static_cast<uint32_t>(crc) != entry.crc32) {
    fail(name, ": corrupt zip archive: checksum mismatch in record '", entry.name, "'");
  }
}

}  // namespace mgd::serialize::detail
