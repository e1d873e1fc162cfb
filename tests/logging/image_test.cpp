#include "mgd/logging/image.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <string>
#include <vector>

#include "logging/logging_testing.h"

namespace {

using mgd::logging::Colormap;
using mgd::logging::encode_png;
using mgd::logging::heat_map;
using mgd::logging::HeatMapOptions;
using mgd::logging::to_hwc_uint8;
using namespace mgd::logging::testing;

std::string hex(const uint8_t* p, size_t n) {
  static const char* digits = "0123456789abcdef";
  std::string s;
  for (size_t i = 0; i < n; ++i) {
    s += digits[p[i] >> 4];
    s += digits[p[i] & 0xF];
  }
  return s;
}

TEST(Png, HeaderAndChunks) {
  const uint8_t px[6] = {0, 1, 2, 3, 4, 5};
  const std::string png = encode_png(px, 2, 3, 1);
  ASSERT_GT(png.size(), 8u + 25 + 12 + 12);
  EXPECT_EQ(png.substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8));
  EXPECT_EQ(png.substr(12, 4), "IHDR");
  EXPECT_EQ(png.substr(16, 8), std::string("\0\0\0\3\0\0\0\2", 8));  // width 3, height 2
  EXPECT_EQ(png[24], 8);                                             // bit depth
  EXPECT_EQ(png[25], 0);                                             // grayscale
  EXPECT_EQ(png.substr(png.size() - 8, 4), "IEND");
}

TEST(Png, DecodesWithPil) {
  TempDir dir;
  // Every colour type, a hand-checkable pixel pattern each, plus a larger random RGB image.
  const std::vector<uint8_t> gray = {0, 1, 2, 3, 4, 5};                         // 2 x 3
  const std::vector<uint8_t> gray_alpha = {10, 255, 20, 0};                     // 1 x 2
  const std::vector<uint8_t> rgb = {255, 0, 0, 0, 255, 0, 0, 0, 255, 1, 2, 3};  // 2 x 2
  const std::vector<uint8_t> rgba = {1, 2, 3, 4, 5, 6, 7, 8};                   // 2 x 1
  torch::manual_seed(0);
  const auto big = torch::randint(0, 256, {61, 83, 3}, torch::kByte);  // odd sizes on purpose
  write_file(dir / "gray.png", encode_png(gray.data(), 2, 3, 1));
  write_file(dir / "gray_alpha.png", encode_png(gray_alpha.data(), 1, 2, 2));
  write_file(dir / "rgb.png", encode_png(rgb.data(), 2, 2, 3, /*level=*/0));  // stored blocks
  write_file(dir / "rgba.png", encode_png(rgba.data(), 2, 1, 4, /*level=*/9));
  write_file(dir / "big.png", encode_png(big.data_ptr<uint8_t>(), 61, 83, 3));
  const auto r = run_oracle(
      "decode_png.py", shell_quote(dir / "gray.png") + " " + shell_quote(dir / "gray_alpha.png") +
                           " " + shell_quote(dir / "rgb.png") + " " +
                           shell_quote(dir / "rgba.png") + " " + shell_quote(dir / "big.png"));
  ASSERT_EQ(r.status, 0) << r.out;
  const auto lines = split_lines(r.out);
  ASSERT_EQ(lines.size(), 5u) << r.out;
  EXPECT_EQ(lines[0], "L 3x2 000102030405");
  EXPECT_EQ(lines[1], "LA 2x1 0aff1400");
  EXPECT_EQ(lines[2], "RGB 2x2 ff000000ff000000ff010203");
  EXPECT_EQ(lines[3], "RGBA 1x2 0102030405060708");
  EXPECT_EQ(lines[4], "RGB 83x61 " + hex(big.data_ptr<uint8_t>(), big.numel()));
}

TEST(Png, RejectsBadArguments) {
  const uint8_t px[4] = {};
  EXPECT_THROW(encode_png(px, 0, 2, 1), c10::Error);
  EXPECT_THROW(encode_png(px, 2, -1, 1), c10::Error);
  EXPECT_THROW(encode_png(px, 1, 1, 5), c10::Error);
  EXPECT_THROW(encode_png(px, 1, 1, 1, 10), c10::Error);
  EXPECT_THROW(encode_png(nullptr, 1, 1, 1), c10::Error);
}

std::vector<int> values(const torch::Tensor& t) {
  auto c = t.contiguous().to(torch::kInt);
  return std::vector<int>(c.data_ptr<int>(), c.data_ptr<int>() + c.numel());
}

TEST(Png, ToHwcUint8) {
  // Floats: clamped to [0, 1], scaled to 255 and rounded; NaN becomes 0.
  auto g = to_hwc_uint8(torch::tensor({-0.5f, 0.0f, 0.5f, 1.0f, 1.5f, NAN}).reshape({2, 3}));
  ASSERT_EQ(g.sizes(), (std::vector<int64_t>{2, 3, 1}));
  EXPECT_EQ(g.scalar_type(), torch::kByte);
  EXPECT_EQ(values(g), (std::vector<int>{0, 0, 128, 255, 255, 0}));
  // C x H x W becomes H x W x C; uint8 passes unchanged; doubles work too.
  auto chw = torch::arange(24, torch::kByte).reshape({3, 2, 4});
  auto hwc = to_hwc_uint8(chw);
  ASSERT_EQ(hwc.sizes(), (std::vector<int64_t>{2, 4, 3}));
  EXPECT_TRUE(torch::equal(hwc, chw.permute({1, 2, 0})));
  EXPECT_TRUE(hwc.is_contiguous());
  EXPECT_EQ(values(to_hwc_uint8(torch::full({1, 1, 1}, 0.2, torch::kDouble))),
            std::vector<int>{51});
  EXPECT_EQ(to_hwc_uint8(torch::zeros({4, 5, 6})).sizes(), (std::vector<int64_t>{5, 6, 4}));
}

