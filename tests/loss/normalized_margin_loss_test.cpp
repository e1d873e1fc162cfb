#include "mgd/loss/normalized_margin_loss.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <limits>

#include "mgd/loss/loss.h"
#include "mgd/reducers/amp.h"
#include "support/gradcheck.h"

namespace {

using mgd::testing::expect_gradients_match;

// A BatchNorm with non-trivial affine parameters and running statistics.
torch::nn::BatchNorm2d make_bn(int64_t channels, torch::Dtype dtype, bool training) {
  torch::nn::BatchNorm2d bn(channels);
  bn->to(dtype);
  torch::NoGradGuard no_grad;
  bn->weight.copy_(torch::rand({channels}, dtype) + 0.5);
  bn->bias.copy_(torch::randn({channels}, dtype) * 0.3);
  bn->running_mean.copy_(torch::randn({channels}, dtype));
  bn->running_var.copy_(torch::rand({channels}, dtype) + 0.5);
  bn->train(training);
  return bn;
}

torch::nn::BatchNorm2d copy_bn(const torch::nn::BatchNorm2d& from) {
  auto bn = std::dynamic_pointer_cast<torch::nn::BatchNorm2dImpl>(from->clone());
  return torch::nn::BatchNorm2d(bn);
}

struct Result {
  torch::Tensor loss, grad_x, grad_w, grad_b, running_mean, running_var, batches;
};

Result run(torch::nn::BatchNorm2d bn, const torch::Tensor& x0, const torch::Tensor& r,
           const torch::Tensor& m, bool fused) {
  auto x = x0.clone().requires_grad_(true);
  auto loss = fused ? mgd::functional::normalized_margin_loss(bn, x, r, m)
                    : mgd::functional::margin_loss(bn->forward(x), r, m);
  (loss * 0.37).backward();
  return {loss.detach(), x.grad(), bn->weight.grad(), bn->bias.grad(), bn->running_mean.clone(),
          bn->running_var.clone(), bn->num_batches_tracked.clone()};
}

void expect_close(const torch::Tensor& a, const torch::Tensor& b, double rtol, double atol,
                  const char* what) {
  ASSERT_TRUE(a.defined() && b.defined()) << what;
  const double err = (a.to(torch::kDouble) - b.to(torch::kDouble)).abs().max().item<double>();
  const double scale = b.to(torch::kDouble).abs().max().item<double>();
  EXPECT_LE(err, atol + rtol * scale) << what << ": max |diff| " << err << ", max |ref| " << scale;
}

// The fused operation against BatchNorm2d followed by margin_loss: loss, the gradients of the
// map, weight and bias, and the running statistics, in training and eval mode, float and
// double, on planes with vector lanes and a tail (11 x 9) and FMNIST-sized ones (28 x 28).
TEST(NormalizedMarginLoss, EqualsBatchNormThenMarginLoss) {
  torch::manual_seed(7);
  for (auto dtype : {torch::kFloat, torch::kDouble}) {
    const double rtol = dtype == torch::kFloat ? 2e-5 : 1e-11;
    for (bool training : {true, false}) {
      for (auto shape : {std::vector<int64_t>{4, 6, 11, 9}, std::vector<int64_t>{8, 16, 28, 28}}) {
        SCOPED_TRACE(std::string(dtype == torch::kFloat ? "float" : "double") +
                     (training ? " training " : " eval ") + std::to_string(shape[3]));
        auto x = torch::randn(shape, dtype) * 1.7 + 0.4;
        auto r = torch::randn(shape, dtype);
        auto m = -torch::rand({shape[1]}, dtype);
        auto bn = make_bn(shape[1], dtype, training);
        auto fused = run(copy_bn(bn), x, r, m, true);
        auto reference = run(copy_bn(bn), x, r, m, false);
        expect_close(fused.loss, reference.loss, rtol, 0, "loss");
        expect_close(fused.grad_x, reference.grad_x, 10 * rtol, 0, "grad x");
        expect_close(fused.grad_w, reference.grad_w, 10 * rtol, 0, "grad weight");
        expect_close(fused.grad_b, reference.grad_b, 10 * rtol, 0, "grad bias");
        expect_close(fused.running_mean, reference.running_mean, rtol, 0, "running mean");
        expect_close(fused.running_var, reference.running_var, rtol, 0, "running var");
        EXPECT_TRUE(torch::equal(fused.batches, reference.batches));
        EXPECT_EQ(fused.loss.scalar_type(), dtype);
      }
    }
  }
}

// The AMP reduction done inside the loss's pass gives what the reduced map gives, bit for bit:
// loss, gradients, running statistics; k = 1 (SM's selection), 2 and 3; float and double;
// NaN and ties in the teacher map; planes with a tail.
TEST(NormalizedMarginLoss, OnTheFlyAmpEqualsTheReducedMap) {
  torch::manual_seed(12);
  for (auto dtype : {torch::kFloat, torch::kDouble}) {
    for (int64_t k : {1, 2, 3}) {
      SCOPED_TRACE(std::string(dtype == torch::kFloat ? "float" : "double") + " k = " +
                   std::to_string(k));
      const int64_t s = 5, t = k * s + 2;
      auto x = torch::randn({3, s, 9, 7}, dtype);
      auto teacher = (torch::randn({3, t, 9, 7}, dtype) * 2).round() / 2;  // ties
      auto margins = -torch::rand({t}, dtype);
      auto index = torch::randperm(t, torch::kLong).narrow(0, 0, k * s).view({k, s});
      auto bn = make_bn(s, dtype, true);
      auto a = copy_bn(bn), b = copy_bn(bn);
      auto xa = x.clone().requires_grad_(true), xb = x.clone().requires_grad_(true);
      auto fused = mgd::functional::normalized_margin_loss_amp(a, xa, teacher, margins, index);
      const auto reduced = mgd::functional::amp_reduce(teacher, margins, index);
      auto reference = mgd::functional::normalized_margin_loss(b, xb, reduced.feature,
                                                               reduced.margin);
      EXPECT_TRUE(torch::equal(fused, reference));
      fused.backward();
      reference.backward();
      EXPECT_TRUE(torch::equal(xa.grad(), xb.grad()));
      EXPECT_TRUE(torch::equal(a->weight.grad(), b->weight.grad()));
      EXPECT_TRUE(torch::equal(a->bias.grad(), b->bias.grad()));
      EXPECT_TRUE(torch::equal(a->running_var, b->running_var));
      // A NaN in a group-0 teacher channel reaches the loss (AMP never picks a NaN of a later
      // group over group 0, as amp_reduce).
      teacher[1][index[0][2].item<int64_t>()][4][3] = std::nan("");
      auto c = copy_bn(bn);
      EXPECT_TRUE(std::isnan(
          mgd::functional::normalized_margin_loss_amp(c, x, teacher, margins, index)
              .item<double>()));
    }
  }
  // Where the fused path does not apply (here a double teacher for a float student), the
  // fallback reduces the teacher and still gives the student its gradient.
  {
    auto bn1 = make_bn(3, torch::kFloat, true), bn2 = copy_bn(bn1);
    auto x = torch::randn({2, 3, 4, 4});
    auto teacher = torch::randn({2, 6, 4, 4}, torch::kDouble);
    auto margins = -torch::rand({6}, torch::kDouble);
    auto index = torch::tensor({{0, 2, 4}, {1, 3, 5}}, torch::kLong);
    auto xa = x.clone().requires_grad_(true), xb = x.clone().requires_grad_(true);
    auto fallback = mgd::functional::normalized_margin_loss_amp(bn1, xa, teacher, margins, index);
    ASSERT_TRUE(fallback.requires_grad());
    const auto r = mgd::functional::amp_reduce(teacher, margins, index);
    auto reference = mgd::functional::margin_loss(bn2->forward(xb), r.feature.to(torch::kFloat),
                                                  r.margin.to(torch::kFloat));
    fallback.backward();
    reference.backward();
    expect_close(xa.grad(), xb.grad(), 1e-5, 0, "fallback grad x");
  }
  // A matching that does not fit the maps is refused with both shapes named.
  auto bn = make_bn(4, torch::kFloat, true);
  try {
    mgd::functional::normalized_margin_loss_amp(bn, torch::randn({2, 4, 3, 3}),
                                                torch::randn({2, 8, 3, 3}), -torch::rand({8}),
                                                torch::arange(6, torch::kLong).view({2, 3}));
    FAIL() << "expected an error";
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what()).find("[2, 4, 3, 3]"), std::string::npos) << e.what();
  }
}

