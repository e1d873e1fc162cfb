// Classification metrics.
#pragma once

#include <torch/types.h>

#include <vector>

namespace mgd::training {

/// Number of rows of `logits` (B x classes) whose label is among the top-k predictions,
/// for each k in `ks` (k is clamped to the number of classes).
std::vector<int64_t> topk_correct(const torch::Tensor& logits, const torch::Tensor& labels,
                                  const std::vector<int64_t>& ks);

/// Running top-1/top-5 accuracy and mean loss over an evaluation.
struct AccuracyMeter {
  int64_t count = 0, top1 = 0, top5 = 0;
  double loss_sum = 0;
  void add(const torch::Tensor& logits, const torch::Tensor& labels, double batch_loss_sum = 0);
  double top1_percent() const { return count ? 100.0 * top1 / count : 0.0; }
  double top5_percent() const { return count ? 100.0 * top5 / count : 0.0; }
  double mean_loss() const { return count ? loss_sum / count : 0.0; }
};

}  // namespace mgd::training
