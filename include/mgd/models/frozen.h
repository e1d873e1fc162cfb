// A frozen network's forward at inference speed (FeatureNetImpl::extract_frozen).
//
// A teacher never changes during a run and needs no graph, so its forward can run as an
// inference program: every BatchNorm that directly follows a convolution folded into it
// (weights scaled, a bias added; a pre-activation network's other BatchNorms stay), the
// activations kept from the input to the taps in the layout that network runs fastest in,
// measured per network (FrozenLayout): channels-last with its stride-1 3x3 convolutions as
// Winograd ones (models/winograd.h) for ResNets of basic blocks and WideResNets on AVX2 CPUs,
// oneDNN's blocked layout otherwise, under LibTorch's inference mode. Only the maps a
// distiller reads are converted back to ordinary tensors, outside inference mode, so autograd may
// save them.
//
// The program is a cache, never part of the module's state: checkpoints and exports hold the
// original weights, the margins still come from the original BatchNorms, and the program is
// rebuilt whenever any parameter or buffer of the network is replaced or changed in place
// (checkpoint loading, an optimizer step). Where it does not apply (training mode, CUDA,
// doubles, GroupNorm, a LibTorch without oneDNN) extract_frozen is extract under a no-grad
// guard.
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/conv.h>
#include <torch/types.h>

#include <cstdint>
#include <utility>
#include <vector>

#include "mgd/models/winograd.h"

namespace mgd::models::detail {

class Norm;

/// Where a frozen program keeps its activations between layers.
enum class FrozenLayout {
  kBlocked,       ///< oneDNN's blocked layout (opaque tensors): no reorder per layer
  kChannelsLast,  ///< ordinary NHWC tensors
};

/// The layout a program uses: MGD_FROZEN_LAYOUT ("blocked" or "channels_last") when set,
/// else the network's `preferred` one.
FrozenLayout frozen_layout(FrozenLayout preferred);

/// The layout for a network whose convolutions are mostly stride-1 3x3 ones: channels-last
/// where those run as Winograd convolutions (models/winograd.h), else oneDNN's blocked one.
FrozenLayout winograd_or_blocked();

/// A B x C x H x W input in the program's layout.
torch::Tensor to_frozen_layout(const torch::Tensor& x, FrozenLayout layout);

/// A map a program made under inference mode, as an ordinary contiguous NCHW tensor; called
/// outside inference mode (autograd may then save the result).
torch::Tensor from_frozen_layout(const torch::Tensor& x);

/// Whether a network's frozen program may run on this input: the network in eval mode, the
/// input a 4-D float CPU tensor, LibTorch built with oneDNN, MGD_FROZEN_PROGRAM not "0".
bool frozen_program_applies(const torch::nn::Module& net, const torch::Tensor& input);

/// The per-channel (scale, shift) of a BatchNorm or FrozenBatchNorm in eval mode:
/// norm(x) = x * scale + shift. Throws for other norms.
std::pair<torch::Tensor, torch::Tensor> eval_scale_shift(const Norm& norm);

/// A convolution with, optionally, the norm that follows it folded in, its weights prepared
/// once for the layout (reordered for oneDNN, or NHWC; in channels-last programs a stride-1
/// 3x3 convolution runs as a WinogradConv where that applies). For the zoo's convolutions:
/// zero padding of (kernel - 1) / 2.
class FoldedConv {
 public:
  FoldedConv() = default;
  /// `norm` may be null: the convolution alone.
  FoldedConv(const torch::nn::Conv2d& conv, const Norm* norm, FrozenLayout layout);
  /// A convolution followed by BatchNorm2d `bn` (eval statistics).
  FoldedConv(const torch::nn::Conv2d& conv, const torch::nn::BatchNorm2d& bn, FrozenLayout layout);
  /// x in the layout the weights were prepared for.
  torch::Tensor operator()(const torch::Tensor& x) const;
  /// conv(x) (+ residual), then ReLU when `relu`; `residual` (may be undefined) in the same
  /// layout. One pass over the output where the convolution is a Winograd one.
  torch::Tensor forward(const torch::Tensor& x, bool relu, const torch::Tensor& residual) const;
  bool defined() const { return weight_.defined(); }
  /// Whether it runs as a Winograd convolution.
  bool winograd() const { return winograd_.defined(); }

 private:
  void build(const torch::nn::Conv2d& conv, const torch::Tensor& scale, const torch::Tensor& shift,
             FrozenLayout layout);
  torch::Tensor weight_, bias_;
  std::vector<int64_t> stride_, padding_, dilation_;
  int64_t groups_ = 1;
  WinogradConv winograd_;
};

/// A BatchNorm2d in eval mode over a program's tensors (a pre-activation network's norms,
/// which no convolution directly precedes).
class FrozenBatchNormOp {
 public:
  FrozenBatchNormOp() = default;
  explicit FrozenBatchNormOp(const torch::nn::BatchNorm2d& bn);
  torch::Tensor operator()(const torch::Tensor& x) const;

 private:
  torch::Tensor weight_, bias_, mean_, var_;
  double eps_ = 1e-5;
};

/// Identity of a module's weights: every parameter and buffer's storage and version counter.
/// Changes when a tensor is replaced, or modified in place (load_state_dict copies, an
/// optimizer step).
class WeightsVersion {
 public:
  /// True (and the recorded version updated) when `module`'s weights differ from the last
  /// recorded ones, or nothing was recorded yet.
  bool update(const torch::nn::Module& module);
  /// Whether every floating-point weight was finite at the last change: oneDNN's ReLU maps
  /// NaN to 0, so a network with a non-finite weight must take its unfolded path.
  bool finite() const { return finite_; }

 private:
  std::vector<std::pair<const void*, uint32_t>> seen_;
  bool finite_ = true;
};

}  // namespace mgd::models::detail
