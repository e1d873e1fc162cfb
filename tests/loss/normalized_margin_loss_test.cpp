#include "mgd/loss/normalized_margin_loss.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <limits>

#include "mgd/loss/loss.h"
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
