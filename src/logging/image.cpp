#include "mgd/logging/image.h"

#include <torch/torch.h>
#include <zlib.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>

namespace mgd::logging {
namespace {

void put_u32_be(std::string& out, uint32_t v) {
  out.push_back(static_cast<char>((v >> 24) & 0xFF));
  out.push_back(static_cast<char>((v >> 16) & 0xFF));
  out.push_back(static_cast<char>((v >> 8) & 0xFF));
  out.push_back(static_cast<char>(v & 0xFF));
}

// A chunk: length, type, data, CRC-32 of type and data (PNG spec 5.3).
void put_chunk(std::string& out, const char type[4], const std::string& data) {
  put_u32_be(out, static_cast<uint32_t>(data.size()));
  const size_t type_at = out.size();
  out.append(type, 4);
  out.append(data);
  uLong crc = crc32(0L, Z_NULL, 0);
  // zlib's crc32 takes a uInt length; chunks are < 2^31 bytes, but feed it in slices anyway.
  const auto* p = reinterpret_cast<const Bytef*>(out.data() + type_at);
  size_t left = out.size() - type_at;
  while (left > 0) {
    const auto n = static_cast<uInt>(std::min<size_t>(left, 1u << 30));
    crc = crc32(crc, p, n);
    p += n;
    left -= n;
  }
  put_u32_be(out, static_cast<uint32_t>(crc));
}

// PNG colour type for a channel count (PNG spec 11.2.2).
uint8_t color_type(int64_t channels) {
  switch (channels) {
    case 1:
      return 0;  // grayscale
    case 2:
      return 4;  // grayscale with alpha
    case 3:
      return 2;  // truecolour
    default:
      return 6;  // truecolour with alpha
  }
}

// Viridis sampled at 0, 0.1, ..., 1 (the 11 colours R's viridisLite::viridis(11) lists, from
// matplotlib's table), interpolated linearly: within a few levels of the full 256-entry map.
constexpr std::array<std::array<uint8_t, 3>, 11> kViridis = {{{68, 1, 84},
                                                              {72, 37, 118},
                                                              {65, 68, 135},
                                                              {53, 96, 141},
                                                              {42, 120, 142},
                                                              {33, 144, 140},
                                                              {34, 168, 132},
                                                              {67, 191, 113},
                                                              {122, 209, 81},
                                                              {187, 223, 39},
                                                              {253, 231, 37}}};

std::array<uint8_t, 3> viridis(double t) {
  const double x = std::clamp(t, 0.0, 1.0) * (kViridis.size() - 1);
  const size_t i = std::min(static_cast<size_t>(x), kViridis.size() - 2);
  const double f = x - static_cast<double>(i);
  std::array<uint8_t, 3> rgb{};
  for (int c = 0; c < 3; ++c) {
    const double v = kViridis[i][c] + f * (kViridis[i + 1][c] - kViridis[i][c]);
    rgb[c] = static_cast<uint8_t>(std::lround(v));
  }
  return rgb;
}

}  // namespace

std::string encode_png(const uint8_t* pixels, int64_t height, int64_t width, int64_t channels,
                       int level) {
  TORCH_CHECK(height > 0 && width > 0, "encode_png: invalid image size ", height, " x ", width,
              " (both sides must be positive)");
  // PNG stores sizes as 31-bit integers (spec 11.2.2); far below that, memory runs out first.
  constexpr int64_t kMaxSide = std::numeric_limits<int32_t>::max();
  TORCH_CHECK(height <= kMaxSide && width <= kMaxSide, "encode_png: image too large: ", height,
              " x ", width);
  TORCH_CHECK(channels >= 1 && channels <= 4, "encode_png: invalid channel count ", channels,
              " (expected 1, 2, 3 or 4)");
  TORCH_CHECK(level >= 0 && level <= 9, "encode_png: invalid compression level ", level);
  TORCH_CHECK(pixels != nullptr, "encode_png: null pixel buffer");

  // Raw scanlines, each led by its filter byte (0: none).
  const auto row_bytes = static_cast<size_t>(width * channels);
  std::string raw;
  raw.reserve((row_bytes + 1) * static_cast<size_t>(height));
  for (int64_t y = 0; y < height; ++y) {
    raw.push_back('\0');
    raw.append(reinterpret_cast<const char*>(pixels) + static_cast<size_t>(y) * row_bytes,
               row_bytes);
  }

  z_stream zs{};
  TORCH_CHECK(deflateInit(&zs, level) == Z_OK, "encode_png: zlib deflateInit failed");
  std::string idat(deflateBound(&zs, raw.size()), '\0');
  zs.next_in = reinterpret_cast<Bytef*>(raw.data());
  zs.next_out = reinterpret_cast<Bytef*>(idat.data());
  // avail_in/avail_out are uInt: feed in slices so images over 4 GiB would still work.
  size_t in_left = raw.size(), out_left = idat.size();
  int rc = Z_OK;
  while (rc == Z_OK) {
    const auto in_n = static_cast<uInt>(std::min<size_t>(in_left, 1u << 30));
    const auto out_n = static_cast<uInt>(std::min<size_t>(out_left, 1u << 30));
    zs.avail_in = in_n;
    zs.avail_out = out_n;
    rc = deflate(&zs, in_n == in_left ? Z_FINISH : Z_NO_FLUSH);
    in_left -= in_n - zs.avail_in;
    out_left -= out_n - zs.avail_out;
  }
  const auto written = static_cast<size_t>(zs.total_out);
  deflateEnd(&zs);
  TORCH_CHECK(rc == Z_STREAM_END, "encode_png: zlib deflate failed (", rc, ")");
  idat.resize(written);

  std::string ihdr;
  put_u32_be(ihdr, static_cast<uint32_t>(width));
  put_u32_be(ihdr, static_cast<uint32_t>(height));
  ihdr.push_back(8);  // bit depth
  ihdr.push_back(static_cast<char>(color_type(channels)));
  ihdr.push_back(0);  // compression: deflate
  ihdr.push_back(0);  // filter method 0
  ihdr.push_back(0);  // no interlace

  std::string png("\x89PNG\r\n\x1a\n", 8);
  put_chunk(png, "IHDR", ihdr);
  put_chunk(png, "IDAT", idat);
  put_chunk(png, "IEND", std::string());
  return png;
}

torch::Tensor to_hwc_uint8(const torch::Tensor& image) {
  TORCH_CHECK(image.defined(), "image: undefined tensor");
  TORCH_CHECK(image.dim() == 2 || image.dim() == 3,
              "image: expected H x W or C x H x W, got shape ", image.sizes());
  auto x = image.dim() == 2 ? image.unsqueeze(0) : image;
  const int64_t c = x.size(0);
  TORCH_CHECK(c == 1 || c == 3 || c == 4,
              "image: expected 1, 3 or 4 channels (C x H x W), got shape ", image.sizes());
  TORCH_CHECK(x.size(1) > 0 && x.size(2) > 0, "image: empty image of shape ", image.sizes());
  x = x.detach().to(torch::kCPU);
  if (x.scalar_type() != torch::kByte) {
    TORCH_CHECK(x.is_floating_point(), "image: expected uint8 or floating point in [0, 1], got ",
                x.scalar_type());
    x = torch::nan_to_num(x.to(torch::kFloat), 0.0).clamp(0.0, 1.0).mul(255.0).round();
    x = x.to(torch::kByte);
  }
  return x.permute({1, 2, 0}).contiguous();
}

std::string encode_png(const torch::Tensor& image, int level) {
  const auto hwc = to_hwc_uint8(image);
  return encode_png(hwc.data_ptr<uint8_t>(), hwc.size(0), hwc.size(1), hwc.size(2), level);
}

torch::Tensor heat_map(const torch::Tensor& matrix, const HeatMapOptions& options) {
  TORCH_CHECK(matrix.defined() && matrix.dim() == 2,
              "heat_map: expected a rows x cols matrix, got ",
              matrix.defined() ? matrix.sizes() : torch::IntArrayRef{});
  const int64_t rows = matrix.size(0), cols = matrix.size(1);
  TORCH_CHECK(rows > 0 && cols > 0, "heat_map: empty matrix of shape ", matrix.sizes());
  TORCH_CHECK(options.cell_size() >= 0, "heat_map: invalid cell_size ", options.cell_size());
  const auto m = matrix.detach().to(torch::kCPU, torch::kDouble).contiguous();
  const double* v = m.data_ptr<double>();
  const int64_t n = rows * cols;

  double lo = std::numeric_limits<double>::infinity(), hi = -lo;
  for (int64_t i = 0; i < n; ++i) {
    if (std::isfinite(v[i])) {
      lo = std::min(lo, v[i]);
      hi = std::max(hi, v[i]);
    }
  }
  const double range = hi - lo;  // inf - inf = NaN or -inf when no entry is finite
  auto normalise = [&](double x) {
    if (std::isnan(x) || x == -std::numeric_limits<double>::infinity()) return 0.0;
    if (x == std::numeric_limits<double>::infinity()) return 1.0;
    return range > 0 ? (x - lo) / range : 0.0;
  };

  int64_t cell = options.cell_size();
  if (cell == 0) cell = std::clamp<int64_t>(256 / std::max(rows, cols), 1, 16);
  const int64_t height = rows * cell, width = cols * cell;
  const bool gray = options.colormap() == Colormap::kGray;
  const int64_t channels = gray ? 1 : 3;
  auto out = torch::empty({channels, height, width}, torch::kByte);
  uint8_t* o = out.data_ptr<uint8_t>();
  const int64_t plane = height * width;
  for (int64_t i = 0; i < rows; ++i) {
    for (int64_t j = 0; j < cols; ++j) {
      const double t = normalise(v[i * cols + j]);
      std::array<uint8_t, 3> rgb{};
      if (gray) {
        rgb[0] = static_cast<uint8_t>(std::lround(t * 255.0));
      } else {
        rgb = viridis(t);
      }
      for (int64_t c = 0; c < channels; ++c) {
        for (int64_t y = i * cell; y < (i + 1) * cell; ++y) {
          std::fill_n(o + c * plane + y * width + j * cell, cell, rgb[c]);
        }
      }
    }
  }
  return gray ? out.squeeze(0) : out;
}

torch::Tensor heat_map(const std::vector<double>& values, int64_t rows, int64_t cols,
                       const HeatMapOptions& options) {
  TORCH_CHECK(rows >= 0 && cols >= 0 && static_cast<size_t>(rows * cols) == values.size(),
              "heat_map: ", values.size(), " values do not form a ", rows, " x ", cols, " matrix");
  // from_blob does not copy; heat_map only reads, and the vector outlives the call.
  auto m = torch::from_blob(const_cast<double*>(values.data()), {rows, cols}, torch::kDouble);
  return heat_map(m, options);
}

}  // namespace mgd::logging
