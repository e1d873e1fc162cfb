// Anchor labelling for training: each anchor takes the ground-truth box it overlaps most,
// if that IoU is >= high_threshold; below low_threshold it is background; in between it is
// ignored by the losses. With allow_low_quality_matches, every ground-truth box also claims
// the anchors of its own highest IoU (all of them on ties), however low, so that no object
// goes without an anchor (Ren et al., Faster R-CNN; RetinaNet keeps this rule).
//
// Equal to torchvision's Matcher and to Detectron2's Matcher([0.4, 0.5], [0, -1, 1],
// allow_low_quality_matches=True) as RetinaNet uses them, with the same codes; unlike
// torchvision, an image without ground truth is fine (every anchor is background).
#pragma once

#include <torch/arg.h>
#include <torch/types.h>

#include <cstdint>

namespace mgd::detection {

/// Match code of an anchor whose best IoU is below low_threshold (background).
constexpr int64_t kBelowLowThreshold = -1;
/// Match code of an anchor whose best IoU is in [low_threshold, high_threshold) (ignored).
constexpr int64_t kBetweenThresholds = -2;

struct MatcherOptions {
  /// IoU from which an anchor is foreground (RetinaNet: 0.5).
  TORCH_ARG(double, high_threshold) = 0.5;
  /// IoU below which an anchor is background (RetinaNet: 0.4).
  TORCH_ARG(double, low_threshold) = 0.4;
  /// Each ground-truth box also takes its best anchors, whatever their IoU (RetinaNet: on).
  TORCH_ARG(bool, allow_low_quality_matches) = true;
};

/// Labels anchors from `iou` (G ground-truth boxes x N anchors, e.g. box_iou(gt, anchors)):
/// N int64 values, the matched ground-truth index in [0, G), kBelowLowThreshold or
/// kBetweenThresholds. G = 0 gives N times kBelowLowThreshold.
torch::Tensor match(const torch::Tensor& iou, const MatcherOptions& options = {});

}  // namespace mgd::detection
