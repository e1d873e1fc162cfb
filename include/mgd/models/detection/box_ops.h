// Box geometry for detection: areas, pairwise IoU and clipping of axis-aligned boxes in
// (x1, y1, x2, y2) corner form ("xyxy", pixels, x2 > x1 and y2 > y1 for a proper box).
//
// The formulas and their operation order are torchvision's (torchvision.ops.box_area,
// box_iou, clip_boxes_to_image), so the IoU matrix is the same to the last bit: the anchor
// matcher compares it against thresholds, and a rounding difference there would flip labels.
// Degenerate boxes (zero area) give IoU 0 against others and NaN (0 / 0) against each other,
// as torchvision's. Integer boxes are computed in int64; half precision in float.
#pragma once

#include <torch/types.h>

#include <cstdint>

namespace mgd::detection {

/// Areas (x2 - x1) * (y2 - y1) of N x 4 boxes: a tensor of N values.
torch::Tensor box_area(const torch::Tensor& boxes);

/// Pairwise intersection over union of `a` (N x 4) and `b` (M x 4): N x M, floating point.
torch::Tensor box_iou(const torch::Tensor& a, const torch::Tensor& b);

/// Boxes (... x 4) with x clamped to [0, width] and y to [0, height]; same shape and dtype.
torch::Tensor clip_boxes_to_image(const torch::Tensor& boxes, int64_t height, int64_t width);

}  // namespace mgd::detection
