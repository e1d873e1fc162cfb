// ResNets with MGD feature taps (spec 1).
//
// ImageNet ResNet-18/34/50/101/152 (He et al. 2016) with torchvision's parameter names, and
// the CIFAR-style ResNets of the distillation literature (resnet20/56, resnet8x4/32x4 as in
// CRD/RepDistiller: 3x3 stem, three stages) for 28-32 px inputs. Distillation positions: the
// output of each stage, before and after its final ReLU; the BatchNorm before that ReLU is
// the last block's last BN (bn2 for basic blocks, bn3 for bottlenecks), as in the reference.
#pragma once

#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>

#include <vector>

#include "mgd/distiller/feature_net.h"
#include "mgd/models/options.h"

namespace mgd::models {

struct ResNetConfig {
  bool bottleneck = false;      ///< bottleneck blocks (expansion 4) or basic blocks
  std::vector<int64_t> blocks;  ///< blocks per stage
  std::vector<int64_t> widths;  ///< base width of each stage (output: width * expansion)
  int64_t stem_width = 64;      ///< channels of the stem convolution
  bool imagenet_stem = true;    ///< 7x7/2 conv + 3x3/2 max pool; else 3x3/1 conv
};

namespace detail {
/// A basic (two 3x3 convs) or bottleneck (1x1, 3x3, 1x1) residual block.
class ResidualBlockImpl : public torch::nn::Module {
 public:
  ResidualBlockImpl(int64_t in, int64_t planes, int64_t stride, bool bottleneck);
  /// The block's output before its final ReLU.
  torch::Tensor forward_pre(const torch::Tensor& x);
  torch::Tensor forward(const torch::Tensor& x) { return torch::relu(forward_pre(x)); }
  /// The BatchNorm whose output (plus the shortcut) feeds the final ReLU.
  torch::nn::BatchNorm2d last_norm() const { return bottleneck_ ? bn3_ : bn2_; }
  int64_t out_channels() const { return out_channels_; }

 private:
  bool bottleneck_;
  int64_t out_channels_;
  torch::nn::Conv2d conv1_{nullptr}, conv2_{nullptr}, conv3_{nullptr}, down_conv_{nullptr};
  torch::nn::BatchNorm2d bn1_{nullptr}, bn2_{nullptr}, bn3_{nullptr}, down_bn_{nullptr};
};
TORCH_MODULE(ResidualBlock);
}  // namespace detail

class ResNetImpl : public FeatureNetImpl {
 public:
  ResNetImpl(const ResNetConfig& config, const ModelOptions& options = {});
  Features extract(const torch::Tensor& input) override;
  std::vector<torch::nn::BatchNorm2d> feature_norms() override;

 private:
  ResNetConfig config_;
  torch::nn::Conv2d conv1_{nullptr};
  torch::nn::BatchNorm2d bn1_{nullptr};
  std::vector<std::vector<detail::ResidualBlock>> stages_;
  torch::nn::Linear fc_{nullptr};
};
TORCH_MODULE(ResNet);

ResNet resnet18(const ModelOptions& options = {});
ResNet resnet34(const ModelOptions& options = {});
ResNet resnet50(const ModelOptions& options = {});
ResNet resnet101(const ModelOptions& options = {});
ResNet resnet152(const ModelOptions& options = {});
/// CIFAR-style: depth 6n+2, widths 16/32/64.
ResNet resnet20(const ModelOptions& options = {});
ResNet resnet56(const ModelOptions& options = {});
/// CIFAR-style, four times wider: widths 64/128/256 after a 32-channel stem.
ResNet resnet8x4(const ModelOptions& options = {});
ResNet resnet32x4(const ModelOptions& options = {});

}  // namespace mgd::models
