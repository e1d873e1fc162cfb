#include "mgd/util/matmul.h"

#include <ATen/Context.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

namespace {

// Each case: forward and both gradients equal to torch::mm / F::linear to float rounding.
void expect_mm_matches(int64_t m, int64_t k, int64_t n, bool transposed_b) {
  torch::manual_seed(m * 131 + k * 7 + n);
  auto a = torch::randn({m, k}, torch::requires_grad());
  auto b = transposed_b ? torch::randn({n, k}).t().requires_grad_()
                        : torch::randn({k, n}, torch::requires_grad());
  auto a2 = a.detach().clone().requires_grad_(), b2 = b.detach().clone().requires_grad_();
  auto g = torch::randn({m, n});
  auto ours = mgd::util::mm(a, b);
  auto ref = torch::mm(a2, b2);
  ASSERT_EQ(ours.sizes(), ref.sizes());
  const double tol = 1e-5 * std::sqrt(static_cast<double>(k));
  EXPECT_TRUE(torch::allclose(ours, ref, tol, tol)) << m << "x" << k << "x" << n;
  (ours * g).sum().backward();
  (ref * g).sum().backward();
  const double gtol = 1e-5 * std::sqrt(static_cast<double>(std::max(m, n)));
  EXPECT_TRUE(torch::allclose(a.grad(), a2.grad(), gtol, gtol)) << "grad a " << m;
  EXPECT_TRUE(torch::allclose(b.grad(), b2.grad(), gtol, gtol)) << "grad b " << m;
}

TEST(UtilMatmul, EqualsTorchMmForwardAndBackward) {
  expect_mm_matches(256, 128, 4096, false);  // InfoNCE against a queue
  expect_mm_matches(100, 64, 1000, true);    // kNN: features @ bank^T
  expect_mm_matches(17, 3, 5, false);
  expect_mm_matches(15, 8, 9, false);  // under 16 rows: torch::mm
  expect_mm_matches(1, 4, 2, true);
}

TEST(UtilMatmul, RoutesThroughOneDnnOnlyWhereItShould) {
  const bool route = !at::hasMKL() && at::hasMKLDNN();
  EXPECT_EQ(mgd::util::mm_uses_onednn(torch::zeros({16, 4}), torch::zeros({4, 3})), route);
  EXPECT_FALSE(mgd::util::mm_uses_onednn(torch::zeros({15, 4}), torch::zeros({4, 3})));
  EXPECT_FALSE(mgd::util::mm_uses_onednn(torch::zeros({16, 4}, torch::kDouble),
                                         torch::zeros({4, 3}, torch::kDouble)));
  auto d = mgd::util::mm(torch::ones({20, 2}, torch::kDouble), torch::ones({2, 3}, torch::kDouble));
  EXPECT_EQ(d.scalar_type(), torch::kDouble);
  EXPECT_TRUE(torch::equal(d, torch::full({20, 3}, 2.0, torch::kDouble)));
}

TEST(UtilMatmul, ShapeMismatchIsTorchMmsError) {
  EXPECT_THROW(mgd::util::mm(torch::zeros({20, 4}), torch::zeros({5, 3})), c10::Error);
}

TEST(UtilMatmul, LinearEqualsFunctionalLinear) {
  torch::manual_seed(3);
  for (bool with_bias : {true, false}) {
    auto x = torch::randn({64, 256}, torch::requires_grad());
    auto w = torch::randn({128, 256}, torch::requires_grad());
    auto bias = with_bias ? torch::randn({128}, torch::requires_grad()) : torch::Tensor();
    auto x2 = x.detach().clone().requires_grad_(), w2 = w.detach().clone().requires_grad_();
    auto b2 = with_bias ? bias.detach().clone().requires_grad_() : torch::Tensor();
    auto ours = mgd::util::linear(x, w, bias);
    auto ref = torch::nn::functional::linear(x2, w2, b2);
    EXPECT_TRUE(torch::allclose(ours, ref, 1e-4, 1e-4));
    ours.square().sum().backward();
    ref.square().sum().backward();
    EXPECT_TRUE(torch::allclose(x.grad(), x2.grad(), 1e-3, 1e-3));
    EXPECT_TRUE(torch::allclose(w.grad(), w2.grad(), 1e-3, 1e-3));
    if (with_bias) {
      EXPECT_TRUE(torch::allclose(bias.grad(), b2.grad(), 1e-3, 1e-3));
    }
  }
}

}  // namespace
