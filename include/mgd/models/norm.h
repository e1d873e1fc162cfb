// Normalization layers for detection backbones.
//
// A detector trains on a few images per device, too few for BatchNorm's batch statistics;
// its ImageNet-trained backbone therefore keeps the classifier's normalization as a fixed
// per-channel affine map (FrozenBatchNorm2d: the checkpoint's gamma, beta, mean and variance,
// none of them trained), as torchvision's and Detectron2's detection backbones do. Its state
// has torchvision's names (weight, bias, running_mean, running_var, all buffers, no
// num_batches_tracked), so a torchvision detector's backbone loads into it and back.
#pragma once

#include <torch/arg.h>
#include <torch/nn/cloneable.h>
#include <torch/nn/pimpl.h>
#include <torch/types.h>

#include <ostream>

namespace mgd {
namespace functional {

/// y = x * scale + shift per channel of a N x C x ... input, with scale = weight /
/// sqrt(running_var + eps) and shift = bias - running_mean * scale (torchvision 0.14's
/// formula and operation order, so outputs agree to the last bit on the same device).
torch::Tensor frozen_batch_norm(const torch::Tensor& input, const torch::Tensor& weight,
                                const torch::Tensor& bias, const torch::Tensor& running_mean,
                                const torch::Tensor& running_var, double eps);

}  // namespace functional

namespace models {

struct FrozenBatchNorm2dOptions {
  /* implicit */ FrozenBatchNorm2dOptions(int64_t num_features) : num_features_(num_features) {}
  /// Channels C of the N x C x H x W input.
  TORCH_ARG(int64_t, num_features);
  /// Added to the variance; torchvision's and Detectron2's default.
  TORCH_ARG(double, eps) = 1e-5;
};

/// BatchNorm2d with its affine parameters and statistics fixed: four buffers, no parameters,
/// the same output in train and eval mode.
class FrozenBatchNorm2dImpl : public torch::nn::Cloneable<FrozenBatchNorm2dImpl> {
 public:
  explicit FrozenBatchNorm2dImpl(const FrozenBatchNorm2dOptions& options);
  void reset() override;
  void pretty_print(std::ostream& stream) const override;
  torch::Tensor forward(const torch::Tensor& input);

  FrozenBatchNorm2dOptions options;
  torch::Tensor weight, bias, running_mean, running_var;  ///< buffers, C values each
};
TORCH_MODULE(FrozenBatchNorm2d);

}  // namespace models
}  // namespace mgd
