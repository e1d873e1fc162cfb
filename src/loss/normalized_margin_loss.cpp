#include "mgd/loss/normalized_margin_loss.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <immintrin.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <type_traits>
#include <vector>

#include "mgd/loss/loss.h"

namespace mgd {
namespace functional {
namespace {

bool cpu_has_avx2_fma() {
  static const bool yes = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return yes;
}

// Planes per parallel task: about 32 K elements each.
int64_t plane_grain(int64_t plane) {
  return std::max<int64_t>(1, 32768 / std::max<int64_t>(plane, 1));
}

// --- Kernels on one plane (a fixed image and channel) of n elements ------------------------
// Each has a scalar form (double maps, CPUs without AVX2/FMA, vector tails) and a float form
// 8 lanes wide. Reductions accumulate in double.

// Adds sum(x - shift) and sum((x - shift)^2) to s[0], s[1].
template <typename T>
void shifted_sums(const T* x, int64_t n, double shift, double* s) {
  double a = 0, b = 0;
  for (int64_t k = 0; k < n; ++k) {
    const double d = static_cast<double>(x[k]) - shift;
    a += d;
    b += d * d;
  }
  s[0] += a;
  s[1] += b;
}

__attribute__((target("avx2,fma"))) double hsum(__m256d v) {
  double lanes[4];
  _mm256_storeu_pd(lanes, v);
  return (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]);
}

__attribute__((target("avx2,fma"))) void shifted_sums_avx2(const float* x, int64_t n,
                                                           double shift, double* s) {
  const __m256d sh = _mm256_set1_pd(shift);
  __m256d a0 = _mm256_setzero_pd(), a1 = a0, b0 = a0, b1 = a0;
  int64_t k = 0;
  for (; k + 8 <= n; k += 8) {
    const __m256 v = _mm256_loadu_ps(x + k);
    const __m256d lo = _mm256_sub_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(v)), sh);
    const __m256d hi = _mm256_sub_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)), sh);
    a0 = _mm256_add_pd(a0, lo);
    a1 = _mm256_add_pd(a1, hi);
    b0 = _mm256_fmadd_pd(lo, lo, b0);
    b1 = _mm256_fmadd_pd(hi, hi, b1);
  }
  s[0] += hsum(_mm256_add_pd(a0, a1));
  s[1] += hsum(_mm256_add_pd(b0, b1));
  shifted_sums(x + k, n - k, shift, s);
}

// D = masked difference of y = x * alpha + beta against max(R, m) (as margin_loss); returns
// sum(D^2).
template <typename T>
double forward_plane(const T* x, const T* r, T alpha, T beta, T m, T* out, int64_t n) {
  double sum = 0;
  for (int64_t k = 0; k < n; ++k) {
    const T y = x[k] * alpha + beta;
    const T target = std::max(r[k], m);
    const T d = y - target;
    const T kept = (y > target || target > T(0)) ? d : d * T(0);
    out[k] = kept;
    sum += static_cast<double>(kept) * static_cast<double>(kept);
  }
  return sum;
}

__attribute__((target("avx2,fma"))) double forward_plane_avx2(const float* x, const float* r,
                                                              float alpha, float beta, float m,
                                                              float* out, int64_t n) {
  const __m256 va = _mm256_set1_ps(alpha), vb = _mm256_set1_ps(beta), vm = _mm256_set1_ps(m);
  const __m256 zero = _mm256_setzero_ps();
  __m256d s0 = _mm256_setzero_pd(), s1 = s0;
  int64_t k = 0;
  for (; k + 8 <= n; k += 8) {
    const __m256 y = _mm256_add_ps(_mm256_mul_ps(_mm256_loadu_ps(x + k), va), vb);
    const __m256 target = _mm256_max_ps(vm, _mm256_loadu_ps(r + k));  // std::max(r, m)
    const __m256 d = _mm256_sub_ps(y, target);
    const __m256 keep = _mm256_or_ps(_mm256_cmp_ps(y, target, _CMP_GT_OQ),
                                     _mm256_cmp_ps(target, zero, _CMP_GT_OQ));
    const __m256 kept = _mm256_blendv_ps(_mm256_mul_ps(d, zero), d, keep);
    _mm256_storeu_ps(out + k, kept);
    const __m256d lo = _mm256_cvtps_pd(_mm256_castps256_ps128(kept));
    const __m256d hi = _mm256_cvtps_pd(_mm256_extractf128_ps(kept, 1));
    s0 = _mm256_fmadd_pd(lo, lo, s0);
    s1 = _mm256_fmadd_pd(hi, hi, s1);
  }
  return hsum(_mm256_add_pd(s0, s1)) + forward_plane(x + k, r + k, alpha, beta, m, out + k, n - k);
}

