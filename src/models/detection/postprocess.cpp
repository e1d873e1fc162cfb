#include "mgd/models/detection/postprocess.h"

#include <algorithm>

#include "mgd/models/detection/box_ops.h"
#include "mgd/models/detection/nms.h"

namespace mgd::detection {
namespace {

void check_options(const PostprocessOptions& options) {
  TORCH_CHECK(options.topk_candidates() >= 0,
              "Invalid topk_candidates: ", options.topk_candidates(), " (expected >= 0)");
  TORCH_CHECK(options.detections_per_img() >= 0,
              "Invalid detections_per_img: ", options.detections_per_img(), " (expected >= 0)");
}

Detections postprocess_image(const std::vector<torch::Tensor>& cls_logits,
                             const std::vector<torch::Tensor>& box_regression,
                             const std::vector<torch::Tensor>& anchors, int64_t image,
                             std::array<int64_t, 2> image_size, const BoxCoder& box_coder,
                             const PostprocessOptions& options) {
  std::vector<torch::Tensor> boxes, scores, labels;
  for (size_t l = 0; l < cls_logits.size(); ++l) {
    const auto logits = cls_logits[l][image];  // HWA x K
    const auto deltas = box_regression[l][image];
    const int64_t classes = logits.size(1);
    const auto all_scores = torch::sigmoid(logits).flatten();
    const auto keep = all_scores > options.score_thresh();
    auto level_scores = all_scores.index({keep});
    auto candidates = torch::where(keep)[0];
    const int64_t k = std::min(options.topk_candidates(), candidates.size(0));
    const auto top = level_scores.topk(k);
    level_scores = std::get<0>(top);
    candidates = candidates.index_select(0, std::get<1>(top));
    const auto anchor_idx = torch::div(candidates, classes, "floor");
    auto level_boxes = box_coder.decode(deltas.index_select(0, anchor_idx),
                                        anchors[l].index_select(0, anchor_idx));
    if (options.clip_boxes()) {
      level_boxes = clip_boxes_to_image(level_boxes, image_size[0], image_size[1]);
    }
    boxes.push_back(level_boxes);
    scores.push_back(level_scores);
    labels.push_back(candidates.remainder(classes));
  }
  Detections out;
  const auto all_boxes = torch::cat(boxes), all_scores = torch::cat(scores);
  const auto all_labels = torch::cat(labels);
  auto kept = batched_nms(all_boxes, all_scores, all_labels, options.nms_thresh());
  kept = kept.slice(0, 0, std::min(options.detections_per_img(), kept.size(0)));
  out.boxes = all_boxes.index_select(0, kept);
  out.scores = all_scores.index_select(0, kept);
  out.labels = all_labels.index_select(0, kept);
  return out;
}

}  // namespace

PostprocessOptions PostprocessOptions::torchvision() {
  return PostprocessOptions().detections_per_img(300);
}

std::vector<Detections> postprocess(const std::vector<torch::Tensor>& cls_logits,
                                    const std::vector<torch::Tensor>& box_regression,
                                    const std::vector<std::vector<torch::Tensor>>& anchors,
                                    const std::vector<std::array<int64_t, 2>>& image_sizes,
                                    const BoxCoder& box_coder, const PostprocessOptions& options) {
  check_options(options);
  const size_t levels = cls_logits.size();
  const int64_t batch = static_cast<int64_t>(image_sizes.size());
  TORCH_CHECK(levels > 0, "Invalid RetinaNet outputs: no level");
  TORCH_CHECK(box_regression.size() == levels, "Invalid box regression: ", box_regression.size(),
              " levels for ", levels, " levels of logits");
  TORCH_CHECK(static_cast<int64_t>(anchors.size()) == batch, "Invalid anchors: ", anchors.size(),
              " images for ", batch, " image sizes");
  for (size_t l = 0; l < levels; ++l) {
    const auto& c = cls_logits[l];
    const auto& r = box_regression[l];
    TORCH_CHECK(c.dim() == 3 && c.size(0) == batch, "Invalid logits of level ", l, ": expected ",
                batch, " x (HWA) x K, got shape ", c.sizes());
    TORCH_CHECK(r.dim() == 3 && r.size(0) == batch && r.size(1) == c.size(1) && r.size(2) == 4,
                "Invalid box regression of level ", l, ": expected ", batch, " x ", c.size(1),
                " x 4, got shape ", r.sizes());
  }
  for (int64_t b = 0; b < batch; ++b) {
    TORCH_CHECK(anchors[b].size() == levels, "Invalid anchors of image ", b, ": ",
                anchors[b].size(), " levels, expected ", levels);
    for (size_t l = 0; l < levels; ++l) {
      TORCH_CHECK(anchors[b][l].dim() == 2 && anchors[b][l].size(0) == cls_logits[l].size(1) &&
                      anchors[b][l].size(1) == 4,
                  "Invalid anchors of image ", b, ", level ", l, ": expected ",
                  cls_logits[l].size(1), " x 4, got shape ", anchors[b][l].sizes());
    }
  }
  std::vector<Detections> detections;
  for (int64_t b = 0; b < batch; ++b) {
    detections.push_back(postprocess_image(cls_logits, box_regression, anchors[b], b,
                                           image_sizes[b], box_coder, options));
  }
  return detections;
}

std::vector<Detections> postprocess(const std::vector<torch::Tensor>& cls_logits,
                                    const std::vector<torch::Tensor>& box_regression,
                                    const std::vector<torch::Tensor>& anchors,
                                    const std::vector<std::array<int64_t, 2>>& image_sizes,
                                    const BoxCoder& box_coder, const PostprocessOptions& options) {
  return postprocess(cls_logits, box_regression,
                     std::vector<std::vector<torch::Tensor>>(image_sizes.size(), anchors),
                     image_sizes, box_coder, options);
}

}  // namespace mgd::detection
