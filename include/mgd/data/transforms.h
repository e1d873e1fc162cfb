// Image transforms with torchvision's semantics, on 8-bit HWC images.
//
// Geometry and flips work on the bytes of an Image (fast, and no float copy of a large image
// before it has been cropped); ToTensor (bytes / 255, C x H x W float) and Normalize come last.
// The resampling is PIL's bilinear filter, which is what torchvision's transforms run on PIL
// images: a triangle filter whose support widens with the downscale factor (antialiased), in
// 22-bit fixed point, horizontal pass first, rows rounded to 8 bits between the passes. It
// reproduces Image.resize(..., BILINEAR) bit for bit.
//
// Random parameters follow torchvision 0.14 draw for draw in kind (not in value: the numbers
// come from the Rng passed in, see rng.h), including its rounding (Python's round half to even).
//
//   Compose train({std::make_shared<RandomResizedCrop>(RandomResizedCropOptions(224)),
//                  std::make_shared<RandomHorizontalFlip>()},
//                 NormalizeOptions(kImageNetMean, kImageNetStd));
//   torch::Tensor x = train(read_image(path), rng);   // float 3 x 224 x 224
#pragma once

#include <c10/util/Optional.h>
#include <torch/arg.h>
#include <torch/types.h>

#include <array>
#include <memory>
#include <string>
#include <vector>

#include "mgd/data/image.h"
#include "mgd/data/rng.h"

namespace mgd {
namespace data {

/// A crop-and-resize: the box [left, left + width) x [top, top + height) of the input (in
/// pixels, possibly fractional) is resampled to out_height x out_width.
struct ResizePlan {
  double top = 0;
  double left = 0;
  double height = 0;
  double width = 0;
  int64_t out_height = 0;
  int64_t out_width = 0;
  /// Compute only this part of the out_height x out_width result, as a crop of it would keep
  /// (the values are those of the full resize). Unset: all of it.
  c10::optional<Region> window = c10::nullopt;
  /// The result mirrored left to right (after the window), as hflip() on it would: a decoder
  /// folds a RandomHorizontalFlip into the horizontal pass, which then writes its outputs in
  /// reverse order at no cost.
  bool mirror = false;
};

/// Resamples `plan`'s box of `image` with PIL's bilinear filter. Only pixels of the box
/// [floor(left), ceil(left + width)) x [floor(top), ceil(top + height)) are read, as when PIL
/// crops first and then resizes (torchvision's resized_crop): an integral box gives exactly
/// PIL's `image.crop(box).resize(size, Image.BILINEAR)`.
///
/// `image` may hold only part of the input: its pixel (0, 0) is pixel (origin_top,
/// origin_left) of the plan's coordinates, and it must contain resize_source(plan).
Image resize_region(const Image& image, const ResizePlan& plan, int64_t origin_top = 0,
                    int64_t origin_left = 0);

/// The input pixels resize_region() reads for `plan` (the part of the box the filter reaches
/// from the window's outputs): what a decoder must provide.
Region resize_source(const ResizePlan& plan);

/// Torchvision's output size for Resize(size) with one number: the shorter side becomes
/// `size`, the longer is scaled to keep the aspect ratio and truncated. {height, width}.
std::array<int64_t, 2> shorter_side_size(int64_t height, int64_t width, int64_t size);

/// One step of a pipeline. Implementations are immutable and thread-safe: every random
/// choice comes from the Rng argument.
class Transform {
 public:
  virtual ~Transform() = default;
  virtual std::string name() const = 0;
  /// Transforms `image` in place.
  virtual void apply(Image& image, Rng& rng) const = 0;
  /// For a step that crops and resizes: what apply() would do to a height x width image,
  /// drawing from `rng` exactly what apply() draws. A decoder uses it to decode only the box
  /// (and, for a JPEG, to shrink it in the DCT domain). nullopt for other steps.
  virtual c10::optional<ResizePlan> plan(int64_t height, int64_t width, Rng& rng) const {
    (void)height, (void)width, (void)rng;
    return c10::nullopt;
  }
  /// For a crop that draws no randomness: the box it keeps of a height x width image (it may
  /// reach past the image: zero padding). Lets a resize before it compute only that box.
  virtual c10::optional<Region> fixed_crop(int64_t height, int64_t width) const {
    (void)height, (void)width;
    return c10::nullopt;
  }
  /// For a step that may flip the image left to right: draws from `rng` exactly what apply()
  /// draws and says whether apply() would flip. A decoder uses it to fold the flip into a
  /// resize (ResizePlan::mirror). nullopt for other steps (nothing drawn).
  virtual c10::optional<bool> mirror(Rng& rng) const {
    (void)rng;
    return c10::nullopt;
  }
};

/// `crop`'s fixed_crop() of a height x width image when it has one that lies inside the image:
/// a crop a preceding resize can fold into its plan's window.
c10::optional<Region> fold_crop(const Transform& crop, int64_t height, int64_t width);

struct RandomResizedCropOptions {
  /// A size x size output.
  /* implicit */ RandomResizedCropOptions(int64_t size) : height_(size), width_(size) {}
  RandomResizedCropOptions(int64_t height, int64_t width) : height_(height), width_(width) {}
  TORCH_ARG(int64_t, height);
  TORCH_ARG(int64_t, width);
  /// Bounds of the crop's area, as a fraction of the image's.
  TORCH_ARG(std::vector<double>, scale) = std::vector<double>({0.08, 1.0});
  /// Bounds of the crop's aspect ratio (width / height), drawn log-uniformly.
  TORCH_ARG(std::vector<double>, ratio) = std::vector<double>({3.0 / 4.0, 4.0 / 3.0});
};

/// torchvision.transforms.RandomResizedCrop: up to 10 tries for a box of random area and
/// aspect ratio that fits, else the largest centred box with a ratio in range; then resized.
class RandomResizedCrop : public Transform {
 public:
  explicit RandomResizedCrop(RandomResizedCropOptions options);
  std::string name() const override { return "RandomResizedCrop"; }
  void apply(Image& image, Rng& rng) const override;
  c10::optional<ResizePlan> plan(int64_t height, int64_t width, Rng& rng) const override;
  /// The integer crop box (torchvision's get_params): {top, left, height, width}.
  Region get_params(int64_t height, int64_t width, Rng& rng) const;
  const RandomResizedCropOptions& options() const { return options_; }