TEST(NormalizedMarginLoss, GradientsMatchFiniteDifferences) {
  torch::manual_seed(8);
  auto x = torch::randn({3, 4, 3, 5}, torch::kDouble);
  auto r = torch::randn({3, 4, 3, 5}, torch::kDouble);
  auto m = -torch::rand({4}, torch::kDouble);
  auto w = torch::rand({4}, torch::kDouble) + 0.5, b = torch::randn({4}, torch::kDouble);
  for (bool training : {true, false}) {
    SCOPED_TRACE(training ? "training" : "eval");
    auto bn = make_bn(4, torch::kDouble, training);
    expect_gradients_match(
        [&](const std::vector<torch::Tensor>& in) {
          auto fresh = copy_bn(bn);
          fresh->weight = in[1];
          fresh->bias = in[2];
          return mgd::functional::normalized_margin_loss(fresh, in[0], r, m);
        },
        {x, w, b}, {}, 1e-6, 1e-5);
  }
}

// Statistics stay exact for maps far from zero (shifted sums, no cancellation).
TEST(NormalizedMarginLoss, LargeMeanKeepsPrecision) {
  torch::manual_seed(9);
  auto x = torch::randn({4, 3, 8, 8}, torch::kDouble) + 1e6;
  auto r = torch::randn({4, 3, 8, 8}, torch::kDouble);
  auto m = -torch::rand({3}, torch::kDouble);
  auto bn = make_bn(3, torch::kDouble, true);
  auto fused = run(copy_bn(bn), x, r, m, true);
  auto reference = run(copy_bn(bn), x, r, m, false);
  expect_close(fused.loss, reference.loss, 1e-9, 0, "loss");
  expect_close(fused.grad_x, reference.grad_x, 1e-6, 0, "grad x");
}

