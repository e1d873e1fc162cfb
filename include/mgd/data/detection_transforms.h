// Box-aware transforms for detection: each step changes an image and its boxes together.
//
// The steps are Detectron2's (the reference's data pipeline): ResizeShortestEdge (the shorter
// side becomes one of a list of lengths -- one per sample, drawn from the sample's Rng, for
// multi-scale training -- unless the longer side would pass max_size) and a horizontal flip
// with probability 0.5; normalization comes last, on the float tensor. Boxes are (x0, y0, x1,
// y1) in pixels: a resize scales x by new_w / w and y by new_h / h; a flip maps (x0, x1) to
// (W - x1, W - x0). The steps compute in double and the result is rounded to float once, as
// Detectron2 computes in numpy's float64 before its float32 tensors. After the steps, boxes are
// clipped to the image and those left with a side under 1e-5 px are dropped with their labels
// (Detectron2's filter_empty_instances).
//
// Resampling is PIL's bilinear filter (transforms.h: antialiased, bit-exact with
// Image.resize(..., BILINEAR)), which is what Detectron2's ResizeTransform runs on 8-bit
// images; torchvision's detection transform (bilinear F.interpolate on floats, no antialias)
// gives slightly different pixels on a downscale.
//
// Normalization follows torchvision's convention: bytes / 255, then (x - mean[c]) / std[c]
// (ImageNet's statistics by default, as torchvision's retinanet_resnet50_fpn), not
// Detectron2's BGR 0..255 means with unit std (its Caffe-trained backbones).
//
//   detection::Compose train = detection::train_transform({640, 672, 704, 736, 768, 800}, 1333);
//   DetectionSample s = train(read_image(path), target, rng);
#pragma once

#include <c10/util/Optional.h>
#include <torch/arg.h>
#include <torch/types.h>

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "mgd/data/detection.h"
#include "mgd/data/image.h"
#include "mgd/data/rng.h"
#include "mgd/data/transforms.h"

namespace mgd {
namespace data {
namespace detection {

/// One step of a detection pipeline. Implementations are immutable and thread-safe: every
/// random choice comes from the Rng argument.
class Transform {
 public:
  virtual ~Transform() = default;
  virtual std::string name() const = 0;
  /// Transforms `image` in place and `boxes` (double n x 4, contiguous, x0 y0 x1 y1) with it.
  virtual void apply(Image& image, torch::Tensor& boxes, Rng& rng) const = 0;
};

/// Detectron2's ResizeShortestEdge.get_output_shape: the shorter side becomes `short_edge`,
/// the longer scales with it; if the longer then exceeds `max_size` (> 0; 0: no limit) both
/// are scaled down so that it equals max_size; each side is rounded half up. {height, width}.
std::array<int64_t, 2> shortest_edge_size(int64_t height, int64_t width, int64_t short_edge,
                                          int64_t max_size);

/// Resizes an image to height x width (PIL bilinear) and scales `boxes` (double n x 4) with it.
void resize_with_boxes(Image& image, torch::Tensor& boxes, int64_t height, int64_t width);

/// Mirrors an image left-right and its boxes (double n x 4) with it.
void hflip_with_boxes(Image& image, torch::Tensor& boxes);

struct ResizeShortestEdgeOptions {
  /// One shorter-side length (evaluation) or several (multi-scale training).
  /* implicit */ ResizeShortestEdgeOptions(std::vector<int64_t> short_edge_lengths)
      : short_edge_lengths_(std::move(short_edge_lengths)) {}
  /* implicit */ ResizeShortestEdgeOptions(int64_t short_edge_length)
      : short_edge_lengths_({short_edge_length}) {}
  /// The candidates; one is drawn uniformly per sample (Detectron2's sample_style "choice").
  /// Detectron2's RetinaNet trains on 640..800 by 32 and tests at 800.
  TORCH_ARG(std::vector<int64_t>, short_edge_lengths);
  /// Cap on the longer side (Detectron2's MAX_SIZE_TRAIN / MAX_SIZE_TEST); 0: none.
  TORCH_ARG(int64_t, max_size) = 1333;
};

/// Detectron2's ResizeShortestEdge. Draws one integer from the Rng when there are two or more
/// lengths, nothing otherwise.
class ResizeShortestEdge : public Transform {
 public:
  explicit ResizeShortestEdge(ResizeShortestEdgeOptions options);
  std::string name() const override { return "ResizeShortestEdge"; }
  void apply(Image& image, torch::Tensor& boxes, Rng& rng) const override;
  /// The {height, width} apply() resizes a height x width image to, drawing what apply() draws.
  std::array<int64_t, 2> output_size(int64_t height, int64_t width, Rng& rng) const;
  const ResizeShortestEdgeOptions& options() const { return options_; }

 private:
  ResizeShortestEdgeOptions options_;
};

struct RandomFlipOptions {
  /// Probability of flipping.
  TORCH_ARG(double, p) = 0.5;
};

/// Detectron2's RandomFlip (horizontal): mirrors the image and its boxes with probability p.
/// Always draws one number from the Rng.
class RandomHorizontalFlip : public Transform {
 public:
  explicit RandomHorizontalFlip(RandomFlipOptions options = {});
  std::string name() const override { return "RandomHorizontalFlip"; }
  void apply(Image& image, torch::Tensor& boxes, Rng& rng) const override;

 private:
  RandomFlipOptions options_;
};

/// A pipeline: steps on the image and boxes, then ToTensor (+ Normalize), box clipping and the
/// removal of empty boxes.
class Compose {
 public:
  Compose() = default;
  explicit Compose(std::vector<std::shared_ptr<Transform>> steps,
                   c10::optional<NormalizeOptions> normalize = c10::nullopt);
  /// Transforms `image` and `target` (boxes in `image`'s pixels). Fills the sample's image,
  /// target, original_size and size; image_id is the caller's.
  DetectionSample operator()(Image image, DetectionTarget target, Rng& rng) const;

  const std::vector<std::shared_ptr<Transform>>& steps() const { return steps_; }
  const c10::optional<NormalizeOptions>& normalize() const { return normalize_; }
  /// "ResizeShortestEdge -> RandomHorizontalFlip -> ToTensor -> Normalize", for logs.
  std::string describe() const;

 private:
  std::vector<std::shared_ptr<Transform>> steps_;
  c10::optional<NormalizeOptions> normalize_;
};

/// Training: ResizeShortestEdge(short_edges, max_size), RandomHorizontalFlip(0.5), Normalize.
Compose train_transform(std::vector<int64_t> short_edges = {640, 672, 704, 736, 768, 800},
                        int64_t max_size = 1333,
                        c10::optional<NormalizeOptions> normalize = imagenet_normalize());
/// Evaluation: ResizeShortestEdge(short_edge, max_size), Normalize.
Compose eval_transform(int64_t short_edge = 800, int64_t max_size = 1333,
                       c10::optional<NormalizeOptions> normalize = imagenet_normalize());

}  // namespace detection
}  // namespace data
}  // namespace mgd
