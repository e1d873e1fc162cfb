#include "mgd/models/detection/matcher.h"

namespace mgd::detection {

torch::Tensor match(const torch::Tensor& iou, const MatcherOptions& options) {
  TORCH_CHECK(iou.dim() == 2,
              "Invalid match quality matrix: expected ground truth x anchors, "
              "got shape ",
              iou.sizes());
  TORCH_CHECK(options.low_threshold() <= options.high_threshold(),
              "Invalid matcher thresholds: low ", options.low_threshold(), " > high ",
              options.high_threshold());
  const int64_t anchors = iou.size(1);
  const auto index_options = torch::dtype(torch::kLong).device(iou.device());
  if (iou.size(0) == 0 || anchors == 0) {
    return torch::full({anchors}, kBelowLowThreshold, index_options);
  }
  // Best ground truth per anchor (the first one on ties, as ATen's max).
  const auto best = iou.max(0);
  const auto& best_iou = std::get<0>(best);
  const auto& best_gt = std::get<1>(best);
  auto matches = best_gt.clone();
  matches.masked_fill_(best_iou < options.low_threshold(), kBelowLowThreshold);
  matches.masked_fill_(
      (best_iou >= options.low_threshold()) & (best_iou < options.high_threshold()),
      kBetweenThresholds);
  if (options.allow_low_quality_matches()) {
    // Anchors that are some ground truth's best (ties included) take their best ground truth.
    const auto highest_per_gt = std::get<0>(iou.max(1));
    const auto is_best_of_some_gt = (iou == highest_per_gt.unsqueeze(1)).any(0);
    matches = torch::where(is_best_of_some_gt, best_gt, matches);
  }
  return matches;
}

}  // namespace mgd::detection
