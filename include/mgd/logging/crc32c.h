// CRC-32C (Castagnoli), the checksum of the TFRecord framing that TensorBoard event files use.
//
// The polynomial is 0x1EDC6F41 (reflected: 0x82F63B78), initial value and final XOR
// 0xFFFFFFFF, as in RFC 3720 (iSCSI) section B.4 and TensorFlow's core/lib/hash/crc32c.h.
// Table-driven, one byte per step: fast enough for logging (hundreds of MB/s), and free of
// CPU-specific instructions.
//
// Usage:
//   uint32_t c = mgd::logging::crc32c("123456789", 9);   // 0xE3069283
//   c = mgd::logging::crc32c_extend(c, more, n);          // same as one call on both parts
//   uint32_t m = mgd::logging::masked_crc32c(data, n);    // what a TFRecord stores
#pragma once

#include <cstddef>
#include <cstdint>

namespace mgd::logging {

/// CRC-32C of `n` bytes at `data`.
uint32_t crc32c(const void* data, size_t n);

/// Continues `crc` (a previous crc32c result) over `n` more bytes.
uint32_t crc32c_extend(uint32_t crc, const void* data, size_t n);

/// TFRecord's masking of a CRC, which keeps a CRC stored inside CRC-covered data from
/// weakening the outer checksum: rotate right by 15 bits, add 0xA282EAD8.
inline uint32_t mask_crc32c(uint32_t crc) {
  return ((crc >> 15) | (crc << 17)) + 0xA282EAD8u;
}

/// mask_crc32c(crc32c(data, n)).
inline uint32_t masked_crc32c(const void* data, size_t n) {
  return mask_crc32c(crc32c(data, n));
}

}  // namespace mgd::logging
