// Internal: a reader for the zip container of `torch.save` (PyTorch >= 1.6) files.
//
// Written here rather than using caffe2::serialize::PyTorchStreamReader because that reader
// allocates whatever uncompressed size a record's header claims before reading it, and offers
// no way to ask for the size first; a hostile file could request terabytes. This one reads
// only what PyTorch writes (uncompressed records, zip64 when large), checks every offset and
// size against the file, and verifies each record's CRC-32.
#pragma once

#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "source.h"

namespace mgd::serialize::detail {

struct ZipEntry {
  std::string name;
  uint64_t local_header_offset = 0;
  uint64_t size = 0;  // bytes in the archive (compressed == uncompressed for stored records)
  uint64_t uncompressed_size = 0;
  uint32_t crc32 = 0;
  uint16_t method = 0;
  uint16_t flags = 0;
};

class ZipReader {
 public:
  /// Parses the central directory; throws naming the source when it is not a valid zip.
  explicit ZipReader(const Source& source);

  const std::vector<ZipEntry>& entries() const { return entries_; }
  /// The entry called `name`, or nullptr.
  const ZipEntry* find(const std::string& name) const;
  /// Where the entry's bytes start in the source (after its local header), checked to lie
  /// inside the file and before the central directory; throws for compressed entries.
  uint64_t data_offset(const ZipEntry& entry) const;
  /// Reads the whole entry into `dst` (entry.size bytes) and checks its CRC-32.
  void read(const ZipEntry& entry, void* dst) const;
  /// Reads an entry of at most max_size bytes into a string.
  std::string read_string(const ZipEntry& entry, uint64_t max_size) const;
  /// Checks a record without keeping it: its bytes lie inside the file and match its CRC-32;
  /// a deflated one (TorchScript archives deflate their code) inflates to exactly its
  /// uncompressed size, at most `max_inflated` bytes. Reads in fixed-size chunks.
  void verify(const ZipEntry& entry, uint64_t max_inflated) const;

 private:
  uint64_t data_start(const ZipEntry& entry) const;  // data_offset() for any method
  const Source& source_;
  std::vector<ZipEntry> entries_;
  std::unordered_map<std::string, size_t> by_name_;
  uint64_t central_directory_offset_ = 0;
};

}  // namespace mgd::serialize::detail
