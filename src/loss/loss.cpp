#include "mgd/loss/loss.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <type_traits>

#include "margin_kernel.h"

namespace mgd {
namespace functional {
namespace {

// One plane (a fixed image and channel) of masked_difference, for n elements sharing margin mc.
template <typename scalar_t>
void masked_difference_plane(const scalar_t* sp, const scalar_t* tp, scalar_t mc, scalar_t* op,
                             int64_t n) {
  for (int64_t k = 0; k < n; ++k) op[k] = loss_detail::masked_difference(sp[k], tp[k], mc);
}

__attribute__((target("avx2"))) void masked_difference_plane_avx2(const float* sp,
                                                                  const float* tp, float mc,
                                                                  float* op, int64_t n) {
  const __m256 m = _mm256_set1_ps(mc);
  int64_t k = 0;
  for (; k + 8 <= n; k += 8) {
    _mm256_storeu_ps(op + k, loss_detail::masked_difference8(_mm256_loadu_ps(sp + k),
                                                             _mm256_loadu_ps(tp + k), m));
  }
  masked_difference_plane(sp + k, tp + k, mc, op + k, n - k);
}

// (S - target) where the loss counts the element, 0 elsewhere (NaN/inf kept: 0 * d), with
// target = max(R, m): the only tensor the loss and its gradient need. One pass on the CPU;
// the same values, op for op, as the composed form used elsewhere.
torch::Tensor masked_difference(const torch::Tensor& student, const torch::Tensor& teacher,
                                const torch::Tensor& margin) {
  const auto type = student.scalar_type();
  if (student.is_cpu() && teacher.is_cpu() && teacher.scalar_type() == type &&
      (type == torch::kFloat || type == torch::kDouble)) {
    auto s = student.contiguous(), t = teacher.contiguous();
    auto m = margin.to(torch::kCPU, type).contiguous();
    auto out = torch::empty_like(s, torch::MemoryFormat::Contiguous);
    const int64_t channels = s.size(1), plane = s.size(2) * s.size(3);
    AT_DISPATCH_FLOATING_TYPES(type, "margin_loss", [&] {
      const scalar_t* sp = s.data_ptr<scalar_t>();
      const scalar_t* tp = t.data_ptr<scalar_t>();
      const scalar_t* mp = m.data_ptr<scalar_t>();
      scalar_t* op = out.data_ptr<scalar_t>();
      const int64_t planes = s.size(0) * channels;
      const bool avx2 = std::is_same<scalar_t, float>::value && __builtin_cpu_supports("avx2");
      at::parallel_for(0, planes, std::max<int64_t>(1, 32768 / std::max<int64_t>(plane, 1)),
                       [&](int64_t begin, int64_t end) {
        for (int64_t p = begin; p < end; ++p) {
          const int64_t base = p * plane;
          if (avx2) {
            masked_difference_plane_avx2(reinterpret_cast<const float*>(sp + base),
                                         reinterpret_cast<const float*>(tp + base),
                                         static_cast<float>(mp[p % channels]),
                                         reinterpret_cast<float*>(op + base), plane);
          } else {
            masked_difference_plane(sp + base, tp + base, mp[p % channels], op + base, plane);
          }
        }
      });
    });
    return out;
  }
  auto target = torch::max(teacher, margin.to(teacher.dtype()).view({1, -1, 1, 1}));
  auto diff = student - target;
  return diff * torch::logical_or(student > target, target > 0).to(diff.dtype());
}

// sum(D^2) with D = masked_difference; d/dS = 2 D. Saves one tensor instead of the composed
// form's graph of ten element-wise operations, forward and backward. The gradient equals the
// composed form's bit for bit: there, 2 (g * mask) * (S - target), here 2 (D * g).
struct MarginLossFunction : public torch::autograd::Function<MarginLossFunction> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& student,
                               const torch::Tensor& teacher, const torch::Tensor& margin) {
    auto d = masked_difference(student, teacher, margin);
    ctx->save_for_backward({d});
    return (d * d).sum();
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto d = ctx->get_saved_variables()[0];
    return {d * grads[0] * 2, torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

torch::Tensor margin_loss(const torch::Tensor& student, const torch::Tensor& teacher,
                          const torch::Tensor& margin) {
  TORCH_CHECK(student.dim() == 4, "margin_loss: expected a B x C x H x W student map, got ",
              student.sizes());
  TORCH_CHECK(student.sizes() == teacher.sizes(), "margin_loss: student map ", student.sizes(),
              " and reduced teacher map ", teacher.sizes(), " must have the same shape");
  TORCH_CHECK(margin.dim() == 1 && margin.size(0) == student.size(1), "margin_loss: expected ",
              student.size(1), " margins (one per channel), got shape ", margin.sizes());
  return MarginLossFunction::apply(student, teacher.detach(), margin.detach());
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
