// The feature interface a network implements to be distilled (MGD spec section 1).
//
// A distillable network computes, in ONE forward pass, at each of its n distillation
// positions the feature map before its final activation and after it, and its logits when it
// is a classifier (a detector, or a contrastive encoder, has none: logits stay undefined). It
// also exposes the affine (gamma, beta) of the norm producing each pre-activation map -- a
// BatchNorm, a FrozenBatchNorm, a GroupNorm: the distiller computes a teacher's margins from
// it (spec 2) -- and each position's channel count.
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/types.h>

#include <vector>

namespace mgd {

/// Everything one forward pass of a distillable network produces.
struct Features {
  std::vector<torch::Tensor> pre_relu;   ///< per position, B x C_i x H_i x W_i
  std::vector<torch::Tensor> post_relu;  ///< per position, the map after its activation
  torch::Tensor logits;                  ///< B x classes; undefined for a network without
};

/// The affine of the norm producing a position's pre-activation map. Undefined tensors: the
/// position has no such norm (an FPN level), so it cannot be a teacher's distilled position.
struct NormAffine {
  torch::Tensor weight;  ///< gamma, C values
  torch::Tensor bias;    ///< beta, C values
};

class FeatureNetImpl : public torch::nn::Module {
 public:
  /// One forward pass: features at every position (and the logits of a classifier).
  virtual Features extract(const torch::Tensor& input) = 0;
  /// The norm affine of each position, one per position. A teacher's must have the
  /// position's channel count (its margins come from it, spec 2). By default from
  /// feature_norms().
  virtual std::vector<NormAffine> feature_affines();
  /// For networks built of torch::nn::BatchNorm2d: the BatchNorm producing each position's
  /// pre-ReLU map. A network overriding feature_affines() need not provide it.
  virtual std::vector<torch::nn::BatchNorm2d> feature_norms() { return {}; }

  /// Channel count of each position; by default derived from feature_affines(). A network
  /// whose pre-ReLU map is not the output of one norm (ShuffleNet-V2) overrides it.
  virtual std::vector<int64_t> feature_channels();
  /// The forward of a frozen network (a teacher; a student's tracking pass): no graph, the
  /// same maps and logits as extract() in eval mode, to float rounding. A network may run it
  /// faster (the zoo's ResNets and WRNs: BatchNorm folded, oneDNN's layout, inference mode;
  /// see models/frozen.h); by default extract() under a no-grad guard. The returned tensors
  /// are ordinary ones (not inference tensors): autograd may save them.
  virtual Features extract_frozen(const torch::Tensor& input);
  /// The logits alone.
  torch::Tensor forward(const torch::Tensor& input) { return extract(input).logits; }
};

/// Shared-ownership handle, so teachers and students of any concrete type can be passed
/// around (a TORCH_MODULE holder of a concrete network converts to it).
using FeatureNet = std::shared_ptr<FeatureNetImpl>;

}  // namespace mgd
