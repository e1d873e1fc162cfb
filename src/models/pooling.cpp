#include "mgd/models/pooling.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <vector>

namespace mgd::models::detail {

namespace {

// The larger of a and b, NaN winning as in ATen's max pooling (once NaN, always NaN).
inline float max_nan(float a, float b) {
  return (b > a || std::isnan(b)) ? b : a;
}

}  // namespace

torch::Tensor max_pool_3x3_s2(const torch::Tensor& x) {
  const bool graph = torch::GradMode::is_enabled() && x.requires_grad();
  if (graph || x.dim() != 4 || !x.device().is_cpu() || x.scalar_type() != torch::kFloat ||
      !x.is_contiguous() || x.size(2) < 1 || x.size(3) < 1) {
    return torch::max_pool2d(x, 3, 2, 1);
  }
  const int64_t planes = x.size(0) * x.size(1), h = x.size(2), w = x.size(3);
  const int64_t ho = (h - 1) / 2 + 1, wo = (w - 1) / 2 + 1;
  auto out = torch::empty({x.size(0), x.size(1), ho, wo}, x.options());
  const float* in = x.data_ptr<float>();
  float* dst = out.data_ptr<float>();
  at::parallel_for(0, planes, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> row(static_cast<size_t>(w));
    for (int64_t p = begin; p < end; ++p) {
      const float* plane = in + p * h * w;
      float* o = dst + p * ho * wo;
      for (int64_t r = 0; r < ho; ++r) {
        // Rows 2r - 1, 2r, 2r + 1 (those inside the map), column by column: contiguous and
        // vectorizable; then columns 2c - 1, 2c, 2c + 1 of that row of maxima.
        const int64_t top = std::max<int64_t>(2 * r - 1, 0), bottom = std::min(2 * r + 1, h - 1);
        const float* first = plane + top * w;
        for (int64_t c = 0; c < w; ++c) row[static_cast<size_t>(c)] = first[c];
        for (int64_t y = top + 1; y <= bottom; ++y) {
          const float* next = plane + y * w;
          for (int64_t c = 0; c < w; ++c)
            row[static_cast<size_t>(c)] = max_nan(row[static_cast<size_t>(c)], next[c]);
        }
        float* line = o + r * wo;
        for (int64_t c = 0; c < wo; ++c) {
          const int64_t left = std::max<int64_t>(2 * c - 1, 0), right = std::min(2 * c + 1, w - 1);
          float m = row[static_cast<size_t>(left)];
          for (int64_t k = left + 1; k <= right; ++k) m = max_nan(m, row[static_cast<size_t>(k)]);
          line[c] = m;
        }
      }
    }
  });
  return out;
}

}  // namespace mgd::models::detail
