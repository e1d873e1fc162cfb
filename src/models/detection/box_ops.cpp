#include "mgd/models/detection/box_ops.h"

namespace mgd::detection {
namespace {

void check_boxes(const torch::Tensor& boxes, const char* name) {
  TORCH_CHECK(boxes.dim() == 2 && boxes.size(1) == 4, "Invalid ", name,
              ": expected an N x 4 tensor of (x1, y1, x2, y2) boxes, got shape ", boxes.sizes());
}

// torchvision's _upcast: products of coordinates must not overflow or lose precision.
torch::Tensor upcast(const torch::Tensor& t) {
  if (t.is_floating_point()) {
    const auto type = t.scalar_type();
    return type == torch::kFloat || type == torch::kDouble ? t : t.to(torch::kFloat);
  }
  const auto type = t.scalar_type();
  return type == torch::kInt || type == torch::kLong ? t : t.to(torch::kInt);
}

}  // namespace

torch::Tensor box_area(const torch::Tensor& boxes) {
  check_boxes(boxes, "boxes");
  const auto b = upcast(boxes);
  return (b.select(1, 2) - b.select(1, 0)) * (b.select(1, 3) - b.select(1, 1));
}

torch::Tensor box_iou(const torch::Tensor& a, const torch::Tensor& b) {
  check_boxes(a, "boxes a");
  check_boxes(b, "boxes b");
  const auto area_a = box_area(a);
  const auto area_b = box_area(b);
  const auto lt = torch::max(a.slice(1, 0, 2).unsqueeze(1), b.slice(1, 0, 2));  // N x M x 2
  const auto rb = torch::min(a.slice(1, 2, 4).unsqueeze(1), b.slice(1, 2, 4));
  const auto wh = upcast(rb - lt).clamp_min(0);
  const auto inter = wh.select(2, 0) * wh.select(2, 1);
  const auto uni = area_a.unsqueeze(1) + area_b - inter;
  return inter / uni;
}

torch::Tensor clip_boxes_to_image(const torch::Tensor& boxes, int64_t height, int64_t width) {
  TORCH_CHECK(boxes.dim() >= 1 && boxes.size(-1) == 4,
              "Invalid boxes: expected a ... x 4 tensor of (x1, y1, x2, y2) boxes, got shape ",
              boxes.sizes());
  TORCH_CHECK(height >= 0 && width >= 0, "Invalid image size: ", height, " x ", width);
  const auto x = boxes.slice(-1, 0, 4, 2).clamp(0, width);
  const auto y = boxes.slice(-1, 1, 4, 2).clamp(0, height);
  return torch::stack({x, y}, boxes.dim()).reshape(boxes.sizes());
}

}  // namespace mgd::detection
