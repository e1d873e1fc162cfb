#include "mgd/models/winograd.h"

#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <algorithm>
#include <array>
#include <cstdlib>
#include <cstring>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define MGD_WINOGRAD_X86 1
#define MGD_AVX2 __attribute__((target("avx2,fma")))
#endif

namespace mgd::models::detail {
namespace {

constexpr int kOut = 4;            // outputs per tile side: F(4x4, 3x3)
constexpr int kAlpha = 6;          // inputs per tile side
constexpr int kXi = kAlpha * kAlpha;  // transformed values per tile and channel

bool cpu_supports() {
#ifdef MGD_WINOGRAD_X86
  static const bool yes = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return yes;
#else
  return false;
#endif
}

// Tiles per block: the block's transformed inputs and products (36 x tiles x channels each)
// stay within ~256 KB, a core's L2 share; a multiple of the kernel's 6 rows.
int64_t tiles_per_block(int64_t in, int64_t out) {
  const int64_t t = 65536 / (kXi * (in + out));
  return std::max<int64_t>(6, t / 6 * 6);
}

struct Geometry {
  int64_t h, w, tiles_y, tiles_x;
};

#ifdef MGD_WINOGRAD_X86

// r = B^T d over six values, with
// B^T = [4 0 -5 0 1 0; 0 -4 -4 1 1 0; 0 4 -4 -1 1 0; 0 -2 -1 2 1 0; 0 2 -1 -2 1 0; 0 4 0 -5 0 1].
MGD_AVX2 inline void input_transform6(const __m256 d[kAlpha], __m256 r[kAlpha]) {
  const __m256 two = _mm256_set1_ps(2.f), four = _mm256_set1_ps(4.f), five = _mm256_set1_ps(5.f);
  const __m256 t1 = _mm256_fnmadd_ps(four, d[2], d[4]);  // d4 - 4 d2
  const __m256 t2 = _mm256_fnmadd_ps(four, d[1], d[3]);  // d3 - 4 d1
  const __m256 t3 = _mm256_sub_ps(d[4], d[2]);
  const __m256 t4 = _mm256_mul_ps(two, _mm256_sub_ps(d[3], d[1]));
  r[0] = _mm256_fmadd_ps(four, d[0], _mm256_fnmadd_ps(five, d[2], d[4]));
  r[1] = _mm256_add_ps(t1, t2);
  r[2] = _mm256_sub_ps(t1, t2);
  r[3] = _mm256_add_ps(t3, t4);
  r[4] = _mm256_sub_ps(t3, t4);
  r[5] = _mm256_fmadd_ps(four, d[1], _mm256_fnmadd_ps(five, d[3], d[5]));
}

// o = A^T m over six values, with A^T = [1 1 1 1 1 0; 0 1 -1 2 -2 0; 0 1 1 4 4 0; 0 1 -1 8 -8 1].
MGD_AVX2 inline void output_transform6(const __m256 m[kAlpha], __m256 o[kOut]) {
  const __m256 two = _mm256_set1_ps(2.f), four = _mm256_set1_ps(4.f), eight = _mm256_set1_ps(8.f);
  const __m256 a = _mm256_add_ps(m[1], m[2]), b = _mm256_sub_ps(m[1], m[2]);
  const __m256 c = _mm256_add_ps(m[3], m[4]), d = _mm256_sub_ps(m[3], m[4]);
  o[0] = _mm256_add_ps(_mm256_add_ps(m[0], a), c);
  o[1] = _mm256_fmadd_ps(two, d, b);
  o[2] = _mm256_fmadd_ps(four, c, a);
  o[3] = _mm256_add_ps(_mm256_fmadd_ps(eight, d, b), m[5]);
}

// The 36 transformed values of tile (n, ty, tx) for every channel: v[xi * plane + c].
MGD_AVX2 void transform_input_tile(const float* x, const Geometry& g, int64_t channels, int64_t n,
                                   int64_t ty, int64_t tx, float* v, int64_t plane) {
  const int64_t y0 = ty * kOut - 1, x0 = tx * kOut - 1;
  const bool inside = y0 >= 0 && x0 >= 0 && y0 + kAlpha <= g.h && x0 + kAlpha <= g.w;
  const float* image = x + n * g.h * g.w * channels;
  for (int64_t c = 0; c < channels; c += 8) {
    __m256 rows[kAlpha][kAlpha];  // B^T d, [i][j]
    for (int j = 0; j < kAlpha; ++j) {
      const int64_t xx = x0 + j;
      __m256 d[kAlpha];
      for (int i = 0; i < kAlpha; ++i) {
        const int64_t yy = y0 + i;
        d[i] = (inside || (yy >= 0 && yy < g.h && xx >= 0 && xx < g.w))
                   ? _mm256_loadu_ps(image + (yy * g.w + xx) * channels + c)
                   : _mm256_setzero_ps();
      }
      __m256 r[kAlpha];
      input_transform6(d, r);
      for (int i = 0; i < kAlpha; ++i) rows[i][j] = r[i];
    }
    for (int i = 0; i < kAlpha; ++i) {
      __m256 r[kAlpha];
      input_transform6(rows[i], r);
      for (int j = 0; j < kAlpha; ++j) _mm256_storeu_ps(v + (i * kAlpha + j) * plane + c, r[j]);
    }
  }
}

// The outputs of tile (n, ty, tx) from its 36 products m[xi * plane + c]: + bias (+ residual),
// ReLU when asked, stored where the tile lies inside the image.
MGD_AVX2 void transform_output_tile(const float* m, int64_t plane, const float* bias,
                                    const float* residual, bool relu, float* out,
                                    const Geometry& g, int64_t channels, int64_t n, int64_t ty,
                                    int64_t tx) {
  const int64_t y0 = ty * kOut, x0 = tx * kOut;
  const int64_t rows = std::min<int64_t>(kOut, g.h - y0), cols = std::min<int64_t>(kOut, g.w - x0);
  const int64_t base = n * g.h * g.w * channels;
  const __m256 zero = _mm256_setzero_ps();
  for (int64_t c = 0; c < channels; c += 8) {
    __m256 half[kOut][kAlpha];  // A^T m, [i][j]
    for (int j = 0; j < kAlpha; ++j) {
      __m256 col[kAlpha];
      for (int i = 0; i < kAlpha; ++i) col[i] = _mm256_loadu_ps(m + (i * kAlpha + j) * plane + c);
      __m256 o[kOut];
      output_transform6(col, o);
      for (int i = 0; i < kOut; ++i) half[i][j] = o[i];
    }
    const __m256 b = _mm256_loadu_ps(bias + c);
    for (int64_t i = 0; i < rows; ++i) {
      __m256 o[kOut];
      output_transform6(half[i], o);
      for (int64_t j = 0; j < cols; ++j) {
        const int64_t at = base + ((y0 + i) * g.w + x0 + j) * channels + c;
        __m256 y = _mm256_add_ps(o[j], b);
        if (residual) y = _mm256_add_ps(y, _mm256_loadu_ps(residual + at));
        // max(0, y) returns y when y is NaN: a NaN stays visible, as in ATen's ReLU.
        if (relu) y = _mm256_max_ps(zero, y);
        _mm256_storeu_ps(out + at, y);
      }
    }
  }
}

// c[R x 8 NV] = a[R x k] * b[k x 8 NV] (row strides lda, ldb, ldc).
template <int R, int NV>
MGD_AVX2 inline void gemm_kernel(const float* a, int64_t lda, const float* b, int64_t ldb,
                                 float* c, int64_t ldc, int64_t k) {
  __m256 acc[R][NV];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 2
    for (int v = 0; v < NV; ++v) acc[r][v] = _mm256_setzero_ps();
  }
  for (int64_t p = 0; p < k; ++p) {
    __m256 bv[NV];
#pragma GCC unroll 2
    for (int v = 0; v < NV; ++v) bv[v] = _mm256_loadu_ps(b + p * ldb + 8 * v);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const __m256 av = _mm256_broadcast_ss(a + r * lda + p);
#pragma GCC unroll 2
      for (int v = 0; v < NV; ++v) acc[r][v] = _mm256_fmadd_ps(av, bv[v], acc[r][v]);
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 2
    for (int v = 0; v < NV; ++v) _mm256_storeu_ps(c + r * ldc + 8 * v, acc[r][v]);
  }
}

template <int NV>
MGD_AVX2 void gemm_rows(const float* a, int64_t rows, int64_t k, const float* b, int64_t ldb,
                        float* c, int64_t ldc) {
  int64_t r = 0;
  for (; r + 6 <= rows; r += 6) gemm_kernel<6, NV>(a + r * k, k, b, ldb, c + r * ldc, ldc, k);
  const float* ar = a + r * k;
  float* cr = c + r * ldc;
  switch (rows - r) {
    case 5: gemm_kernel<5, NV>(ar, k, b, ldb, cr, ldc, k); break;
    case 4: gemm_kernel<4, NV>(ar, k, b, ldb, cr, ldc, k); break;
    case 3: gemm_kernel<3, NV>(ar, k, b, ldb, cr, ldc, k); break;
    case 2: gemm_kernel<2, NV>(ar, k, b, ldb, cr, ldc, k); break;
    case 1: gemm_kernel<1, NV>(ar, k, b, ldb, cr, ldc, k); break;
    default: break;
  }
}

// c[rows x cols] = a[rows x k] * b[k x cols], a and c row-major and dense, b packed in panels
// of 16 columns (k x 16 each, row-major; the last one k x 8 when cols is not a multiple of 16);
// cols a multiple of 8.
MGD_AVX2 void gemm(const float* a, int64_t rows, int64_t k, const float* b, int64_t cols,
                   float* c) {
  int64_t col = 0;
  for (; col + 16 <= cols; col += 16) gemm_rows<2>(a, rows, k, b + col * k, 16, c + col, cols);
  if (col < cols) gemm_rows<1>(a, rows, k, b + col * k, 8, c + col, cols);
}

#endif  // MGD_WINOGRAD_X86

}  // namespace

