// The AMP selection on the CPU, shared by amp_reduce (amp.cpp) and the distiller's fused loss
// (src/loss/normalized_margin_loss.cpp), which reduces the teacher map on the fly. Element e of
// the reduction of k source planes src[0..k): the value of largest magnitude, the first group
// winning ties (a strict > on magnitudes; a NaN magnitude is never larger, a NaN in group 0
// stays), as the composed form group by group. Not installed.
#pragma once

#include <immintrin.h>

#include <cmath>
#include <cstdint>

namespace mgd {
namespace reducer_detail {

template <typename T>
inline T amp_select(const T* const* src, int64_t k, int64_t e) {
  T best = src[0][e];
  T largest = std::abs(best);
  for (int64_t g = 1; g < k; ++g) {
    const T v = src[g][e], magnitude = std::abs(v);
    if (magnitude > largest) {
      best = v;
      largest = magnitude;
    }
  }
  return best;
}

/// Elements e .. e + 7 in float: andnot of the sign bit is abs, _CMP_GT_OQ is C++'s > (false
/// on NaN), the blends take a later group only where it is strictly larger.
__attribute__((target("avx2"))) inline __m256 amp_select8(const float* const* src, int64_t k,
                                                          int64_t e) {
  const __m256 sign = _mm256_set1_ps(-0.0f);
  __m256 best = _mm256_loadu_ps(src[0] + e);
  __m256 largest = _mm256_andnot_ps(sign, best);
  for (int64_t g = 1; g < k; ++g) {
    const __m256 v = _mm256_loadu_ps(src[g] + e);
    const __m256 magnitude = _mm256_andnot_ps(sign, v);
    const __m256 take = _mm256_cmp_ps(magnitude, largest, _CMP_GT_OQ);
    best = _mm256_blendv_ps(best, v, take);
    largest = _mm256_blendv_ps(largest, magnitude, take);
  }
  return best;
}

}  // namespace reducer_detail
}  // namespace mgd
