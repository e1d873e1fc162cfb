// The margin loss's masking rule (spec 6) on one element and on 8 float lanes, shared by
// margin_loss (loss.cpp) and the distiller's fused loss (normalized_margin_loss.cpp):
// target = max(R, m); D = S - target where (S > target) or (target > 0), else (S - target) * 0
// (0, or NaN when the difference is NaN or infinite). Not installed.
#pragma once

#include <immintrin.h>

#include <algorithm>

namespace mgd {
namespace loss_detail {

template <typename T>
inline T masked_difference(T s, T r, T m) {
  const T target = std::max(r, m);  // NaN in R stays NaN, as torch::max
  const T d = s - target;
  return (s > target || target > T(0)) ? d : d * T(0);
}

/// The same, 8 lanes without branches (on random data the scalar form's branches are
/// mispredicted half the time: 6 ns per element). Every lane computes what the scalar form
/// does: max_ps(m, r) is m > r ? m : r, i.e. std::max(r, m) including NaN in r; ordered
/// comparisons are false on NaN as C++'s are; the blend picks d or d * 0.
__attribute__((target("avx2"))) inline __m256 masked_difference8(__m256 s, __m256 r, __m256 m) {
  const __m256 zero = _mm256_setzero_ps();
  const __m256 target = _mm256_max_ps(m, r);
  const __m256 d = _mm256_sub_ps(s, target);
  const __m256 keep = _mm256_or_ps(_mm256_cmp_ps(s, target, _CMP_GT_OQ),
                                   _mm256_cmp_ps(target, zero, _CMP_GT_OQ));
  return _mm256_blendv_ps(_mm256_mul_ps(d, zero), d, keep);
}

}  // namespace loss_detail
}  // namespace mgd
