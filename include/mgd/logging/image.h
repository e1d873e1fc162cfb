// Images for TensorBoard: PNG encoding and heat maps of matrices (e.g. the matching cost).
//
// PNG is written by hand (signature, IHDR, one IDAT, IEND; 8 bits per sample, no filtering,
// no interlacing), with zlib for the deflate stream and the chunk CRC-32 (ISO 3309, not the
// CRC-32C of crc32c.h). See the PNG specification (W3C, 2nd edition), sections 5 and 11.
//
// Usage:
//   auto png = mgd::logging::encode_png(torch::rand({3, 32, 32}));        // float RGB in [0, 1]
//   auto img = mgd::logging::heat_map(distiller->cost_matrix(0));          // s x t -> 3 x H x W
//   writer.add_image("matching/cost_0", img, step);
#pragma once

#include <torch/arg.h>
#include <torch/types.h>

#include <cstdint>
#include <string>
#include <vector>

namespace mgd::logging {

/// PNG bytes of `height` x `width` pixels of `channels` 8-bit samples each, stored row-major
/// and interleaved (HWC). `channels`: 1 gray, 2 gray + alpha, 3 RGB, 4 RGBA.
/// `level` is zlib's compression level (0-9).
std::string encode_png(const uint8_t* pixels, int64_t height, int64_t width, int64_t channels,
                       int level = 6);

/// An image tensor in the layout PNG stores: contiguous H x W x C uint8 on the CPU.
/// Accepts H x W (gray) or C x H x W with C in {1, 3, 4} (gray, RGB, RGBA), either uint8 or
/// floating point in [0, 1] (clamped; NaN becomes 0). Anything else throws c10::Error.
torch::Tensor to_hwc_uint8(const torch::Tensor& image);

/// encode_png(to_hwc_uint8(image)).
std::string encode_png(const torch::Tensor& image, int level = 6);

/// How heat_map colours the normalised values.
enum class Colormap {
  kGray,     ///< black (minimum) to white (maximum); the image is H x W
  kViridis,  ///< matplotlib's viridis, dark blue to yellow; perceptually uniform, legible in
             ///< grayscale print; the image is 3 x H x W
};

struct HeatMapOptions {
  /// Colour scale.
  TORCH_ARG(Colormap, colormap) = Colormap::kViridis;
  /// Side in pixels of the square drawn for one matrix entry. 0 picks the largest size up to
  /// 16 that keeps the longer side within 256 pixels (at least 1), because TensorBoard shows
  /// images at their own size and a 16 x 32 matrix would otherwise be a speck.
  TORCH_ARG(int64_t, cell_size) = 0;
};

/// A heat map of a rows x cols matrix: entry (i, j) is the cell at row i, column j. Values are
/// min-max normalised over the finite entries (a constant matrix maps to the low end); +inf
/// maps to the high end, -inf and NaN to the low end. Returns uint8, H x W (kGray) or
/// 3 x H x W (kViridis), ready for EventWriter::add_image.
torch::Tensor heat_map(const torch::Tensor& matrix, const HeatMapOptions& options = {});

/// The same for `rows * cols` row-major doubles (the solver's cost layout).
torch::Tensor heat_map(const std::vector<double>& values, int64_t rows, int64_t cols,
                       const HeatMapOptions& options = {});

}  // namespace mgd::logging
