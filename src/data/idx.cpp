#include "mgd/data/idx.h"

#include <c10/util/Exception.h>
#include <torch/torch.h>
#include <zlib.h>

#include <cstring>
#include <limits>

#include "mgd/data/image.h"

namespace mgd {
namespace data {

bool is_gzip(const uint8_t* data, size_t size) {
  return size >= 2 && data[0] == 0x1f && data[1] == 0x8b;
}

std::vector<uint8_t> gunzip(const uint8_t* data, size_t size, const std::string& name,
                            size_t max_bytes) {
  z_stream zs;
  std::memset(&zs, 0, sizeof(zs));
  // 16 + MAX_WBITS: a gzip wrapper, whose CRC-32 and length trailer zlib then verifies.
  TORCH_CHECK(inflateInit2(&zs, 16 + MAX_WBITS) == Z_OK, "cannot decompress ", name,
              ": zlib initialisation failed");
  std::vector<uint8_t> out;
  out.resize(std::min<size_t>(std::max<size_t>(size * 4, 1 << 16), max_bytes));
  size_t produced = 0;
  size_t consumed = 0;
  std::string error;
  while (true) {
    // zlib counts in 32-bit unsigned; feed and drain at most 1 GiB at a time.
    const size_t in_chunk = std::min<size_t>(size - consumed, size_t{1} << 30);
    zs.next_in = const_cast<Bytef*>(data + consumed);
    zs.avail_in = static_cast<uInt>(in_chunk);
    if (produced == out.size()) {
      if (out.size() >= max_bytes) {
        error = "decompressed data exceeds " + std::to_string(max_bytes) + " bytes";
        break;
      }
      out.resize(std::min(out.size() * 2, max_bytes));
    }
    const size_t out_chunk = std::min<size_t>(out.size() - produced, size_t{1} << 30);
    zs.next_out = out.data() + produced;
    zs.avail_out = static_cast<uInt>(out_chunk);
    const int rc = inflate(&zs, Z_NO_FLUSH);
    consumed += in_chunk - zs.avail_in;
    produced += out_chunk - zs.avail_out;
    if (rc == Z_STREAM_END) {
      // Another gzip member may follow (as `cat a.gz b.gz` makes); trailing zeros are padding.
      size_t rest = consumed;
      while (rest < size && data[rest] == 0) ++rest;
      if (rest == size) break;
      if (!is_gzip(data + consumed, size - consumed)) {
        error = "unexpected data after the end of the gzip stream";
        break;
      }
      inflateReset(&zs);
      continue;
    }
    if (rc == Z_BUF_ERROR || rc == Z_OK) {
      if (consumed == size && zs.avail_out != 0) {
        error = "the gzip stream is truncated";
        break;
      }
      continue;
    }
    error = std::string("corrupt gzip data (") +
            (zs.msg ? zs.msg : "zlib error " + std::to_string(rc)) + ")";
    break;
  }
  inflateEnd(&zs);
  TORCH_CHECK(error.empty(), "cannot decompress ", name, ": ", error);
  out.resize(produced);
  return out;
}

torch::Tensor parse_idx(const uint8_t* data, size_t size, const std::string& name) {
  std::vector<uint8_t> inflated;
  if (is_gzip(data, size)) {
    inflated = gunzip(data, size, name);
    data = inflated.data();
    size = inflated.size();
  }
  TORCH_CHECK(size >= 4, "invalid IDX file ", name, ": ", size,
              " bytes, expected at least a 4-byte header");
  TORCH_CHECK(data[0] == 0 && data[1] == 0, "invalid IDX file ", name,
              ": bad magic number (expected 00 00 <type> <dims>, got ", int{data[0]}, " ",
              int{data[1]}, " ...)");
  TORCH_CHECK(data[2] == 0x08, "unsupported IDX file ", name, ": element type 0x", std::hex,
              int{data[2]}, std::dec, " (only unsigned bytes, 0x08, are supported)");
  const int64_t ndim = data[3];
  TORCH_CHECK(ndim >= 1, "invalid IDX file ", name, ": zero dimensions");
  const size_t header = 4 + 4 * static_cast<size_t>(ndim);
  TORCH_CHECK(size >= header, "invalid IDX file ", name, ": truncated header (", size,
              " bytes, the ", ndim, " sizes need ", header, ")");
  std::vector<int64_t> dims(static_cast<size_t>(ndim));
  size_t count = 1;
  bool overflow = false;
  for (int64_t d = 0; d < ndim; ++d) {
    const uint8_t* p = data + 4 + 4 * d;
    dims[d] = (int64_t{p[0]} << 24) | (int64_t{p[1]} << 16) | (int64_t{p[2]} << 8) | int64_t{p[3]};
    if (dims[d] != 0 && count > std::numeric_limits<size_t>::max() / static_cast<size_t>(dims[d])) {
      overflow = true;
    }
    count *= static_cast<size_t>(dims[d]);
  }
  TORCH_CHECK(!overflow && size - header == count, "invalid IDX file ", name,
              ": the header (sizes ", dims, ") announces ",
              overflow ? std::string("too many") : std::to_string(count),
              " bytes of data, the file holds ", size - header,
              size - header < count ? " (truncated)" : "");
  auto out = torch::empty(dims, torch::kUInt8);
  if (count > 0) std::memcpy(out.data_ptr<uint8_t>(), data + header, count);
  return out;
}

torch::Tensor read_idx(const std::string& path) {
  const auto bytes = read_file(path);
  return parse_idx(bytes.data(), bytes.size(), path);
}

}  // namespace data
}  // namespace mgd
