// The feature interface a network implements to be distilled (MGD spec section 1).
//
// A distillable network computes, in ONE forward pass, its logits and, at each of its n
// distillation positions, the feature map before its final ReLU and after it. It also
// exposes the BatchNorm that produces each pre-ReLU map: the distiller reads the teacher's
// to compute margins, and the channel count of every position from either network's.
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/types.h>

#include <vector>

namespace mgd {

/// Everything one forward pass of a distillable network produces.
struct Features {
  std::vector<torch::Tensor> pre_relu;   ///< per position, B x C_i x H_i x W_i
  std::vector<torch::Tensor> post_relu;  ///< per position, relu(pre_relu[i])
  torch::Tensor logits;                  ///< B x classes
};

class FeatureNetImpl : public torch::nn::Module {
 public:
  /// One forward pass: features at every position and the logits.
  virtual Features extract(const torch::Tensor& input) = 0;
  /// The BatchNorm producing each position's pre-ReLU map, one per position. A teacher's
  /// must have the position's channel count (its margins come from it, spec 2).
  virtual std::vector<torch::nn::BatchNorm2d> feature_norms() = 0;

  /// Channel count of each position; by default derived from feature_norms(). A network
  /// whose pre-ReLU map is not the output of one BatchNorm (ShuffleNet-V2) overrides it.
  virtual std::vector<int64_t> feature_channels();
  /// The logits alone.
  torch::Tensor forward(const torch::Tensor& input) { return extract(input).logits; }
};

/// Shared-ownership handle, so teachers and students of any concrete type can be passed
/// around (a TORCH_MODULE holder of a concrete network converts to it).
using FeatureNet = std::shared_ptr<FeatureNetImpl>;

}  // namespace mgd
