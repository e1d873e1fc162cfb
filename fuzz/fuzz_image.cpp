// libFuzzer target: JPEG and PNG decoding (full, region, DCT-scaled) and the resampler.
#include <mgd/data/image.h>
#include <mgd/data/transforms.h>

#include "fuzz_common.h"

using namespace mgd::data;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  mgd_fuzz::init_once();
  // A pixel cap keeps one input's allocation small; the decoders must refuse larger ones
  // before allocating.
  const DecodeOptions options = DecodeOptions().max_pixels(1 << 22);
  try {
    const ImageInfo info = read_image_info(data, size, "fuzz");
    (void)info;
  } catch (const c10::Error&) {
  }
  Image image;
  try {
    image = decode_image(data, size, options, "fuzz");
  } catch (const c10::Error&) {
    return 0;
  }
  // Decoded: the derived paths must agree on sizes and not crash.
  const uint64_t h = static_cast<uint64_t>(size) * 2654435761u;
  try {
    if (image.height > 1 && image.width > 1) {
      Region r;
      r.top = static_cast<int64_t>(h % static_cast<uint64_t>(image.height));
      r.left = static_cast<int64_t>((h >> 16) % static_cast<uint64_t>(image.width));
      r.height = image.height - r.top;
      r.width = image.width - r.left;
      const Image part = decode_image(data, size, DecodeOptions(options).region(r), "fuzz");
      if (part.height != r.height || part.width != r.width) __builtin_trap();
    }
    if (detect_image_format(data, size) == ImageFormat::kJpeg) {
      decode_jpeg(data, size, DecodeOptions(options).scale_eighths(1 + static_cast<int64_t>(h % 8)),
                  "fuzz");
    }
    Rng rng(h);
    RandomResizedCrop(RandomResizedCropOptions(17, 23)).apply(image, rng);
    if (image.height != 17 || image.width != 23) __builtin_trap();
  } catch (const c10::Error&) {
  }
  return 0;
}