bool WinogradConv::applies(int64_t in_channels, int64_t out_channels) {
  const char* v = std::getenv("MGD_WINOGRAD");
  if (v && std::strcmp(v, "0") == 0) return false;
  return cpu_supports() && in_channels > 0 && out_channels > 0 && in_channels % 8 == 0 &&
         out_channels % 8 == 0;
}

WinogradConv::WinogradConv(const torch::Tensor& weight, const torch::Tensor& bias) {
  TORCH_CHECK(weight.dim() == 4 && weight.size(2) == 3 && weight.size(3) == 3,
              "WinogradConv: expected out x in x 3 x 3 weights, got ", weight.sizes());
  out_ = weight.size(0), in_ = weight.size(1);
  TORCH_CHECK(applies(in_, out_), "WinogradConv: not available for ", in_, " -> ", out_,
              " channels on this CPU");
  TORCH_CHECK(bias.dim() == 1 && bias.size(0) == out_, "WinogradConv: expected ", out_,
              " biases, got ", bias.sizes());
  torch::NoGradGuard no_grad;
  // U = G g G^T in double, then float: 36 x in x out.
  const auto g = torch::tensor({1.0 / 4, 0.0, 0.0,                  //
                                -1.0 / 6, -1.0 / 6, -1.0 / 6,       //
                                -1.0 / 6, 1.0 / 6, -1.0 / 6,        //
                                1.0 / 24, 1.0 / 12, 1.0 / 6,        //
                                1.0 / 24, -1.0 / 12, 1.0 / 6,       //
                                0.0, 0.0, 1.0},
                               torch::kDouble)
                     .reshape({kAlpha, 3});
  auto u = torch::matmul(torch::matmul(g, weight.detach().to(torch::kCPU, torch::kDouble)), g.t());
  u = u.permute({2, 3, 1, 0}).reshape({kXi, in_, out_}).to(torch::kFloat);
  // Each 36 x in x out matrix in panels of 16 output channels (gemm's b).
  std::vector<torch::Tensor> panels;
  for (int64_t col = 0; col < out_; col += 16) {
    panels.push_back(u.slice(2, col, std::min(col + 16, out_)).reshape({kXi, -1}));
  }
  u_ = torch::cat(panels, 1).contiguous();
  bias_ = bias.detach().to(torch::kCPU, torch::kFloat).contiguous();
}

