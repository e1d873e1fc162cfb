#include "mgd/util/matmul.h"

#include <ATen/Context.h>

namespace mgd {
namespace util {
namespace {

// ATen 1.13 picks oneDNN for a float CPU convolution with a 1x1 kernel when the batch has at
// least 16 images or more than one thread runs; 16 rows make the choice independent of the
// thread count.
constexpr int64_t kMinRows = 16;

bool onednn_faster_than_blas() {
  static const bool yes = !at::hasMKL() && at::hasMKLDNN();
  return yes;
}

}  // namespace

bool mm_uses_onednn(const torch::Tensor& a, const torch::Tensor& b) {
  return onednn_faster_than_blas() && a.dim() == 2 && b.dim() == 2 && a.size(1) == b.size(0) &&
         a.device().is_cpu() && b.device().is_cpu() && a.layout() == torch::kStrided &&
         b.layout() == torch::kStrided && a.scalar_type() == torch::kFloat &&
         b.scalar_type() == torch::kFloat && a.size(0) >= kMinRows && a.size(1) >= 1 &&
         b.size(1) >= 1;
}

torch::Tensor mm(const torch::Tensor& a, const torch::Tensor& b) {
  if (!mm_uses_onednn(a, b)) return torch::mm(a, b);
  const int64_t m = a.size(0), k = a.size(1), n = b.size(1);
  // b^T is N x K: the filters. reshape copies only when b^T is not contiguous.
  auto out = torch::conv2d(a.reshape({m, k, 1, 1}), b.t().reshape({n, k, 1, 1}));
  return out.reshape({m, n});
}

torch::Tensor linear(const torch::Tensor& x, const torch::Tensor& weight,
                     const torch::Tensor& bias) {
  if (x.dim() != 2 || !mm_uses_onednn(x, weight.t())) {
    return torch::nn::functional::linear(x, weight, bias);
  }
  const int64_t m = x.size(0), k = x.size(1), n = weight.size(0);
  auto out = torch::conv2d(x.reshape({m, k, 1, 1}), weight.reshape({n, k, 1, 1}), bias);
  return out.reshape({m, n});
}

}  // namespace util
}  // namespace mgd
