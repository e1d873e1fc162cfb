#include "mgd/data/idx.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "data/data_testing.h"

namespace {

using namespace mgd::data;
namespace dt = mgd::data_testing;
using dt::TempDir;

std::vector<uint8_t> idx_bytes(const std::vector<uint32_t>& dims, const std::vector<uint8_t>& body,
                               uint8_t type = 0x08) {
  std::vector<uint8_t> out = {0, 0, type, static_cast<uint8_t>(dims.size())};
  for (uint32_t d : dims) {
    for (int s = 24; s >= 0; s -= 8) out.push_back(static_cast<uint8_t>(d >> s));
  }
  out.insert(out.end(), body.begin(), body.end());
  return out;
}

std::vector<uint8_t> iota_bytes(size_t n) {
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<uint8_t>(i * 7 + 3);
  return v;
}

// gzip-compresses files with Python's gzip module: `path` -> `path`.gz.
void gzip_with_python(const std::vector<std::string>& paths) {
  std::string cmd =
      "-c 'import gzip, sys\nfor p in sys.argv[1:]: open(p + \".gz\", "
      "\"wb\").write(gzip.compress(open(p, \"rb\").read()))'";
  for (const auto& p : paths) cmd += " " + p;
  ASSERT_EQ(dt::run_python(cmd), 0);
}

void expect_error(const std::vector<uint8_t>& bytes, const std::vector<std::string>& needles) {
  try {
    parse_idx(bytes.data(), bytes.size(), "some/file-idx3-ubyte");
    FAIL() << "expected an error";
  } catch (const c10::Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("some/file-idx3-ubyte"), std::string::npos) << msg;
    for (const auto& n : needles) EXPECT_NE(msg.find(n), std::string::npos) << msg;
  }
}

TEST(Idx, ParsesRawFiles) {
  const auto body = iota_bytes(2 * 3 * 4);
  const torch::Tensor t = [&] {
    const auto bytes = idx_bytes({2, 3, 4}, body);
    return parse_idx(bytes.data(), bytes.size());
  }();
  EXPECT_EQ(t.scalar_type(), torch::kUInt8);
  EXPECT_EQ(t.sizes(), (std::vector<int64_t>{2, 3, 4}));
  EXPECT_EQ(t[1][2][3].item<int>(), body[23]);
  EXPECT_EQ(t[0][1][0].item<int>(), body[4]);
  const auto labels = idx_bytes({5}, {0, 1, 2, 9, 4});
  EXPECT_EQ(parse_idx(labels.data(), labels.size())[3].item<int>(), 9);
  // Zero-size dimensions are legal.
  const auto empty = idx_bytes({0, 28, 28}, {});
  EXPECT_EQ(parse_idx(empty.data(), empty.size()).size(0), 0);
}

TEST(Idx, ReadsGzipAndRawFiles) {
  MGD_REQUIRE_ORACLE();
  TempDir dir;
  const auto bytes = idx_bytes({3, 5, 7}, iota_bytes(105));
  write_file(dir / "a-idx3-ubyte", bytes);
  const auto labels = idx_bytes({3}, {4, 0, 9});
  write_file(dir / "b-idx1-ubyte", labels);
  gzip_with_python({dir / "a-idx3-ubyte", dir / "b-idx1-ubyte"});
  const torch::Tensor raw = read_idx(dir / "a-idx3-ubyte");
  const torch::Tensor gz = read_idx(dir / "a-idx3-ubyte.gz");
  EXPECT_TRUE(torch::equal(raw, gz));
  EXPECT_EQ(read_idx(dir / "b-idx1-ubyte.gz")[2].item<int>(), 9);
  // Several gzip members (cat a.gz b.gz) decompress to the concatenation.
  const auto a = read_file(dir / "a-idx3-ubyte.gz");
  const auto b = read_file(dir / "b-idx1-ubyte.gz");
  std::vector<uint8_t> both = a;
  both.insert(both.end(), b.begin(), b.end());
  const auto joined = gunzip(both.data(), both.size());
  EXPECT_EQ(joined.size(), bytes.size() + labels.size());
  // Truncated or corrupt compressed data.
  for (size_t cut : {a.size() - 1, a.size() - 8, a.size() / 2, size_t{12}}) {
    std::vector<uint8_t> t(a.begin(), a.begin() + static_cast<std::ptrdiff_t>(cut));
    write_file(dir / "cut.gz", t);
    try {
      read_idx(dir / "cut.gz");
      FAIL() << "cut at " << cut;
    } catch (const c10::Error& e) {
      EXPECT_NE(std::string(e.what()).find("cut.gz"), std::string::npos);
      EXPECT_NE(std::string(e.what()).find("truncated"), std::string::npos) << e.what();
    }
  }
  auto crc = a;
  crc[crc.size() - 6] ^= 0xff;  // inside the CRC-32 trailer
  EXPECT_THROW(parse_idx(crc.data(), crc.size()), c10::Error);
  auto trailing = a;
  trailing.push_back('x');
  EXPECT_THROW(parse_idx(trailing.data(), trailing.size()), c10::Error);
  EXPECT_THROW(gunzip(a.data(), a.size(), "x", 10), c10::Error);  // over the output cap
}

TEST(Idx, RejectsMalformedFiles) {
  const auto good = idx_bytes({2, 2, 2}, iota_bytes(8));
  auto magic = good;
  magic[0] = 1;
  expect_error(magic, {"bad magic number"});
  expect_error(idx_bytes({4}, iota_bytes(16), 0x0D), {"element type 0xd", "0x08"});
  expect_error(idx_bytes({}, {}), {"zero dimensions"});
  expect_error(std::vector<uint8_t>(good.begin(), good.begin() + 9), {"truncated header"});
  expect_error(std::vector<uint8_t>(good.begin(), good.end() - 1),
               {"announces 8 bytes", "holds 7", "truncated"});
  auto longer = good;
  longer.push_back(0);
  expect_error(longer, {"holds 9"});
  expect_error({0, 0}, {"at least a 4-byte header"});
  // Sizes whose product overflows 64 bits.
  expect_error(idx_bytes({0xffffffffu, 0xffffffffu, 0xffffffffu}, {}), {"too many"});
}

TEST(Idx, MissingFileNamesIt) {
  try {
    read_idx("/nonexistent/train-images-idx3-ubyte.gz");
    FAIL();
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/train-images-idx3-ubyte.gz"),
              std::string::npos);
  }
}

TEST(Idx, MutationFuzz) {
  std::vector<std::vector<uint8_t>> seeds = {idx_bytes({3, 4, 5}, iota_bytes(60)),
                                             idx_bytes({10}, iota_bytes(10))};
  if (dt::oracle_available()) {
    TempDir dir;
    write_file(dir / "f", seeds[0]);
    write_file(dir / "g", seeds[1]);
    gzip_with_python({dir / "f", dir / "g"});
    seeds.push_back(read_file(dir / "f.gz"));
    seeds.push_back(read_file(dir / "g.gz"));
  }
  const auto [ok, threw] = dt::mutation_fuzz(
      seeds, 4000, 7, [](const std::vector<uint8_t>& v) { parse_idx(v.data(), v.size()); });
  EXPECT_EQ(ok + threw, 4000);
  EXPECT_GT(threw, 0);
  std::cout << "[ fuzz ] IDX mutants: " << ok << " parsed, " << threw << " rejected\n";
}

}  // namespace
