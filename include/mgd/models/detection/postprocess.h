// RetinaNet inference: from the heads' per-level outputs to at most detections_per_img
// boxes per image. Per image and level: sigmoid scores of every (anchor, class) pair, keep
// those > score_thresh, then the topk_candidates best; decode their boxes from the anchors
// (BoxCoder), clip them to the image; then over all levels, NMS per class (batched_nms,
// nms_thresh) and the best detections_per_img by score.
//
// Equal to torchvision's RetinaNet.postprocess_detections (0.14) on the same inputs (ATen's
// topk picks among equal scores, as there). Detectron2 (RetinaNet.inference_single_image)
// differs in two details: it takes the top-k by a sort, which only matters among equal
// scores, and clips boxes after NMS (when rescaling to the original image): set
// clip_boxes(false) and clip after rescaling to follow it. Defaults: Detectron2's
// (100 detections); PostprocessOptions::torchvision() keeps 300.
#pragma once

#include <torch/arg.h>
#include <torch/types.h>

#include <array>
#include <cstdint>
#include <vector>

#include "mgd/models/detection/box_coder.h"

namespace mgd::detection {

struct PostprocessOptions {
  /// torchvision's RetinaNet: 300 detections per image.
  static PostprocessOptions torchvision();

  /// Scores (sigmoid probabilities) at or below this are dropped before the top-k.
  TORCH_ARG(double, score_thresh) = 0.05;
  /// Candidates kept per level (the best by score) before NMS.
  TORCH_ARG(int64_t, topk_candidates) = 1000;
  /// IoU above which NMS suppresses the lower-scored box of a class.
  TORCH_ARG(double, nms_thresh) = 0.5;
  /// Detections kept per image after NMS (Detectron2 / COCO: 100; torchvision: 300).
  TORCH_ARG(int64_t, detections_per_img) = 100;
  /// Clip decoded boxes to the image before NMS (torchvision does; see the file comment).
  TORCH_ARG(bool, clip_boxes) = true;
};

/// Detections of one image, by decreasing score: `boxes` n x 4 (xyxy, in the network's input
/// pixels), `scores` n, `labels` n (int64 class indices).
struct Detections {
  torch::Tensor boxes;
  torch::Tensor scores;
  torch::Tensor labels;
};

/// `cls_logits[l]` B x (H_l W_l A) x K and `box_regression[l]` B x (H_l W_l A) x 4 per level;
/// `anchors[b][l]` (H_l W_l A) x 4 per image and level; `image_sizes[b]` the {height, width}
/// of image b's content (not the padded batch). Returns one Detections per image.
std::vector<Detections> postprocess(const std::vector<torch::Tensor>& cls_logits,
                                    const std::vector<torch::Tensor>& box_regression,
                                    const std::vector<std::vector<torch::Tensor>>& anchors,
                                    const std::vector<std::array<int64_t, 2>>& image_sizes,
                                    const BoxCoder& box_coder, const PostprocessOptions& options);

/// The same with one set of per-level anchors for every image (make_anchors' output).
std::vector<Detections> postprocess(const std::vector<torch::Tensor>& cls_logits,
                                    const std::vector<torch::Tensor>& box_regression,
                                    const std::vector<torch::Tensor>& anchors,
                                    const std::vector<std::array<int64_t, 2>>& image_sizes,
                                    const BoxCoder& box_coder, const PostprocessOptions& options);

}  // namespace mgd::detection
