#include "mgd/training/metrics.h"

#include <torch/torch.h>

#include <algorithm>

namespace mgd::training {

std::vector<int64_t> topk_correct(const torch::Tensor& logits, const torch::Tensor& labels,
                                  const std::vector<int64_t>& ks) {
  TORCH_CHECK(logits.dim() == 2 && labels.dim() == 1 && logits.size(0) == labels.size(0),
              "topk_correct: expected B x classes logits and B labels, got ", logits.sizes(),
              " and ", labels.sizes());
  int64_t max_k = 1;
  for (int64_t k : ks) max_k = std::max(max_k, std::min(k, logits.size(1)));
  auto top = std::get<1>(logits.topk(max_k, 1));  // B x max_k
  auto hit = top.eq(labels.view({-1, 1}).to(top.device()));
  std::vector<int64_t> out;
  for (int64_t k : ks) {
    const int64_t kk = std::min(k, logits.size(1));
    out.push_back(hit.narrow(1, 0, kk).any(1).sum().item<int64_t>());
  }
  return out;
}

void AccuracyMeter::add(const torch::Tensor& logits, const torch::Tensor& labels,
                        double batch_loss_sum) {
  auto c = topk_correct(logits, labels, {1, 5});
  top1 += c[0];
  top5 += c[1];
  count += logits.size(0);
  loss_sum += batch_loss_sum;
}

}  // namespace mgd::training
