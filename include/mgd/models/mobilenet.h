// MobileNets with MGD feature taps (spec 1).
//
// MobileNet-V1 with the reference's parameter names (model.<i>.<j>, fc), positions: the
// pointwise BN outputs of blocks 3, 5, 11 and 13 (128, 256, 512, 1024 channels).
//
// MobileNet-V2 with torchvision's parameter names (features.<i>.conv.<j>, classifier.1), in
// two layouts:
//  - torchvision's strides (registry "mobilenet_v2"): positions are the expansion BN outputs
//    of blocks 4, 7, 11 and 17 (144, 192, 384, 960 channels at 1/4, 1/8, 1/16, 1/32 of the
//    input: the spatial sizes of a ResNet's four stages);
//  - the reference's (registry "mobilenet_v2_mgd"): the strides of the 64- and 96-channel
//    stages swapped, positions the depthwise BN outputs of the same blocks, as the authors'
//    code. Its first position is 1/8 of the input, so MGD's recipes ignore it.
// The "ReLU" of MobileNet-V2 is ReLU6; post-ReLU features are relu6 of the pre-ReLU ones.
#pragma once

#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>

#include <vector>

#include "mgd/distiller/feature_net.h"
#include "mgd/models/options.h"

namespace mgd::models {

class MobileNetV1Impl : public FeatureNetImpl {
 public:
  explicit MobileNetV1Impl(const ModelOptions& options = {});
  Features extract(const torch::Tensor& input) override;
  std::vector<torch::nn::BatchNorm2d> feature_norms() override;

 private:
  struct Layer {
    torch::nn::Conv2d conv{nullptr};
    torch::nn::BatchNorm2d bn{nullptr};
  };
  std::vector<std::vector<Layer>> blocks_;  // model.<i>: one (stem) or two (dw, pw) layers
  torch::nn::Linear fc_{nullptr};
};
TORCH_MODULE(MobileNetV1);

namespace detail {
/// conv -> BN (-> ReLU6), registered as <name>.0 and <name>.1 like torchvision's ConvBNReLU.
struct ConvBN {
  torch::nn::Conv2d conv{nullptr};
  torch::nn::BatchNorm2d bn{nullptr};
};

class InvertedResidualImpl : public torch::nn::Module {
 public:
  InvertedResidualImpl(int64_t in, int64_t out, int64_t stride, int64_t expand_ratio);
  /// The block's output; `expand_pre` / `depthwise_pre` receive the BN outputs before ReLU6.
  torch::Tensor forward(const torch::Tensor& x, torch::Tensor* expand_pre = nullptr,
                        torch::Tensor* depthwise_pre = nullptr);
  torch::nn::BatchNorm2d expand_norm() const { return expand_.bn; }
  torch::nn::BatchNorm2d depthwise_norm() const { return depthwise_.bn; }

 private:
  bool residual_;
  ConvBN expand_, depthwise_;  // expand_ is empty when expand_ratio == 1
  torch::nn::Conv2d project_{nullptr};
  torch::nn::BatchNorm2d project_bn_{nullptr};
};
TORCH_MODULE(InvertedResidual);
}  // namespace detail

class MobileNetV2Impl : public FeatureNetImpl {
 public:
  /// `reference_layout`: the MGD authors' strides and depthwise taps (see above).
  explicit MobileNetV2Impl(const ModelOptions& options = {}, bool reference_layout = false);
  Features extract(const torch::Tensor& input) override;
  std::vector<torch::nn::BatchNorm2d> feature_norms() override;

 private:
  bool reference_layout_;
  detail::ConvBN stem_, head_;
  std::vector<detail::InvertedResidual> blocks_;  // features.1 .. features.17
  torch::nn::Linear classifier_{nullptr};
};
TORCH_MODULE(MobileNetV2);

MobileNetV1 mobilenet_v1(const ModelOptions& options = {});
MobileNetV2 mobilenet_v2(const ModelOptions& options = {});
MobileNetV2 mobilenet_v2_mgd(const ModelOptions& options = {});

}  // namespace mgd::models
