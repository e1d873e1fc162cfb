// Detection samples and batches: images with their boxes, of different sizes, padded into one
// batch.
//
// A detection data set returns image i with its boxes and labels, transformed (resized,
// flipped, normalized: detection_transforms.h) with the randomness of the Rng it is handed --
// the loader derives it from (seed, epoch, i) as for classification, so augmentation does not
// depend on threads. Images keep their own sizes; collate_detection() pads them with zeros at
// the bottom and right to a common size divisible by `size_divisibility`, and records which
// pixels are real in a mask (MGD's tracking leaves the padding out of its statistics).
//
// size_divisibility defaults to 32, as both references pad for RetinaNet-FPN: Detectron2's
// FPN reports its bottom-up network's last stride (32, res5) and torchvision's
// GeneralizedRCNNTransform pads to 32. P6 and P7 (strides 64 and 128) are stride-2 3x3
// convolutions with padding 1 and take any size; pad to 128 if every level must tile exactly.
//
//   DetectionLoader loader(dataset, LoaderOptions().batch_size(16).workers(4).seed(0));
//   for (DetectionBatch& b : loader) step(b.images, b.targets);
#pragma once

#include <torch/types.h>

#include <array>
#include <cstdint>
#include <memory>
#include <vector>

#include "mgd/data/loader.h"
#include "mgd/data/rng.h"

namespace mgd {
namespace data {

/// The objects of one image.
struct DetectionTarget {
  torch::Tensor boxes;   ///< float n x 4, (x0, y0, x1, y1) in the transformed image's pixels
  torch::Tensor labels;  ///< int64 n, contiguous labels 0..K-1
};

/// One transformed image and its objects.
struct DetectionSample {
  torch::Tensor image;  ///< float C x H x W
  DetectionTarget target;
  int64_t image_id = 0;                        ///< the data set's id (COCO's image id)
  std::array<int64_t, 2> original_size{0, 0};  ///< {H, W} of the file
  std::array<int64_t, 2> size{0, 0};           ///< {H, W} after the transform (before padding)
};

/// Samples padded into one batch.
struct DetectionBatch {
  torch::Tensor images;  ///< float B x C x Hp x Wp, zero past each image's size
  torch::Tensor mask;    ///< bool B x Hp x Wp: true on each image's real pixels
  std::vector<DetectionTarget> targets;
  std::vector<int64_t> image_ids;
  std::vector<std::array<int64_t, 2>> image_sizes;     ///< {H, W} of each image before padding
  std::vector<std::array<int64_t, 2>> original_sizes;  ///< {H, W} of each file
  torch::Tensor indices;  ///< int64 B: each sample's index in the data set
  int64_t epoch = 0;
  int64_t index = 0;  ///< the batch's position in its epoch
};

/// Random access to transformed detection samples. get() is const and thread-safe.
class DetectionDataset {
 public:
  virtual ~DetectionDataset() = default;
  virtual int64_t size() const = 0;
  /// Sample `index` (0 <= index < size()) transformed with randomness drawn from `rng`.
  /// Throws c10::Error naming the file when it cannot be read.
  virtual DetectionSample get(int64_t index, Rng& rng) const = 0;
  /// Object classes (labels are 0..num_classes() - 1).
  virtual int64_t num_classes() const = 0;
  /// Channels of the images get() returns.
  virtual int64_t channels() const = 0;
};

/// Pads `samples` (at least one; images of equal channels) into a batch: Hp and Wp are the
/// largest height and width rounded up to a multiple of `size_divisibility` (>= 1). indices,
/// epoch and index are left for the caller (the loader) to fill.
DetectionBatch collate_detection(std::vector<DetectionSample> samples,
                                 int64_t size_divisibility = 32);

/// The loader (loader.h: order, shards, per-sample Rng, workers, exact resume) over a
/// DetectionDataset, batches built by collate_detection().
class DetectionLoader : public BasicLoader<DetectionBatch> {
 public:
  DetectionLoader(std::shared_ptr<const DetectionDataset> dataset, LoaderOptions options = {},
                  int64_t size_divisibility = 32);

  const DetectionDataset& dataset() const { return *dataset_; }
  int64_t size_divisibility() const { return size_divisibility_; }

 private:
  std::shared_ptr<const DetectionDataset> dataset_;
  int64_t size_divisibility_;
};

}  // namespace data
}  // namespace mgd
