// The fuzz targets' bodies, shared by the libFuzzer entry points (fuzz/fuzz_<target>.cpp,
// built and run by scripts/fuzz) and by the regression test that replays every committed
// input of fuzz/regressions/<target>/ and fuzz/seeds/ in the normal test suite
// (tests/fuzz/regressions_test.cpp).
//
// Any input must be parsed or refused with a c10::Error: a crash, a sanitizer report, a hang,
// another exception escaping or an allocation over the fuzzer's limits is a finding.
#pragma once

#include <c10/util/Exception.h>
#include <c10/util/Logging.h>
#include <torch/torch.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "mgd/data/cifar.h"
#include "mgd/data/coco.h"
#include "mgd/data/idx.h"
#include "mgd/data/image.h"
#include "mgd/data/transforms.h"
#include "mgd/serialize/archive.h"
#include "mgd/serialize/checkpoint.h"
#include "mgd/serialize/state_dict.h"

namespace mgd_fuzz {

// c10::Error captures a backtrace when thrown; the targets throw on almost every input.
inline void init_once() {
  static const bool done = [] {
    c10::SetStackTraceFetcher([] { return std::string(); });
    torch::set_num_threads(1);
    return true;
  }();
  (void)done;
}

/// JPEG and PNG decoding (full, region, DCT-scaled) and the resampler.
inline int image(const uint8_t* data, size_t size) {
  using namespace mgd::data;

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
      if (detect_image_format(data, size) == ImageFormat::kJpeg) {
        // The wider rows hold the region's pixels where they say.
        Region at;
        const Image rows =
            decode_jpeg_rows(data, size, DecodeOptions(options).region(r), "fuzz", &at);
        if (at.top != r.top || at.height != r.height || at.left > r.left ||
            at.left + at.width < r.left + r.width || rows.width != at.width ||
            rows.height != r.height)
          __builtin_trap();
        for (int64_t y = 0; y < r.height; ++y) {
          if (std::memcmp(rows.row(y) + (r.left - at.left) * 3, part.row(y),
                          static_cast<size_t>(r.width * 3)) != 0)
            __builtin_trap();
        }
      }
    }
    if (detect_image_format(data, size) == ImageFormat::kJpeg) {
      decode_jpeg(data, size, DecodeOptions(options).scale_eighths(1 + static_cast<int64_t>(h % 8)),
                  "fuzz");
    }
    Rng rng(h);
    {
      // A mirrored resize is the resize flipped.
      Rng replay = rng;
      auto plan = RandomResizedCrop(RandomResizedCropOptions(9, 11)).plan(image.height,
                                                                        image.width, replay);
      if (plan) {
        Image expected = resize_region(image, *plan);
        hflip(expected);
        plan->mirror = true;
        const Image mirrored = resize_region(image, *plan);
        if (mirrored.data != expected.data) __builtin_trap();
      }
    }
    RandomResizedCrop(RandomResizedCropOptions(17, 23)).apply(image, rng);
    if (image.height != 17 || image.width != 23) __builtin_trap();
  } catch (const c10::Error&) {
  }
  return 0;
}

/// IDX parsing, raw and gzip.
inline int idx(const uint8_t* data, size_t size) {
  try {
    mgd::data::parse_idx(data, size, "fuzz");
  } catch (const c10::Error&) {
  }
  try {
    // A small output cap: a bomb must be refused, not expanded.
    mgd::data::gunzip(data, size, "fuzz", size_t{64} << 20);
  } catch (const c10::Error&) {
  }
  return 0;
}

/// CIFAR-10 and CIFAR-100 record parsing.
inline int cifar(const uint8_t* data, size_t size) {
  for (int64_t classes : {10, 100}) {
    try {
      mgd::data::parse_cifar(data, size, classes, "fuzz");
    } catch (const c10::Error&) {
    }
  }
  return 0;
}

/// COCO instances JSON: parsed and checked, or refused. What parses must be consistent.
inline int coco(const uint8_t* data, size_t size) {
  using namespace mgd::data;
  CocoInstances inst;
  try {
    inst = parse_coco_instances(reinterpret_cast<const char*>(data), size, "fuzz.json");
  } catch (const c10::Error&) {
    return 0;
  }
  for (int64_t label = 0; label < inst.num_classes(); ++label) {
    if (inst.label(inst.category_id(label)) != label) __builtin_trap();
  }
  for (size_t i = 0; i < inst.images.size(); ++i) {
    if (inst.image_index(inst.images[i].id) != static_cast<int64_t>(i)) __builtin_trap();
    if (inst.images[i].width <= 0 || inst.images[i].height <= 0) __builtin_trap();
  }
  if (inst.image_annotations.size() != inst.images.size()) __builtin_trap();
  size_t grouped = 0;
  for (size_t i = 0; i < inst.images.size(); ++i) {
    const CocoImage& im = inst.images[i];
    for (int64_t k : inst.image_annotations[i]) {
      const CocoAnnotation& a = inst.annotations.at(static_cast<size_t>(k));
      if (a.image_id != im.id || !(a.bbox[2] > 0 && a.bbox[3] > 0)) __builtin_trap();
      if (a.bbox[0] + a.bbox[2] > static_cast<double>(im.width) + 1.0) __builtin_trap();
      (void)inst.label(a.category_id);
      ++grouped;
    }
  }
  if (grouped != inst.annotations.size()) __builtin_trap();
  return 0;
}

namespace detail {
namespace ser = mgd::serialize;
inline void touch(const ser::Value& v) {
  if (v.is_tensor()) {
    // Reads every element the view reaches. Zero strides can make a view of a small storage
    // huge (as torch.save keeps expanded tensors); those are not worth materializing.
    if (v.to_tensor().numel() <= (int64_t{1} << 22)) (void)v.to_tensor().contiguous().sum();
  } else if (v.is_list() || v.is_tuple()) {
    for (const auto& item : v.items()) touch(item);
  } else if (v.is_dict()) {
    for (const auto& item : v.to_dict()) touch(item.second);
    for (const auto& a : v.to_dict().attributes()) touch(a.second);
  }
}
}  // namespace detail

/// The checkpoint reader: whatever loads is read through, converted to a state_dict, and
/// must survive a save / load round trip.
inline int checkpoint(const uint8_t* data, size_t size) {
  namespace ser = mgd::serialize;
  using detail::touch;

  ser::Value value;
  try {
    value = ser::load_bytes(data, size, "fuzz.pt");
  } catch (const c10::Error&) {
    return 0;
  }
  touch(value);
  try {
    (void)ser::to_state_dict(value);
  } catch (const c10::Error&) {
  }
  std::string saved;
  try {
    saved = ser::save_bytes(value);
  } catch (const c10::Error&) {
    return 0;  // loadable but not savable (e.g. a str that is not UTF-8)
  }
  try {
    touch(ser::load_bytes(saved.data(), saved.size(), "resaved.pt"));
  } catch (const c10::Error& e) {
    std::fprintf(stderr, "round trip failed: %s\n", e.what_without_backtrace());
    std::abort();
  }
  return 0;
}

/// The TorchScript archive check that runs before LibTorch's reader (models/torchscript.h):
/// any input is accepted or refused with a c10::Error. What LibTorch then parses of an
/// accepted archive (TorchScript code, pickles) is LibTorch's, outside this target.
inline int torchscript(const uint8_t* data, size_t size) {
  try {
    mgd::serialize::check_torchscript_archive(data, size, "fuzz.pt");
  } catch (const c10::Error&) {
  }
  return 0;
}

}  // namespace mgd_fuzz
