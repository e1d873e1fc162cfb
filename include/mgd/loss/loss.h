// Distillation losses (MGD spec section 6).
//
// margin_loss: the partial L2 loss with margin of Heo et al. ("A Comprehensive Overhaul of
// Feature Distillation", ICCV 2019), used by MGD between the normalized student map S and
// the reduced teacher map R with per-channel margin m:
//
//   target = max(R, m)
//   loss   = sum over all elements of (S - target)^2 * 1[(S > target) or (target > 0)]
//
// kd_loss: Hinton et al.'s knowledge distillation on logits, at temperature T:
//
//   T^2 * KL(softmax(t / T) || softmax(s / T)), averaged over the batch.
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>
#include <torch/types.h>

namespace mgd {
namespace functional {

/// Partial L2 with margin. `student` and `teacher` are B x C x H x W of equal shape;
/// `margin` has C values (one per channel). Returns the sum (a 0-dim tensor). The gradient
/// flows into `student` only (the teacher's map is a fixed target). One fused pass on the
/// CPU, element-wise tensor operations elsewhere.
torch::Tensor margin_loss(const torch::Tensor& student, const torch::Tensor& teacher,
                          const torch::Tensor& margin);

/// Classic KD: temperature^2 * KL(softmax(teacher/T) || softmax(student/T)), batch mean.
/// `student_logits` and `teacher_logits` are B x classes.
torch::Tensor kd_loss(const torch::Tensor& student_logits, const torch::Tensor& teacher_logits,
                      double temperature);

}  // namespace functional

/// Module form of functional::margin_loss.
class MarginLossImpl : public torch::nn::Module {
 public:
  torch::Tensor forward(const torch::Tensor& student, const torch::Tensor& teacher,
                        const torch::Tensor& margin);
};
TORCH_MODULE(MarginLoss);

/// Module form of functional::kd_loss.
class KDLossImpl : public torch::nn::Module {
 public:
  /// `temperature` must be finite and > 0 (spec default 1.5).
  explicit KDLossImpl(double temperature = 1.5);
  torch::Tensor forward(const torch::Tensor& student_logits, const torch::Tensor& teacher_logits);
  double temperature() const { return temperature_; }

 private:
  double temperature_;
};
TORCH_MODULE(KDLoss);

}  // namespace mgd
