// Finite-difference gradient check (central differences on double tensors), the C++
// counterpart of torch.autograd.gradcheck for scalar-valued functions.
#pragma once

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <functional>
#include <vector>

namespace mgd::testing {

using ScalarFn = std::function<torch::Tensor(const std::vector<torch::Tensor>&)>;

/// Checks d f / d inputs[i] for each i in `which` (all inputs if empty) against central
/// differences. Inputs must be double tensors; they are cloned, not modified.
inline void expect_gradients_match(const ScalarFn& f, std::vector<torch::Tensor> inputs,
                                   std::vector<size_t> which = {}, double eps = 1e-6,
                                   double tol = 1e-6) {
  if (which.empty()) {
    for (size_t i = 0; i < inputs.size(); ++i) which.push_back(i);
  }
  std::vector<torch::Tensor> leaves;
  for (auto& x : inputs) {
    ASSERT_EQ(x.scalar_type(), torch::kDouble);
    leaves.push_back(x.detach().clone());
  }
  std::vector<torch::Tensor> wrt;
  for (size_t i : which) {
    leaves[i].requires_grad_(true);
    wrt.push_back(leaves[i]);
  }
  auto y = f(leaves);
  ASSERT_EQ(y.numel(), 1);
  auto grads = torch::autograd::grad({y}, wrt, {}, false, false, /*allow_unused=*/true);
  torch::NoGradGuard no_grad;
  for (size_t w = 0; w < which.size(); ++w) {
    std::vector<torch::Tensor> probe;
    for (auto& x : leaves) probe.push_back(x.detach().clone());
    auto& x = probe[which[w]];
    auto flat = x.view({-1});
    auto analytic = grads[w].defined() ? grads[w].reshape({-1}) : torch::zeros_like(flat);
    for (int64_t e = 0; e < flat.numel(); ++e) {
      const double orig = flat[e].item<double>();
      flat[e] = orig + eps;
      const double up = f(probe).item<double>();
      flat[e] = orig - eps;
      const double down = f(probe).item<double>();
      flat[e] = orig;
      const double numeric = (up - down) / (2 * eps);
      EXPECT_NEAR(analytic[e].item<double>(), numeric, tol * std::max(1.0, std::abs(numeric)))
          << "input " << which[w] << ", element " << e;
    }
  }
}

}  // namespace mgd::testing
