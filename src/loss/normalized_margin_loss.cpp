#include "mgd/loss/normalized_margin_loss.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <immintrin.h>
#include <torch/torch.h>

#include <algorithm>
#include <type_traits>
#include <vector>

#include "../reducers/amp_kernel.h"
#include "batch_norm_cpu.h"
#include "margin_kernel.h"
#include "mgd/loss/loss.h"
#include "mgd/reducers/amp.h"

namespace mgd {
namespace functional {
namespace {

using loss_detail::hsum;

// One plane: D = the masked difference of y = x * alpha + beta against max(R, m), as
// margin_loss computes it, where R is the AMP selection over the k source planes src (k = 1:
// the plane itself); returns sum(D^2) in double. Scalar form and float form, 8 lanes.
template <typename T>
double forward_plane(const T* x, const T* const* src, int64_t k, T alpha, T beta, T m, T* out,
                     int64_t begin, int64_t n) {
  double sum = 0;
  for (int64_t e = begin; e < n; ++e) {
    const T kept = loss_detail::masked_difference(x[e] * alpha + beta,
                                                  reducer_detail::amp_select(src, k, e), m);
    out[e] = kept;
    sum += static_cast<double>(kept) * static_cast<double>(kept);
  }
  return sum;
}

__attribute__((target("avx2,fma"))) double forward_plane_avx2(const float* x,
                                                              const float* const* src, int64_t k,
                                                              float alpha, float beta, float m,
                                                              float* out, int64_t n) {
  const __m256 va = _mm256_set1_ps(alpha), vb = _mm256_set1_ps(beta), vm = _mm256_set1_ps(m);
  __m256d s0 = _mm256_setzero_pd(), s1 = s0;
  int64_t e = 0;
  for (; e + 8 <= n; e += 8) {
    const __m256 y = _mm256_add_ps(_mm256_mul_ps(_mm256_loadu_ps(x + e), va), vb);
    const __m256 kept =
        loss_detail::masked_difference8(y, reducer_detail::amp_select8(src, k, e), vm);
    _mm256_storeu_ps(out + e, kept);
    const __m256d lo = _mm256_cvtps_pd(_mm256_castps256_ps128(kept));
    const __m256d hi = _mm256_cvtps_pd(_mm256_extractf128_ps(kept, 1));
    s0 = _mm256_fmadd_pd(lo, lo, s0);
    s1 = _mm256_fmadd_pd(hi, hi, s1);
  }
  return hsum(_mm256_add_pd(s0, s1)) + forward_plane(x, src, k, alpha, beta, m, out, e, n);
}

// Inputs: x (B x C x H x W, contiguous), weight and bias (C, or undefined), the teacher map
// (the reduced map R, as x, when `index` is empty; else the full B x t x H x W map, reduced
// on the fly by AMP over the groups of the k x C index), margin (C), the normalizing mean and
// invstd (C, double; the batch's when `batch_stats`). Saves x, D, weight, mean, invstd: the
// backward is BatchNorm's with dL/dy = 2 g D.
struct NormalizedMarginLossFunction
    : public torch::autograd::Function<NormalizedMarginLossFunction> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x,
                               const torch::Tensor& weight, const torch::Tensor& bias,
                               const torch::Tensor& teacher, const torch::Tensor& index,
                               const torch::Tensor& margin, const torch::Tensor& mean,
                               const torch::Tensor& invstd, bool batch_stats) {
    const int64_t batch = x.size(0), channels = x.size(1), plane = x.size(2) * x.size(3);
    auto r = teacher.to(x.scalar_type()).contiguous();
    const bool grouped = index.numel() > 0;
    auto idx = index.to(torch::kCPU, torch::kLong).contiguous();
    const int64_t k = grouped ? idx.size(0) : 1, t = r.size(1);
    const int64_t* ip = grouped ? idx.data_ptr<int64_t>() : nullptr;
    auto m = margin.to(torch::kCPU, x.scalar_type()).contiguous();
    auto d = torch::empty_like(x, torch::MemoryFormat::Contiguous);
    std::vector<double> partial(static_cast<size_t>(batch * channels), 0.0);
    const bool simd = loss_detail::cpu_has_avx2_fma();
    AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "normalized_margin_loss", [&] {
      std::vector<scalar_t> alpha, beta;
      loss_detail::affine_terms<scalar_t>(weight, bias, mean.data_ptr<double>(),
                                        invstd.data_ptr<double>(), channels, &alpha, &beta);
      const scalar_t* xp = x.data_ptr<scalar_t>();
      const scalar_t* rp = r.data_ptr<scalar_t>();
      const scalar_t* mg = m.data_ptr<scalar_t>();
      scalar_t* dp = d.data_ptr<scalar_t>();
      at::parallel_for(0, batch * channels, loss_detail::plane_grain(plane),
                       [&](int64_t begin, int64_t end) {
        std::vector<const scalar_t*> src(static_cast<size_t>(k));
        for (int64_t p = begin; p < end; ++p) {
          const int64_t b = p / channels, c = p % channels, o = p * plane;
          for (int64_t g = 0; g < k; ++g)
            src[g] = ip ? rp + (b * t + ip[g * channels + c]) * plane : rp + o;
          if (std::is_same<scalar_t, float>::value && simd) {
            partial[p] = forward_plane_avx2(
                reinterpret_cast<const float*>(xp + o),
                reinterpret_cast<const float* const*>(src.data()), k,
                static_cast<float>(alpha[c]), static_cast<float>(beta[c]),
                static_cast<float>(mg[c]), reinterpret_cast<float*>(dp + o), plane);
          } else {
            partial[p] = forward_plane(xp + o, src.data(), k, alpha[c], beta[c], mg[c], dp + o,
                                       0, plane);
          }
        }
      });
    });
    double total = 0.0;
    for (double v : partial) total += v;  // a fixed order, whatever the thread count
    ctx->save_for_backward({x, d, weight, mean, invstd});
    ctx->saved_data["batch_stats"] = batch_stats;
    return torch::scalar_tensor(total, x.options());
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto &x = saved[0], &d = saved[1], &weight = saved[2], &mean = saved[3],
               &invstd = saved[4];
    std::vector<double> sum_dy, dot;
    auto gx = loss_detail::backward(d, 2.0 * grads[0].item<double>(), x, weight,
                                  mean.data_ptr<double>(), invstd.data_ptr<double>(),
                                  ctx->saved_data["batch_stats"].toBool(),
                                  ctx->needs_input_grad(0), &sum_dy, &dot);
    torch::Tensor gw, gb;
    if (weight.defined() && ctx->needs_input_grad(1))
      gw = loss_detail::weight_grad(dot, invstd.data_ptr<double>(), weight);
    if (weight.defined() && ctx->needs_input_grad(2)) gb = loss_detail::bias_grad(sum_dy, weight);
    return {gx, gw, gb, torch::Tensor(), torch::Tensor(), torch::Tensor(), torch::Tensor(),
            torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

namespace {

// The CPU path of both entry points: statistics (running ones updated in training), then the
// autograd operation. `index` empty: `teacher` is the reduced map.
torch::Tensor apply_fused(torch::nn::BatchNorm2d& bn, const torch::Tensor& student,
                          const torch::Tensor& teacher, const torch::Tensor& index,
                          const torch::Tensor& margin) {
  auto x = student.contiguous();
  torch::Tensor mean, invstd;
  loss_detail::normalizing_statistics(bn, x.detach(), &mean, &invstd);
  const bool affine = bn->options.affine();
  return NormalizedMarginLossFunction::apply(
      x, affine ? bn->weight : torch::Tensor(), affine ? bn->bias : torch::Tensor(),
      teacher.detach(), index, margin.detach(), mean, invstd, bn->is_training());
}

void check_student(const torch::Tensor& student) {
  TORCH_CHECK(student.dim() == 4, "normalized_margin_loss: expected a B x C x H x W student map, "
              "got ", student.sizes());
}

}  // namespace

torch::Tensor normalized_margin_loss(torch::nn::BatchNorm2d& bn, const torch::Tensor& student,
                                     const torch::Tensor& teacher, const torch::Tensor& margin) {
  check_student(student);
  if (!loss_detail::fusable(bn, student) || !teacher.is_cpu())
    return margin_loss(bn->forward(student), teacher, margin);
  TORCH_CHECK(student.sizes() == teacher.sizes(), "margin_loss: student map ", student.sizes(),
              " and reduced teacher map ", teacher.sizes(), " must have the same shape");
  TORCH_CHECK(margin.dim() == 1 && margin.size(0) == student.size(1), "margin_loss: expected ",
              student.size(1), " margins (one per channel), got shape ", margin.sizes());
  return apply_fused(bn, student, teacher, torch::empty({0}, torch::kLong), margin);
}

torch::Tensor normalized_margin_loss_amp(torch::nn::BatchNorm2d& bn, const torch::Tensor& student,
                                         const torch::Tensor& teacher,
                                         const torch::Tensor& margins,
                                         const torch::Tensor& index) {
  check_student(student);
  if (!loss_detail::fusable(bn, student) || !teacher.is_cpu() ||
      teacher.scalar_type() != student.scalar_type()) {
    Reduced r;
    {
      torch::NoGradGuard no_grad;  // the teacher's side only: the loss keeps its graph
      r = amp_reduce(teacher.detach(), margins, index);
    }
    return normalized_margin_loss(bn, student, r.feature, r.margin);
  }
  check_grouping(teacher, index);
  TORCH_CHECK(index.size(1) == student.size(1) && teacher.size(0) == student.size(0) &&
                  teacher.size(2) == student.size(2) && teacher.size(3) == student.size(3),
              "normalized_margin_loss: a ", index.size(0), " x ", index.size(1),
              " matching of the teacher map ", teacher.sizes(), " cannot be compared with the "
              "student map ", student.sizes());
  return apply_fused(bn, student, teacher, index, group_margins(margins, index).mean(0));
}

}  // namespace functional
}  // namespace mgd