TEST(Png, ToHwcUint8RejectsBadImages) {
  EXPECT_THROW(to_hwc_uint8(torch::Tensor()), c10::Error);
  EXPECT_THROW(to_hwc_uint8(torch::zeros({5})), c10::Error);
  EXPECT_THROW(to_hwc_uint8(torch::zeros({1, 3, 4, 4})), c10::Error);  // a batch
  EXPECT_THROW(to_hwc_uint8(torch::zeros({2, 4, 4})), c10::Error);     // 2 channels
  EXPECT_THROW(to_hwc_uint8(torch::zeros({8, 8, 3})), c10::Error);     // HWC, not CHW
  EXPECT_THROW(to_hwc_uint8(torch::zeros({3, 0, 4})), c10::Error);
  EXPECT_THROW(to_hwc_uint8(torch::zeros({4, 4}, torch::kLong)), c10::Error);
}

TEST(HeatMap, GrayIsMinMaxNormalised) {
  auto img = heat_map(torch::tensor({{0.0, 1.0}, {2.0, 3.0}}),
                      HeatMapOptions().colormap(Colormap::kGray).cell_size(1));
  ASSERT_EQ(img.sizes(), (std::vector<int64_t>{2, 2}));
  EXPECT_EQ(values(img), (std::vector<int>{0, 85, 170, 255}));
  // Shifting and scaling the matrix does not change the picture.
  auto same = heat_map(torch::tensor({{-7.0, 3.0}, {13.0, 23.0}}),
                       HeatMapOptions().colormap(Colormap::kGray).cell_size(1));
  EXPECT_TRUE(torch::equal(img, same));
}

TEST(HeatMap, CellsAreBlocks) {
  auto img = heat_map(torch::tensor({{0.0, 1.0}, {1.0, 0.0}}, torch::kFloat),
                      HeatMapOptions().colormap(Colormap::kGray).cell_size(3));
  ASSERT_EQ(img.sizes(), (std::vector<int64_t>{6, 6}));
  EXPECT_EQ(img[2][2].item<int>(), 0);
  EXPECT_EQ(img[2][3].item<int>(), 255);
  EXPECT_EQ(img[3][2].item<int>(), 255);
  EXPECT_EQ(img[5][5].item<int>(), 0);
  // Automatic: the longer side reaches 256 pixels with cells of at most 16.
  EXPECT_EQ(heat_map(torch::rand({4, 8})).sizes(), (std::vector<int64_t>{3, 64, 128}));
  EXPECT_EQ(heat_map(torch::rand({16, 32})).sizes(), (std::vector<int64_t>{3, 128, 256}));
  EXPECT_EQ(heat_map(torch::rand({300, 10})).sizes(), (std::vector<int64_t>{3, 300, 10}));
}

TEST(HeatMap, ViridisEnds) {
  auto img = heat_map(torch::tensor({{5.0, 6.0}}), HeatMapOptions().cell_size(1));
  ASSERT_EQ(img.sizes(), (std::vector<int64_t>{3, 1, 2}));
  EXPECT_EQ(values(img.select(2, 0)), (std::vector<int>{68, 1, 84}));     // #440154
  EXPECT_EQ(values(img.select(2, 1)), (std::vector<int>{253, 231, 37}));  // #FDE725
  // Halfway: viridis(0.5) is #21908C.
  auto mid = heat_map(torch::tensor({{0.0, 0.5, 1.0}}), HeatMapOptions().cell_size(1));
  EXPECT_EQ(values(mid.select(2, 1)), (std::vector<int>{33, 144, 140}));
}

TEST(HeatMap, NonFiniteAndDegenerate) {
  const auto gray = HeatMapOptions().colormap(Colormap::kGray).cell_size(1);
  const double inf = INFINITY, nan = std::nan("");
  // The range comes from the finite entries; +inf is the top, -inf and NaN the bottom.
  auto img = heat_map(torch::tensor({{1.0, 3.0, inf}, {-inf, nan, 2.0}}), gray);
  EXPECT_EQ(values(img), (std::vector<int>{0, 255, 255, 0, 0, 128}));
  // A constant matrix, or one with no finite entry, is all low.
  EXPECT_EQ(values(heat_map(torch::full({2, 2}, 4.0), gray)), (std::vector<int>{0, 0, 0, 0}));
  EXPECT_EQ(values(heat_map(torch::tensor({{nan, inf}}), gray)), (std::vector<int>{0, 255}));
  // One entry.
  EXPECT_EQ(values(heat_map(torch::tensor({{2.5}}), gray)), std::vector<int>{0});
}

TEST(HeatMap, VectorOverloadAndErrors) {
  const std::vector<double> cost = {3, 1, 4, 1, 5, 9};
  EXPECT_TRUE(torch::equal(heat_map(cost, 2, 3),
                           heat_map(torch::tensor(cost, torch::kDouble).reshape({2, 3}))));
  EXPECT_THROW(heat_map(cost, 4, 2), c10::Error);
  EXPECT_THROW(heat_map(torch::rand({3})), c10::Error);
  EXPECT_THROW(heat_map(torch::rand({0, 3})), c10::Error);
  EXPECT_THROW(heat_map(torch::rand({2, 2}), HeatMapOptions().cell_size(-1)), c10::Error);
  // The result is an image add_image takes, and it encodes.
  EXPECT_NO_THROW(encode_png(heat_map(cost, 2, 3)));
}

}  // namespace
