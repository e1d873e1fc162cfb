// Image folders: root/<split>/<class>/<image>, the layout of ImageNet and CUB-200 (and of
// torchvision.datasets.ImageFolder).
//
// Classes are the sub-directories of the split, sorted by name (byte order, as Python sorts
// str); label i is the i-th. Samples are the .jpg/.jpeg/.png files (case-insensitive) under
// each class directory, sub-directories included, in torchvision's order: directories sorted
// by path, files sorted by name within each -- so sample i is torchvision's sample i, provided
// the folder holds no other image types (torchvision also takes .bmp, .ppm, .tif, .webp...;
// mgd does not decode them and skips them). Files are told apart by content: a PNG named .jpg
// decodes.
//
// A corrupt or truncated image is, by default, substituted: get(i) returns the next readable
// sample (i + 1, i + 2, ... wrapping around) with the label of that sample and the
// augmentation randomness sample i would have had, so the result is still a pure function
// of (i, rng). Each bad file is counted and logged once (TORCH_WARN); with skip_corrupt(false)
// get() throws instead. The substitution keeps epochs the same length on every rank; the bias
// it adds (one neighbour drawn twice) is negligible for a handful of bad files.
#pragma once

#include <torch/arg.h>

#include <atomic>
#include <cstdint>
#include <mutex>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "mgd/data/dataset.h"
#include "mgd/data/image.h"
#include "mgd/data/transforms.h"

namespace mgd {
namespace data {

/// The classes and samples of one split directory.
struct FolderIndex {
  std::vector<std::string> classes;                      ///< sorted
  std::vector<std::pair<std::string, int64_t>> samples;  ///< (path, label), torchvision's order
};

/// Scans `dir` (the split directory: root/train, root/valid). Throws c10::Error when it is
/// missing or unreadable, has no class directories, or a class directory holds no image.
FolderIndex scan_image_folder(const std::string& dir);

/// The directory of `split` under `root`: "train" -> train; "test" -> valid (or val when there
/// is no valid/); any other name is taken literally.
std::string image_folder_split_dir(const std::string& root, const std::string& split);

struct ImageFolderOptions {
  ImageFolderOptions(std::string root) : root_(std::move(root)) {}
  TORCH_ARG(std::string, root);
  /// "train", "test" (valid/) or a directory name.
  TORCH_ARG(std::string, split) = "train";
  /// Substitute corrupt images (see above) instead of throwing.
  TORCH_ARG(bool, skip_corrupt) = true;
  /// Give up (throw) after this many consecutive unreadable samples.
  TORCH_ARG(int64_t, max_substitutions) = 100;
  /// JPEG: when the pipeline starts with a crop-and-resize (RandomResizedCrop; Resize, with a
  /// CenterCrop after it folded in), decode only the pixels the resampling reads. Exact: the
  /// same tensors as a full decode. Measured on 500 x 375 JPEGs: 0.63 instead of 0.76 ms per
  /// RandomResizedCrop box (bench/data_bench).
  TORCH_ARG(bool, decode_region) = true;
  /// JPEG: also shrink in the DCT domain (libjpeg's scaled IDCT, by k/8) as long as the box
  /// stays at least this many times the output size, so the resampling that follows still
  /// averages `reducing_gap` or more pixels per output pixel (PIL's reducing_gap idea).
  /// Approximate: a slightly different low-pass than PIL's filter (0.3 levels of 255 on
  /// average). Off by default: entropy decoding, which scaling does not shorten, dominates;
  /// on a 2048 x 1536 photograph the eval pipeline goes from 9.3 to 6.5 ms, on ImageNet-sized
  /// images it rarely applies. 0: off, torchvision's pixels exactly.
  TORCH_ARG(double, reducing_gap) = 0.0;
  /// Decoder guard against decompression bombs.
  TORCH_ARG(int64_t, max_pixels) = 178956970;
};

class ImageFolderDataset : public Dataset {
 public:
  ImageFolderDataset(ImageFolderOptions options, Compose transform);
  int64_t size() const override { return static_cast<int64_t>(index_.samples.size()); }
  Example get(int64_t index, Rng& rng) const override;
  Example get_into(int64_t index, Rng& rng, const torch::Tensor& into) const override;
  int64_t label(int64_t index) const override;
  int64_t num_classes() const override { return static_cast<int64_t>(index_.classes.size()); }
  int64_t channels() const override { return 3; }

  const FolderIndex& index() const { return index_; }
  const std::string& directory() const { return dir_; }
  /// Distinct files found corrupt so far.
  int64_t num_corrupt() const;
  /// Their paths.
  std::vector<std::string> corrupt_files() const;

  /// Reads sample `index` and runs the transform, with no substitution (throws on a bad file).
  torch::Tensor load(int64_t index, Rng& rng) const;

 private:
  // Reads and decodes a file, running the first transform step too when the decoder can fuse
  // it (*next_step is then 1). Every error here is the file's.
  Image decode_sample(int64_t index, Rng& rng, size_t* next_step) const;

  ImageFolderOptions options_;
  Compose transform_;
  std::string dir_;
  FolderIndex index_;
  mutable std::mutex corrupt_mutex_;
  mutable std::set<int64_t> corrupt_;
};

}  // namespace data
}  // namespace mgd