 private:
  RandomResizedCropOptions options_;
};

struct RandomHorizontalFlipOptions {
  /// Probability of flipping.
  TORCH_ARG(double, p) = 0.5;
};

/// torchvision.transforms.RandomHorizontalFlip: mirrors left-right with probability p.
class RandomHorizontalFlip : public Transform {
 public:
  explicit RandomHorizontalFlip(RandomHorizontalFlipOptions options = {});
  std::string name() const override { return "RandomHorizontalFlip"; }
  void apply(Image& image, Rng& rng) const override;
  c10::optional<bool> mirror(Rng& rng) const override;

 private:
  RandomHorizontalFlipOptions options_;
};

/// Mirrors an image left-right.
void hflip(Image& image);

struct ResizeOptions {
  /// The shorter side becomes `size` (see shorter_side_size()).
  /* implicit */ ResizeOptions(int64_t size) : size_({size}) {}
  /// Exactly height x width.
  ResizeOptions(int64_t height, int64_t width) : size_({height, width}) {}
  TORCH_ARG(std::vector<int64_t>, size);
};

/// torchvision.transforms.Resize with bilinear interpolation.
class Resize : public Transform {
 public:
  explicit Resize(ResizeOptions options);
  std::string name() const override { return "Resize"; }
  void apply(Image& image, Rng& rng) const override;
  c10::optional<ResizePlan> plan(int64_t height, int64_t width, Rng& rng) const override;

 private:
  ResizeOptions options_;
};

struct CenterCropOptions {
  /* implicit */ CenterCropOptions(int64_t size) : height_(size), width_(size) {}
  CenterCropOptions(int64_t height, int64_t width) : height_(height), width_(width) {}
  TORCH_ARG(int64_t, height);
  TORCH_ARG(int64_t, width);
};

/// torchvision.transforms.CenterCrop: the central box, offsets rounded half to even; an image
/// smaller than the crop is first padded with zeros on all sides.
class CenterCrop : public Transform {
 public:
  explicit CenterCrop(CenterCropOptions options);
  std::string name() const override { return "CenterCrop"; }
  void apply(Image& image, Rng& rng) const override;
  c10::optional<Region> fixed_crop(int64_t height, int64_t width) const override;

