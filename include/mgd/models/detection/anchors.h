// Anchor boxes of a RetinaNet-FPN: at every location of every pyramid level, A boxes
// (sizes x aspect ratios, aspect = height / width) centred on the location's corner (plus
// `offset` strides), in image pixels, xyxy.
//
// Per level the result is (H * W * A) x 4, location-major (row by row) and anchor-minor:
// row (y * W + x) * A + a, the order in which the heads' outputs are flattened. Two styles,
// which differ in more than rounding, so a checkpoint's head must be paired with its own:
//
//   "detectron2" (DefaultAnchorGenerator, mgd's default): fixed strides per level
//       (options.strides), cell anchors w = sqrt(size^2 / ratio), h = ratio * w computed in
//       double and not rounded, anchor a = size_index * ratios + ratio_index (size-major);
//   "torchvision" (AnchorGenerator): stride per level = padded image size // feature size
//       (per axis, integer division), cell anchors computed in float and rounded to integers
//       (round half to even), anchor a = ratio_index * sizes + size_index (ratio-major), and
//       torchvision's RetinaNet sizes are int(s * 2^(k/3)) (AnchorOptions::torchvision()).
//
// Example, the anchors of a 2-image batch padded to 800 x 1216 (P3..P7: 100x152 ... 7x10):
//
//   auto anchors = make_anchors(AnchorOptions(), {{100, 152}, {50, 76}, {25, 38}, {13, 19},
//                                                 {7, 10}}, {800, 1216});
#pragma once

#include <torch/arg.h>
#include <torch/types.h>

#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace mgd::detection {

struct AnchorOptions {
  /// Detectron2's RetinaNet sizes (the default of `sizes`).
  static std::vector<std::vector<double>> detectron2_sizes();
  /// torchvision's retinanet_resnet50_fpn anchors: sizes (s, int(s 2^(1/3)), int(s 2^(2/3)))
  /// for s = 32 .. 512, ratios 0.5, 1, 2, style "torchvision".
  static AnchorOptions torchvision();

  /// Anchor sizes (sqrt of the area, pixels) per level: Detectron2's RetinaNet,
  /// {s, s * 2^(1/3), s * 2^(2/3)} for s = 32, 64, 128, 256, 512 on P3..P7.
  TORCH_ARG(std::vector<std::vector<double>>, sizes) = detectron2_sizes();
  /// Aspect ratios (height / width), the same on every level.
  TORCH_ARG(std::vector<double>, aspect_ratios) = std::vector<double>{0.5, 1.0, 2.0};
  /// Stride (pixels) per level, "detectron2" style only: P3..P7.
  TORCH_ARG(std::vector<int64_t>, strides) = std::vector<int64_t>{8, 16, 32, 64, 128};
  /// Centre of a location's anchors, in strides from its top-left corner: Detectron2's
  /// RetinaNet uses 0.0 (torchvision has no offset: keep 0 in that style).
  TORCH_ARG(double, offset) = 0.0;
  /// "detectron2" or "torchvision" (see the file comment).
  TORCH_ARG(std::string, style) = "detectron2";
};

/// A: anchors per location (sizes of one level x aspect ratios; every level must agree).
int64_t anchors_per_location(const AnchorOptions& options);

/// The A x 4 anchors of level `level` centred on (0, 0), in the style's order and precision.
torch::Tensor cell_anchors(const AnchorOptions& options, size_t level);

/// Anchors per level for feature maps of `feature_sizes` ({H, W} per level, finest first) of
/// a batch padded to `padded_image_size` ({H, W}; used by the "torchvision" style's
/// strides). Each level is (H * W * A) x 4 with `tensor_options` (float32 on the CPU by
/// default).
std::vector<torch::Tensor> make_anchors(const AnchorOptions& options,
                                        const std::vector<std::array<int64_t, 2>>& feature_sizes,
                                        std::array<int64_t, 2> padded_image_size,
                                        torch::TensorOptions tensor_options = torch::kFloat);

}  // namespace mgd::detection
