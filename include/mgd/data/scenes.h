// A synthetic detection set built from Fashion-MNIST, so detection runs on a fresh machine
// with no download: `mgd data scenes -o DIR`.
//
// Each image is a size x size grayscale canvas: a dark background with pixel noise, a few
// clutter fragments (small pieces cut from Fashion-MNIST images, smaller than any object and
// not annotated), then 1..6 objects -- Fashion-MNIST items cropped to their nonzero pixels,
// resized (PIL bilinear) so that their longer side is 16..64 px (log-uniform), and blended
// with max() at a random place. Two objects' boxes may overlap, but by at most max_overlap
// IoU, and neither may cover more than half of the smaller. An object's box is the tight box
// of its nonzero pixels; its "area" is that pixel count (COCO's area is a mask's). Categories
// are Fashion-MNIST's 10 classes with COCO-style ids 1..10. The train images draw their
// objects from Fashion-MNIST's train split, the val images from its test split.
//
// Layout (COCO's): DIR/annotations/instances_train.json, DIR/annotations/instances_val.json,
// DIR/train/000001.png ..., DIR/val/000001.png ...; image ids and annotation ids start at 1.
// Everything is a function of the options: the same seed writes byte-identical files. Every
// canvas draws from its own Rng (seed, split, index), so the canvases are built in parallel.
// An interrupted write never leaves a JSON that looks complete: existing JSONs are removed
// first, the images written, and each JSON written to a temporary file and renamed last.
// Writing a smaller set over a larger one leaves the larger one's extra PNGs in place (no JSON
// refers to them).
//
//   write_scenes(ScenesOptions("data/scenes").train(4000).val(500));
//   CocoDataset train(coco_split("data/scenes", "train").channels(1), ...);
#pragma once

#include <torch/arg.h>

#include <cstdint>
#include <string>
#include <vector>

namespace mgd {
namespace data {

struct ScenesOptions {
  /* implicit */ ScenesOptions(std::string output) : output_(std::move(output)) {}
  /// The directory to write (created if needed).
  TORCH_ARG(std::string, output);
  /// Training images.
  TORCH_ARG(int64_t, train) = 4000;
  /// Validation images.
  TORCH_ARG(int64_t, val) = 500;
  /// Canvas side in pixels.
  TORCH_ARG(int64_t, size) = 128;
  TORCH_ARG(uint64_t, seed) = 0;
  /// Fashion-MNIST's IDX files ("": /usr/share/datasets/fashion-mnist, Debian's
  /// dataset-fashion-mnist).
  TORCH_ARG(std::string, fashion_mnist_root) = "";
  /// Objects per canvas, drawn uniformly in [min_objects, max_objects] (fewer when no place
  /// satisfies the overlap bounds after 50 tries).
  TORCH_ARG(int64_t, min_objects) = 1;
  TORCH_ARG(int64_t, max_objects) = 6;
  /// Longer side of an object in pixels, drawn log-uniformly (capped at the canvas size).
  TORCH_ARG(int64_t, min_object_size) = 16;
  TORCH_ARG(int64_t, max_object_size) = 64;
  /// Largest IoU between two objects' boxes.
  TORCH_ARG(double, max_overlap) = 0.3;
  /// Clutter fragments per canvas, drawn uniformly in [0, max_clutter].
  TORCH_ARG(int64_t, max_clutter) = 4;
};

/// What write_scenes() wrote.
struct ScenesSummary {
  std::string train_annotations;  ///< DIR/annotations/instances_train.json
  std::string val_annotations;    ///< DIR/annotations/instances_val.json
  int64_t train_images = 0;
  int64_t val_images = 0;
  int64_t train_objects = 0;
  int64_t val_objects = 0;
};

/// Writes the set. Throws c10::Error on invalid options, unreadable Fashion-MNIST files or a
/// directory that cannot be written.
ScenesSummary write_scenes(const ScenesOptions& options);

/// Fashion-MNIST's class names; category id i + 1 is class i.
const std::vector<std::string>& fashion_mnist_classes();

}  // namespace data
}  // namespace mgd
