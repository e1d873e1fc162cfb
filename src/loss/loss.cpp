#include "mgd/loss/loss.h"

#include <torch/torch.h>

#include <cmath>

namespace mgd {
namespace functional {

torch::Tensor margin_loss(const torch::Tensor& student, const torch::Tensor& teacher,
                          const torch::Tensor& margin) {
  TORCH_CHECK(student.dim() == 4, "margin_loss: expected a B x C x H x W student map, got ",
              student.sizes());
  TORCH_CHECK(student.sizes() == teacher.sizes(), "margin_loss: student map ", student.sizes(),
              " and reduced teacher map ", teacher.sizes(), " must have the same shape");
  TORCH_CHECK(margin.dim() == 1 && margin.size(0) == student.size(1), "margin_loss: expected ",
              student.size(1), " margins (one per channel), got shape ", margin.sizes());
  auto target = torch::max(teacher, margin.to(teacher.dtype()).view({1, -1, 1, 1}));
  auto diff = student - target;
  auto mask = torch::logical_or(student > target, target > 0);
  return (diff * diff * mask.to(diff.dtype())).sum();
}

torch::Tensor kd_loss(const torch::Tensor& student_logits, const torch::Tensor& teacher_logits,
                      double temperature) {
  TORCH_CHECK(std::isfinite(temperature) && temperature > 0,
              "kd_loss: temperature must be finite and > 0, got ", temperature);
  TORCH_CHECK(student_logits.dim() == 2 && student_logits.sizes() == teacher_logits.sizes(),
              "kd_loss: expected B x classes logits of equal shape, got student ",
              student_logits.sizes(), " and teacher ", teacher_logits.sizes());
  auto log_p_student = torch::log_softmax(student_logits / temperature, 1);
  auto log_p_teacher = torch::log_softmax(teacher_logits / temperature, 1);
  auto kl = (log_p_teacher.exp() * (log_p_teacher - log_p_student)).sum();
  return kl * (temperature * temperature / static_cast<double>(student_logits.size(0)));
}

}  // namespace functional

torch::Tensor MarginLossImpl::forward(const torch::Tensor& student, const torch::Tensor& teacher,
                                      const torch::Tensor& margin) {
  return functional::margin_loss(student, teacher, margin);
}

KDLossImpl::KDLossImpl(double temperature) : temperature_(temperature) {
  TORCH_CHECK(std::isfinite(temperature) && temperature > 0,
              "Invalid KD temperature: ", temperature, " (expected finite and > 0)");
}

torch::Tensor KDLossImpl::forward(const torch::Tensor& student_logits,
                                  const torch::Tensor& teacher_logits) {
  return functional::kd_loss(student_logits, teacher_logits, temperature_);
}

}  // namespace mgd
