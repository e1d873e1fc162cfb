#include "mgd/data/contrastive.h"

#include <c10/util/Exception.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>

namespace mgd {
namespace data {
namespace {

uint8_t to_byte(double v) {
  return static_cast<uint8_t>(std::clamp(std::nearbyint(v), 0.0, 255.0));
}

// ITU-R 601-2 luma of pixel p (PIL's convert("L") weights).
double luma(const uint8_t* p) {
  return 0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2];
}

double draw_factor(double strength, Rng& rng) {
  return rng.uniform(std::max(0.0, 1.0 - strength), 1.0 + strength);
}

}  // namespace

// --- RandomApply

RandomApply::RandomApply(std::shared_ptr<Transform> transform, double p)
    : transform_(std::move(transform)), p_(p) {
  TORCH_CHECK(transform_, "RandomApply: no transform");
  TORCH_CHECK(p >= 0 && p <= 1, "RandomApply: invalid probability ", p);
}

void RandomApply::apply(Image& image, Rng& rng) const {
  // torchvision draws first and skips the transform (and its draws) when not applied.
  if (rng.uniform() < p_) transform_->apply(image, rng);
}

// --- ColorJitter

void adjust_brightness(Image& image, double factor) {
  for (auto& v : image.data) v = to_byte(static_cast<double>(v) * factor);
}

void adjust_contrast(Image& image, double factor) {
  const int64_t pixels = image.height * image.width;
  if (pixels == 0) return;
  double sum = 0;
  for (int64_t i = 0; i < pixels; ++i) {
    const uint8_t* p = image.data.data() + i * image.channels;
    sum += image.channels == 3 ? luma(p) : static_cast<double>(p[0]);
  }
  // PIL: the degenerate image is the mean of the grayscale image, rounded.
  const double mean = std::floor(sum / static_cast<double>(pixels) + 0.5);
  for (auto& v : image.data) v = to_byte(mean + factor * (static_cast<double>(v) - mean));
}

void adjust_saturation(Image& image, double factor) {
  if (image.channels != 3) return;
  const int64_t pixels = image.height * image.width;
  for (int64_t i = 0; i < pixels; ++i) {
    uint8_t* p = image.data.data() + i * 3;
    const double gray = std::nearbyint(luma(p));
    for (int c = 0; c < 3; ++c) p[c] = to_byte(gray + factor * (static_cast<double>(p[c]) - gray));
  }
}

namespace {

// PIL's "HSV" mode of an RGB pixel, 8 bits per component (libImaging's rgb2hsv, which
// follows colorsys: float arithmetic with double constants, truncated to bytes).
void rgb_to_hsv(const uint8_t* rgb, uint8_t* hsv) {
  const uint8_t r = rgb[0], g = rgb[1], b = rgb[2];
  const uint8_t maxc = std::max({r, g, b}), minc = std::min({r, g, b});
  hsv[2] = maxc;
  if (minc == maxc) {
    hsv[0] = hsv[1] = 0;
    return;
  }
  const float range = static_cast<float>(maxc - minc);
  const float sat = range / static_cast<float>(maxc);
  const float rc = static_cast<float>(maxc - r) / range;
  const float gc = static_cast<float>(maxc - g) / range;
  const float bc = static_cast<float>(maxc - b) / range;
  float h = r == maxc ? bc - gc
            : g == maxc ? static_cast<float>(2.0 + rc - bc)
                        : static_cast<float>(4.0 + gc - rc);
  h = static_cast<float>(std::fmod(h / 6.0 + 1.0, 1.0));
  hsv[0] = static_cast<uint8_t>(std::clamp(static_cast<int>(h * 255.0), 0, 255));
  hsv[1] = static_cast<uint8_t>(std::clamp(static_cast<int>(sat * 255.0), 0, 255));
}

// And back (libImaging's hsv2rgb).
void hsv_to_rgb(const uint8_t* hsv, uint8_t* rgb) {
  const uint8_t h = hsv[0], s = hsv[1], v = hsv[2];
  if (s == 0) {
    rgb[0] = rgb[1] = rgb[2] = v;
    return;
  }
  const int i = static_cast<int>(std::floor(static_cast<float>(h) * 6.0 / 255.0));
  const float f = static_cast<float>(static_cast<float>(h) * 6.0 / 255.0 - static_cast<float>(i));
  const float fs = static_cast<float>(static_cast<float>(s) / 255.0);
  const auto byte = [](double x) {
    return static_cast<uint8_t>(std::clamp(static_cast<int>(std::round(x)), 0, 255));
  };
  const uint8_t p = byte(static_cast<float>(v) * (1.0 - fs));
  const uint8_t q = byte(static_cast<float>(v) * (1.0 - fs * f));
  const uint8_t t = byte(static_cast<float>(v) * (1.0 - fs * (1.0 - f)));
  const uint8_t out[6][3] = {{v, t, p}, {q, v, p}, {p, v, t}, {p, q, v}, {t, p, v}, {v, p, q}};
  std::copy(out[i % 6], out[i % 6] + 3, rgb);
}

}  // namespace

void adjust_hue(Image& image, double factor) {
  TORCH_CHECK(factor >= -0.5 && factor <= 0.5, "adjust_hue: factor ", factor,
              " outside [-0.5, 0.5]");
  if (image.channels != 3) return;
  // torchvision's PIL path: H += uint8(factor * 255), truncated toward zero, wrapping.
  const auto shift = static_cast<uint8_t>(static_cast<int>(factor * 255.0) & 0xff);
  const int64_t pixels = image.height * image.width;
  for (int64_t i = 0; i < pixels; ++i) {
    uint8_t* p = image.data.data() + i * 3;
    uint8_t hsv[3];
    rgb_to_hsv(p, hsv);
    hsv[0] = static_cast<uint8_t>(hsv[0] + shift);
    hsv_to_rgb(hsv, p);
  }
}

ColorJitter::ColorJitter(ColorJitterOptions options) : options_(options) {
  for (double v : {options.brightness(), options.contrast(), options.saturation()}) {
    TORCH_CHECK(v >= 0 && std::isfinite(v), "ColorJitter: invalid strength ", v,
                " (expected >= 0)");
  }
  TORCH_CHECK(options.hue() >= 0 && options.hue() <= 0.5, "ColorJitter: invalid hue strength ",
              options.hue(), " (expected in [0, 0.5])");
}

void ColorJitter::apply(Image& image, Rng& rng) const {
  // As torchvision: the order of the adjustments is a random permutation, then each one's
  // factor is drawn when it is applied. Hue joins the permutation only where it applies (a
  // three-channel image, hue > 0), so one-channel pipelines draw what they always drew.
  const bool hue = options_.hue() > 0 && image.channels == 3;
  const auto order = random_permutation(hue ? 4 : 3, rng);
  for (int64_t op : order) {
    if (op == 0 && options_.brightness() > 0) {
      adjust_brightness(image, draw_factor(options_.brightness(), rng));
    } else if (op == 1 && options_.contrast() > 0) {
      adjust_contrast(image, draw_factor(options_.contrast(), rng));
    } else if (op == 2 && options_.saturation() > 0 && image.channels == 3) {
      adjust_saturation(image, draw_factor(options_.saturation(), rng));
    } else if (op == 3) {
      adjust_hue(image, rng.uniform(-options_.hue(), options_.hue()));
    }
  }
}

// --- RandomGrayscale

RandomGrayscale::RandomGrayscale(double p) : p_(p) {
  TORCH_CHECK(p >= 0 && p <= 1, "RandomGrayscale: invalid probability ", p);
}

void RandomGrayscale::apply(Image& image, Rng& rng) const {
  if (!(rng.uniform() < p_) || image.channels != 3) return;
  const int64_t pixels = image.height * image.width;
  for (int64_t i = 0; i < pixels; ++i) {
    uint8_t* p = image.data.data() + i * 3;
    const uint8_t g = to_byte(luma(p));
    p[0] = p[1] = p[2] = g;
  }
}

// --- GaussianBlur

void gaussian_blur(Image& image, double sigma) {
  TORCH_CHECK(sigma > 0 && std::isfinite(sigma), "gaussian_blur: invalid sigma ", sigma);
  const int64_t radius = static_cast<int64_t>(std::ceil(3.0 * sigma));
  std::vector<double> kernel(static_cast<size_t>(2 * radius + 1));
  double total = 0;
  for (int64_t i = -radius; i <= radius; ++i) {
    const double w = std::exp(-0.5 * static_cast<double>(i * i) / (sigma * sigma));
    kernel[static_cast<size_t>(i + radius)] = w;
    total += w;
  }
  for (auto& w : kernel) w /= total;
  const int64_t h = image.height, wd = image.width, c = image.channels;
  std::vector<double> tmp(static_cast<size_t>(h * wd * c));
  // Horizontal pass into doubles, vertical pass back to bytes (one rounding).
  for (int64_t y = 0; y < h; ++y) {
    for (int64_t x = 0; x < wd; ++x) {
      for (int64_t ch = 0; ch < c; ++ch) {
        double acc = 0;
        for (int64_t i = -radius; i <= radius; ++i) {
          const int64_t xx = std::clamp<int64_t>(x + i, 0, wd - 1);
          acc += kernel[static_cast<size_t>(i + radius)] * image.data[(y * wd + xx) * c + ch];
        }
        tmp[(y * wd + x) * c + ch] = acc;
      }
    }
  }
  for (int64_t y = 0; y < h; ++y) {
    for (int64_t x = 0; x < wd; ++x) {
      for (int64_t ch = 0; ch < c; ++ch) {
        double acc = 0;
        for (int64_t i = -radius; i <= radius; ++i) {
          const int64_t yy = std::clamp<int64_t>(y + i, 0, h - 1);
          acc += kernel[static_cast<size_t>(i + radius)] * tmp[(yy * wd + x) * c + ch];
        }
        image.data[(y * wd + x) * c + ch] = to_byte(acc);
      }
    }
  }
}

GaussianBlur::GaussianBlur(GaussianBlurOptions options) : options_(options) {
  TORCH_CHECK(options.sigma_min() > 0 && options.sigma_max() >= options.sigma_min(),
              "GaussianBlur: invalid sigma range [", options.sigma_min(), ", ", options.sigma_max(),
              "]");
}

void GaussianBlur::apply(Image& image, Rng& rng) const {
  gaussian_blur(image, rng.uniform(options_.sigma_min(), options_.sigma_max()));
}

// --- MoCo v2's pipeline

int64_t moco_crop_size(const std::string& format, int64_t image_size) {
  if (format == "mnist" || format == "fashion-mnist") return 28;
  if (format == "cifar10" || format == "cifar100") return 32;
  return image_size;
}

Compose moco_v2_transform(const std::string& format, int64_t channels, int64_t size) {
  TORCH_CHECK(size > 0, "MoCo augmentation: invalid crop size ", size);
  const auto normalize = default_transform(format, /*augment=*/false, size).normalize();
  std::vector<std::shared_ptr<Transform>> steps;
  steps.push_back(
      std::make_shared<RandomResizedCrop>(RandomResizedCropOptions(size).scale({0.2, 1.0})));
  steps.push_back(std::make_shared<RandomApply>(
      std::make_shared<ColorJitter>(ColorJitterOptions()
                                        .saturation(channels == 3 ? 0.4 : 0.0)
                                        .hue(channels == 3 ? 0.1 : 0.0)),
      0.8));
  if (channels == 3) steps.push_back(std::make_shared<RandomGrayscale>(0.2));
  const double scale = static_cast<double>(size) / 224.0;
  steps.push_back(std::make_shared<RandomApply>(
      std::make_shared<GaussianBlur>(
          GaussianBlurOptions().sigma_min(0.1 * scale).sigma_max(2.0 * scale)),
      0.5));
  steps.push_back(std::make_shared<RandomHorizontalFlip>());
  return Compose(steps, normalize);
}

// --- TwoViewDataset

TwoViewDataset::TwoViewDataset(std::shared_ptr<const Dataset> base) : base_(std::move(base)) {
  TORCH_CHECK(base_, "TwoViewDataset: no dataset");
}

Example TwoViewDataset::get(int64_t index, Rng& rng) const {
  Example q = base_->get(index, rng);
  Example k = base_->get(index, rng);
  return {torch::cat({q.image, k.image}, 0), q.label};
}

}  // namespace data
}  // namespace mgd