// Adds sum(D) and sum(D * (x - mean)) to s[0], s[1].
template <typename T>
void backward_sums(const T* d, const T* x, int64_t n, double mean, double* s) {
  double a = 0, b = 0;
  for (int64_t k = 0; k < n; ++k) {
    const double dk = static_cast<double>(d[k]);
    a += dk;
    b += dk * (static_cast<double>(x[k]) - mean);
  }
  s[0] += a;
  s[1] += b;
}

__attribute__((target("avx2,fma"))) void backward_sums_avx2(const float* d, const float* x,
                                                            int64_t n, double mean, double* s) {
  const __m256d mu = _mm256_set1_pd(mean);
  __m256d a0 = _mm256_setzero_pd(), a1 = a0, b0 = a0, b1 = a0;
  int64_t k = 0;
  for (; k + 8 <= n; k += 8) {
    const __m256 dv = _mm256_loadu_ps(d + k), xv = _mm256_loadu_ps(x + k);
    const __m256d dlo = _mm256_cvtps_pd(_mm256_castps256_ps128(dv));
    const __m256d dhi = _mm256_cvtps_pd(_mm256_extractf128_ps(dv, 1));
    const __m256d xlo = _mm256_sub_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(xv)), mu);
    const __m256d xhi = _mm256_sub_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(xv, 1)), mu);
    a0 = _mm256_add_pd(a0, dlo);
    a1 = _mm256_add_pd(a1, dhi);
    b0 = _mm256_fmadd_pd(dlo, xlo, b0);
    b1 = _mm256_fmadd_pd(dhi, xhi, b1);
  }
  s[0] += hsum(_mm256_add_pd(a0, a1));
  s[1] += hsum(_mm256_add_pd(b0, b1));
  backward_sums(d + k, x + k, n - k, mean, s);
}

// grad_x = D * a - b - (x - mean) * c.
template <typename T>
void backward_plane(const T* d, const T* x, T a, T b, T c, T mean, T* out, int64_t n) {
  for (int64_t k = 0; k < n; ++k) out[k] = d[k] * a - b - (x[k] - mean) * c;
}

__attribute__((target("avx2,fma"))) void backward_plane_avx2(const float* d, const float* x,
                                                             float a, float b, float c,
                                                             float mean, float* out, int64_t n) {
  const __m256 va = _mm256_set1_ps(a), vb = _mm256_set1_ps(b), vc = _mm256_set1_ps(c),
               vm = _mm256_set1_ps(mean);
  int64_t k = 0;
  for (; k + 8 <= n; k += 8) {
    const __m256 g = _mm256_sub_ps(_mm256_mul_ps(_mm256_loadu_ps(d + k), va), vb);
    const __m256 centered = _mm256_sub_ps(_mm256_loadu_ps(x + k), vm);
    _mm256_storeu_ps(out + k, _mm256_sub_ps(g, _mm256_mul_ps(centered, vc)));
  }
  backward_plane(d + k, x + k, a, b, c, mean, out + k, n - k);
}

template <typename T>
constexpr bool vectorized() {
  return std::is_same<T, float>::value;
}

// --- The operation ---------------------------------------------------------------------------

