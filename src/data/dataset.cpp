#include "mgd/data/dataset.h"

#include <c10/util/Exception.h>
#include <c10/util/StringUtil.h>
#include <torch/torch.h>

#include <cstring>
#include <filesystem>

#include "mgd/data/cifar.h"
#include "mgd/data/idx.h"
#include "mgd/data/image_folder.h"

namespace mgd {
namespace data {
namespace {

namespace fs = std::filesystem;

// Where an IDX file may sit: the root itself, root/raw, or torchvision's download layout.
std::string find_idx(const std::string& root, const std::string& format, const std::string& name) {
  const std::string tv = format == "mnist" ? "MNIST" : "FashionMNIST";
  const std::vector<fs::path> dirs = {fs::path(root), fs::path(root) / "raw",
                                      fs::path(root) / tv / "raw"};
  std::error_code ec;
  for (const auto& dir : dirs) {
    for (const char* ext : {"", ".gz"}) {
      const fs::path p = dir / (name + ext);
      if (fs::is_regular_file(p, ec)) return p.string();
    }
  }
  TORCH_CHECK(false, format, ": cannot find ", name, "[.gz] in ", root, " (looked in ", root, ", ",
              (fs::path(root) / "raw").string(), " and ", (fs::path(root) / tv / "raw").string(),
              ")");
}

std::shared_ptr<Dataset> make_idx_dataset(const DatasetOptions& o, const std::string& root,
                                          Compose transform) {
  std::error_code ec;
  TORCH_CHECK(fs::is_directory(root, ec), o.format(), ": data root ", root,
              " is not a directory (DatasetOptions::root)");
  const std::string prefix = o.split() == "train" ? "train" : "t10k";
  const std::string images_path = find_idx(root, o.format(), prefix + "-images-idx3-ubyte");
  const std::string labels_path = find_idx(root, o.format(), prefix + "-labels-idx1-ubyte");
  torch::Tensor images = read_idx(images_path);
  torch::Tensor labels = read_idx(labels_path);
  TORCH_CHECK(images.dim() == 3, o.format(), ": ", images_path,
              " should hold N x H x W images, has dimensions ", images.sizes());
  TORCH_CHECK(labels.dim() == 1, o.format(), ": ", labels_path,
              " should hold N labels, has dimensions ", labels.sizes());
  TORCH_CHECK(images.size(0) == labels.size(0), o.format(), ": ", images_path, " holds ",
              images.size(0), " images but ", labels_path, " holds ", labels.size(0), " labels");
  return std::make_shared<TensorImageDataset>(images, labels.to(torch::kInt64), 10,
                                              std::move(transform));
}

std::shared_ptr<Transform> random_crop(int64_t size, int64_t padding) {
  return std::make_shared<RandomCrop>(RandomCropOptions(size).padding(padding));
}

}  // namespace

// --- TensorImageDataset

TensorImageDataset::TensorImageDataset(torch::Tensor images, torch::Tensor labels,
                                       int64_t num_classes, Compose transform)
    : num_classes_(num_classes), transform_(std::move(transform)) {
  TORCH_CHECK(images.scalar_type() == torch::kUInt8 && (images.dim() == 3 || images.dim() == 4),
              "TensorImageDataset: expected uint8 images of N x H x W (x C), got ",
              images.scalar_type(), " ", images.sizes());
  if (images.dim() == 3) images = images.unsqueeze(-1);
  TORCH_CHECK(labels.dim() == 1 && labels.size(0) == images.size(0),
              "TensorImageDataset: expected ", images.size(0), " labels, got ", labels.sizes());
  TORCH_CHECK(num_classes > 0, "TensorImageDataset: invalid num_classes ", num_classes);
  labels = labels.to(torch::kInt64).contiguous();
  if (labels.numel() > 0) {
    const int64_t lo = labels.min().item<int64_t>(), hi = labels.max().item<int64_t>();
    TORCH_CHECK(lo >= 0 && hi < num_classes, "TensorImageDataset: labels span ", lo, "..", hi,
                ", expected 0..", num_classes - 1);
  }
  images_ = images.contiguous();
  labels_ = labels;
}

Example TensorImageDataset::get(int64_t index, Rng& rng) const {
  TORCH_CHECK(index >= 0 && index < size(), "TensorImageDataset: index ", index,
              " out of range for ", size(), " samples");
  Image image(images_.size(1), images_.size(2), images_.size(3));
  const size_t bytes = image.data.size();
  std::memcpy(image.data.data(), images_.data_ptr<uint8_t>() + index * bytes, bytes);
  return {transform_(std::move(image), rng), labels_.data_ptr<int64_t>()[index]};
}

int64_t TensorImageDataset::label(int64_t index) const {
  TORCH_CHECK(index >= 0 && index < size(), "TensorImageDataset: index ", index,
              " out of range for ", size(), " samples");
  return labels_.data_ptr<int64_t>()[index];
}

// --- the factory

std::vector<std::string> dataset_formats() {
  return {"mnist", "fashion-mnist", "cifar10", "cifar100", "imagefolder"};
}

std::string default_root(const std::string& format) {
  if (format == "fashion-mnist" || format == "mnist") return "/usr/share/datasets/" + format;
  return "";
}

Compose default_transform(const std::string& format, bool augment, int64_t image_size) {
  if (format == "mnist" || format == "fashion-mnist") {
    const bool fashion = format == "fashion-mnist";
    NormalizeOptions stats =
        fashion ? NormalizeOptions({0.2860}, {0.3530}) : NormalizeOptions({0.1307}, {0.3081});
    if (!augment) return Compose({}, stats);
    std::vector<std::shared_ptr<Transform>> steps = {random_crop(28, 2)};
    if (fashion) steps.push_back(std::make_shared<RandomHorizontalFlip>());
    return Compose(steps, stats);
  }
  if (format == "cifar10" || format == "cifar100") {
    NormalizeOptions stats =
        format == "cifar10" ? NormalizeOptions({0.4914, 0.4822, 0.4465}, {0.2470, 0.2435, 0.2616})
                            : NormalizeOptions({0.5071, 0.4865, 0.4409}, {0.2673, 0.2564, 0.2762});
    if (!augment) return Compose({}, stats);
    return Compose({random_crop(32, 4), std::make_shared<RandomHorizontalFlip>()}, stats);
  }
  if (format == "imagefolder") {
    TORCH_CHECK(image_size > 0, "Invalid image_size ", image_size);
    return augment ? imagenet_train_transform(image_size)
                   : imagenet_eval_transform(image_size * 8 / 7, image_size);
  }
  TORCH_CHECK(false, "unknown dataset format '", format,
              "' (known: ", c10::Join(", ", dataset_formats()), ")");
}

std::shared_ptr<Dataset> make_dataset(const DatasetOptions& options) {
  const std::string& format = options.format();
  const auto formats = dataset_formats();
  TORCH_CHECK(std::find(formats.begin(), formats.end(), format) != formats.end(),
              "unknown dataset format '", format, "' (known: ", c10::Join(", ", formats), ")");
  const std::string root = options.root().empty() ? default_root(format) : options.root();
  TORCH_CHECK(!root.empty(), format, ": no data root given (DatasetOptions::root)");
  if (format != "imagefolder") {
    TORCH_CHECK(options.split() == "train" || options.split() == "test", format,
                ": unknown split '", options.split(), "' (expected train or test)");
  }
  const bool augment = options.augment().value_or(options.split() == "train");
  Compose transform = options.transform()
                          ? *options.transform()
                          : default_transform(format, augment, options.image_size());
  if (format == "mnist" || format == "fashion-mnist") {
    return make_idx_dataset(options, root, std::move(transform));
  }
  if (format == "cifar10" || format == "cifar100") {
    const int64_t classes = format == "cifar10" ? 10 : 100;
    CifarData data = load_cifar(root, classes, options.split());
    return std::make_shared<TensorImageDataset>(data.images, data.labels, classes,
                                                std::move(transform));
  }
  return std::make_shared<ImageFolderDataset>(
      ImageFolderOptions(root).split(options.split()).skip_corrupt(options.skip_corrupt()),
      std::move(transform));
}

}  // namespace data
}  // namespace mgd