torch::Tensor WinogradConv::operator()(const torch::Tensor& x, bool relu,
                                       const torch::Tensor& residual) const {
  TORCH_CHECK(defined(), "WinogradConv: not built");
  TORCH_CHECK(x.dim() == 4 && x.size(1) == in_ && x.scalar_type() == torch::kFloat &&
                  x.device().is_cpu() && x.layout() == torch::kStrided,
              "WinogradConv: expected a float CPU tensor of B x ", in_, " x H x W, got ",
              x.sizes());
#ifdef MGD_WINOGRAD_X86
  const auto input = x.contiguous(torch::MemoryFormat::ChannelsLast);
  const int64_t n = x.size(0);
  const Geometry g{x.size(2), x.size(3), (x.size(2) + kOut - 1) / kOut,
                   (x.size(3) + kOut - 1) / kOut};
  torch::Tensor res;
  if (residual.defined()) {
    TORCH_CHECK(residual.sizes() == torch::IntArrayRef({n, out_, g.h, g.w}) &&
                    residual.scalar_type() == torch::kFloat && residual.device().is_cpu(),
                "WinogradConv: the residual must be a float CPU tensor of ",
                torch::IntArrayRef({n, out_, g.h, g.w}), ", got ", residual.sizes());
    res = residual.contiguous(torch::MemoryFormat::ChannelsLast);
  }
  auto out = torch::empty({n, out_, g.h, g.w},
                          x.options().memory_format(torch::MemoryFormat::ChannelsLast));
  const int64_t tiles_per_image = g.tiles_y * g.tiles_x, tiles = n * tiles_per_image;
  const int64_t block = tiles_per_block(in_, out_);
  const int64_t blocks = (tiles + block - 1) / block;
  const float* xp = input.data_ptr<float>();
  const float* up = u_.data_ptr<float>();
  const float* bp = bias_.data_ptr<float>();
  const float* rp = res.defined() ? res.data_ptr<float>() : nullptr;
  float* op = out.data_ptr<float>();
  const int64_t in = in_, outc = out_;
  // The 36 planes of a block's transformed inputs and of its products one cache line more
  // than their contents apart: the transforms touch all 36 at once, and planes a multiple of
  // 1 KB apart would share a few L1 sets.
  const int64_t v_plane = block * in + 16, m_plane = block * outc + 16;
  // Tiles are numbered image by image, row by row: (image, tile row, tile column) of one.
  const auto tile_at = [&](int64_t tile) {
    return std::array<int64_t, 3>{tile / tiles_per_image, (tile % tiles_per_image) / g.tiles_x,
                                  tile % g.tiles_x};
  };
  at::parallel_for(0, blocks, 1, [&](int64_t begin, int64_t end) {
    // Kept per thread between calls: fresh blocks of this size would be fresh pages each time.
    thread_local std::vector<float> v, m;
    if (v.size() < static_cast<size_t>(kXi * v_plane)) v.resize(kXi * v_plane);
    if (m.size() < static_cast<size_t>(kXi * m_plane)) m.resize(kXi * m_plane);
    for (int64_t b = begin; b < end; ++b) {
      const int64_t first = b * block, count = std::min(block, tiles - first);
      for (int64_t t = 0; t < count; ++t) {
        const auto [image, ty, tx] = tile_at(first + t);
        transform_input_tile(xp, g, in, image, ty, tx, v.data() + t * in, v_plane);
      }
      for (int xi = 0; xi < kXi; ++xi) {
        gemm(v.data() + xi * v_plane, count, in, up + xi * in * outc, outc,
             m.data() + xi * m_plane);
      }
      for (int64_t t = 0; t < count; ++t) {
        const auto [image, ty, tx] = tile_at(first + t);
        transform_output_tile(m.data() + t * outc, m_plane, bp, rp, relu, op, g, outc, image,
                              ty, tx);
      }
    }
  });
  return out;
#else
  (void)relu;
  (void)residual;
  TORCH_CHECK(false, "WinogradConv: needs an x86-64 CPU with AVX2 and FMA");
#endif
}

}  // namespace mgd::models::detail
