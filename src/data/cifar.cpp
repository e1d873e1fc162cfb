#include "mgd/data/cifar.h"

#include <c10/util/Exception.h>
#include <torch/torch.h>

#include <filesystem>
#include <vector>

#include "mgd/data/image.h"

namespace mgd {
namespace data {
namespace {

constexpr int64_t kSide = 32;
constexpr int64_t kPixels = 3 * kSide * kSide;

std::vector<std::string> split_files(int64_t classes, const std::string& split) {
  const bool train = split == "train";
  if (classes == 10) {
    if (!train) return {"test_batch.bin"};
    return {"data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin", "data_batch_4.bin",
            "data_batch_5.bin"};
  }
  return {train ? "train.bin" : "test.bin"};
}

}  // namespace

CifarData parse_cifar(const uint8_t* data, size_t size, int64_t classes, const std::string& name) {
  TORCH_CHECK(classes == 10 || classes == 100, "CIFAR: classes must be 10 or 100, got ", classes);
  const int64_t label_bytes = classes == 10 ? 1 : 2;
  const int64_t record = label_bytes + kPixels;
  TORCH_CHECK(size > 0 && size % static_cast<size_t>(record) == 0, "invalid CIFAR-", classes,
              " file ", name, ": ", size, " bytes, expected a positive multiple of the ", record,
              "-byte record (", label_bytes == 1 ? "label" : "coarse label, fine label",
              " + 3072 pixels)");
  const int64_t n = static_cast<int64_t>(size) / record;
  CifarData out;
  out.images = torch::empty({n, kSide, kSide, 3}, torch::kUInt8);
  out.labels = torch::empty({n}, torch::kInt64);
  if (classes == 100) out.coarse_labels = torch::empty({n}, torch::kInt64);
  uint8_t* images = out.images.data_ptr<uint8_t>();
  int64_t* labels = out.labels.data_ptr<int64_t>();
  for (int64_t i = 0; i < n; ++i) {
    const uint8_t* r = data + i * record;
    const int64_t label = r[label_bytes - 1];
    TORCH_CHECK(label < classes, "invalid CIFAR-", classes, " file ", name, ": record ", i,
                " has label ", label, ", expected 0..", classes - 1);
    labels[i] = label;
    if (classes == 100) {
      TORCH_CHECK(r[0] < 20, "invalid CIFAR-100 file ", name, ": record ", i, " has coarse label ",
                  int{r[0]}, ", expected 0..19");
      out.coarse_labels.data_ptr<int64_t>()[i] = r[0];
    }
    // Planes (R, G, B) to interleaved HWC.
    const uint8_t* planes = r + label_bytes;
    uint8_t* img = images + i * kPixels;
    for (int64_t p = 0; p < kSide * kSide; ++p) {
      img[3 * p + 0] = planes[p];
      img[3 * p + 1] = planes[kSide * kSide + p];
      img[3 * p + 2] = planes[2 * kSide * kSide + p];
    }
  }
  return out;
}

CifarData read_cifar_file(const std::string& path, int64_t classes) {
  const auto bytes = read_file(path);
  return parse_cifar(bytes.data(), bytes.size(), classes, path);
}

CifarData load_cifar(const std::string& root, int64_t classes, const std::string& split) {
  TORCH_CHECK(classes == 10 || classes == 100, "CIFAR: classes must be 10 or 100, got ", classes);
  TORCH_CHECK(split == "train" || split == "test", "CIFAR: unknown split '", split,
              "' (expected train or test)");
  namespace fs = std::filesystem;
  std::error_code ec;
  TORCH_CHECK(fs::is_directory(root, ec), "CIFAR-", classes, ": data root ", root,
              " is not a directory");
  const auto files = split_files(classes, split);
  const std::string sub = classes == 10 ? "cifar-10-batches-bin" : "cifar-100-binary";
  fs::path dir = fs::path(root) / sub;
  if (!fs::exists(dir / files[0], ec)) dir = root;
  std::vector<CifarData> parts;
  for (const auto& f : files) {
    const fs::path path = dir / f;
    TORCH_CHECK(fs::exists(path, ec), "CIFAR-", classes, ": missing ", path.string(), " (expected ",
                c10::Join(", ", files), " in ", root, " or ", (fs::path(root) / sub).string(), ")");
    parts.push_back(read_cifar_file(path.string(), classes));
  }
  if (parts.size() == 1) return parts[0];
  CifarData out;
  std::vector<torch::Tensor> images, labels;
  for (const auto& p : parts) {
    images.push_back(p.images);
    labels.push_back(p.labels);
  }
  out.images = torch::cat(images);
  out.labels = torch::cat(labels);
  return out;
}

}  // namespace data
}  // namespace mgd
