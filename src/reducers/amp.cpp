#include "mgd/reducers/amp.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <immintrin.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <type_traits>

#include "amp_kernel.h"

namespace mgd {
namespace functional {
namespace {

// The composed form, group by group: any device, dtype and autograd.
Reduced amp_reduce_composed(const torch::Tensor& teacher, const torch::Tensor& margins,
                            const torch::Tensor& index) {
  auto groups = group_channels(teacher, index);
  auto feature = groups[0];
  auto largest = feature.abs();
  for (size_t g = 1; g < groups.size(); ++g) {
    auto magnitude = groups[g].abs();
    auto take = magnitude > largest;  // strict: the first group wins ties
    feature = torch::where(take, groups[g], feature);
    if (g + 1 < groups.size()) largest = torch::where(take, magnitude, largest);
  }
  return {feature, group_margins(margins, index).mean(0)};
}

// One output plane from the k source planes src[0..k): what the composed form computes
// element by element, without the k gathered copies and 3k - 2 intermediate maps.
template <typename scalar_t>
void amp_plane(const scalar_t* const* src, int64_t k, scalar_t* out, int64_t begin, int64_t n) {
  for (int64_t e = begin; e < n; ++e) out[e] = reducer_detail::amp_select(src, k, e);
}

__attribute__((target("avx2"))) void amp_plane_avx2(const float* const* src, int64_t k,
                                                    float* out, int64_t n) {
  int64_t e = 0;
  for (; e + 8 <= n; e += 8) _mm256_storeu_ps(out + e, reducer_detail::amp_select8(src, k, e));
  amp_plane(src, k, out, e, n);
}

}  // namespace

Reduced amp_reduce(const torch::Tensor& teacher, const torch::Tensor& margins,
                   const torch::Tensor& index) {
  const bool fused = teacher.is_cpu() && teacher.dim() == 4 &&
                     (teacher.scalar_type() == torch::kFloat ||
                      teacher.scalar_type() == torch::kDouble) &&
                     !(teacher.requires_grad() && torch::GradMode::is_enabled());
  if (!fused) return amp_reduce_composed(teacher, margins, index);
  check_grouping(teacher, index);
  auto source = teacher.contiguous();
  auto idx = index.to(torch::kCPU).contiguous();
  const int64_t batch = source.size(0), t = source.size(1), k = idx.size(0), s = idx.size(1);
  const int64_t plane = source.size(2) * source.size(3);
  auto feature = torch::empty({batch, s, source.size(2), source.size(3)}, source.options());
  const int64_t* ip = idx.data_ptr<int64_t>();
  AT_DISPATCH_FLOATING_TYPES(source.scalar_type(), "amp_reduce", [&] {
    const scalar_t* tp = source.data_ptr<scalar_t>();
    scalar_t* op = feature.data_ptr<scalar_t>();
    const bool avx2 = std::is_same<scalar_t, float>::value && __builtin_cpu_supports("avx2");
    const int64_t grain = std::max<int64_t>(1, 32768 / std::max<int64_t>(plane * k, 1));
    at::parallel_for(0, batch * s, grain, [&](int64_t begin, int64_t end) {
      std::vector<const scalar_t*> src(static_cast<size_t>(k));
      for (int64_t p = begin; p < end; ++p) {
        const int64_t b = p / s, j = p % s;
        for (int64_t g = 0; g < k; ++g) src[g] = tp + (b * t + ip[g * s + j]) * plane;
        scalar_t* out = op + p * plane;
        if (avx2) {
          amp_plane_avx2(reinterpret_cast<const float* const*>(src.data()), k,
                         reinterpret_cast<float*>(out), plane);
        } else {
          amp_plane(src.data(), k, out, 0, plane);
        }
      }
    });
  });
  return {feature, group_margins(margins, index).mean(0)};
}

}  // namespace functional
}  // namespace mgd
