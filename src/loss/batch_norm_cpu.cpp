#include "batch_norm_cpu.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <cmath>
#include <type_traits>


namespace mgd {
namespace loss_detail {
namespace {

template <typename T>
constexpr bool vectorized() {
  return std::is_same<T, float>::value;
}

// --- Kernels on one plane of n elements: a scalar form (double, tails, CPUs without AVX2/FMA)
// and a float form 8 lanes wide. Reductions accumulate in double. ---------------------------

// Adds sum(u - su) and sum((u - su) * (x - sx)) to s[0], s[1]: with u = x and su = sx = a
// shift, the shifted sums of the statistics; with u = dL/dy, su = 0 and sx = the mean, the
// sums of BatchNorm's backward.
template <typename T>
void centered_sums(const T* u, double su, const T* x, double sx, int64_t n, double* s) {
  double a = 0, b = 0;
  for (int64_t k = 0; k < n; ++k) {
    const double uk = static_cast<double>(u[k]) - su;
    a += uk;
    b += uk * (static_cast<double>(x[k]) - sx);
  }
  s[0] += a;
  s[1] += b;
}

__attribute__((target("avx2,fma"))) void centered_sums_avx2(const float* u, double su,
                                                            const float* x, double sx,
                                                            int64_t n, double* s) {
  const __m256d vsu = _mm256_set1_pd(su), vsx = _mm256_set1_pd(sx);
  __m256d a0 = _mm256_setzero_pd(), a1 = a0, b0 = a0, b1 = a0;
  int64_t k = 0;
  for (; k + 8 <= n; k += 8) {
    const __m256 uv = _mm256_loadu_ps(u + k), xv = _mm256_loadu_ps(x + k);
    const __m256d ulo = _mm256_sub_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(uv)), vsu);
    const __m256d uhi = _mm256_sub_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(uv, 1)), vsu);
    const __m256d xlo = _mm256_sub_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(xv)), vsx);
    const __m256d xhi = _mm256_sub_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(xv, 1)), vsx);
    a0 = _mm256_add_pd(a0, ulo);
    a1 = _mm256_add_pd(a1, uhi);
    b0 = _mm256_fmadd_pd(ulo, xlo, b0);
    b1 = _mm256_fmadd_pd(uhi, xhi, b1);
  }
  s[0] += hsum(_mm256_add_pd(a0, a1));
  s[1] += hsum(_mm256_add_pd(b0, b1));
  centered_sums(u + k, su, x + k, sx, n - k, s);
}

// Per channel c of a B x C x plane map: centered_sums over the channel's B planes.
template <typename T>
void channel_sums(const T* u, double su, const T* x, double sx, int64_t batch, int64_t channels,
                  int64_t plane, int64_t c, bool simd, double* s) {
  for (int64_t b = 0; b < batch; ++b) {
    const int64_t o = (b * channels + c) * plane;
    if (vectorized<T>() && simd) {
      centered_sums_avx2(reinterpret_cast<const float*>(u + o), su,
                         reinterpret_cast<const float*>(x + o), sx, plane, s);
    } else {
      centered_sums(u + o, su, x + o, sx, plane, s);
    }
  }
}

// grad_x = d * a - b - (x - mean) * c.
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

}  // namespace

bool fusable(const torch::nn::BatchNorm2d& bn, const torch::Tensor& x) {
  const auto& o = bn->options;
  const auto type = x.scalar_type();
  if (!x.is_cpu() || x.dim() != 4 || (type != torch::kFloat && type != torch::kDouble))
    return false;
  if (!o.track_running_stats() || !o.momentum().has_value()) return false;
  if (x.size(1) != o.num_features()) return false;  // bn->forward names the mismatch
  if (o.affine() && (bn->weight.scalar_type() != type || bn->bias.scalar_type() != type))
    return false;
  // BatchNorm refuses one value per channel in training; leave that error to it.
  return !(bn->is_training() && x.size(0) * x.size(2) * x.size(3) <= 1);
}

void normalizing_statistics(torch::nn::BatchNorm2d& bn, const torch::Tensor& x,
                            torch::Tensor* mean_out, torch::Tensor* invstd_out) {
  const int64_t batch = x.size(0), channels = x.size(1), plane = x.size(2) * x.size(3);
  const double eps = bn->options.eps();
  auto mean = torch::empty({channels}, torch::kDouble);
  auto invstd = torch::empty({channels}, torch::kDouble);
  torch::NoGradGuard no_grad;
  if (!bn->is_training()) {
    mean.copy_(bn->running_mean);
    invstd.copy_(1.0 / (bn->running_var.to(torch::kDouble) + eps).sqrt());
  } else {
    double* mp = mean.data_ptr<double>();
    double* ip = invstd.data_ptr<double>();
    std::vector<double> unbiased(static_cast<size_t>(channels));
    const double count = static_cast<double>(batch * plane);
    const bool simd = cpu_has_avx2_fma();
    AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "batch_norm_statistics", [&] {
      const scalar_t* xp = x.data_ptr<scalar_t>();
      at::parallel_for(0, channels, 1, [&](int64_t begin, int64_t end) {
        for (int64_t c = begin; c < end; ++c) {
          // Shifted by the channel's first value: no cancellation however far the mean lies
          // from zero.
          const double shift = static_cast<double>(xp[c * plane]);
          double s[2] = {0.0, 0.0};
          channel_sums(xp, shift, xp, shift, batch, channels, plane, c, simd, s);
          const double centered_mean = s[0] / count;
          const double var_sum = std::max(0.0, s[1] - s[0] * centered_mean);
          mp[c] = shift + centered_mean;
          ip[c] = 1.0 / std::sqrt(var_sum / count + eps);
          unbiased[c] = var_sum / (count - 1.0);
        }
      });
    });
    // As BatchNorm's forward: running = (1 - momentum) running + momentum batch, the
    // variance unbiased; one more batch counted.
    const double momentum = *bn->options.momentum();
    auto var = torch::tensor(unbiased, torch::kDouble);
    bn->running_mean.copy_(bn->running_mean.to(torch::kDouble) * (1.0 - momentum) +
                           mean * momentum);
    bn->running_var.copy_(bn->running_var.to(torch::kDouble) * (1.0 - momentum) +
                          var * momentum);
    bn->num_batches_tracked.add_(1);
  }
  *mean_out = mean;
  *invstd_out = invstd;
}

