// ShuffleNet-V2 x0.5 / x1.0 (Ma et al. 2018) with torchvision's parameter names and MGD
// feature taps (spec 1).
//
// Positions: the max-pooled stem (24 channels) and the outputs of stages 2, 3 and 4, before
// their ReLU. A stage's output concatenates an untouched half of its input with a branch
// ending in BN, so the network is run in the reference's pre-activation form (each block
// takes the pre-ReLU map and applies ReLU where torchvision's producer would); that computes
// exactly torchvision's function and exposes the pre-ReLU stage outputs. No single BatchNorm
// produces those maps, so channel counts come from the network, and a ShuffleNet-V2 can be
// a student but not a teacher at positions 1-3 (no margins).
#pragma once

#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>

#include <vector>

#include "mgd/distiller/feature_net.h"
#include "mgd/models/options.h"

namespace mgd::models {

namespace detail {
class ShuffleBlockImpl : public torch::nn::Module {
 public:
  ShuffleBlockImpl(int64_t in, int64_t out, int64_t stride);
  /// Pre-ReLU output from the pre-ReLU input.
  torch::Tensor forward_pre(const torch::Tensor& x_pre);
  torch::nn::BatchNorm2d last_norm() const { return b2_.back().bn; }

 private:
  struct Layer {
    torch::nn::Conv2d conv{nullptr};
    torch::nn::BatchNorm2d bn{nullptr};
    bool relu_after = false;
  };
  torch::Tensor run(std::vector<Layer>& branch, torch::Tensor x);
  int64_t stride_;
  std::vector<Layer> b1_, b2_;
};
TORCH_MODULE(ShuffleBlock);
}  // namespace detail

class ShuffleNetV2Impl : public FeatureNetImpl {
 public:
  /// `stage_channels`: output channels of conv1, stage2, stage3, stage4 and conv5.
  ShuffleNetV2Impl(std::vector<int64_t> stage_channels, const ModelOptions& options = {});
  Features extract(const torch::Tensor& input) override;
  /// conv1's BN, then the last BN of each stage's last branch (half the stage's channels).
  std::vector<torch::nn::BatchNorm2d> feature_norms() override;
  std::vector<int64_t> feature_channels() override;

 private:
  std::vector<int64_t> channels_;
  torch::nn::Conv2d conv1_{nullptr}, conv5_{nullptr};
  torch::nn::BatchNorm2d bn1_{nullptr}, bn5_{nullptr};
  std::vector<std::vector<detail::ShuffleBlock>> stages_;
  torch::nn::Linear fc_{nullptr};
};
TORCH_MODULE(ShuffleNetV2);

ShuffleNetV2 shufflenet_v2_x0_5(const ModelOptions& options = {});
ShuffleNetV2 shufflenet_v2_x1_0(const ModelOptions& options = {});

}  // namespace mgd::models