// Per-channel mean and 1/sqrt(var + eps) of x in double, the variance biased as BatchNorm
// normalizes with; `unbiased` receives sum((x - mean)^2) / (count - 1) for the running variance.
void batch_statistics(const torch::Tensor& x, double eps, double* mean, double* invstd,
                      double* unbiased) {
  const int64_t batch = x.size(0), channels = x.size(1), plane = x.size(2) * x.size(3);
  const double count = static_cast<double>(batch * plane);
  const bool simd = cpu_has_avx2_fma();
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "normalized_margin_loss_stats", [&] {
    const scalar_t* xp = x.data_ptr<scalar_t>();
    at::parallel_for(0, channels, 1, [&](int64_t begin, int64_t end) {
      for (int64_t c = begin; c < end; ++c) {
        // Shifted by the channel's first value: no cancellation however far the mean lies
        // from zero.
        const double shift = static_cast<double>(xp[c * plane]);
        double s[2] = {0.0, 0.0};
        for (int64_t b = 0; b < batch; ++b) {
          const scalar_t* src = xp + (b * channels + c) * plane;
          if (vectorized<scalar_t>() && simd) {
            shifted_sums_avx2(reinterpret_cast<const float*>(src), plane, shift, s);
          } else {
            shifted_sums(src, plane, shift, s);
          }
        }
        const double centered_mean = s[0] / count;
        const double var_sum = std::max(0.0, s[1] - s[0] * centered_mean);
        mean[c] = shift + centered_mean;
        invstd[c] = 1.0 / std::sqrt(var_sum / count + eps);
        unbiased[c] = var_sum / (count - 1.0);
      }
    });
  });
}

