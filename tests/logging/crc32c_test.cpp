#include "mgd/logging/crc32c.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <string>
#include <vector>

namespace {

using mgd::logging::crc32c;
using mgd::logging::crc32c_extend;
using mgd::logging::mask_crc32c;
using mgd::logging::masked_crc32c;

TEST(Crc32c, Empty) {
  EXPECT_EQ(crc32c("", 0), 0u);
}

TEST(Crc32c, KnownVectors) {
  // The CRC catalogue's check value for CRC-32C.
  EXPECT_EQ(crc32c("123456789", 9), 0xE3069283u);
  // RFC 3720 (iSCSI), appendix B.4.
  std::vector<uint8_t> zeros(32, 0x00), ones(32, 0xFF), up(32), down(32);
  for (int i = 0; i < 32; ++i) {
    up[i] = static_cast<uint8_t>(i);
    down[i] = static_cast<uint8_t>(31 - i);
  }
  EXPECT_EQ(crc32c(zeros.data(), 32), 0x8A9136AAu);
  EXPECT_EQ(crc32c(ones.data(), 32), 0x62A8AB43u);
  EXPECT_EQ(crc32c(up.data(), 32), 0x46DD794Eu);
  EXPECT_EQ(crc32c(down.data(), 32), 0x113FDB5Cu);
}

TEST(Crc32c, ExtendEqualsOneCall) {
  std::mt19937 gen(7);
  std::string data(1000, '\0');
  for (char& c : data) c = static_cast<char>(gen());
  const uint32_t whole = crc32c(data.data(), data.size());
  for (size_t cut : {size_t{0}, size_t{1}, size_t{499}, size_t{1000}}) {
    EXPECT_EQ(crc32c_extend(crc32c(data.data(), cut), data.data() + cut, data.size() - cut), whole)
        << "cut " << cut;
  }
}

TEST(Crc32c, Mask) {
  // TensorFlow's core/lib/hash/crc32c.h: rotate right 15, add 0xa282ead8.
  EXPECT_EQ(mask_crc32c(0), 0xA282EAD8u);
  EXPECT_EQ(mask_crc32c(0x00008000u), 0xA282EAD9u);
  EXPECT_EQ(mask_crc32c(0x00000001u), 0xA284EAD8u);
  EXPECT_EQ(masked_crc32c("123456789", 9), mask_crc32c(0xE3069283u));
  // Masked CRC of the 8 zero length bytes of an empty record, from tests/oracle/read_tfevents.py.
  const uint64_t zero = 0;
  EXPECT_EQ(masked_crc32c(&zero, 8), 0x07980329u);
}

}  // namespace
