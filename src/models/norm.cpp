#include "mgd/models/norm.h"

#include <torch/torch.h>

namespace mgd {
namespace functional {

torch::Tensor frozen_batch_norm(const torch::Tensor& input, const torch::Tensor& weight,
                                const torch::Tensor& bias, const torch::Tensor& running_mean,
                                const torch::Tensor& running_var, double eps) {
  TORCH_CHECK(input.dim() >= 2 && input.size(1) == weight.numel(),
              "frozen_batch_norm: expected an N x ", weight.numel(), " x ... input, got ",
              input.sizes());
  std::vector<int64_t> shape(input.dim(), 1);
  shape[1] = -1;
  const auto scale = weight.reshape(shape) * (running_var.reshape(shape) + eps).rsqrt();
  const auto shift = bias.reshape(shape) - running_mean.reshape(shape) * scale;
  return input * scale + shift;
}

}  // namespace functional

namespace models {

FrozenBatchNorm2dImpl::FrozenBatchNorm2dImpl(const FrozenBatchNorm2dOptions& options_)
    : options(options_) {
  reset();
}

void FrozenBatchNorm2dImpl::reset() {
  TORCH_CHECK(options.num_features() > 0, "FrozenBatchNorm2d: invalid num_features ",
              options.num_features());
  TORCH_CHECK(options.eps() >= 0, "FrozenBatchNorm2d: invalid eps ", options.eps());
  const int64_t c = options.num_features();
  weight = register_buffer("weight", torch::ones({c}));
  bias = register_buffer("bias", torch::zeros({c}));
  running_mean = register_buffer("running_mean", torch::zeros({c}));
  running_var = register_buffer("running_var", torch::ones({c}));
}

void FrozenBatchNorm2dImpl::pretty_print(std::ostream& stream) const {
  stream << "mgd::models::FrozenBatchNorm2d(" << options.num_features() << ", eps=" << options.eps()
         << ")";
}

torch::Tensor FrozenBatchNorm2dImpl::forward(const torch::Tensor& input) {
  TORCH_CHECK(input.dim() == 4, "FrozenBatchNorm2d: expected a 4-d input, got ", input.sizes());
  return functional::frozen_batch_norm(input, weight, bias, running_mean, running_var,
                                       options.eps());
}

}  // namespace models
}  // namespace mgd
