#include "mgd/data/cifar.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>

#include "data/data_testing.h"

namespace {

using namespace mgd::data;
namespace dt = mgd::data_testing;
using dt::TempDir;

// n records of CIFAR-`classes`; record i has label(s) derived from i and pixel p of plane c
// equal to (i + 3 * p + 101 * c) mod 256.
std::vector<uint8_t> cifar_bytes(int64_t n, int64_t classes, int64_t offset = 0) {
  std::vector<uint8_t> out;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t id = i + offset;
    if (classes == 100) out.push_back(static_cast<uint8_t>(id % 20));
    out.push_back(static_cast<uint8_t>(id % classes));
    for (int64_t c = 0; c < 3; ++c) {
      for (int64_t p = 0; p < 1024; ++p) out.push_back(static_cast<uint8_t>(id + 3 * p + 101 * c));
    }
  }
  return out;
}

TEST(Cifar, ParsesCifar10Records) {
  const auto bytes = cifar_bytes(4, 10);
  ASSERT_EQ(bytes.size(), 4u * 3073);
  const CifarData d = parse_cifar(bytes.data(), bytes.size(), 10);
  EXPECT_EQ(d.images.sizes(), (std::vector<int64_t>{4, 32, 32, 3}));
  EXPECT_EQ(d.labels.scalar_type(), torch::kInt64);
  EXPECT_EQ(d.labels[3].item<int64_t>(), 3);
  EXPECT_FALSE(d.coarse_labels.defined());
  // Planes became interleaved HWC: pixel (y, x) of plane c is at [y][x][c].
  for (int64_t c = 0; c < 3; ++c) {
    const int64_t y = 5, x = 17, p = y * 32 + x;
    EXPECT_EQ(d.images[2][y][x][c].item<int>(), static_cast<uint8_t>(2 + 3 * p + 101 * c));
  }
}

TEST(Cifar, ParsesCifar100Records) {
  const auto bytes = cifar_bytes(25, 100);
  ASSERT_EQ(bytes.size(), 25u * 3074);
  const CifarData d = parse_cifar(bytes.data(), bytes.size(), 100);
  EXPECT_EQ(d.labels[24].item<int64_t>(), 24);
  EXPECT_EQ(d.coarse_labels[24].item<int64_t>(), 4);
  EXPECT_EQ(d.images[1][0][0][2].item<int>(), static_cast<uint8_t>(1 + 202));
}

TEST(Cifar, LoadsBothLayouts) {
  TempDir dir;
  // CIFAR-10 as the archive unpacks: root/cifar-10-batches-bin/...
  const std::string c10dir = dir / "cifar-10-batches-bin";
  std::filesystem::create_directory(c10dir);
  for (int b = 1; b <= 5; ++b) {
    write_file(c10dir + "/data_batch_" + std::to_string(b) + ".bin",
               cifar_bytes(3, 10, 3 * (b - 1)));
  }
  write_file(c10dir + "/test_batch.bin", cifar_bytes(2, 10, 100));
  const CifarData train = load_cifar(dir.path(), 10, "train");
  EXPECT_EQ(train.images.size(0), 15);
  // Batches concatenated in order.
  for (int64_t i = 0; i < 15; ++i) EXPECT_EQ(train.labels[i].item<int64_t>(), i % 10);
  EXPECT_EQ(load_cifar(dir.path(), 10, "test").labels[0].item<int64_t>(), 0);
  // CIFAR-100 directly in the root.
  TempDir flat;
  write_file(flat / "train.bin", cifar_bytes(5, 100));
  write_file(flat / "test.bin", cifar_bytes(3, 100));
  EXPECT_EQ(load_cifar(flat.path(), 100, "train").images.size(0), 5);
  EXPECT_EQ(load_cifar(flat.path(), 100, "test").images.size(0), 3);
  EXPECT_THROW(load_cifar(flat.path(), 100, "valid"), c10::Error);
  EXPECT_THROW(load_cifar(flat.path(), 10, "train"), c10::Error);  // no CIFAR-10 files there
}

TEST(Cifar, RejectsWrongSizesAndLabels) {
  TempDir dir;
  auto bytes = cifar_bytes(2, 10);
  bytes.pop_back();
  write_file(dir / "test_batch.bin", bytes);
  try {
    load_cifar(dir.path(), 10, "test");
    FAIL();
  } catch (const c10::Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("test_batch.bin"), std::string::npos) << msg;
    EXPECT_NE(msg.find("6145 bytes"), std::string::npos) << msg;
    EXPECT_NE(msg.find("multiple of the 3073-byte record"), std::string::npos) << msg;
  }
  // CIFAR-10 records read as CIFAR-100: the size does not fit 3074-byte records.
  const auto ten = cifar_bytes(2, 10);
  EXPECT_THROW(parse_cifar(ten.data(), ten.size(), 100), c10::Error);
  EXPECT_THROW(parse_cifar(ten.data(), 0, 10), c10::Error);
  auto label = cifar_bytes(1, 10);
  label[0] = 10;
  EXPECT_THROW(parse_cifar(label.data(), label.size(), 10), c10::Error);
  auto coarse = cifar_bytes(1, 100);
  coarse[0] = 20;
  EXPECT_THROW(parse_cifar(coarse.data(), coarse.size(), 100), c10::Error);
  EXPECT_THROW(load_cifar(dir / "missing", 10, "train"), c10::Error);
}

TEST(Cifar, MutationFuzz) {
  const std::vector<std::vector<uint8_t>> seeds = {cifar_bytes(2, 10), cifar_bytes(2, 100)};
  const auto [ok, threw] = dt::mutation_fuzz(seeds, 2000, 3, [](const std::vector<uint8_t>& v) {
    parse_cifar(v.data(), v.size(), 10);
    parse_cifar(v.data(), v.size(), 100);
  });
  EXPECT_EQ(ok + threw, 2000);
  EXPECT_GT(threw, 0);
}

}  // namespace
