// The frozen program's Winograd F(4x4, 3x3) convolution (mgd/models/winograd.h) against
// ATen's direct convolution: image sizes that are and are not multiples of the 4 x 4 output
// tile, channel counts on both kernel widths (16 and 8 columns) and row remainders, the bias,
// residual and ReLU of its output transform, and NaN kept by the ReLU.
#include "mgd/models/winograd.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstdlib>
#include <limits>
#include <string>

namespace {

using mgd::models::detail::WinogradConv;

// Float rounding of the transforms (their coefficients reach 8 and 1/24): a few 1e-6 of the
// outputs' scale; 2e-5 of it bounds it with room (a wrong coefficient gives O(1)).
void expect_close(const torch::Tensor& a, const torch::Tensor& b, const std::string& what) {
  ASSERT_EQ(a.sizes(), b.sizes()) << what;
  const double scale = b.abs().max().item<double>();
  const double diff = (a - b).abs().max().item<double>();
  EXPECT_LE(diff, 2e-5 * scale + 1e-6) << what << " (scale " << scale << ")";
}

TEST(Winograd, EqualsDirectConvolutionWithBiasResidualAndRelu) {
  if (!WinogradConv::applies(8, 8)) GTEST_SKIP() << "no AVX2 + FMA on this CPU";
  struct Case {
    int64_t batch, in, out, h, w;
  };
  for (const Case& c : {Case{2, 16, 32, 28, 28}, Case{3, 32, 32, 14, 14}, Case{1, 64, 128, 7, 7},
                        Case{2, 8, 24, 5, 9}, Case{1, 24, 8, 1, 1}, Case{1, 16, 16, 3, 2},
                        Case{5, 40, 48, 13, 6}}) {
    const std::string what = std::to_string(c.batch) + "x" + std::to_string(c.in) + "->" +
                             std::to_string(c.out) + " @" + std::to_string(c.h) + "x" +
                             std::to_string(c.w);
    torch::manual_seed(c.in * 131 + c.h);
    auto weight = torch::randn({c.out, c.in, 3, 3}) * 0.2;
    auto bias = torch::randn({c.out});
    auto x = torch::randn({c.batch, c.in, c.h, c.w}).contiguous(torch::MemoryFormat::ChannelsLast);
    auto residual = torch::randn({c.batch, c.out, c.h, c.w});
    auto direct = torch::conv2d(x.contiguous(), weight, bias, 1, 1);
    WinogradConv conv(weight, bias);
    auto y = conv(x);
    EXPECT_TRUE(y.is_contiguous(torch::MemoryFormat::ChannelsLast)) << what;
    expect_close(y, direct, what);
    expect_close(conv(x, /*relu=*/true), direct.relu(), what + " relu");
    // The residual in either memory format.
    expect_close(conv(x, false, residual), direct + residual, what + " residual");
    expect_close(conv(x, true, residual.contiguous(torch::MemoryFormat::ChannelsLast)),
                 (direct + residual).relu(), what + " residual relu");
    // An NCHW input gives the same.
    EXPECT_TRUE(torch::equal(conv(x.contiguous()), y)) << what;
  }
}

TEST(Winograd, ManyThreadsGiveTheSameBitsAsOne) {
  if (!WinogradConv::applies(8, 8)) GTEST_SKIP() << "no AVX2 + FMA on this CPU";
  torch::manual_seed(3);
  WinogradConv conv(torch::randn({32, 16, 3, 3}), torch::randn({32}));
  auto x = torch::randn({9, 16, 11, 17}).contiguous(torch::MemoryFormat::ChannelsLast);
  const int threads = torch::get_num_threads();
  torch::set_num_threads(1);
  auto one = conv(x, true);
  torch::set_num_threads(std::max(2, threads));
  auto many = conv(x, true);
  torch::set_num_threads(threads);
  EXPECT_TRUE(torch::equal(one, many));
}

TEST(Winograd, ReluKeepsNanAndShapesAreChecked) {
  if (!WinogradConv::applies(8, 8)) GTEST_SKIP() << "no AVX2 + FMA on this CPU";
  torch::manual_seed(4);
  WinogradConv conv(torch::randn({8, 8, 3, 3}), torch::zeros({8}));
  auto x = torch::randn({1, 8, 6, 6});
  x[0][3][2][2] = std::numeric_limits<float>::quiet_NaN();
  auto y = conv(x, true);
  EXPECT_TRUE(torch::isnan(y[0][0][2][2]).item<bool>());
  EXPECT_FALSE(torch::isnan(y[0][0][5][5]).item<bool>());
  EXPECT_THROW(conv(torch::randn({1, 16, 6, 6})), c10::Error);
  EXPECT_THROW(conv(torch::randn({1, 8, 6, 6}), false, torch::randn({1, 8, 5, 6})), c10::Error);
  EXPECT_THROW(WinogradConv(torch::randn({8, 8, 3, 3}), torch::zeros({7})), c10::Error);
  ::setenv("MGD_WINOGRAD", "0", 1);
  EXPECT_FALSE(WinogradConv::applies(8, 8));
  ::unsetenv("MGD_WINOGRAD");
  EXPECT_FALSE(WinogradConv::applies(12, 8));
}

}  // namespace
