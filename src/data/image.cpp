#include "mgd/data/image.h"

#include <c10/util/Exception.h>

#include <algorithm>
#include <cerrno>
#include <csetjmp>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>

// clang-format off: jpeglib.h needs <cstdio> first.
#include <jerror.h>
#include <jpeglib.h>
// clang-format on
#include <png.h>

// libjpeg and libpng report errors by calling back into us; the callbacks below longjmp to the
// setjmp in the function that called the library. Everything those functions touch after
// setjmp lives in a plain struct owned by the caller, and no object with a destructor is
// created in their frames, so the jump skips nothing but the libraries' own C frames.

namespace mgd {
namespace data {
namespace {

constexpr int kMaxJpegScans = 500;  // a progressive JPEG with more scans is hostile (or broken)

bool try_allocate(std::vector<uint8_t>* buffer, size_t bytes) noexcept {
  try {
    buffer->resize(bytes);
    return true;
  } catch (...) {
    return false;
  }
}

std::string pixel_limit_message(int64_t height, int64_t width, int64_t max_pixels) {
  return "image of " + std::to_string(width) + "x" + std::to_string(height) +
         " pixels exceeds the limit of " + std::to_string(max_pixels) +
         " pixels (DecodeOptions::max_pixels)";
}

void check_region(const Region& r, int64_t height, int64_t width, const std::string& name) {
  TORCH_CHECK(r.top >= 0 && r.left >= 0 && r.height > 0 && r.width > 0 &&
                  r.top + r.height <= height && r.left + r.width <= width,
              "decode ", name, ": region (top ", r.top, ", left ", r.left, ", height ", r.height,
              ", width ", r.width, ") does not lie inside the ", width, "x", height, " image");
}

// ---------------------------------------------------------------------------------------------
// JPEG

struct JpegErrorManager {
  jpeg_error_mgr pub;
  jmp_buf jump;
  char message[JMSG_LENGTH_MAX + 64];
};

void jpeg_on_error(j_common_ptr cinfo) {
  auto* err = reinterpret_cast<JpegErrorManager*>(cinfo->err);
  (*cinfo->err->format_message)(cinfo, err->message);
  longjmp(err->jump, 1);
}

void jpeg_on_message(j_common_ptr cinfo, int level) {
  if (level >= 0) return;  // trace messages
  // Corrupt entropy data is tolerated, as PIL tolerates it; running out of data is fatal,
  // as in PIL ("image file is truncated"), instead of libjpeg's grey fill.
  if (cinfo->err->msg_code == JWRN_JPEG_EOF) {
    auto* err = reinterpret_cast<JpegErrorManager*>(cinfo->err);
    std::snprintf(err->message, sizeof(err->message), "file is truncated (premature end of data)");
    longjmp(err->jump, 1);
  }
}

void jpeg_on_progress(j_common_ptr cinfo) {
  if (!cinfo->is_decompressor) return;
  auto* d = reinterpret_cast<j_decompress_ptr>(cinfo);
  if (d->input_scan_number > kMaxJpegScans) {
    auto* err = reinterpret_cast<JpegErrorManager*>(cinfo->err);
    std::snprintf(err->message, sizeof(err->message), "more than %d progressive scans",
                  kMaxJpegScans);
    longjmp(err->jump, 1);
  }
}

// Everything the setjmp frame of run_jpeg() uses.
struct JpegJob {
  // in
  const uint8_t* data = nullptr;
  size_t size = 0;
  bool header_only = false;
  int64_t max_pixels = 0;
  int scale_eighths = 8;
  bool fast_idct = false;
  bool has_region = false;
  Region region;
  // The region's rows may come back wider: all the columns libjpeg decodes for them.
  bool wider = false;
  // out
  int64_t decoded_left = 0;  // the image's first column, in the decoded image's coordinates
  Image* image = nullptr;
  std::vector<uint8_t>* scratch = nullptr;
  int64_t height = 0;
  int64_t width = 0;
  char message[JMSG_LENGTH_MAX + 128] = {0};
  // libjpeg state
  jpeg_decompress_struct cinfo;
  JpegErrorManager err;
  jpeg_progress_mgr progress;
};

// PIL reads 4-component JPEGs as Adobe's inverted CMYK ("CMYK;I") and converts CMYK to RGB
// with Convert.c's cmyk2rgb; this is that conversion on libjpeg's (inverted) output.
void inverted_cmyk_to_rgb(const uint8_t* in, uint8_t* out, int64_t pixels) {
  for (int64_t x = 0; x < pixels; ++x, in += 4, out += 3) {
    const int nk = in[3];  // 255 - k, with k = 255 - in[3]
    for (int c = 0; c < 3; ++c) {
      const int tmp = (255 - in[c]) * nk + 128;
      const int v = nk - (((tmp >> 8) + tmp) >> 8);
      out[c] = static_cast<uint8_t>(v < 0 ? 0 : v > 255 ? 255 : v);
    }
  }
}

// Returns false, with job->message set, on any libjpeg error.
bool run_jpeg(JpegJob* job) {
  jpeg_decompress_struct* cinfo = &job->cinfo;
  cinfo->err = jpeg_std_error(&job->err.pub);
  job->err.pub.error_exit = jpeg_on_error;
  job->err.pub.emit_message = jpeg_on_message;
  job->err.message[0] = '\0';
  if (setjmp(job->err.jump)) {
    std::snprintf(job->message, sizeof(job->message), "%s", job->err.message);
    jpeg_destroy_decompress(cinfo);
    return false;
  }
  jpeg_create_decompress(cinfo);
  job->progress.progress_monitor = jpeg_on_progress;
  cinfo->progress = &job->progress;
  jpeg_mem_src(cinfo, job->data, static_cast<unsigned long>(job->size));
  jpeg_read_header(cinfo, TRUE);
  const bool cmyk = cinfo->jpeg_color_space == JCS_CMYK || cinfo->jpeg_color_space == JCS_YCCK;
  cinfo->out_color_space = cmyk ? JCS_CMYK : JCS_RGB;
  cinfo->scale_num = static_cast<unsigned>(job->scale_eighths);
  cinfo->scale_denom = 8;
  cinfo->dct_method = job->fast_idct ? JDCT_IFAST : JDCT_ISLOW;
  jpeg_calc_output_dimensions(cinfo);
  job->height = cinfo->output_height;
  job->width = cinfo->output_width;
  if (job->header_only) {
    jpeg_destroy_decompress(cinfo);
    return true;
  }
  if (job->height * job->width > job->max_pixels) {
    std::snprintf(job->message, sizeof(job->message), "%s",
                  pixel_limit_message(job->height, job->width, job->max_pixels).c_str());
    jpeg_destroy_decompress(cinfo);
    return false;
  }
  Region r = job->has_region ? job->region : Region{0, 0, job->height, job->width};
  if (r.top < 0 || r.left < 0 || r.height <= 0 || r.width <= 0 || r.top + r.height > job->height ||
      r.left + r.width > job->width) {
    std::snprintf(job->message, sizeof(job->message),
                  "region (top %lld, left %lld, height %lld, width %lld) does not lie inside the "
                  "%lldx%lld image",
                  static_cast<long long>(r.top), static_cast<long long>(r.left),
                  static_cast<long long>(r.height), static_cast<long long>(r.width),
                  static_cast<long long>(job->width), static_cast<long long>(job->height));
    jpeg_destroy_decompress(cinfo);
    return false;
  }
  jpeg_start_decompress(cinfo);
  JDIMENSION x0 = static_cast<JDIMENSION>(r.left);
  JDIMENSION cropped_width = static_cast<JDIMENSION>(r.width);
  if (r.left > 0 || r.width < job->width) {
    // Fancy upsampling of subsampled chroma treats the crop's edges as the image's, which
    // changes the outermost columns; a margin keeps them out of the region, so its pixels are
    // exactly those of a full decode. jpeg_crop_scanline then rounds x0 down to an iMCU
    // boundary and widens the row to match.
    constexpr int64_t kMargin = 8;
    const int64_t left = std::max<int64_t>(0, r.left - kMargin);
    const int64_t right = std::min<int64_t>(job->width, r.left + r.width + kMargin);
    x0 = static_cast<JDIMENSION>(left);
    cropped_width = static_cast<JDIMENSION>(right - left);
    if (left > 0 || right < job->width) jpeg_crop_scanline(cinfo, &x0, &cropped_width);
  }
  if (r.top > 0) jpeg_skip_scanlines(cinfo, static_cast<JDIMENSION>(r.top));
  const int64_t components = cinfo->output_components;  // 3 (RGB) or 4 (CMYK)
  // Rows straight from libjpeg into the image: those it decodes are the region's, or the
  // caller takes the wider rows.
  const bool direct =
      components == 3 && (job->wider || (x0 == r.left && cropped_width == r.width));
  const int64_t skip = direct ? 0 : r.left - static_cast<int64_t>(x0);
  Image* image = job->image;
  image->height = r.height;
  image->width = direct ? static_cast<int64_t>(cropped_width) : r.width;
  image->channels = 3;
  job->decoded_left = direct ? static_cast<int64_t>(x0) : r.left;
  if (!try_allocate(&image->data, static_cast<size_t>(image->height * image->width * 3))) {
    std::snprintf(job->message, sizeof(job->message), "out of memory");
    jpeg_destroy_decompress(cinfo);
    return false;
  }
  if (!direct && !try_allocate(job->scratch, static_cast<size_t>(cropped_width) * components)) {
    std::snprintf(job->message, sizeof(job->message), "out of memory");
    jpeg_destroy_decompress(cinfo);
    return false;
  }
  for (int64_t y = 0; y < r.height; ++y) {
    JSAMPROW row = direct ? image->row(y) : job->scratch->data();
    while (jpeg_read_scanlines(cinfo, &row, 1) != 1) {
      // Only a suspending data source returns 0 lines; the memory source never does, but a
      // loop that cannot end is worse than an error.
      std::snprintf(job->message, sizeof(job->message), "decoder returned no scanline");
      jpeg_destroy_decompress(cinfo);
      return false;
    }
    if (direct) continue;
    const uint8_t* src = job->scratch->data() + skip * components;
    if (components == 3) {
      std::memcpy(image->row(y), src, static_cast<size_t>(r.width * 3));
    } else {
      inverted_cmyk_to_rgb(src, image->row(y), r.width);
    }
  }
  if (r.top + r.height == job->height) {
    jpeg_finish_decompress(cinfo);
  } else {
    jpeg_abort_decompress(cinfo);
  }
  jpeg_destroy_decompress(cinfo);
  return true;
}

// ---------------------------------------------------------------------------------------------
// PNG

struct PngJob {
  // in
  const uint8_t* data = nullptr;
  size_t size = 0;
  size_t pos = 0;
  int64_t max_pixels = 0;
  // out
  Image* image = nullptr;  // 3 channels when direct, else filled from `pixels`
  std::vector<uint8_t>* pixels = nullptr;
  std::vector<png_bytep>* rows = nullptr;
  int64_t channels = 0;
  char message[256] = {0};
  jmp_buf jump;
  png_structp png = nullptr;  // here, not in run_png()'s frame: it changes after setjmp
  png_infop info = nullptr;
};

void png_on_error(png_structp png, png_const_charp message) {
  auto* job = static_cast<PngJob*>(png_get_error_ptr(png));
  std::snprintf(job->message, sizeof(job->message), "%s", message);
  longjmp(job->jump, 1);
}

void png_on_warning(png_structp, png_const_charp) {}

void png_read_memory(png_structp png, png_bytep out, size_t length) {
  auto* job = static_cast<PngJob*>(png_get_io_ptr(png));
  if (length > job->size - job->pos) png_error(png, "file is truncated (premature end of data)");
  std::memcpy(out, job->data + job->pos, length);
  job->pos += length;
}

bool run_png(PngJob* job) {
  job->png = png_create_read_struct(PNG_LIBPNG_VER_STRING, job, png_on_error, png_on_warning);
  if (!job->png) {
    std::snprintf(job->message, sizeof(job->message), "cannot create a libpng reader");
    return false;
  }
  if (setjmp(job->jump)) {
    png_destroy_read_struct(&job->png, job->info ? &job->info : nullptr, nullptr);
    return false;
  }
  png_structp png = job->png;
  job->info = png_create_info_struct(png);
  if (!job->info) png_error(png, "cannot create a libpng info struct");
  png_infop info = job->info;
  png_set_read_fn(png, job, png_read_memory);
  png_read_info(png, info);
  const int64_t width = png_get_image_width(png, info);
  const int64_t height = png_get_image_height(png, info);
  if (width * height > job->max_pixels) {
    std::snprintf(job->message, sizeof(job->message), "%s",
                  pixel_limit_message(height, width, job->max_pixels).c_str());
    png_destroy_read_struct(&job->png, &job->info, nullptr);
    return false;
  }
  const int color_type = png_get_color_type(png, info);
  const int bit_depth = png_get_bit_depth(png, info);
  if (color_type == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
  if (color_type == PNG_COLOR_TYPE_GRAY && bit_depth < 8) png_set_expand_gray_1_2_4_to_8(png);
  if (bit_depth == 16) png_set_strip_16(png);
  png_set_interlace_handling(png);
  png_read_update_info(png, info);
  // 1 (gray), 2 (gray + alpha), 3 (RGB) or 4 (RGB + alpha; also a palette with tRNS).
  job->channels = png_get_channels(png, info);
  if (png_get_rowbytes(png, info) != static_cast<size_t>(width * job->channels)) {
    png_error(png, "unexpected row size after transformations");
  }
  Image* image = job->image;
  image->height = height;
  image->width = width;
  image->channels = 3;
  const bool direct = job->channels == 3;
  std::vector<uint8_t>* target = direct ? &image->data : job->pixels;
  if (!try_allocate(target, static_cast<size_t>(height * width * job->channels)) ||
      (!direct && !try_allocate(&image->data, static_cast<size_t>(height * width * 3)))) {
    png_error(png, "out of memory");
  }
  try {
    job->rows->resize(static_cast<size_t>(height));
  } catch (...) {
    png_error(png, "out of memory");
  }
  for (int64_t y = 0; y < height; ++y) {
    (*job->rows)[y] = target->data() + y * width * job->channels;
  }
  png_read_image(png, job->rows->data());
  // The chunks after the image data (IEND, text) are not read: like PIL, a file whose image
  // data is complete decodes.
  png_destroy_read_struct(&job->png, &job->info, nullptr);
  return true;
}

void to_rgb(const uint8_t* in, int64_t channels, uint8_t* out, int64_t pixels) {
  for (int64_t i = 0; i < pixels; ++i, in += channels, out += 3) {
    if (channels <= 2) {
      out[0] = out[1] = out[2] = in[0];
    } else {
      out[0] = in[0];
      out[1] = in[1];
      out[2] = in[2];
    }
  }
}

struct PngWriteJob {
  std::vector<uint8_t>* out = nullptr;
  const Image* image = nullptr;
  int compression = -1;
  char message[256] = {0};
  jmp_buf jump;
  png_structp png = nullptr;
  png_infop info = nullptr;
};

void png_write_memory(png_structp png, png_bytep data, size_t length) {
  auto* job = static_cast<PngWriteJob*>(png_get_io_ptr(png));
  try {
    job->out->insert(job->out->end(), data, data + length);
  } catch (...) {
    png_error(png, "out of memory");
  }
}

void png_flush_memory(png_structp) {}

void png_on_write_error(png_structp png, png_const_charp message) {
  auto* job = static_cast<PngWriteJob*>(png_get_error_ptr(png));
  std::snprintf(job->message, sizeof(job->message), "%s", message);
  longjmp(job->jump, 1);
}

bool run_png_write(PngWriteJob* job) {
  job->png =
      png_create_write_struct(PNG_LIBPNG_VER_STRING, job, png_on_write_error, png_on_warning);
  if (!job->png) return false;
  if (setjmp(job->jump)) {
    png_destroy_write_struct(&job->png, job->info ? &job->info : nullptr);
    return false;
  }
  png_structp png = job->png;
  job->info = png_create_info_struct(png);
  if (!job->info) png_error(png, "cannot create a libpng info struct");
  png_infop info = job->info;
  png_set_write_fn(png, job, png_write_memory, png_flush_memory);
  if (job->compression >= 0) png_set_compression_level(png, job->compression);
  const Image& image = *job->image;
  png_set_IHDR(png, info, static_cast<png_uint_32>(image.width),
               static_cast<png_uint_32>(image.height), 8,
               image.channels == 1 ? PNG_COLOR_TYPE_GRAY : PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
               PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  png_write_info(png, info);
  for (int64_t y = 0; y < image.height; ++y) {
    png_write_row(png, const_cast<png_bytep>(image.row(y)));
  }
  png_write_end(png, nullptr);
  png_destroy_write_struct(&job->png, &job->info);
  return true;
}

struct JpegWriteJob {
  const Image* image = nullptr;
  JpegEncodeOptions options;
  unsigned char* buffer = nullptr;  // malloc'ed by libjpeg's memory destination
  unsigned long size = 0;
  char message[JMSG_LENGTH_MAX + 64] = {0};
  jpeg_compress_struct cinfo;
  JpegErrorManager err;
};

bool run_jpeg_write(JpegWriteJob* job) {
  jpeg_compress_struct* cinfo = &job->cinfo;
  cinfo->err = jpeg_std_error(&job->err.pub);
  job->err.pub.error_exit = jpeg_on_error;
  if (setjmp(job->err.jump)) {
    std::snprintf(job->message, sizeof(job->message), "%s", job->err.message);
    jpeg_destroy_compress(cinfo);
    return false;
  }
  jpeg_create_compress(cinfo);
  jpeg_mem_dest(cinfo, &job->buffer, &job->size);
  const Image& image = *job->image;
  cinfo->image_width = static_cast<JDIMENSION>(image.width);
  cinfo->image_height = static_cast<JDIMENSION>(image.height);
  cinfo->input_components = static_cast<int>(image.channels);
  cinfo->in_color_space = image.channels == 1 ? JCS_GRAYSCALE : JCS_RGB;
  jpeg_set_defaults(cinfo);
  jpeg_set_quality(cinfo, job->options.quality(), TRUE);
  if (!job->options.subsample() && image.channels == 3) {
    cinfo->comp_info[0].h_samp_factor = 1;
    cinfo->comp_info[0].v_samp_factor = 1;
  }
  if (job->options.progressive()) jpeg_simple_progression(cinfo);
  jpeg_start_compress(cinfo, TRUE);
  while (cinfo->next_scanline < cinfo->image_height) {
    JSAMPROW row = const_cast<JSAMPROW>(image.row(cinfo->next_scanline));
    jpeg_write_scanlines(cinfo, &row, 1);
  }
  jpeg_finish_compress(cinfo);
  jpeg_destroy_compress(cinfo);
  return true;
}

void check_encodable(const Image& image, const char* what) {
  TORCH_CHECK(image.channels == 1 || image.channels == 3, what, ": expected 1 or 3 channels, got ",
              image.channels);
  TORCH_CHECK(image.height > 0 && image.width > 0 && image.height <= 65500 && image.width <= 65500,
              what, ": invalid image size ", image.width, "x", image.height);
  TORCH_CHECK(image.data.size() == static_cast<size_t>(image.height * image.width * image.channels),
              what, ": image holds ", image.data.size(), " bytes, expected ",
              image.height * image.width * image.channels);
}

}  // namespace

Image::Image(int64_t height, int64_t width, int64_t channels)
    : height(height), width(width), channels(channels) {
  TORCH_CHECK(height >= 0 && width >= 0 && channels > 0, "Invalid image shape ", height, "x", width,
              "x", channels);
  data.assign(static_cast<size_t>(height * width * channels), 0);
}

ImageFormat detect_image_format(const uint8_t* data, size_t size) {
  static const uint8_t kPng[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  if (size >= 3 && data[0] == 0xff && data[1] == 0xd8 && data[2] == 0xff) return ImageFormat::kJpeg;
  if (size >= 8 && std::memcmp(data, kPng, 8) == 0) return ImageFormat::kPng;
  return ImageFormat::kUnknown;
}

ImageInfo read_image_info(const uint8_t* data, size_t size, const std::string& name) {
  ImageInfo info;
  info.format = detect_image_format(data, size);
  if (info.format == ImageFormat::kJpeg) {
    JpegJob job;
    job.data = data;
    job.size = size;
    job.header_only = true;
    TORCH_CHECK(run_jpeg(&job), "cannot read JPEG header of ", name, ": ", job.message);
    info.height = job.height;
    info.width = job.width;
  } else if (info.format == ImageFormat::kPng) {
    // Signature, then the IHDR chunk: length (4), type (4), width (4), height (4), big-endian.
    TORCH_CHECK(size >= 24 && std::memcmp(data + 12, "IHDR", 4) == 0, "cannot read PNG header of ",
                name, ": no IHDR chunk at the start");
    auto be32 = [&](size_t at) {
      return (int64_t{data[at]} << 24) | (int64_t{data[at + 1]} << 16) |
             (int64_t{data[at + 2]} << 8) | int64_t{data[at + 3]};
    };
    info.width = be32(16);
    info.height = be32(20);
    TORCH_CHECK(info.width > 0 && info.height > 0, "cannot read PNG header of ", name,
                ": invalid size ", info.width, "x", info.height);
  } else {
    TORCH_CHECK(false, "cannot decode ", name, ": not a JPEG or PNG file (", size, " bytes)");
  }
  return info;
}

Image decode_jpeg(const uint8_t* data, size_t size, const DecodeOptions& options,
                  const std::string& name) {
  return decode_jpeg_rows(data, size, options, name, nullptr);
}

Image decode_jpeg_rows(const uint8_t* data, size_t size, const DecodeOptions& options,
                       const std::string& name, Region* decoded) {
  TORCH_CHECK(options.scale_eighths() >= 1 && options.scale_eighths() <= 8,
              "Invalid DecodeOptions::scale_eighths: ", options.scale_eighths(), " (1..8)");
  Image image;
  std::vector<uint8_t> scratch;
  JpegJob job;
  job.data = data;
  job.size = size;
  job.max_pixels = options.max_pixels();
  job.scale_eighths = static_cast<int>(options.scale_eighths());
  job.fast_idct = options.fast_idct();
  job.has_region = options.region().has_value();
  if (job.has_region) job.region = *options.region();
  job.wider = decoded != nullptr;
  job.image = &image;
  job.scratch = &scratch;
  TORCH_CHECK(run_jpeg(&job), "cannot decode JPEG ", name, ": ", job.message);
  if (decoded) {
    const Region r = job.has_region ? job.region : Region{0, 0, image.height, image.width};
    *decoded = Region{r.top, job.decoded_left, image.height, image.width};
  }
  return image;
}

Image decode_png(const uint8_t* data, size_t size, const DecodeOptions& options,
                 const std::string& name) {
  Image image;
  std::vector<uint8_t> pixels;
  std::vector<png_bytep> rows;
  PngJob job;
  job.data = data;
  job.size = size;
  job.max_pixels = options.max_pixels();
  job.image = &image;
  job.pixels = &pixels;
  job.rows = &rows;
  TORCH_CHECK(size >= 8 && png_sig_cmp(data, 0, 8) == 0, "cannot decode PNG ", name,
              ": no PNG signature");
  TORCH_CHECK(run_png(&job), "cannot decode PNG ", name, ": ", job.message);
  if (job.channels != 3)
    to_rgb(pixels.data(), job.channels, image.data.data(), image.height * image.width);
  if (options.region()) {
    const Region& r = *options.region();
    check_region(r, image.height, image.width, name);
    Image cropped(r.height, r.width, 3);
    for (int64_t y = 0; y < r.height; ++y) {
      std::memcpy(cropped.row(y), image.row(r.top + y) + r.left * 3,
                  static_cast<size_t>(r.width * 3));
    }
    return cropped;
  }
  return image;
}

Image decode_image(const uint8_t* data, size_t size, const DecodeOptions& options,
                   const std::string& name) {
  switch (detect_image_format(data, size)) {
    case ImageFormat::kJpeg:
      return decode_jpeg(data, size, options, name);
    case ImageFormat::kPng:
      return decode_png(data, size, options, name);
    default:
      TORCH_CHECK(false, "cannot decode ", name, ": not a JPEG or PNG file (", size, " bytes)");
  }
}

Image read_image(const std::string& path, const DecodeOptions& options) {
  const auto bytes = read_file(path);
  return decode_image(bytes.data(), bytes.size(), options, path);
}

std::vector<uint8_t> read_file(const std::string& path) {
  std::error_code ec;
  TORCH_CHECK(!std::filesystem::is_directory(path, ec), "cannot read ", path,
              ": it is a directory, expected a file");
  std::FILE* f = std::fopen(path.c_str(), "rb");
  TORCH_CHECK(f, "cannot open ", path, ": ", std::strerror(errno));
  std::vector<uint8_t> bytes;
  // Read straight into the buffer, sized from the file's length (a file that grows or shrinks
  // meanwhile is read to its end all the same).
  size_t have = 0;
  if (std::fseek(f, 0, SEEK_END) == 0) {
    const long length = std::ftell(f);
    if (length > 0) bytes.resize(static_cast<size_t>(length) + 1);
    std::rewind(f);
  }
  if (bytes.empty()) bytes.resize(1 << 16);
  for (;;) {
    const size_t n = std::fread(bytes.data() + have, 1, bytes.size() - have, f);
    have += n;
    if (have < bytes.size()) break;  // end of file or an error
    bytes.resize(bytes.size() * 2);
  }
  bytes.resize(have);
  const bool failed = std::ferror(f);
  const int error = errno;
  std::fclose(f);
  TORCH_CHECK(!failed, "cannot read ", path, ": ", std::strerror(error));
  return bytes;
}

void write_file(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::FILE* f = std::fopen(path.c_str(), "wb");
  TORCH_CHECK(f, "cannot create ", path, ": ", std::strerror(errno));
  // An empty vector's data() may be null, which fwrite must not be given.
  const size_t written = bytes.empty() ? 0 : std::fwrite(bytes.data(), 1, bytes.size(), f);
  const int error = errno;
  const bool closed = std::fclose(f) == 0;
  TORCH_CHECK(written == bytes.size() && closed, "cannot write ", path, ": ", std::strerror(error));
}

std::vector<uint8_t> encode_png(const Image& image, int compression) {
  check_encodable(image, "encode_png");
  TORCH_CHECK(compression >= -1 && compression <= 9, "encode_png: invalid compression level ",
              compression, " (0..9, or -1 for zlib's default)");
  std::vector<uint8_t> out;
  PngWriteJob job;
  job.out = &out;
  job.image = &image;
  job.compression = compression;
  TORCH_CHECK(run_png_write(&job), "encode_png failed: ", job.message);
  return out;
}

std::vector<uint8_t> encode_jpeg(const Image& image, const JpegEncodeOptions& options) {
  check_encodable(image, "encode_jpeg");
  TORCH_CHECK(options.quality() >= 1 && options.quality() <= 100,
              "Invalid JpegEncodeOptions::quality: ", options.quality(), " (1..100)");
  JpegWriteJob job;
  job.image = &image;
  job.options = options;
  const bool ok = run_jpeg_write(&job);
  std::vector<uint8_t> out;
  if (ok) out.assign(job.buffer, job.buffer + job.size);
  std::free(job.buffer);
  TORCH_CHECK(ok, "encode_jpeg failed: ", job.message);
  return out;
}

}  // namespace data
}  // namespace mgd