template <typename T>
void affine_terms(const torch::Tensor& weight, const torch::Tensor& bias, const double* mean,
                  const double* invstd, int64_t channels, std::vector<T>* alpha,
                  std::vector<T>* beta) {
  auto w = weight.defined() ? weight.to(torch::kDouble).contiguous() : weight;
  auto b = bias.defined() ? bias.to(torch::kDouble).contiguous() : bias;
  alpha->resize(static_cast<size_t>(channels));
  beta->resize(static_cast<size_t>(channels));
  for (int64_t c = 0; c < channels; ++c) {
    const double a = invstd[c] * (w.defined() ? w.data_ptr<double>()[c] : 1.0);
    (*alpha)[c] = static_cast<T>(a);
    (*beta)[c] = static_cast<T>((b.defined() ? b.data_ptr<double>()[c] : 0.0) - mean[c] * a);
  }
}
template void affine_terms<float>(const torch::Tensor&, const torch::Tensor&, const double*,
                                  const double*, int64_t, std::vector<float>*,
                                  std::vector<float>*);
template void affine_terms<double>(const torch::Tensor&, const torch::Tensor&, const double*,
                                   const double*, int64_t, std::vector<double>*,
                                   std::vector<double>*);

torch::Tensor backward(const torch::Tensor& dsrc, double scale, const torch::Tensor& x,
                       const torch::Tensor& weight, const double* mean, const double* invstd,
                       bool batch_stats, bool grad_x, std::vector<double>* sum_dy,
                       std::vector<double>* dot) {
  const int64_t batch = x.size(0), channels = x.size(1), plane = x.size(2) * x.size(3);
  const double count = static_cast<double>(batch * plane);
  auto w = weight.defined() ? weight.to(torch::kDouble).contiguous() : weight;
  sum_dy->assign(static_cast<size_t>(channels), 0.0);
  dot->assign(static_cast<size_t>(channels), 0.0);
  const bool simd = cpu_has_avx2_fma();
  torch::Tensor gx;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "batch_norm_backward", [&] {
    const scalar_t* xp = x.data_ptr<scalar_t>();
    const scalar_t* dp = dsrc.data_ptr<scalar_t>();
    at::parallel_for(0, channels, 1, [&](int64_t begin, int64_t end) {
      for (int64_t c = begin; c < end; ++c) {
        double s[2] = {0.0, 0.0};
        channel_sums(dp, 0.0, xp, mean[c], batch, channels, plane, c, simd, s);
        (*sum_dy)[c] = scale * s[0];
        (*dot)[c] = scale * s[1];
      }
    });
    if (!grad_x) return;
    // dL/dx = (dy - [sum_dy / count] - (x - mean) * invstd^2 * [dot / count]) * invstd * w,
    // the bracketed terms only when the statistics came from the batch.
    std::vector<scalar_t> a(static_cast<size_t>(channels)), b(a.size()), c(a.size()),
        mu(a.size());
    for (int64_t ch = 0; ch < channels; ++ch) {
      const double k = invstd[ch] * (w.defined() ? w.data_ptr<double>()[ch] : 1.0);
      a[ch] = static_cast<scalar_t>(scale * k);
      b[ch] = static_cast<scalar_t>(batch_stats ? (*sum_dy)[ch] / count * k : 0.0);
      c[ch] = static_cast<scalar_t>(
          batch_stats ? (*dot)[ch] / count * invstd[ch] * invstd[ch] * k : 0.0);
      mu[ch] = static_cast<scalar_t>(mean[ch]);
    }
    gx = torch::empty_like(x, torch::MemoryFormat::Contiguous);
    scalar_t* gp = gx.data_ptr<scalar_t>();
    at::parallel_for(0, batch * channels, plane_grain(plane), [&](int64_t begin, int64_t end) {
      for (int64_t p = begin; p < end; ++p) {
        const int64_t ch = p % channels, o = p * plane;
        if (vectorized<scalar_t>() && simd) {
          backward_plane_avx2(reinterpret_cast<const float*>(dp + o),
                              reinterpret_cast<const float*>(xp + o), static_cast<float>(a[ch]),
                              static_cast<float>(b[ch]), static_cast<float>(c[ch]),
                              static_cast<float>(mu[ch]), reinterpret_cast<float*>(gp + o),
                              plane);
        } else {
          backward_plane(dp + o, xp + o, a[ch], b[ch], c[ch], mu[ch], gp + o, plane);
        }
      }
    });
  });
  return gx;
}

torch::Tensor weight_grad(const std::vector<double>& dot, const double* invstd,
                          const torch::Tensor& weight) {
  std::vector<double> g(dot.size());
  for (size_t c = 0; c < dot.size(); ++c) g[c] = dot[c] * invstd[c];
  return torch::tensor(g, torch::kDouble).to(weight.options());
}

torch::Tensor bias_grad(const std::vector<double>& sum_dy, const torch::Tensor& like) {
  return torch::tensor(sum_dy, torch::kDouble).to(like.options());
}

}  // namespace loss_detail
}  // namespace mgd