 private:
  CenterCropOptions options_;
};

struct RandomCropOptions {
  /* implicit */ RandomCropOptions(int64_t size) : height_(size), width_(size) {}
  RandomCropOptions(int64_t height, int64_t width) : height_(height), width_(width) {}
  TORCH_ARG(int64_t, height);
  TORCH_ARG(int64_t, width);
  /// Zero pixels added on every side before cropping (torchvision's padding=int, fill=0).
  TORCH_ARG(int64_t, padding) = 0;
};

/// torchvision.transforms.RandomCrop: pad, then a box at a uniformly random position.
/// An image smaller than the box after padding is an error, as in torchvision.
class RandomCrop : public Transform {
 public:
  explicit RandomCrop(RandomCropOptions options);
  std::string name() const override { return "RandomCrop"; }
  void apply(Image& image, Rng& rng) const override;

 private:
  RandomCropOptions options_;
};

/// Copies the box of `image` that `region` describes; parts outside the image are zero.
Image crop(const Image& image, const Region& region);

/// Per-channel statistics, as torchvision.transforms.Normalize takes them.
struct NormalizeOptions {
  NormalizeOptions(std::vector<double> mean, std::vector<double> std)
      : mean_(std::move(mean)), std_(std::move(std)) {}
  TORCH_ARG(std::vector<double>, mean);
  TORCH_ARG(std::vector<double>, std);
};

/// ImageNet's channel statistics (torchvision's reference recipes).
NormalizeOptions imagenet_normalize();

/// torchvision's ToTensor: uint8 H x W x C -> float C x H x W in [0, 1].
torch::Tensor to_tensor(const Image& image);
/// ToTensor then Normalize, fused: (x / 255 - mean[c]) / std[c], computed in float as
/// torchvision computes it (bit-identical), through a 256-entry table per channel.
torch::Tensor to_tensor(const Image& image, const NormalizeOptions& normalize);
/// torchvision's Normalize on a float C x H x W tensor (returns a new tensor).
torch::Tensor normalize(const torch::Tensor& image, const NormalizeOptions& options);

/// A pipeline: image steps, then ToTensor and (optionally) Normalize.
class Compose {
 public:
  Compose() = default;
  explicit Compose(std::vector<std::shared_ptr<Transform>> steps,
                   c10::optional<NormalizeOptions> normalize = c10::nullopt);
  /// Runs every step, then ToTensor (+ Normalize): float C x H x W.
  torch::Tensor operator()(Image image, Rng& rng) const;
  /// Runs steps [first, end) on `image`. A crop-and-resize followed by a fixed crop
  /// (Resize then CenterCrop) resamples only the kept box: the same pixels, less work.
  void apply_steps(Image& image, Rng& rng, size_t first = 0) const;
  /// The final stage alone: ToTensor (+ Normalize). Written into `into` when that is a
  /// contiguous float tensor of the result's shape (and returned), into a new tensor otherwise.
  torch::Tensor finish(const Image& image, const torch::Tensor& into = torch::Tensor()) const;

  const std::vector<std::shared_ptr<Transform>>& steps() const { return steps_; }
  const c10::optional<NormalizeOptions>& normalize() const { return normalize_; }
  /// "RandomResizedCrop -> RandomHorizontalFlip -> ToTensor -> Normalize", for logs.
  std::string describe() const;

 private:
  std::vector<std::shared_ptr<Transform>> steps_;
  c10::optional<NormalizeOptions> normalize_;
};

/// ImageNet training: RandomResizedCrop(size), RandomHorizontalFlip, Normalize (ImageNet).
Compose imagenet_train_transform(int64_t size = 224);
/// ImageNet evaluation (and MGD's tracking pass): Resize(resize), CenterCrop(crop), Normalize.
Compose imagenet_eval_transform(int64_t resize = 256, int64_t crop = 224);

}  // namespace data
}  // namespace mgd
