// ResNets with MGD feature taps (spec 1).
//
// ImageNet ResNet-18/34/50/101/152 (He et al. 2016) with torchvision's parameter names, and
// the CIFAR-style ResNets of the distillation literature (resnet20/56, resnet8x4/32x4 as in
// CRD/RepDistiller: 3x3 stem, three stages) for 28-32 px inputs. Distillation positions: the
// output of each stage, before and after its final ReLU; the BatchNorm before that ReLU is
// the last block's last BN (bn2 for basic blocks, bn3 for bottlenecks), as in the reference.
//
// The same networks serve as detection backbones (spec A1): norms may be frozen
// (FrozenBatchNorm2d, the checkpoint's affine and statistics kept), the last block of every
// stage may use trainable GroupNorm instead (the MGD student), the first stages may be frozen
// (Detectron2's FREEZE_AT), and the classifier (fc) may be left out. Names stay torchvision's.
#pragma once

#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>

#include <string>
#include <utility>
#include <vector>

#include "mgd/distiller/feature_net.h"
#include "mgd/models/frozen.h"
#include "mgd/models/layers.h"
#include "mgd/models/options.h"

namespace mgd::models {

struct ResNetConfig {
  bool bottleneck = false;      ///< bottleneck blocks (expansion 4) or basic blocks
  std::vector<int64_t> blocks;  ///< blocks per stage
  std::vector<int64_t> widths;  ///< base width of each stage (output: width * expansion)
  int64_t stem_width = 64;      ///< channels of the stem convolution
  bool imagenet_stem = true;    ///< 7x7/2 conv + 3x3/2 max pool; else 3x3/1 conv
  /// Normalization after every convolution: "batch" (trainable BatchNorm2d, statistics
  /// updated in train mode) or "frozen_batch" (FrozenBatchNorm2d: affine and statistics fixed,
  /// as torchvision's and Detectron2's detection backbones).
  std::string norm = "batch";
  /// GroupNorm(group_norm_groups, C), trainable, for every norm of each stage's last block
  /// (the MGD detection student, Detectron2 ENABLE_STAGE_LAST_NORM); names stay bn1/bn2/bn3.
  /// Stages frozen by freeze_at keep `norm`.
  bool group_norm_last_block = false;
  int64_t group_norm_groups = 32;  ///< groups of those GroupNorms
  /// Detectron2's FREEZE_AT: 0 freezes nothing, 1 the stem (conv1, bn1), k >= 2 the stem and
  /// stages 1..k-1 (layer1 ... layer{k-1}); at most the number of stages + 1. Frozen means
  /// requires_grad false on the parameters; a BatchNorm's statistics still move in train mode
  /// (use norm "frozen_batch" to fix them).
  int64_t freeze_at = 0;
  /// Whether the network ends in global average pooling and `fc`; a detection backbone has
  /// neither (Features::logits is then undefined).
  bool classifier = true;
};

/// The configuration of a zoo ResNet by its registry name (resnet18 ... resnet152, resnet20,
/// resnet56, resnet8x4, resnet32x4), with the default norm, nothing frozen and a classifier.
ResNetConfig resnet_config(const std::string& name);

namespace detail {
/// A residual block as a frozen program (models/frozen.h): every norm folded into its conv.
struct FrozenResidualBlock {
  FoldedConv conv1, conv2, conv3, down;  ///< conv3: bottlenecks only; down: when it has one
  /// The block's output before its final ReLU, on oneDNN tensors.
  torch::Tensor forward_pre(const torch::Tensor& x) const;
};
struct FrozenResNet;

/// A basic (two 3x3 convs) or bottleneck (1x1, 3x3, 1x1) residual block.
class ResidualBlockImpl : public torch::nn::Module {
 public:
  /// `norm`: the kind of every norm of the block, see Norm.
  ResidualBlockImpl(int64_t in, int64_t planes, int64_t stride, bool bottleneck,
                    const std::string& norm = "batch", int64_t groups = 32);
  /// The block's output before its final ReLU.
  torch::Tensor forward_pre(const torch::Tensor& x);
  torch::Tensor forward(const torch::Tensor& x) { return torch::relu(forward_pre(x)); }
  /// The BatchNorm whose output (plus the shortcut) feeds the final ReLU; empty when the
  /// block's norms are of another kind (see last_norm_affine()).
  torch::nn::BatchNorm2d last_norm() const { return (bottleneck_ ? bn3_ : bn2_).batch(); }
  /// That norm's (gamma, beta), whatever its kind.
  std::pair<torch::Tensor, torch::Tensor> last_norm_affine() const {
    return (bottleneck_ ? bn3_ : bn2_).affine();
  }
  int64_t out_channels() const { return out_channels_; }
  /// Whether every norm of the block folds into its convolution (no GroupNorm).
  bool foldable() const;
  /// The block with its norms folded in (eval statistics), for a frozen program.
  FrozenResidualBlock frozen(FrozenLayout layout) const;

 private:
  bool bottleneck_;
  int64_t out_channels_;
  torch::nn::Conv2d conv1_{nullptr}, conv2_{nullptr}, conv3_{nullptr}, down_conv_{nullptr};
  Norm bn1_, bn2_, bn3_, down_bn_;
};
TORCH_MODULE(ResidualBlock);
}  // namespace detail

class ResNetImpl : public FeatureNetImpl {
 public:
  ResNetImpl(const ResNetConfig& config, const ModelOptions& options = {});
  Features extract(const torch::Tensor& input) override;
  /// BatchNorm folded, oneDNN layout, inference mode where it applies (models/frozen.h).
  Features extract_frozen(const torch::Tensor& input) override;
  /// The last BatchNorm of each stage. Throws when the network was built with other norms
  /// (use feature_affines()).
  std::vector<torch::nn::BatchNorm2d> feature_norms() override;
  std::vector<int64_t> feature_channels() override;
  /// (gamma, beta) of the norm before each stage's final ReLU, whatever its kind: the
  /// teacher-side margins' source (spec 2, A2).
  std::vector<NormAffine> feature_affines() override;
  const ResNetConfig& config() const { return config_; }

 private:
  ResNetConfig config_;
  torch::nn::Conv2d conv1_{nullptr};
  detail::Norm bn1_;
  std::vector<std::vector<detail::ResidualBlock>> stages_;
  torch::nn::Linear fc_{nullptr};
  // The frozen program: a cache rebuilt when the weights change, never in the state.
  std::shared_ptr<detail::FrozenResNet> frozen_;
  detail::WeightsVersion frozen_version_;
};
TORCH_MODULE(ResNet);

ResNet resnet10(const ModelOptions& options = {});  ///< one block per stage
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
