// The box parametrization RetinaNet regresses (R-CNN's, Girshick et al. 2014, appendix C):
// a target box relative to an anchor of width w, height h and centre (x, y) is
//
//   dx = wx * (x' - x) / w     dy = wy * (y' - y) / h
//   dw = ww * log(w' / w)      dh = wh * log(h' / h)
//
// with widths x2 - x1 (no "+ 1", as torchvision's BoxCoder and Detectron2's
// Box2BoxTransform). decode() inverts it, clamping dw and dh at `scale_clamp` first so a
// wild prediction cannot overflow exp(). Both are tensor expressions in torchvision's
// operation order (BoxCoder.encode_single / decode_single), so values agree to the bit and
// gradients flow through decode (for IoU-type box losses).
#pragma once

#include <torch/arg.h>
#include <torch/types.h>

#include <cmath>
#include <vector>

namespace mgd::detection {

struct BoxCoderOptions {
  /// Weights (wx, wy, ww, wh) of the four deltas; RetinaNet uses 1 for all (both libraries).
  TORCH_ARG(std::vector<double>, weights) = std::vector<double>(4, 1.0);
  /// Upper bound of dw and dh before exp() in decode(): log(1000 / 16), both libraries.
  TORCH_ARG(double, scale_clamp) = std::log(1000.0 / 16.0);
};

class BoxCoder {
 public:
  /// Checks the options: four finite, non-zero weights.
  explicit BoxCoder(BoxCoderOptions options = {});

  /// Deltas (N x 4) that take `anchors` (N x 4, xyxy) to `targets` (N x 4, xyxy).
  torch::Tensor encode(const torch::Tensor& targets, const torch::Tensor& anchors) const;

  /// Boxes (N x 4k, xyxy) that `deltas` (N x 4k: k sets of (dx, dy, dw, dh)) make of
  /// `anchors` (N x 4), computed in the deltas' dtype.
  torch::Tensor decode(const torch::Tensor& deltas, const torch::Tensor& anchors) const;

  const BoxCoderOptions& options() const { return options_; }

 private:
  BoxCoderOptions options_;
};

}  // namespace mgd::detection
