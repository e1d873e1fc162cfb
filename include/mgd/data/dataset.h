// Datasets: random access to transformed, labelled images, and a factory by format name.
//
// A Dataset returns sample i as a float C x H x W tensor and a label, transformed with the
// randomness of the Rng it is handed (the Loader derives one from (seed, epoch, i), so
// augmentation does not depend on which thread asks or when). get() is const and thread-safe.
//
//   auto train = make_dataset(DatasetOptions("fashion-mnist"));                  // augmented
//   auto test = make_dataset(DatasetOptions("imagefolder", "/data/cub").split("test"));
//
// Formats and their defaults (the standard recipes of each dataset's literature):
//   "mnist", "fashion-mnist"  IDX files; root defaults to /usr/share/datasets/<format>.
//        train: RandomCrop(28, padding 2) [+ RandomHorizontalFlip for fashion-mnist; a flipped
//        digit is another glyph], then Normalize (MNIST 0.1307/0.3081, Fashion-MNIST
//        0.2860/0.3530). eval: Normalize only.
//   "cifar10", "cifar100"     binary batches (cifar.h). train: RandomCrop(32, padding 4),
//        RandomHorizontalFlip, Normalize with the training set's mean and std; eval: Normalize.
//   "imagefolder"             root/train/<class>/..., root/valid/<class>/... (image_folder.h).
//        train: RandomResizedCrop(224), RandomHorizontalFlip, Normalize (ImageNet); eval:
//        Resize(256), CenterCrop(224), Normalize (ImageNet) -- also MGD's tracking pass.
#pragma once

#include <c10/util/Optional.h>
#include <torch/arg.h>
#include <torch/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "mgd/data/rng.h"
#include "mgd/data/transforms.h"

namespace mgd {
namespace data {

/// One transformed sample.
struct Example {
  torch::Tensor image;  ///< float C x H x W
  int64_t label = 0;
};

class Dataset {
 public:
  virtual ~Dataset() = default;
  virtual int64_t size() const = 0;
  /// Sample `index` (0 <= index < size()), transformed with randomness drawn from `rng`.
  /// Thread-safe. Throws c10::Error naming the file when a sample cannot be read.
  virtual Example get(int64_t index, Rng& rng) const = 0;
  /// As get(); a dataset that can writes the image straight into `into` (float, contiguous,
  /// the image's shape) and returns it there, saving the loader a copy into its batch. The
  /// default ignores `into`; callers compare data pointers to tell.
  virtual Example get_into(int64_t index, Rng& rng, const torch::Tensor& into) const {
    (void)into;
    return get(index, rng);
  }
  /// The label of sample `index`, without reading the image.
  virtual int64_t label(int64_t index) const = 0;
  virtual int64_t num_classes() const = 0;
  /// Channels of the images get() returns.
  virtual int64_t channels() const = 0;
};

/// Images held in memory as uint8 N x H x W x C (or N x H x W for one channel), as MNIST and
/// CIFAR load them.
class TensorImageDataset : public Dataset {
 public:
  TensorImageDataset(torch::Tensor images, torch::Tensor labels, int64_t num_classes,
                     Compose transform);
  int64_t size() const override { return images_.size(0); }
  Example get(int64_t index, Rng& rng) const override;
  int64_t label(int64_t index) const override;
  int64_t num_classes() const override { return num_classes_; }
  int64_t channels() const override { return images_.size(3); }

  const torch::Tensor& images() const { return images_; }  ///< uint8 N x H x W x C
  const torch::Tensor& labels() const { return labels_; }  ///< int64 N
  const Compose& transform() const { return transform_; }

 private:
  torch::Tensor images_;
  torch::Tensor labels_;
  int64_t num_classes_;
  Compose transform_;
};

struct DatasetOptions {
  /// `format`: one of dataset_formats(); `root`: the data directory ("" for the format's
  /// default, where it has one).
  DatasetOptions(std::string format, std::string root = "")
      : format_(std::move(format)), root_(std::move(root)) {}
  TORCH_ARG(std::string, format);
  TORCH_ARG(std::string, root);
  /// "train" or "test" (an image folder's "test" is its valid/ directory).
  TORCH_ARG(std::string, split) = "train";
  /// Whether the training augmentation applies; unset: only on the train split. The tracking
  /// pass reads the train split without it.
  TORCH_ARG(c10::optional<bool>, augment) = c10::nullopt;
  /// A custom pipeline, replacing the format's default (and `augment`).
  TORCH_ARG(c10::optional<Compose>, transform) = c10::nullopt;
  /// Image folders: crop size of the default transforms (eval resizes to size * 8 / 7 first,
  /// 256 for 224).
  TORCH_ARG(int64_t, image_size) = 224;
  /// Image folders: substitute a corrupt image with the next readable one (counted, logged
  /// once per file) instead of throwing. See ImageFolderOptions.
  TORCH_ARG(bool, skip_corrupt) = true;
};

/// The formats make_dataset() knows.
std::vector<std::string> dataset_formats();

/// The default root of a format ("" when it has none).
std::string default_root(const std::string& format);

/// The default transform of a format (see the table at the top) with or without augmentation.
Compose default_transform(const std::string& format, bool augment, int64_t image_size = 224);

/// Opens a dataset. Throws c10::Error listing the known formats for an unknown one, and naming
/// the file and what was expected when the data is missing or malformed.
std::shared_ptr<Dataset> make_dataset(const DatasetOptions& options);

}  // namespace data
}  // namespace mgd