// Inputs: x (B x C x H x W, contiguous), weight and bias (C, or undefined), teacher R (as x),
// margin (C), the normalizing mean and invstd (C, double; batch statistics when `batch_stats`).
struct NormalizedMarginLossFunction
    : public torch::autograd::Function<NormalizedMarginLossFunction> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x,
                               const torch::Tensor& weight, const torch::Tensor& bias,
                               const torch::Tensor& teacher, const torch::Tensor& margin,
                               const torch::Tensor& mean, const torch::Tensor& invstd,
                               bool batch_stats) {
    const int64_t batch = x.size(0), channels = x.size(1), plane = x.size(2) * x.size(3);
    auto r = teacher.to(x.scalar_type()).contiguous();
    auto m = margin.to(torch::kCPU, x.scalar_type()).contiguous();
    auto w = weight.defined() ? weight.to(torch::kDouble).contiguous() : weight;
    auto bb = bias.defined() ? bias.to(torch::kDouble).contiguous() : bias;
    auto d = torch::empty_like(x, torch::MemoryFormat::Contiguous);
    std::vector<double> partial(static_cast<size_t>(batch * channels), 0.0);
    const double* mp = mean.data_ptr<double>();
    const double* ip = invstd.data_ptr<double>();
    const bool simd = cpu_has_avx2_fma();
    AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "normalized_margin_loss", [&] {
      // y = x * alpha + beta: alpha = invstd * weight, beta = bias - mean * alpha.
      std::vector<scalar_t> alpha(static_cast<size_t>(channels)), beta(alpha.size());
      for (int64_t c = 0; c < channels; ++c) {
        const double a = ip[c] * (w.defined() ? w.data_ptr<double>()[c] : 1.0);
        alpha[c] = static_cast<scalar_t>(a);
        beta[c] = static_cast<scalar_t>((bb.defined() ? bb.data_ptr<double>()[c] : 0.0) - mp[c] * a);
      }
      const scalar_t* xp = x.data_ptr<scalar_t>();
      const scalar_t* rp = r.data_ptr<scalar_t>();
      const scalar_t* mg = m.data_ptr<scalar_t>();
      scalar_t* dp = d.data_ptr<scalar_t>();
      at::parallel_for(0, batch * channels, plane_grain(plane), [&](int64_t begin, int64_t end) {
        for (int64_t p = begin; p < end; ++p) {
          const int64_t c = p % channels, o = p * plane;
          if (vectorized<scalar_t>() && simd) {
            partial[p] = forward_plane_avx2(
                reinterpret_cast<const float*>(xp + o), reinterpret_cast<const float*>(rp + o),
                static_cast<float>(alpha[c]), static_cast<float>(beta[c]),
                static_cast<float>(mg[c]), reinterpret_cast<float*>(dp + o), plane);
          } else {
            partial[p] = forward_plane(xp + o, rp + o, alpha[c], beta[c], mg[c], dp + o, plane);
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
    const bool batch_stats = ctx->saved_data["batch_stats"].toBool();
    const double g2 = 2.0 * grads[0].item<double>();  // d loss / d D = 2 D
    const int64_t batch = x.size(0), channels = x.size(1), plane = x.size(2) * x.size(3);
    const double count = static_cast<double>(batch * plane);
    const double* mp = mean.data_ptr<double>();
    const double* ip = invstd.data_ptr<double>();
    auto w = weight.defined() ? weight.to(torch::kDouble).contiguous() : weight;
    // Per channel: sum of dL/dy = g2 * sum(D) and sum(dL/dy * (x - mean)).
    std::vector<double> sum_dy(static_cast<size_t>(channels)), dot(sum_dy.size());
    const bool simd = cpu_has_avx2_fma();
    torch::Tensor grad_x;
    AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "normalized_margin_loss_backward", [&] {
      const scalar_t* xp = x.data_ptr<scalar_t>();
      const scalar_t* dp = d.data_ptr<scalar_t>();
      at::parallel_for(0, channels, 1, [&](int64_t begin, int64_t end) {
        for (int64_t c = begin; c < end; ++c) {
          double s[2] = {0.0, 0.0};
          for (int64_t b = 0; b < batch; ++b) {
            const int64_t o = (b * channels + c) * plane;
            if (vectorized<scalar_t>() && simd) {
              backward_sums_avx2(reinterpret_cast<const float*>(dp + o),
                                 reinterpret_cast<const float*>(xp + o), plane, mp[c], s);
            } else {
              backward_sums(dp + o, xp + o, plane, mp[c], s);
            }
          }
          sum_dy[c] = g2 * s[0];
          dot[c] = g2 * s[1];
        }
      });
      if (!ctx->needs_input_grad(0)) return;
      // dL/dx = (dy - [sum_dy / count] - (x - mean) * invstd^2 * [dot / count]) * invstd * w,
      // the bracketed terms only with batch statistics.
      std::vector<scalar_t> a(static_cast<size_t>(channels)), b(a.size()), c(a.size()),
          mu(a.size());
      for (int64_t ch = 0; ch < channels; ++ch) {
        const double scale = ip[ch] * (w.defined() ? w.data_ptr<double>()[ch] : 1.0);
        a[ch] = static_cast<scalar_t>(g2 * scale);
        b[ch] = static_cast<scalar_t>(batch_stats ? sum_dy[ch] / count * scale : 0.0);
        c[ch] = static_cast<scalar_t>(batch_stats ? dot[ch] / count * ip[ch] * ip[ch] * scale
                                                  : 0.0);
        mu[ch] = static_cast<scalar_t>(mp[ch]);
      }
      grad_x = torch::empty_like(x);
      scalar_t* gp = grad_x.data_ptr<scalar_t>();
      at::parallel_for(0, batch * channels, plane_grain(plane), [&](int64_t begin, int64_t end) {
        for (int64_t p = begin; p < end; ++p) {
          const int64_t ch = p % channels, o = p * plane;
          if (vectorized<scalar_t>() && simd) {
            backward_plane_avx2(reinterpret_cast<const float*>(dp + o),
                                reinterpret_cast<const float*>(xp + o),
                                static_cast<float>(a[ch]), static_cast<float>(b[ch]),
                                static_cast<float>(c[ch]), static_cast<float>(mu[ch]),
                                reinterpret_cast<float*>(gp + o), plane);
          } else {
            backward_plane(dp + o, xp + o, a[ch], b[ch], c[ch], mu[ch], gp + o, plane);
          }
        }
      });
    });
    torch::Tensor grad_w, grad_b;
    if (weight.defined() && ctx->needs_input_grad(1)) {
      auto gw = torch::empty({channels}, torch::kDouble);
      for (int64_t ch = 0; ch < channels; ++ch) gw.data_ptr<double>()[ch] = dot[ch] * ip[ch];
      grad_w = gw.to(weight.options());
    }
    if (ctx->needs_input_grad(2)) {
      grad_b = torch::tensor(sum_dy, torch::kDouble).to(x.scalar_type());
    }
    return {grad_x, grad_w, grad_b, torch::Tensor(), torch::Tensor(), torch::Tensor(),
            torch::Tensor(), torch::Tensor()};
  }
};

bool fusable(const torch::nn::BatchNorm2d& bn, const torch::Tensor& x,
             const torch::Tensor& teacher) {
  const auto& o = bn->options;
  const auto type = x.scalar_type();
  if (!x.is_cpu() || !teacher.is_cpu() || (type != torch::kFloat && type != torch::kDouble))
    return false;
  if (!o.track_running_stats() || !o.momentum().has_value()) return false;
  if (o.affine() && (bn->weight.scalar_type() != type || bn->bias.scalar_type() != type))
    return false;
  // BatchNorm refuses one value per channel in training; leave that error to it.
  return !(bn->is_training() && x.size(0) * x.size(2) * x.size(3) <= 1);
}

}  // namespace

torch::Tensor normalized_margin_loss(torch::nn::BatchNorm2d& bn, const torch::Tensor& student,
                                     const torch::Tensor& teacher, const torch::Tensor& margin) {
  TORCH_CHECK(student.dim() == 4, "normalized_margin_loss: expected a B x C x H x W student map, "
              "got ", student.sizes());
  if (!fusable(bn, student, teacher)) return margin_loss(bn->forward(student), teacher, margin);
  TORCH_CHECK(student.sizes() == teacher.sizes(), "margin_loss: student map ", student.sizes(),
              " and reduced teacher map ", teacher.sizes(), " must have the same shape");
  TORCH_CHECK(margin.dim() == 1 && margin.size(0) == student.size(1), "margin_loss: expected ",
              student.size(1), " margins (one per channel), got shape ", margin.sizes());
  TORCH_CHECK(student.size(1) == bn->options.num_features(), "normalized_margin_loss: the ",
              "BatchNorm has ", bn->options.num_features(), " channels, the student map ",
              student.size(1));
  auto x = student.contiguous();
  const int64_t channels = x.size(1);
  auto mean = torch::empty({channels}, torch::kDouble);
  auto invstd = torch::empty({channels}, torch::kDouble);
  const double eps = bn->options.eps();
  if (bn->is_training()) {
    std::vector<double> unbiased(static_cast<size_t>(channels));
    batch_statistics(x.detach(), eps, mean.data_ptr<double>(), invstd.data_ptr<double>(),
                     unbiased.data());
    // As BatchNorm's forward: running = (1 - momentum) running + momentum batch, the
    // variance unbiased; one more batch counted.
    torch::NoGradGuard no_grad;
    const double momentum = *bn->options.momentum();
    auto var = torch::tensor(unbiased, torch::kDouble);
    bn->running_mean.copy_(bn->running_mean.to(torch::kDouble) * (1.0 - momentum) +
                           mean * momentum);
    bn->running_var.copy_(bn->running_var.to(torch::kDouble) * (1.0 - momentum) +
                          var * momentum);
    bn->num_batches_tracked.add_(1);
  } else {
    torch::NoGradGuard no_grad;
    mean.copy_(bn->running_mean);
    invstd.copy_(1.0 / (bn->running_var.to(torch::kDouble) + eps).sqrt());
  }
  const bool affine = bn->options.affine();
  return NormalizedMarginLossFunction::apply(
      x, affine ? bn->weight : torch::Tensor(), affine ? bn->bias : torch::Tensor(),
      teacher.detach(), margin.detach(), mean, invstd, bn->is_training());
}

}  // namespace functional
}  // namespace mgd
