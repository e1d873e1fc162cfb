#include "mgd/margins/margins.h"

#include <c10/util/Exception.h>
#include <torch/torch.h>

#include <cmath>
#include <vector>

namespace mgd {
namespace {

constexpr double kTailThreshold = 0.001;  // spec 2: below this, margin = -3 sigma
constexpr double kInvSqrt2Pi = 0.39894228040143267794;

double normal_pdf(double x) {
  return kInvSqrt2Pi * std::exp(-0.5 * x * x);
}
double normal_cdf(double x) {
  return 0.5 * std::erfc(-x / std::sqrt(2.0));
}

}  // namespace

double channel_margin(double mean, double std) {
  TORCH_CHECK(std::isfinite(mean) && std::isfinite(std),
              "channel_margin: expected finite BatchNorm parameters, got bias (mean) ", mean,
              " and weight (std) ", std);
  const double sigma = std::abs(std);
  if (sigma == 0.0) return mean < 0.0 ? mean : 0.0;
  const double z = mean / sigma;
  const double tail = normal_cdf(-z);
  if (tail > kTailThreshold) return mean - sigma * normal_pdf(z) / tail;
  return -3.0 * sigma;
}

torch::Tensor margins_from_bn(const torch::Tensor& weight, const torch::Tensor& bias) {
  TORCH_CHECK(weight.defined() && bias.defined(),
              "margins_from_bn: the BatchNorm needs affine weight and bias");
  TORCH_CHECK(weight.dim() == 1 && bias.dim() == 1 && weight.numel() == bias.numel(),
              "margins_from_bn: expected 1-D weight and bias of equal length, got ", weight.sizes(),
              " and ", bias.sizes());
  auto w = weight.detach().to(torch::kCPU, torch::kDouble).contiguous();
  auto b = bias.detach().to(torch::kCPU, torch::kDouble).contiguous();
  const double* wp = w.data_ptr<double>();
  const double* bp = b.data_ptr<double>();
  std::vector<float> out(static_cast<size_t>(w.numel()));
  for (int64_t c = 0; c < w.numel(); ++c) {
    TORCH_CHECK(std::isfinite(wp[c]) && std::isfinite(bp[c]), "margins_from_bn: channel ", c,
                " has a non-finite BatchNorm parameter (weight ", wp[c], ", bias ", bp[c], ")");
    out[c] = static_cast<float>(channel_margin(bp[c], wp[c]));
  }
  return torch::tensor(out, torch::TensorOptions().dtype(torch::kFloat)).to(weight.device());
}

}  // namespace mgd
