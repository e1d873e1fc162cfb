// Data for contrastive self-supervised training (MoCo v2, tasks-spec B1): the colour and blur
// augmentations of SimCLR / MoCo v2 on 8-bit images, MoCo v2's pipeline for a data format, and
// a dataset that returns two independently augmented views of each image.
//
// MoCo v2's augmentation (moco/main_moco.py, --aug-plus) is
//   RandomResizedCrop(224, scale 0.2-1), RandomApply(ColorJitter(0.4, 0.4, 0.4, 0.1), p 0.8),
//   RandomGrayscale(p 0.2), RandomApply(GaussianBlur(sigma 0.1-2), p 0.5),
//   RandomHorizontalFlip, ToTensor, Normalize.
// What of it applies to an image depends on its channels:
//   - one channel (MNIST, Fashion-MNIST): brightness and contrast jitter only; saturation and
//     hue do not exist in a gray image and RandomGrayscale leaves it as it is, so those steps
//     are left out;
//   - three channels: brightness, contrast, saturation and hue jitter and RandomGrayscale.
// The blur's sigma is MoCo's relative to the crop: (0.1, 2) pixels at 224, scaled by size / 224
// (on 28-pixel Fashion-MNIST crops it is then at most 0.25 px: next to nothing, as SimCLR
// leaves blur out on small images).
//
// Colour operations follow PIL's ImageEnhance (a blend with a degenerate image: black for
// brightness, the mean gray level for contrast, the grayscale image for saturation), computed
// in float and rounded to 8 bits; the values are close to, not bit-identical with, PIL's. Hue
// is PIL's HSV round trip exactly (torchvision's adjust_hue on a PIL image, bit for bit).
#pragma once

#include <torch/arg.h>

#include <memory>
#include <string>
#include <vector>

#include "mgd/data/dataset.h"
#include "mgd/data/transforms.h"

namespace mgd {
namespace data {

/// Applies `transform` with probability p (torchvision.transforms.RandomApply).
class RandomApply : public Transform {
 public:
  RandomApply(std::shared_ptr<Transform> transform, double p);
  std::string name() const override { return "RandomApply(" + transform_->name() + ")"; }
  void apply(Image& image, Rng& rng) const override;

 private:
  std::shared_ptr<Transform> transform_;
  double p_;
};

struct ColorJitterOptions {
  /// Each factor is drawn uniformly from [max(0, 1 - x), 1 + x]; 0 leaves the property alone.
  TORCH_ARG(double, brightness) = 0.4;
  TORCH_ARG(double, contrast) = 0.4;
  /// Three-channel images only (ignored for one channel).
  TORCH_ARG(double, saturation) = 0.4;
  /// Hue shift drawn uniformly from [-hue, hue], hue in [0, 0.5]; three-channel images only.
  TORCH_ARG(double, hue) = 0.1;
};

/// torchvision's ColorJitter: the adjustments in a random order, each with its own random
/// factor.
class ColorJitter : public Transform {
 public:
  explicit ColorJitter(ColorJitterOptions options = {});
  std::string name() const override { return "ColorJitter"; }
  void apply(Image& image, Rng& rng) const override;

 private:
  ColorJitterOptions options_;
};

/// Blend with black: x * factor.
void adjust_brightness(Image& image, double factor);
/// Blend with the image's mean gray level (rounded): mean + factor * (x - mean).
void adjust_contrast(Image& image, double factor);
/// Blend with the image's grayscale version (three channels; a no-op on one).
void adjust_saturation(Image& image, double factor);
/// Rotates the hue by `factor` (in [-0.5, 0.5]) of a turn: PIL's RGB -> HSV (8-bit) -> RGB
/// round trip with H += uint8(factor * 255), as torchvision's adjust_hue (a no-op on one
/// channel).
void adjust_hue(Image& image, double factor);

/// torchvision.transforms.RandomGrayscale for three-channel images: ITU-R 601-2 luma in every
/// channel with probability p (one-channel images are returned as they are).
class RandomGrayscale : public Transform {
 public:
  explicit RandomGrayscale(double p = 0.1);
  std::string name() const override { return "RandomGrayscale"; }
  void apply(Image& image, Rng& rng) const override;

 private:
  double p_;
};

struct GaussianBlurOptions {
  /// sigma is drawn uniformly from [sigma_min, sigma_max] (pixels).
  TORCH_ARG(double, sigma_min) = 0.1;
  TORCH_ARG(double, sigma_max) = 2.0;
};

/// SimCLR's / MoCo's GaussianBlur: a separable Gaussian of a random sigma, radius ceil(3
/// sigma), edges replicated.
class GaussianBlur : public Transform {
 public:
  explicit GaussianBlur(GaussianBlurOptions options = {});
  std::string name() const override { return "GaussianBlur"; }
  void apply(Image& image, Rng& rng) const override;

 private:
  GaussianBlurOptions options_;
};

/// Blurs `image` with a Gaussian of `sigma` pixels.
void gaussian_blur(Image& image, double sigma);

/// MoCo v2's training augmentation for images of `format` (see the table above): crops of
/// `size` x `size`, then the format's normalization. `channels` selects the colour steps.
Compose moco_v2_transform(const std::string& format, int64_t channels, int64_t size);

/// The crop size of MoCo's views for a format: 28 (MNIST, Fashion-MNIST), 32 (CIFAR), else
/// `image_size`.
int64_t moco_crop_size(const std::string& format, int64_t image_size);

/// Two views of every image of `base` (whose transform is random): get() returns the query
/// view's C channels followed by the key view's, 2C x H x W, drawn one after the other from
/// the sample's Rng; the label is the image's. A Loader then batches B x 2C x H x W.
class TwoViewDataset : public Dataset {
 public:
  explicit TwoViewDataset(std::shared_ptr<const Dataset> base);
  int64_t size() const override { return base_->size(); }
  Example get(int64_t index, Rng& rng) const override;
  int64_t label(int64_t index) const override { return base_->label(index); }
  int64_t num_classes() const override { return base_->num_classes(); }
  /// 2C: both views.
  int64_t channels() const override { return 2 * base_->channels(); }

 private:
  std::shared_ptr<const Dataset> base_;
};

}  // namespace data
}  // namespace mgd
