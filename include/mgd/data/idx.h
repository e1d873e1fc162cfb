// IDX files: the format of MNIST and Fashion-MNIST (LeCun et al.), raw or gzip-compressed.
//
// Layout: two zero bytes, an element-type byte, the number of dimensions n, then n sizes as
// big-endian 32-bit integers, then the elements in row-major order. mgd reads unsigned-byte
// files (type 0x08), the only type those datasets use. The body must hold exactly the
// elements the header announces: a truncated (or over-long) file is an error, not a short read.
//
//   torch::Tensor images = read_idx("train-images-idx3-ubyte.gz");  // uint8 60000 x 28 x 28
#pragma once

#include <torch/types.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace mgd {
namespace data {

/// Reads an IDX file of unsigned bytes, gzip-compressed (told by its magic bytes, not the
/// name) or not. Returns a uint8 tensor with the file's dimensions. Throws c10::Error naming
/// the file and what was expected on a bad magic number, an unsupported element type, or a
/// body of the wrong length.
torch::Tensor read_idx(const std::string& path);

/// The same on bytes in memory (decompressed when they start with gzip's magic).
torch::Tensor parse_idx(const uint8_t* data, size_t size, const std::string& name = "<memory>");

/// True when `data` starts with gzip's magic bytes (1f 8b).
bool is_gzip(const uint8_t* data, size_t size);

/// Decompresses a gzip stream (all its members). Throws c10::Error naming `name` on corrupt or
/// truncated data, or when the output would exceed `max_bytes`.
std::vector<uint8_t> gunzip(const uint8_t* data, size_t size, const std::string& name = "<memory>",
                            size_t max_bytes = size_t{1} << 32);

}  // namespace data
}  // namespace mgd
