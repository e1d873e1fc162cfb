// RetinaNet's classification and box regression heads (Lin et al., "Focal Loss for Dense
// Object Detection", ICCV 2017, section 4 and figure 3).
//
// Each head is a tower of `num_convs` 3x3 convs (with bias) + ReLU, then a 3x3 predictor,
// shared across the pyramid levels: num_anchors * num_classes logits or num_anchors * 4 box
// deltas per location. Initialization as in the paper: every conv N(0, 0.01) with zero bias,
// except the classifier's bias -log((1 - pi) / pi) (prior probability pi = 0.01), so every
// anchor starts as background with confidence ~0.99 and the focal loss does not explode on
// the first iterations.
//
// Outputs per level are laid out as torchvision's and Detectron2's: B x (H * W * A) x K (and
// x 4), anchor index ((y * W) + x) * A + a, i.e. the conv's (A * K) channels viewed as A x K
// and moved last. Parameter names are torchvision 0.14's: conv.<i>.0.{weight,bias},
// cls_logits.*, bbox_reg.*.
//
// The smallest levels (RetinaNetHeadOptions::packed_level_area) go through the towers together,
// side by side in one map with zero gaps: the same outputs and gradients as one convolution per
// level, for fewer, larger convolutions (on the CPU a convolution's backward pass has a large
// fixed cost).
#pragma once

#include <torch/arg.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/pimpl.h>
#include <torch/types.h>

#include <utility>
#include <vector>

namespace mgd::detection {

struct RetinaNetHeadOptions {
  RetinaNetHeadOptions(int64_t in_channels, int64_t num_classes)
      : in_channels_(in_channels), num_classes_(num_classes) {}
  /// Channels of every input level (the FPN's out_channels); also the towers' width.
  TORCH_ARG(int64_t, in_channels);
  /// Object classes K (no background class: one sigmoid per class).
  TORCH_ARG(int64_t, num_classes);
  /// Anchors A per location (3 sizes x 3 aspect ratios).
  TORCH_ARG(int64_t, num_anchors) = 9;
  /// 3x3 convs + ReLU in each tower.
  TORCH_ARG(int64_t, num_convs) = 4;
  /// The initial foreground probability of every anchor (sets the classifier's bias).
  TORCH_ARG(double, prior_probability) = 0.01;
  /// Levels of at most this many locations (H x W), the last ones, go through each conv
  /// together: side by side in one zero-separated map (zero again after every conv), which
  /// computes exactly what one conv per level does, with one weight gradient instead of one
  /// per level (oneDNN's backward pass of a 256-channel 3x3 conv costs milliseconds however
  /// small the map). 0: one conv per level.
  TORCH_ARG(int64_t, packed_level_area) = 16;
};

namespace detail {

/// Where the small levels sit in the map they share (pack_small_levels).
struct LevelPacking {
  struct Place {
    int64_t y, x, h, w;
  };
  int64_t first = 0;  ///< levels [first, L) are packed, in order; first == L: none
  int64_t height = 0, width = 0;
  std::vector<Place> places;  ///< one per packed level
  torch::Tensor mask;         ///< 1 x 1 x height x width: 1 on the levels, 0 in the gaps
};

/// The trailing levels of at most `max_area` locations, when there are two or more, in columns
/// with one zero row or column between any two levels.
LevelPacking pack_small_levels(const std::vector<torch::Tensor>& features, int64_t max_area);

/// The packed levels copied into one zero B x C x height x width map.
torch::Tensor pack(const std::vector<torch::Tensor>& features, const LevelPacking& packing);

/// A tower of 3x3 convs + ReLU and a 3x3 predictor of `per_anchor` values per anchor,
/// registered as conv.<i>.0 and `predictor_name`.
class RetinaNetTowerImpl : public torch::nn::Module {
 public:
  RetinaNetTowerImpl(const RetinaNetHeadOptions& options, int64_t per_anchor,
                     const std::string& predictor_name, double predictor_bias);
  /// Per level: B x (H * W * A) x per_anchor.
  std::vector<torch::Tensor> forward(const std::vector<torch::Tensor>& features);

 private:
  int64_t per_anchor_, packed_level_area_;
  std::vector<torch::nn::Conv2d> convs_;
  torch::nn::Conv2d predictor_{nullptr};
};
TORCH_MODULE(RetinaNetTower);
}  // namespace detail

/// Both heads, registered as classification_head and regression_head.
class RetinaNetHeadImpl : public torch::nn::Module {
 public:
  explicit RetinaNetHeadImpl(RetinaNetHeadOptions options);
  /// Per level: (B x HWA x K class logits, B x HWA x 4 box deltas).
  std::pair<std::vector<torch::Tensor>, std::vector<torch::Tensor>> forward(
      const std::vector<torch::Tensor>& features);

  RetinaNetHeadOptions options;
  detail::RetinaNetTower classification_head{nullptr}, regression_head{nullptr};
};
TORCH_MODULE(RetinaNetHead);

}  // namespace mgd::detection
