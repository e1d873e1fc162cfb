#include "mgd/models/detection/box_coder.h"

namespace mgd::detection {
namespace {

void check_boxes(const torch::Tensor& boxes, const char* name) {
  TORCH_CHECK(boxes.dim() == 2 && boxes.size(1) == 4, "Invalid ", name,
              ": expected an N x 4 tensor of (x1, y1, x2, y2) boxes, got shape ", boxes.sizes());
}

}  // namespace

BoxCoder::BoxCoder(BoxCoderOptions options) : options_(std::move(options)) {
  const auto& w = options_.weights();
  TORCH_CHECK(w.size() == 4, "Invalid box coder weights: expected 4 (wx, wy, ww, wh), got ",
              w.size());
  for (const double v : w) {
    TORCH_CHECK(std::isfinite(v) && v != 0.0, "Invalid box coder weight: ", v,
                " (expected finite and non-zero)");
  }
  TORCH_CHECK(!std::isnan(options_.scale_clamp()), "Invalid box coder scale_clamp: NaN");
}

torch::Tensor BoxCoder::encode(const torch::Tensor& targets, const torch::Tensor& anchors) const {
  check_boxes(targets, "target boxes");
  check_boxes(anchors, "anchors");
  TORCH_CHECK(targets.size(0) == anchors.size(0), "Invalid box encoding: ", targets.size(0),
              " target boxes for ", anchors.size(0), " anchors (expected one per anchor)");
  const auto& w = options_.weights();
  const auto weight = [&](int i) { return torch::scalar_tensor(w[i], targets.options()); };
  const auto anchor_w = anchors.select(1, 2) - anchors.select(1, 0);
  const auto anchor_h = anchors.select(1, 3) - anchors.select(1, 1);
  const auto anchor_x = anchors.select(1, 0) + 0.5 * anchor_w;
  const auto anchor_y = anchors.select(1, 1) + 0.5 * anchor_h;
  const auto target_w = targets.select(1, 2) - targets.select(1, 0);
  const auto target_h = targets.select(1, 3) - targets.select(1, 1);
  const auto target_x = targets.select(1, 0) + 0.5 * target_w;
  const auto target_y = targets.select(1, 1) + 0.5 * target_h;
  const auto dx = weight(0) * (target_x - anchor_x) / anchor_w;
  const auto dy = weight(1) * (target_y - anchor_y) / anchor_h;
  const auto dw = weight(2) * torch::log(target_w / anchor_w);
  const auto dh = weight(3) * torch::log(target_h / anchor_h);
  return torch::stack({dx, dy, dw, dh}, 1);
}

torch::Tensor BoxCoder::decode(const torch::Tensor& deltas, const torch::Tensor& anchors_in) const {
  check_boxes(anchors_in, "anchors");
  TORCH_CHECK(deltas.dim() == 2 && deltas.size(1) % 4 == 0 && deltas.size(1) > 0,
              "Invalid box deltas: expected an N x 4k tensor of (dx, dy, dw, dh), got shape ",
              deltas.sizes());
  TORCH_CHECK(deltas.size(0) == anchors_in.size(0), "Invalid box decoding: ", deltas.size(0),
              " rows of deltas for ", anchors_in.size(0), " anchors (expected one per anchor)");
  const auto anchors = anchors_in.to(deltas.scalar_type());
  const auto& w = options_.weights();
  const auto width = (anchors.select(1, 2) - anchors.select(1, 0)).unsqueeze(1);
  const auto height = (anchors.select(1, 3) - anchors.select(1, 1)).unsqueeze(1);
  const auto ctr_x = anchors.select(1, 0).unsqueeze(1) + 0.5 * width;
  const auto ctr_y = anchors.select(1, 1).unsqueeze(1) + 0.5 * height;
  const auto dx = deltas.slice(1, 0, torch::indexing::None, 4) / w[0];
  const auto dy = deltas.slice(1, 1, torch::indexing::None, 4) / w[1];
  const auto dw =
      (deltas.slice(1, 2, torch::indexing::None, 4) / w[2]).clamp_max(options_.scale_clamp());
  const auto dh =
      (deltas.slice(1, 3, torch::indexing::None, 4) / w[3]).clamp_max(options_.scale_clamp());
  const auto pred_x = dx * width + ctr_x;
  const auto pred_y = dy * height + ctr_y;
  const auto half_w = 0.5 * (torch::exp(dw) * width);
  const auto half_h = 0.5 * (torch::exp(dh) * height);
  return torch::stack({pred_x - half_w, pred_y - half_h, pred_x + half_w, pred_y + half_h}, 2)
      .flatten(1);
}

}  // namespace mgd::detection
