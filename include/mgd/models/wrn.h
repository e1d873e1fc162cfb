// Wide ResNets WRN-d-w (Zagoruyko & Komodakis 2016) for 28-32 px inputs, with the parameter
// names of the distillation literature's code (CRD/RepDistiller: conv1, block<i>.layer.<j>,
// bn1, fc) and MGD feature taps (spec 1).
//
// WRN blocks are pre-activation: the ReLU that follows a stage's output sits inside the next
// block (after its bn1) or after the final bn1. Positions are therefore, as in OFD/MGD's
// code, the output of each stage passed through that following BatchNorm (block2's and
// block3's first bn1, then the final bn1), before its ReLU; the blocks reuse that BN output
// instead of computing it again.
#pragma once

#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>

#include <vector>

#include "mgd/distiller/feature_net.h"
#include "mgd/models/frozen.h"
#include "mgd/models/options.h"

namespace mgd::models {

namespace detail {
/// A wide block as a frozen program (models/frozen.h): bn2 folded into conv1; bn1, which
/// follows the previous block's sum, stays a BatchNorm (on oneDNN tensors).
struct FrozenWideBlock {
  FrozenBatchNormOp bn1;
  FoldedConv conv1, conv2, shortcut;
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& act) const;
};
struct FrozenWideResNet;

class WideBlockImpl : public torch::nn::Module {
 public:
  WideBlockImpl(int64_t in, int64_t out, int64_t stride);
  /// The block's output from its input `x` and `act` = relu(bn1(x)).
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& act);
  /// The block for a frozen program (eval statistics).
  FrozenWideBlock frozen(FrozenLayout layout) const;
  torch::nn::BatchNorm2d bn1{nullptr};

 private:
  torch::nn::Conv2d conv1_{nullptr}, conv2_{nullptr}, shortcut_{nullptr};
  torch::nn::BatchNorm2d bn2_{nullptr};
};
TORCH_MODULE(WideBlock);
}  // namespace detail

class WideResNetImpl : public FeatureNetImpl {
 public:
  WideResNetImpl(int64_t depth, int64_t widen_factor, const ModelOptions& options = {});
  Features extract(const torch::Tensor& input) override;
  /// BatchNorm folded where a convolution precedes it, oneDNN layout, inference mode where
  /// it applies (models/frozen.h).
  Features extract_frozen(const torch::Tensor& input) override;
  std::vector<torch::nn::BatchNorm2d> feature_norms() override;

 private:
  torch::nn::Conv2d conv1_{nullptr};
  std::vector<std::vector<detail::WideBlock>> stages_;
  torch::nn::BatchNorm2d bn1_{nullptr};
  torch::nn::Linear fc_{nullptr};
  // The frozen program: a cache rebuilt when the weights change, never in the state.
  std::shared_ptr<detail::FrozenWideResNet> frozen_;
  detail::WeightsVersion frozen_version_;
};
TORCH_MODULE(WideResNet);

WideResNet wrn_16_2(const ModelOptions& options = {});
WideResNet wrn_40_2(const ModelOptions& options = {});

}  // namespace mgd::models
