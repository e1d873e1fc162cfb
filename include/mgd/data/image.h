// 8-bit images in memory, and the JPEG (libjpeg-turbo) and PNG (libpng) codecs.
//
// Decoding reproduces torchvision's default loader, `PIL.Image.open(f).convert("RGB")`, so a
// model sees the same pixels as in a Python pipeline: JPEGs go through the same libjpeg-turbo
// with its accurate integer IDCT and fancy upsampling (identical pixels); grayscale and palette
// images are expanded to RGB; alpha is dropped, not composited; CMYK JPEGs are read with
// Adobe's inverted convention and converted as PIL converts them. Two departures: a 16-bit
// PNG keeps each sample's high byte (PIL saturates 16-bit grayscale at 255), and PNG
// transparency (tRNS) is ignored, as convert("RGB") ignores it.
//
// A file that is not a JPEG or PNG, is corrupt, or is cut short throws c10::Error naming the
// file and what was wrong; so does an image above DecodeOptions::max_pixels, before anything is
// allocated. libjpeg warnings about corrupt entropy data are tolerated, as PIL tolerates them;
// running out of data is not.
//
// Two JPEG shortcuts make decoding for a crop much cheaper (see DecodeOptions): decoding only a
// region (exact: the pixels are those of a full decode) and decoding at a reduced scale in the
// DCT domain (approximate: a different, slightly blurrier downscale).
#pragma once

#include <c10/util/Optional.h>
#include <torch/arg.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace mgd {
namespace data {

/// An 8-bit image: height x width x channels bytes, row-major (HWC), as PIL and OpenCV hold
/// them. The transforms work on it in place; ToTensor turns it into float C x H x W at the end.
struct Image {
  Image() = default;
  /// A zero-filled image.
  Image(int64_t height, int64_t width, int64_t channels);

  int64_t height = 0;
  int64_t width = 0;
  int64_t channels = 0;
  std::vector<uint8_t> data;

  int64_t row_bytes() const { return width * channels; }
  uint8_t* row(int64_t y) { return data.data() + y * row_bytes(); }
  const uint8_t* row(int64_t y) const { return data.data() + y * row_bytes(); }
};

enum class ImageFormat { kUnknown, kJpeg, kPng };

/// What an encoded image's header says.
struct ImageInfo {
  ImageFormat format = ImageFormat::kUnknown;
  int64_t height = 0;
  int64_t width = 0;
};

/// Rows [top, top + height) and columns [left, left + width) of an image.
struct Region {
  int64_t top = 0;
  int64_t left = 0;
  int64_t height = 0;
  int64_t width = 0;
};

struct DecodeOptions {
  /// Refuse images with more pixels than this, before allocating: a guard against
  /// decompression bombs. The default is PIL's (2 x Image.MAX_IMAGE_PIXELS).
  TORCH_ARG(int64_t, max_pixels) = 178956970;
  /// JPEG only: decode at scale_eighths / 8 of the full size (1..8) through libjpeg's scaled
  /// inverse DCT; each side becomes ceil(side * scale_eighths / 8). 8 is full size.
  TORCH_ARG(int64_t, scale_eighths) = 8;
  /// Decode only this region, in the coordinates of the (scaled) output; it must lie inside
  /// the image. For JPEG, libjpeg then skips the inverse DCT and colour conversion outside it
  /// (the entropy decoding before the region's last row still runs). Data after the region
  /// is not read, so a file truncated below it decodes.
  TORCH_ARG(c10::optional<Region>, region) = c10::nullopt;
  /// JPEG only: libjpeg's fast integer IDCT instead of the accurate one PIL uses. Faster;
  /// pixels differ by a few levels.
  TORCH_ARG(bool, fast_idct) = false;
};

/// The format an encoded image's first bytes announce.
ImageFormat detect_image_format(const uint8_t* data, size_t size);

/// Reads only the header. `name` (a file name) is used in error messages.
ImageInfo read_image_info(const uint8_t* data, size_t size, const std::string& name = "<memory>");

/// Decodes a JPEG or PNG (told apart by their signatures, not by the name) to 3-channel RGB.
Image decode_image(const uint8_t* data, size_t size, const DecodeOptions& options = {},
                   const std::string& name = "<memory>");
Image decode_jpeg(const uint8_t* data, size_t size, const DecodeOptions& options = {},
                  const std::string& name = "<memory>");
/// decode_jpeg, where the image may hold more columns than options.region() asks for: those
/// libjpeg decodes for the region's rows anyway (a margin of a few pixels, rounded to its
/// blocks), which saves a copy of each row. `decoded` receives where the image lies, in the
/// coordinates of the (scaled) output; the region's pixels are decode_jpeg's.
Image decode_jpeg_rows(const uint8_t* data, size_t size, const DecodeOptions& options,
                       const std::string& name, Region* decoded);
Image decode_png(const uint8_t* data, size_t size, const DecodeOptions& options = {},
                 const std::string& name = "<memory>");

/// Reads and decodes an image file.
Image read_image(const std::string& path, const DecodeOptions& options = {});

/// A file's whole content. Throws c10::Error naming the file when it cannot be read.
std::vector<uint8_t> read_file(const std::string& path);
/// Writes `bytes` to `path`, replacing it. Throws c10::Error naming the file on failure.
void write_file(const std::string& path, const std::vector<uint8_t>& bytes);

struct JpegEncodeOptions {
  /// libjpeg quality, 1..100.
  TORCH_ARG(int, quality) = 90;
  /// 4:2:0 chroma subsampling (libjpeg's and PIL's default); false for 4:4:4.
  TORCH_ARG(bool, subsample) = true;
  /// Progressive instead of baseline.
  TORCH_ARG(bool, progressive) = false;
};

/// Encodes a 1-channel (grayscale) or 3-channel (RGB) image; for tests, benchmarks and tools.
std::vector<uint8_t> encode_jpeg(const Image& image, const JpegEncodeOptions& options = {});
/// `compression`: zlib's level, 0 (none) to 9 (smallest); -1 is zlib's default (6).
std::vector<uint8_t> encode_png(const Image& image, int compression = -1);

}  // namespace data
}  // namespace mgd