// NaN in the map shows in the loss (the engine stops on it); shape errors name both shapes.
TEST(NormalizedMarginLoss, NaNAndBadShapes) {
  auto bn = make_bn(2, torch::kFloat, true);
  auto x = torch::randn({2, 2, 3, 3});
  x[1][0][2][2] = std::numeric_limits<float>::quiet_NaN();
  auto r = torch::randn({2, 2, 3, 3});
  EXPECT_TRUE(std::isnan(
      mgd::functional::normalized_margin_loss(bn, x, r, -torch::rand({2})).item<double>()));
  try {
    mgd::functional::normalized_margin_loss(bn, torch::randn({2, 2, 3, 3}),
                                            torch::randn({2, 2, 3, 4}), -torch::rand({2}));
    FAIL() << "expected an error";
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what()).find("[2, 2, 3, 4]"), std::string::npos) << e.what();
  }
  EXPECT_THROW(mgd::functional::normalized_margin_loss(bn, torch::randn({2, 2, 3, 3}), r,
                                                       -torch::rand({3})),
               c10::Error);
}

// Options the fused form does not cover (cumulative average) give the composed result.
TEST(NormalizedMarginLoss, OtherBatchNormOptionsUseTheComposedForm) {
  torch::manual_seed(10);
  torch::nn::BatchNorm2d bn(torch::nn::BatchNormOptions(3).momentum(c10::nullopt));
  auto x = torch::randn({2, 3, 4, 4}), r = torch::randn({2, 3, 4, 4}), m = -torch::rand({3});
  auto fused = run(copy_bn(bn), x, r, m, true);
  auto reference = run(copy_bn(bn), x, r, m, false);
  EXPECT_TRUE(torch::equal(fused.loss, reference.loss));
  EXPECT_TRUE(torch::equal(fused.grad_x, reference.grad_x));
}

}  // namespace
