#include "mgd/data/transforms.h"

#include <c10/util/Exception.h>
#include <immintrin.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <cstring>

namespace mgd {
namespace data {
namespace {

// PIL's Resample.c: 8-bit samples are filtered with coefficients in this much fixed point.
constexpr int kPrecisionBits = 32 - 8 - 2;

// Python's round(): half to even, independent of the floating-point environment.
int64_t round_half_even(double x) {
  const double r = std::round(x);  // half away from zero
  if (std::abs(x - std::trunc(x)) == 0.5) return static_cast<int64_t>(2.0 * std::round(x / 2.0));
  return static_cast<int64_t>(r);
}

// PIL's precompute_coeffs() for the bilinear (triangle) filter, with its normalisation to
// fixed point (normalize_coeffs_8bpc). Output pixel i reads inputs [first[i], first[i] +
// count[i]) with weights[i * ksize + k].
struct Coefficients {
  int64_t ksize = 0;
  std::vector<int64_t> first;
  std::vector<int64_t> count;
  std::vector<int32_t> weights;
};

// Coefficients of outputs [first_out, first_out + n_out) of a resize of in_size pixels
// (box [in0, in1)) to out_size.
Coefficients bilinear_coefficients(int64_t in_size, double in0, double in1, int64_t out_size,
                                   int64_t first_out, int64_t n_out) {
  const double scale = (in1 - in0) / static_cast<double>(out_size);
  const double filterscale = std::max(scale, 1.0);
  const double support = 1.0 * filterscale;
  Coefficients c;
  c.ksize = static_cast<int64_t>(std::ceil(support)) * 2 + 1;
  c.first.resize(n_out);
  c.count.resize(n_out);
  c.weights.assign(static_cast<size_t>(n_out * c.ksize), 0);
  std::vector<double> k(static_cast<size_t>(c.ksize));
  for (int64_t i = 0; i < n_out; ++i) {
    const int64_t xx = first_out + i;
    const double center = in0 + (static_cast<double>(xx) + 0.5) * scale;
    const double ss = 1.0 / filterscale;
    // PIL's int casts truncate toward zero; the clamps below make that equal to floor.
    int64_t xmin = static_cast<int64_t>(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    int64_t xmax = static_cast<int64_t>(center + support + 0.5);
    if (xmax > in_size) xmax = in_size;
    xmax = std::min(std::max<int64_t>(xmax - xmin, 0), c.ksize);
    double ww = 0.0;
    for (int64_t x = 0; x < xmax; ++x) {
      double t = std::abs((static_cast<double>(x + xmin) - center + 0.5) * ss);
      const double w = t < 1.0 ? 1.0 - t : 0.0;
      k[x] = w;
      ww += w;
    }
    for (int64_t x = 0; x < xmax; ++x) {
      const double w = ww != 0.0 ? k[x] / ww : k[x];
      const double fixed = w * static_cast<double>(1 << kPrecisionBits);
      c.weights[i * c.ksize + x] = static_cast<int32_t>(w < 0 ? fixed - 0.5 : fixed + 0.5);
    }
    c.first[i] = xmin;
    c.count[i] = xmax;
  }
  return c;
}

// The same coefficients with the outputs in reverse order (a mirrored result).
void reverse_outputs(Coefficients& c) {
  const int64_t n = static_cast<int64_t>(c.first.size());
  std::reverse(c.first.begin(), c.first.end());
  std::reverse(c.count.begin(), c.count.end());
  for (int64_t i = 0, j = n - 1; i < j; ++i, --j) {
    std::swap_ranges(c.weights.begin() + i * c.ksize, c.weights.begin() + (i + 1) * c.ksize,
                     c.weights.begin() + j * c.ksize);
  }
}

inline uint8_t clip8(int32_t v) {
  v >>= kPrecisionBits;
  return static_cast<uint8_t>(v < 0 ? 0 : v > 255 ? 255 : v);
}

// Horizontal pass over `rows` rows starting at `src` (row stride `src_stride` bytes).
// One RGB output pixel of the horizontal pass from the n input pixels at p, PIL's formula.
inline void resample_rgb_pixel(const uint8_t* p, const int32_t* k, int64_t n, uint8_t* out) {
  constexpr int32_t kHalf = 1 << (kPrecisionBits - 1);
  int32_t s0 = kHalf, s1 = kHalf, s2 = kHalf;
  for (int64_t x = 0; x < n; ++x, p += 3) {
    s0 += p[0] * k[x];
    s1 += p[1] * k[x];
    s2 += p[2] * k[x];
  }
  out[0] = clip8(s0);
  out[1] = clip8(s1);
  out[2] = clip8(s2);
}

template <int kC>
void resample_horizontal(const uint8_t* src, int64_t src_stride, int64_t rows, int64_t channels,
                         const Coefficients& c, int64_t out_width, uint8_t* dst) {
  const int64_t C = kC > 0 ? kC : channels;
  constexpr int32_t kHalf = 1 << (kPrecisionBits - 1);
  for (int64_t y = 0; y < rows; ++y) {
    const uint8_t* in = src + y * src_stride;
    uint8_t* out = dst + y * out_width * C;
    for (int64_t xx = 0; xx < out_width; ++xx) {
      const int32_t* k = c.weights.data() + xx * c.ksize;
      const uint8_t* p = in + c.first[xx] * C;
      const int64_t n = c.count[xx];
      if (kC == 3) {
        resample_rgb_pixel(p, k, n, out + xx * 3);
      } else {
        for (int64_t ch = 0; ch < C; ++ch) {
          int32_t s = kHalf;
          for (int64_t x = 0; x < n; ++x) s += p[x * C + ch] * k[x];
          out[xx * C + ch] = clip8(s);
        }
      }
    }
  }
}

bool cpu_has_avx2() {
  static const bool yes = __builtin_cpu_supports("avx2");
  return yes;
}

// 8 int32 sums -> 8 bytes, as clip8 on each: an arithmetic shift, then saturation to int16 and
// to uint8 (a value above 255 saturates to 255 either way, a negative one to 0).
__attribute__((target("avx2"))) inline void store_clip8x8(__m256i acc, uint8_t* out) {
  const __m256i v = _mm256_srai_epi32(acc, kPrecisionBits);
  const __m128i words = _mm_packs_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  _mm_storel_epi64(reinterpret_cast<__m128i*>(out), _mm_packus_epi16(words, words));
}

// The horizontal pass for RGB, PIL's integer arithmetic: two output pixels at a time, one in
// each 128-bit half of a register, one tap per step with each pixel's three channels (and a
// fourth byte, weighted but dropped) in int32 lanes, the sums kept in the register. The pair
// runs to the longer of its two tap counts: the shorter one's extra weights are the zeros that
// pad its row of coefficients. Integer sums: any order gives PIL's result. A tap is read as 4
// bytes where they lie before `limit`; the scalar formula takes the rest.
__attribute__((target("avx2"))) void resample_horizontal_rgb_avx2(
    const uint8_t* src, int64_t src_stride, int64_t rows, const Coefficients& c,
    int64_t out_width, uint8_t* dst, const uint8_t* limit) {
  constexpr int32_t kHalf = 1 << (kPrecisionBits - 1);
  const __m256i half = _mm256_set1_epi32(kHalf);
  for (int64_t y = 0; y < rows; ++y) {
    const uint8_t* in = src + y * src_stride;
    uint8_t* out = dst + y * out_width * 3;
    int64_t xx = 0;
    for (; xx + 2 <= out_width; xx += 2) {
      const int32_t* k0 = c.weights.data() + xx * c.ksize;
      const int32_t* k1 = k0 + c.ksize;
      const uint8_t* p0 = in + c.first[xx] * 3;
      const uint8_t* p1 = in + c.first[xx + 1] * 3;
      const int64_t n = std::max(c.count[xx], c.count[xx + 1]);
      if (p0 + 3 * n + 1 > limit || p1 + 3 * n + 1 > limit) {
        resample_rgb_pixel(p0, k0, c.count[xx], out + xx * 3);
        resample_rgb_pixel(p1, k1, c.count[xx + 1], out + xx * 3 + 3);
        continue;
      }
      __m256i acc = half;
      for (int64_t x = 0; x < n; ++x) {
        int32_t w0, w1;
        std::memcpy(&w0, p0 + 3 * x, 4);
        std::memcpy(&w1, p1 + 3 * x, 4);
        const __m256i pixels = _mm256_cvtepu8_epi32(
            _mm_unpacklo_epi32(_mm_cvtsi32_si128(w0), _mm_cvtsi32_si128(w1)));
        const __m256i weights =
            _mm256_inserti128_si256(_mm256_set1_epi32(k0[x]), _mm_set1_epi32(k1[x]), 1);
        acc = _mm256_add_epi32(acc, _mm256_mullo_epi32(pixels, weights));
      }
      // As store_clip8x8: bytes r0 g0 b0 _ r1 g1 b1 _.
      const __m256i v = _mm256_srai_epi32(acc, kPrecisionBits);
      const __m128i words =
          _mm_packs_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
      const __m128i bytes = _mm_packus_epi16(words, words);
      const int32_t rgb0 = _mm_cvtsi128_si32(bytes), rgb1 = _mm_extract_epi32(bytes, 1);
      std::memcpy(out + xx * 3, &rgb0, 3);
      std::memcpy(out + xx * 3 + 3, &rgb1, 3);
    }
    if (xx < out_width) {
      resample_rgb_pixel(in + c.first[xx] * 3, c.weights.data() + xx * c.ksize, c.count[xx],
                         out + xx * 3);
    }
  }
}

// The vertical pass, 8 bytes of an output row at a time with the sums in registers over all
// taps; the row's last row_bytes % 8 bytes by the scalar formula.
__attribute__((target("avx2"))) void resample_vertical_avx2(const uint8_t* src,
                                                            int64_t src_stride, int64_t row_bytes,
                                                            const Coefficients& c,
                                                            int64_t out_height, uint8_t* dst) {
  constexpr int32_t kHalf = 1 << (kPrecisionBits - 1);
  const __m256i half = _mm256_set1_epi32(kHalf);
  for (int64_t yy = 0; yy < out_height; ++yy) {
    const int32_t* k = c.weights.data() + yy * c.ksize;
    const uint8_t* first = src + c.first[yy] * src_stride;
    const int64_t n = c.count[yy];
    uint8_t* out = dst + yy * row_bytes;
    int64_t i = 0;
    for (; i + 8 <= row_bytes; i += 8) {
      __m256i acc = half;
      for (int64_t y = 0; y < n; ++y) {
        const __m128i bytes =
            _mm_loadl_epi64(reinterpret_cast<const __m128i*>(first + y * src_stride + i));
        acc = _mm256_add_epi32(
            acc, _mm256_mullo_epi32(_mm256_cvtepu8_epi32(bytes), _mm256_set1_epi32(k[y])));
      }
      store_clip8x8(acc, out + i);
    }
    for (; i < row_bytes; ++i) {
      int32_t acc = kHalf;
      for (int64_t y = 0; y < n; ++y) acc += first[y * src_stride + i] * k[y];
      out[i] = clip8(acc);
    }
  }
}

// Vertical pass: output row yy blends input rows [first, first + count) of `src`.
void resample_vertical(const uint8_t* src, int64_t src_stride, int64_t row_bytes,
                       const Coefficients& c, int64_t out_height, uint8_t* dst) {
  if (cpu_has_avx2()) {
    resample_vertical_avx2(src, src_stride, row_bytes, c, out_height, dst);
    return;
  }
  constexpr int32_t kHalf = 1 << (kPrecisionBits - 1);
  std::vector<int32_t> acc(static_cast<size_t>(row_bytes));
  for (int64_t yy = 0; yy < out_height; ++yy) {
    std::fill(acc.begin(), acc.end(), kHalf);
    const int32_t* k = c.weights.data() + yy * c.ksize;
    for (int64_t y = 0; y < c.count[yy]; ++y) {
      const uint8_t* in = src + (c.first[yy] + y) * src_stride;
      const int32_t w = k[y];
      for (int64_t i = 0; i < row_bytes; ++i) acc[i] += in[i] * w;
    }
    uint8_t* out = dst + yy * row_bytes;
    for (int64_t i = 0; i < row_bytes; ++i) out[i] = clip8(acc[i]);
  }
}

void check_image(const Image& image, const char* who) {
  TORCH_CHECK(image.height > 0 && image.width > 0 && image.channels > 0, who,
              ": expected a non-empty image, got ", image.width, "x", image.height, "x",
              image.channels);
  TORCH_CHECK(image.data.size() == static_cast<size_t>(image.height * image.width * image.channels),
              who, ": image holds ", image.data.size(), " bytes, expected ",
              image.height * image.width * image.channels);
}

void check_size(int64_t height, int64_t width, const char* who) {
  TORCH_CHECK(height > 0 && width > 0, "Invalid ", who, " size: ", height, "x", width);
}

}  // namespace

namespace {

// One axis of a resize: the box [start, start + length) of the input to `out` pixels, of which
// outputs [w0, w0 + wn) are computed. Input indices are relative to x0 = floor(start): the
// filter is clamped to the box's pixels, as after PIL's crop().
struct Axis {
  int64_t x0 = 0;
  bool identity = false;  // out == box size, box aligned: a copy along this axis
  int64_t w0 = 0;
  int64_t wn = 0;
  Coefficients c;  // for the window's outputs (unused when identity)
  int64_t need_lo = 0;
  int64_t need_hi = 0;  // inputs [need_lo, need_hi) are read, relative to x0
};

Axis make_axis(double start, double length, int64_t out, int64_t w0, int64_t wn) {
  Axis a;
  a.x0 = static_cast<int64_t>(std::floor(start));
  const int64_t x1 = static_cast<int64_t>(std::ceil(start + length - 1e-9));
  const int64_t in = x1 - a.x0;
  const double b0 = start - static_cast<double>(a.x0), b1 = b0 + length;
  a.identity = out == in && b0 == 0.0 && b1 == static_cast<double>(in);
  a.w0 = w0;
  a.wn = wn;
  if (a.identity) {
    a.need_lo = w0;
    a.need_hi = w0 + wn;
    return a;
  }
  a.c = bilinear_coefficients(in, b0, b1, out, w0, wn);
  a.need_lo = a.c.first[0];
  a.need_hi = 0;
  for (int64_t i = 0; i < wn; ++i) {
    a.need_lo = std::min(a.need_lo, a.c.first[i]);
    a.need_hi = std::max(a.need_hi, a.c.first[i] + a.c.count[i]);
  }
  return a;
}

std::pair<Axis, Axis> make_axes(const ResizePlan& plan) {
  check_size(plan.out_height, plan.out_width, "resize output");
  TORCH_CHECK(plan.width > 0 && plan.height > 0 && plan.left >= 0 && plan.top >= 0,
              "resize: invalid box (top ", plan.top, ", left ", plan.left, ", height ", plan.height,
              ", width ", plan.width, ")");
  Region w{0, 0, plan.out_height, plan.out_width};
  if (plan.window) {
    w = *plan.window;
    TORCH_CHECK(w.top >= 0 && w.left >= 0 && w.height > 0 && w.width > 0 &&
                    w.top + w.height <= plan.out_height && w.left + w.width <= plan.out_width,
                "resize: window (top ", w.top, ", left ", w.left, ", height ", w.height, ", width ",
                w.width, ") does not lie inside the ", plan.out_width, "x", plan.out_height,
                " output");
  }
  return {make_axis(plan.top, plan.height, plan.out_height, w.top, w.height),
          make_axis(plan.left, plan.width, plan.out_width, w.left, w.width)};
}

}  // namespace

Region resize_source(const ResizePlan& plan) {
  const auto [ay, ax] = make_axes(plan);
  return {ay.x0 + ay.need_lo, ax.x0 + ax.need_lo, ay.need_hi - ay.need_lo, ax.need_hi - ax.need_lo};
}

Image resize_region(const Image& image, const ResizePlan& plan, int64_t origin_top,
                    int64_t origin_left) {
  check_image(image, "resize");
  auto [ay, ax] = make_axes(plan);
  // Input pixels needed, in the image's own coordinates.
  const int64_t oy = ay.x0 - origin_top, ox = ax.x0 - origin_left;
  TORCH_CHECK(oy + ay.need_lo >= 0 && oy + ay.need_hi <= image.height && ox + ax.need_lo >= 0 &&
                  ox + ax.need_hi <= image.width,
              "resize: box (top ", plan.top, ", left ", plan.left, ", height ", plan.height,
              ", width ", plan.width, ") needs pixels outside the ", image.width, "x", image.height,
              " image", (origin_top || origin_left) ? " (placed at its origin offset)" : "");
  const int64_t C = image.channels;
  const int64_t stride = image.width * C;
  if (plan.mirror && !ax.identity) {
    // The horizontal pass writes output i where output wn - 1 - i would be: its rows mirrored,
    // and the vertical pass works column by column.
    reverse_outputs(ax.c);
  }
  // Where no horizontal pass runs, the result is mirrored at the end.
  const bool flip_after = plan.mirror && ax.identity;
  Image out(ay.wn, ax.wn, C);
  if (ax.identity && ay.identity) {
    for (int64_t y = 0; y < ay.wn; ++y) {
      std::memcpy(out.row(y), image.row(oy + ay.w0 + y) + (ox + ax.w0) * C,
                  static_cast<size_t>(ax.wn * C));
    }
    if (flip_after) hflip(out);
    return out;
  }
  // Coefficient bounds to image indices.
  for (auto& f : ax.c.first) f += ox;
  for (auto& f : ay.c.first) f += oy;
  if (ax.identity) {
    resample_vertical(image.data.data() + (ox + ax.w0) * C, stride, ax.wn * C, ay.c, ay.wn,
                      out.data.data());
    if (flip_after) hflip(out);
    return out;
  }
  // The rows the horizontal pass must produce: all the vertical pass reads (PIL does the same).
  int64_t row_first, rows;
  if (ay.identity) {
    row_first = oy + ay.w0;
    rows = ay.wn;
  } else {
    row_first = oy + ay.need_lo;
    rows = ay.need_hi - ay.need_lo;
  }
  uint8_t* target = out.data.data();
  std::vector<uint8_t> temp;
  if (!ay.identity) {
    temp.resize(static_cast<size_t>(rows * ax.wn * C));
    target = temp.data();
  }
  const uint8_t* src = image.data.data() + row_first * stride;
  switch (C) {
    case 1:
      resample_horizontal<1>(src, stride, rows, C, ax.c, ax.wn, target);
      break;
    case 3:
      if (cpu_has_avx2()) {
        resample_horizontal_rgb_avx2(src, stride, rows, ax.c, ax.wn, target,
                                     image.data.data() + image.data.size());
      } else {
        resample_horizontal<3>(src, stride, rows, C, ax.c, ax.wn, target);
      }
      break;
    default:
      resample_horizontal<0>(src, stride, rows, C, ax.c, ax.wn, target);
  }
  if (!ay.identity) {
    for (auto& f : ay.c.first) f -= row_first;
    resample_vertical(temp.data(), ax.wn * C, ax.wn * C, ay.c, ay.wn, out.data.data());
  }
  return out;
}

std::array<int64_t, 2> shorter_side_size(int64_t height, int64_t width, int64_t size) {
  TORCH_CHECK(size > 0, "Invalid resize size: ", size);
  check_size(height, width, "image");
  // torchvision's _compute_resized_output_size: int(size * long / short), truncated.
  if (width <= height) {
    return {static_cast<int64_t>(static_cast<double>(size) * static_cast<double>(height) /
                                 static_cast<double>(width)),
            size};
  }
  return {size, static_cast<int64_t>(static_cast<double>(size) * static_cast<double>(width) /
                                     static_cast<double>(height))};
}

Image crop(const Image& image, const Region& region) {
  check_size(region.height, region.width, "crop");
  const int64_t C = image.channels;
  Image out(region.height, region.width, C);
  // The part of the box inside the image; the rest stays zero.
  const int64_t x_begin = std::max<int64_t>(region.left, 0);
  const int64_t x_end = std::min<int64_t>(region.left + region.width, image.width);
  const int64_t y_begin = std::max<int64_t>(region.top, 0);
  const int64_t y_end = std::min<int64_t>(region.top + region.height, image.height);
  if (x_end <= x_begin) return out;
  for (int64_t y = y_begin; y < y_end; ++y) {
    std::memcpy(out.row(y - region.top) + (x_begin - region.left) * C, image.row(y) + x_begin * C,
                static_cast<size_t>((x_end - x_begin) * C));
  }
  return out;
}

void hflip(Image& image) {
  const int64_t C = image.channels;
  for (int64_t y = 0; y < image.height; ++y) {
    uint8_t* row = image.row(y);
    for (int64_t l = 0, r = image.width - 1; l < r; ++l, --r) {
      for (int64_t c = 0; c < C; ++c) std::swap(row[l * C + c], row[r * C + c]);
    }
  }
}

// --- RandomResizedCrop

RandomResizedCrop::RandomResizedCrop(RandomResizedCropOptions options)
    : options_(std::move(options)) {
  check_size(options_.height(), options_.width(), "RandomResizedCrop");
  const auto& s = options_.scale();
  const auto& r = options_.ratio();
  TORCH_CHECK(s.size() == 2 && s[0] > 0 && s[0] <= s[1],
              "Invalid RandomResizedCrop scale: expected 0 < min <= max, got ", s);
  TORCH_CHECK(r.size() == 2 && r[0] > 0 && r[0] <= r[1],
              "Invalid RandomResizedCrop ratio: expected 0 < min <= max, got ", r);
}

Region RandomResizedCrop::get_params(int64_t height, int64_t width, Rng& rng) const {
  check_size(height, width, "image");
  const auto& scale = options_.scale();
  const auto& ratio = options_.ratio();
  const double area = static_cast<double>(height) * static_cast<double>(width);
  const double log_r0 = std::log(ratio[0]), log_r1 = std::log(ratio[1]);
  for (int attempt = 0; attempt < 10; ++attempt) {
    const double target_area = area * rng.uniform(scale[0], scale[1]);
    const double aspect = std::exp(rng.uniform(log_r0, log_r1));
    const int64_t w = round_half_even(std::sqrt(target_area * aspect));
    const int64_t h = round_half_even(std::sqrt(target_area / aspect));
    if (0 < w && w <= width && 0 < h && h <= height) {
      const int64_t top = rng.randint(0, height - h + 1);
      const int64_t left = rng.randint(0, width - w + 1);
      return {top, left, h, w};
    }
  }
  // Fallback: the whole image, or its largest central box with an aspect ratio in range.
  const double in_ratio = static_cast<double>(width) / static_cast<double>(height);
  int64_t w = width, h = height;
  if (in_ratio < ratio[0]) {
    h = round_half_even(static_cast<double>(w) / ratio[0]);
  } else if (in_ratio > ratio[1]) {
    w = round_half_even(static_cast<double>(h) * ratio[1]);
  }
  h = std::max<int64_t>(1, std::min(h, height));
  w = std::max<int64_t>(1, std::min(w, width));
  return {(height - h) / 2, (width - w) / 2, h, w};
}

c10::optional<ResizePlan> RandomResizedCrop::plan(int64_t height, int64_t width, Rng& rng) const {
  const Region box = get_params(height, width, rng);
  ResizePlan p;
  p.top = static_cast<double>(box.top);
  p.left = static_cast<double>(box.left);
  p.height = static_cast<double>(box.height);
  p.width = static_cast<double>(box.width);
  p.out_height = options_.height();
  p.out_width = options_.width();
  return p;
}

void RandomResizedCrop::apply(Image& image, Rng& rng) const {
  check_image(image, "RandomResizedCrop");
  image = resize_region(image, *plan(image.height, image.width, rng));
}

// --- RandomHorizontalFlip

RandomHorizontalFlip::RandomHorizontalFlip(RandomHorizontalFlipOptions options)
    : options_(options) {
  TORCH_CHECK(options_.p() >= 0 && options_.p() <= 1,
              "Invalid RandomHorizontalFlip probability: ", options_.p());
}

void RandomHorizontalFlip::apply(Image& image, Rng& rng) const {
  if (rng.bernoulli(options_.p())) hflip(image);
}

c10::optional<bool> RandomHorizontalFlip::mirror(Rng& rng) const {
  return rng.bernoulli(options_.p());
}

// --- Resize

Resize::Resize(ResizeOptions options) : options_(std::move(options)) {
  const auto& s = options_.size();
  TORCH_CHECK((s.size() == 1 && s[0] > 0) || (s.size() == 2 && s[0] > 0 && s[1] > 0),
              "Invalid Resize size: expected {shorter side} or {height, width}, got ", s);
}

c10::optional<ResizePlan> Resize::plan(int64_t height, int64_t width, Rng&) const {
  const auto& s = options_.size();
  const std::array<int64_t, 2> out =
      s.size() == 1 ? shorter_side_size(height, width, s[0]) : std::array<int64_t, 2>{s[0], s[1]};
  ResizePlan p;
  p.height = static_cast<double>(height);
  p.width = static_cast<double>(width);
  p.out_height = out[0];
  p.out_width = out[1];
  return p;
}

void Resize::apply(Image& image, Rng& rng) const {
  check_image(image, "Resize");
  const ResizePlan p = *plan(image.height, image.width, rng);
  if (p.out_height == image.height && p.out_width == image.width) return;
  image = resize_region(image, p);
}

// --- CenterCrop

CenterCrop::CenterCrop(CenterCropOptions options) : options_(options) {
  check_size(options_.height(), options_.width(), "CenterCrop");
}

c10::optional<Region> CenterCrop::fixed_crop(int64_t height, int64_t width) const {
  const int64_t ch = options_.height(), cw = options_.width();
  // torchvision pads a too-small side with (crop - size) // 2 zeros before it, then crops at
  // round((size - crop) / 2) of the padded image; both collapse into one signed offset.
  const int64_t top =
      ch > height ? -((ch - height) / 2) : round_half_even(static_cast<double>(height - ch) / 2.0);
  const int64_t left =
      cw > width ? -((cw - width) / 2) : round_half_even(static_cast<double>(width - cw) / 2.0);
  return Region{top, left, ch, cw};
}

void CenterCrop::apply(Image& image, Rng&) const {
  check_image(image, "CenterCrop");
  if (options_.height() == image.height && options_.width() == image.width) return;
  image = crop(image, *fixed_crop(image.height, image.width));
}

// --- RandomCrop

RandomCrop::RandomCrop(RandomCropOptions options) : options_(options) {
  check_size(options_.height(), options_.width(), "RandomCrop");
  TORCH_CHECK(options_.padding() >= 0, "Invalid RandomCrop padding: ", options_.padding());
}

void RandomCrop::apply(Image& image, Rng& rng) const {
  check_image(image, "RandomCrop");
  const int64_t pad = options_.padding();
  const int64_t h = image.height + 2 * pad, w = image.width + 2 * pad;
  const int64_t th = options_.height(), tw = options_.width();
  TORCH_CHECK(th <= h && tw <= w, "RandomCrop: crop size ", tw, "x", th,
              " is larger than the padded input image size ", w, "x", h);
  if (th == h && tw == w && pad == 0) return;
  int64_t top = 0, left = 0;
  if (!(th == h && tw == w)) {  // torchvision draws nothing when the sizes are equal
    top = rng.randint(0, h - th + 1);
    left = rng.randint(0, w - tw + 1);
  }
  image = crop(image, {top - pad, left - pad, th, tw});
}

// --- ToTensor and Normalize

NormalizeOptions imagenet_normalize() {
  return NormalizeOptions({0.485, 0.456, 0.406}, {0.229, 0.224, 0.225});
}

namespace {

torch::Tensor to_tensor_with_tables(const Image& image,
                                    const std::vector<std::array<float, 256>>& lut,
                                    const torch::Tensor& into = torch::Tensor()) {
  check_image(image, "ToTensor");
  const int64_t C = image.channels, H = image.height, W = image.width;
  const bool fits = into.defined() && into.is_cpu() && into.scalar_type() == torch::kFloat32 &&
                    into.is_contiguous() && into.sizes() == c10::IntArrayRef({C, H, W});
  torch::Tensor out = fits ? into : torch::empty({C, H, W}, torch::kFloat32);
  float* dst = out.data_ptr<float>();
  const uint8_t* src = image.data.data();
  const int64_t plane = H * W;
  if (C == 3) {
    const float* l0 = lut[0].data();
    const float* l1 = lut[1].data();
    const float* l2 = lut[2].data();
    for (int64_t i = 0; i < plane; ++i) {
      dst[i] = l0[src[3 * i]];
      dst[plane + i] = l1[src[3 * i + 1]];
      dst[2 * plane + i] = l2[src[3 * i + 2]];
    }
  } else {
    for (int64_t c = 0; c < C; ++c) {
      const float* l = lut[c].data();
      for (int64_t i = 0; i < plane; ++i) dst[c * plane + i] = l[src[C * i + c]];
    }
  }
  return out;
}

void check_normalize(const NormalizeOptions& n, int64_t channels) {
  TORCH_CHECK(n.mean().size() == n.std().size() && !n.mean().empty(),
              "Invalid Normalize: mean has ", n.mean().size(), " values and std ", n.std().size());
  TORCH_CHECK(static_cast<int64_t>(n.mean().size()) == channels, "Normalize: ", n.mean().size(),
              " channel statistics for an image of ", channels, " channels");
  for (double s : n.std()) TORCH_CHECK(s != 0.0, "Invalid Normalize std: ", n.std(), " has a zero");
}

// ToTensor's value of each byte, per channel: v / 255 in float.
std::vector<std::array<float, 256>> plain_tables(int64_t channels) {
  std::vector<std::array<float, 256>> lut(static_cast<size_t>(std::max<int64_t>(channels, 1)));
  for (auto& l : lut) {
    for (int v = 0; v < 256; ++v) l[v] = static_cast<float>(v) / 255.0f;
  }
  return lut;
}

// ToTensor then Normalize, per channel, as torchvision: x = v / 255 in float, then
// (x - mean) / std with float32 statistics.
std::vector<std::array<float, 256>> normalize_tables(const NormalizeOptions& normalize,
                                                     int64_t channels) {
  check_normalize(normalize, channels);
  std::vector<std::array<float, 256>> lut(static_cast<size_t>(channels));
  for (int64_t c = 0; c < channels; ++c) {
    const float mean = static_cast<float>(normalize.mean()[c]);
    const float std = static_cast<float>(normalize.std()[c]);
    for (int v = 0; v < 256; ++v) lut[c][v] = (static_cast<float>(v) / 255.0f - mean) / std;
  }
  return lut;
}

}  // namespace

torch::Tensor to_tensor(const Image& image) {
  return to_tensor_with_tables(image, plain_tables(image.channels));
}

torch::Tensor to_tensor(const Image& image, const NormalizeOptions& normalize) {
  return to_tensor_with_tables(image, normalize_tables(normalize, image.channels));
}

torch::Tensor normalize(const torch::Tensor& image, const NormalizeOptions& options) {
  TORCH_CHECK(image.dim() == 3 && image.is_floating_point(),
              "Normalize: expected a float C x H x W tensor, got ", image.sizes(), " ",
              image.dtype());
  check_normalize(options, image.size(0));
  auto mean = torch::tensor(options.mean(), image.options()).view({-1, 1, 1});
  auto std = torch::tensor(options.std(), image.options()).view({-1, 1, 1});
  return (image - mean) / std;
}

// --- Compose

Compose::Compose(std::vector<std::shared_ptr<Transform>> steps,
                 c10::optional<NormalizeOptions> normalize)
    : steps_(std::move(steps)), normalize_(std::move(normalize)) {
  for (const auto& s : steps_) TORCH_CHECK(s, "Compose: null transform");
  if (normalize_) {
    TORCH_CHECK(
        normalize_->mean().size() == normalize_->std().size() && !normalize_->mean().empty(),
        "Invalid Normalize: mean has ", normalize_->mean().size(), " values and std ",
        normalize_->std().size());
  }
}

void Compose::apply_steps(Image& image, Rng& rng, size_t first) const {
  for (size_t i = first; i < steps_.size(); ++i) {
    // A crop-and-resize runs from its plan (by contract what apply() does); a fixed crop
    // right after it is folded in, so only the kept part is resampled.
    c10::optional<ResizePlan> plan = steps_[i]->plan(image.height, image.width, rng);
    if (!plan) {
      steps_[i]->apply(image, rng);
      continue;
    }
    if (i + 1 < steps_.size()) {
      if (auto box = fold_crop(*steps_[i + 1], plan->out_height, plan->out_width)) {
        plan->window = *box;
        ++i;
      }
    }
    image = resize_region(image, *plan);
  }
}

c10::optional<Region> fold_crop(const Transform& crop, int64_t height, int64_t width) {
  c10::optional<Region> box = crop.fixed_crop(height, width);
  if (box && box->top >= 0 && box->left >= 0 && box->top + box->height <= height &&
      box->left + box->width <= width) {
    return box;
  }
  return c10::nullopt;
}

torch::Tensor Compose::finish(const Image& image, const torch::Tensor& into) const {
  return to_tensor_with_tables(
      image, normalize_ ? normalize_tables(*normalize_, image.channels) : plain_tables(image.channels),
      into);
}

torch::Tensor Compose::operator()(Image image, Rng& rng) const {
  apply_steps(image, rng);
  return finish(image);
}

std::string Compose::describe() const {
  std::string s;
  for (const auto& step : steps_) s += step->name() + " -> ";
  s += "ToTensor";
  if (normalize_) s += " -> Normalize";
  return s;
}

Compose imagenet_train_transform(int64_t size) {
  return Compose({std::make_shared<RandomResizedCrop>(RandomResizedCropOptions(size)),
                  std::make_shared<RandomHorizontalFlip>()},
                 imagenet_normalize());
}

Compose imagenet_eval_transform(int64_t resize, int64_t crop) {
  return Compose({std::make_shared<Resize>(ResizeOptions(resize)),
                  std::make_shared<CenterCrop>(CenterCropOptions(crop))},
                 imagenet_normalize());
}

}  // namespace data
}  // namespace mgd
