// BatchNorm's statistics and backward on the CPU, for the distiller's fused BatchNorm + margin
// loss (normalized_margin_loss.cpp). ATen 1.13 reduces each channel with a scalar loop, twice
// (mean, then variance): here one vectorized pass of shifted sums in double gives both, and the
// backward's two passes are vectorized as well. Same formulas as ATen's BatchNorm, not the same
// rounding. Not installed.
#pragma once

#include <immintrin.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/types.h>

#include <algorithm>
#include <cstdint>
#include <vector>

namespace mgd {
namespace loss_detail {

inline bool cpu_has_avx2_fma() {
  static const bool yes = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return yes;
}

/// Planes (one image, one channel) per parallel task: about 32 K elements each.
inline int64_t plane_grain(int64_t plane) {
  return std::max<int64_t>(1, 32768 / std::max<int64_t>(plane, 1));
}

__attribute__((target("avx2,fma"))) inline double hsum(__m256d v) {
  double lanes[4];
  _mm256_storeu_pd(lanes, v);
  return (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]);
}

/// Whether `bn` applied to x (and a map of the same device) takes the CPU path: float or
/// double on the CPU, running statistics with a momentum, more than one value per channel.
bool fusable(const torch::nn::BatchNorm2d& bn, const torch::Tensor& x);

/// Per-channel normalizing statistics (double): the batch's in training mode -- and then bn's
/// running mean, variance (unbiased) and batch count are updated as bn->forward does -- the
/// running ones in eval mode. x: B x C x H x W, contiguous.
void normalizing_statistics(torch::nn::BatchNorm2d& bn, const torch::Tensor& x,
                            torch::Tensor* mean, torch::Tensor* invstd);

/// Per channel, alpha = invstd * weight and beta = bias - mean * alpha, as x's dtype.
template <typename T>
void affine_terms(const torch::Tensor& weight, const torch::Tensor& bias, const double* mean,
                  const double* invstd, int64_t channels, std::vector<T>* alpha,
                  std::vector<T>* beta);

/// BatchNorm's backward from dy = scale * dsrc (dsrc contiguous like x): fills the per-channel
/// sums of dy and of dy * (x - mean); returns dL/dx when `grad_x` (undefined otherwise).
/// With `batch_stats` the statistics depended on x (training mode).
torch::Tensor backward(const torch::Tensor& dsrc, double scale, const torch::Tensor& x,
                       const torch::Tensor& weight, const double* mean, const double* invstd,
                       bool batch_stats, bool grad_x, std::vector<double>* sum_dy,
                       std::vector<double>* dot);

/// dL/dweight = dot * invstd and dL/dbias = sum_dy, in the dtype and device of the weight.
torch::Tensor weight_grad(const std::vector<double>& dot, const double* invstd,
                          const torch::Tensor& weight);
torch::Tensor bias_grad(const std::vector<double>& sum_dy, const torch::Tensor& like);

}  // namespace loss_detail
}  // namespace mgd
