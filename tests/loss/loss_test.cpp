#include "mgd/loss/loss.h"

#include <gtest/gtest.h>
#include <cmath>
#include <limits>
#include <torch/torch.h>

#include "support/gradcheck.h"

namespace {

using mgd::testing::expect_gradients_match;

TEST(MarginLoss, HandComputed) {
  // One channel, margin -1, four positions:
  //   S=0.5, R=0.2  -> target 0.2 (>0): (0.3)^2 = 0.09
  //   S=-2,  R=-3   -> target -1: S < target and target <= 0: masked out
  //   S=0,   R=-3   -> target -1: S > target: (1)^2 = 1
  //   S=1,   R=2    -> target 2 (>0): (-1)^2 = 1
  auto s = torch::tensor({0.5, -2.0, 0.0, 1.0}, torch::kDouble).view({1, 1, 2, 2});
  auto r = torch::tensor({0.2, -3.0, -3.0, 2.0}, torch::kDouble).view({1, 1, 2, 2});
  auto m = torch::tensor({-1.0}, torch::kDouble);
  EXPECT_NEAR(mgd::functional::margin_loss(s, r, m).item<double>(), 2.09, 1e-12);
  mgd::MarginLoss module;
  EXPECT_NEAR(module(s, r, m).item<double>(), 2.09, 1e-12);
}

TEST(MarginLoss, ZeroWhenStudentEqualsTeacherAboveMargin) {
  torch::manual_seed(0);
  auto r = torch::randn({2, 3, 4, 4}, torch::kDouble);
  auto m = -torch::rand({3}, torch::kDouble);
  auto target = torch::max(r, m.view({1, 3, 1, 1}));
  EXPECT_EQ(mgd::functional::margin_loss(target, r, m).item<double>(), 0.0);
  // Below the margin where the target is negative, the student is free.
  auto s = torch::where(r < m.view({1, 3, 1, 1}), r - 5.0, target);
  EXPECT_EQ(mgd::functional::margin_loss(s, r, m).item<double>(), 0.0);
}

TEST(MarginLoss, GradientsMatchFiniteDifferences) {
  torch::manual_seed(1);
  auto s = torch::randn({2, 3, 2, 2}, torch::kDouble);
  auto r = torch::randn({2, 3, 2, 2}, torch::kDouble);
  auto m = -torch::rand({3}, torch::kDouble);
  expect_gradients_match(
      [](const std::vector<torch::Tensor>& x) {
        return mgd::functional::margin_loss(x[0], x[1], x[2]);
      },
      {s, r, m}, {0});
}

// The fused loss gives the composed form's loss and student gradient bit for bit (so runs do
// not change with it), on both branches of the indicator, and keeps NaN visible.
TEST(MarginLoss, FusedEqualsComposedFormBitForBit) {
  torch::manual_seed(4);
  auto composed = [](const torch::Tensor& s, const torch::Tensor& r, const torch::Tensor& m) {
    auto target = torch::max(r, m.view({1, -1, 1, 1}));
    auto diff = s - target;
    return (diff * diff * torch::logical_or(s > target, target > 0).to(diff.dtype())).sum();
  };
  for (auto dtype : {torch::kFloat, torch::kDouble}) {
    auto s0 = torch::randn({3, 5, 7, 6}, dtype), r = torch::randn({3, 5, 7, 6}, dtype);
    auto m = -torch::rand({5}, dtype);
    auto s1 = s0.clone().requires_grad_(true), s2 = s0.clone().requires_grad_(true);
    auto fused = mgd::functional::margin_loss(s1, r, m) / 3.7;
    auto reference = composed(s2, r, m) / 3.7;
    EXPECT_TRUE(torch::equal(fused, reference)) << fused.item<double>() - reference.item<double>();
    fused.backward();
    reference.backward();
    EXPECT_TRUE(torch::equal(s1.grad(), s2.grad()))
        << (s1.grad() - s2.grad()).abs().max().item<double>();
  }
  auto s = torch::full({1, 1, 1, 2}, -5.0);
  s[0][0][0][1] = std::numeric_limits<double>::quiet_NaN();
  EXPECT_TRUE(std::isnan(mgd::functional::margin_loss(s, torch::full({1, 1, 1, 2}, -3.0),
                                                      torch::full({1}, -1.0)).item<double>()));
}

// The vectorized CPU path (float, planes of 8 and more) against the composed form: large
// planes with a tail, NaN and infinities in both maps, teacher values equal to the margin and
// to the student, zeros of both signs. Loss and gradient bit for bit.
TEST(MarginLoss, VectorPathEqualsComposedFormBitForBit) {
  torch::manual_seed(5);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  auto s0 = (torch::randn({4, 6, 11, 9}) * 4).round() / 4;  // planes of 99: 12 vectors + 3
  auto r = (torch::randn({4, 6, 11, 9}) * 4).round() / 4;
  auto m = -(torch::rand({6}) * 4).round() / 4;
  auto rf = r.view({-1}), sf = s0.view({-1});
  for (int64_t i = 0; i < rf.numel(); i += 7) rf[i] = sf[i];               // R == S
  for (int64_t i = 3; i < rf.numel(); i += 11) rf[i] = m[(i / 99) % 6];    // R == margin
  for (int64_t i = 1; i < rf.numel(); i += 17) rf[i] = (i % 2) ? 0.0f : -0.0f;
  auto composed = [](const torch::Tensor& s, const torch::Tensor& r, const torch::Tensor& m) {
    auto target = torch::max(r, m.view({1, -1, 1, 1}));
    auto diff = s - target;
    return diff * diff * torch::logical_or(s > target, target > 0).to(diff.dtype());
  };
  {
    auto s1 = s0.clone().requires_grad_(true), s2 = s0.clone().requires_grad_(true);
    auto fused = mgd::functional::margin_loss(s1, r, m);
    auto reference = composed(s2, r, m).sum();
    EXPECT_TRUE(torch::equal(fused, reference)) << fused.item<double>() - reference.item<double>();
    fused.backward();
    reference.backward();
    EXPECT_TRUE(torch::equal(s1.grad(), s2.grad()));
  }
  // Non-finite values: the same gradients, NaN where the composed form has NaN.
  for (int64_t i = 2; i < rf.numel(); i += 23) rf[i] = (i % 3 == 0) ? nan : ((i % 3 == 1) ? inf : -inf);
  for (int64_t i = 4; i < sf.numel(); i += 31) sf[i] = (i % 2 == 0) ? nan : -inf;
  auto s1 = s0.clone().requires_grad_(true), s2 = s0.clone().requires_grad_(true);
  mgd::functional::margin_loss(s1, r, m).backward();
  composed(s2, r, m).sum().backward();
  EXPECT_TRUE(torch::equal(torch::isnan(s1.grad()), torch::isnan(s2.grad())));
  EXPECT_GT(torch::isnan(s1.grad()).sum().item<int64_t>(), 0);
  EXPECT_TRUE(torch::equal(s1.grad().nan_to_num(0), s2.grad().nan_to_num(0)));
}

TEST(MarginLoss, RejectsShapeMismatch) {
  auto s = torch::zeros({1, 3, 2, 2});
  EXPECT_THROW(mgd::functional::margin_loss(s, torch::zeros({1, 3, 2, 3}), torch::zeros({3})),
               c10::Error);
  EXPECT_THROW(mgd::functional::margin_loss(s, s, torch::zeros({2})), c10::Error);
}

TEST(KDLoss, HandComputed) {
  // Identical logits: zero. Two classes at T = 1: KL([a,1-a] || [b,1-b]).
  auto x = torch::tensor({{1.0, 2.0, 3.0}}, torch::kDouble);
  EXPECT_NEAR(mgd::functional::kd_loss(x, x, 1.5).item<double>(), 0.0, 1e-12);
  auto s = torch::tensor({{0.0, 0.0}}, torch::kDouble);            // b = 0.5
  auto t = torch::tensor({{std::log(3.0), 0.0}}, torch::kDouble);  // a = 0.75
  const double kl = 0.75 * std::log(0.75 / 0.5) + 0.25 * std::log(0.25 / 0.5);
  EXPECT_NEAR(mgd::functional::kd_loss(s, t, 1.0).item<double>(), kl, 1e-12);
  // Temperature 2 scales logits by 1/2 and the result by 4; batch-mean over two rows.
  auto s2 = torch::cat({s, s});
  auto t2 = torch::cat({t, t}) * 2.0;
  EXPECT_NEAR(mgd::functional::kd_loss(s2, t2, 2.0).item<double>(), 4.0 * kl, 1e-12);
  mgd::KDLoss module(2.0);
  EXPECT_NEAR(module(s2, t2).item<double>(), 4.0 * kl, 1e-12);
}

TEST(KDLoss, GradientsMatchFiniteDifferences) {
  torch::manual_seed(2);
  auto s = torch::randn({3, 5}, torch::kDouble);
  auto t = torch::randn({3, 5}, torch::kDouble);
  expect_gradients_match(
      [](const std::vector<torch::Tensor>& x) { return mgd::functional::kd_loss(x[0], x[1], 1.5); },
      {s, t});
}

TEST(KDLoss, RejectsBadInput) {
  EXPECT_THROW(mgd::KDLoss(0.0), c10::Error);
  EXPECT_THROW(mgd::functional::kd_loss(torch::zeros({2, 3}), torch::zeros({2, 4}), 1.0),
               c10::Error);
}

}  // namespace
