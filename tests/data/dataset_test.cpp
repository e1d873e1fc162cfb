#include "mgd/data/dataset.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>

#include "data/data_testing.h"
#include "mgd/data/image_folder.h"

namespace {

using namespace mgd::data;
namespace dt = mgd::data_testing;
namespace fs = std::filesystem;
using dt::expect_error;
using dt::TempDir;

const char* kFashionMnist = "/usr/share/datasets/fashion-mnist";

std::vector<uint8_t> idx_bytes(const std::vector<uint32_t>& dims,
                               const std::vector<uint8_t>& body) {
  std::vector<uint8_t> out = {0, 0, 0x08, static_cast<uint8_t>(dims.size())};
  for (uint32_t d : dims) {
    for (int s = 24; s >= 0; s -= 8) out.push_back(static_cast<uint8_t>(d >> s));
  }
  out.insert(out.end(), body.begin(), body.end());
  return out;
}

// n 28 x 28 images with labels i % 10 in `dir`, as MNIST names them.
void write_mnist(const std::string& dir, const std::string& prefix, uint32_t n) {
  fs::create_directories(dir);
  std::vector<uint8_t> pixels(n * 28 * 28), labels(n);
  for (size_t i = 0; i < pixels.size(); ++i) pixels[i] = static_cast<uint8_t>(i * 13);
  for (uint32_t i = 0; i < n; ++i) labels[i] = static_cast<uint8_t>(i % 10);
  write_file(dir + "/" + prefix + "-images-idx3-ubyte", idx_bytes({n, 28, 28}, pixels));
  write_file(dir + "/" + prefix + "-labels-idx1-ubyte", idx_bytes({n}, labels));
}

std::vector<uint8_t> cifar10_bytes(int64_t n) {
  std::vector<uint8_t> out;
  for (int64_t i = 0; i < n; ++i) {
    out.push_back(static_cast<uint8_t>(i % 10));
    for (int64_t p = 0; p < 3072; ++p) out.push_back(static_cast<uint8_t>(i + p));
  }
  return out;
}

TEST(Dataset, FormatsAndDefaults) {
  EXPECT_EQ(dataset_formats(), (std::vector<std::string>{"mnist", "fashion-mnist", "cifar10",
                                                         "cifar100", "imagefolder"}));
  EXPECT_EQ(default_root("fashion-mnist"), kFashionMnist);
  EXPECT_EQ(default_root("imagefolder"), "");
  EXPECT_EQ(default_transform("fashion-mnist", true).describe(),
            "RandomCrop -> RandomHorizontalFlip -> ToTensor -> Normalize");
  EXPECT_EQ(default_transform("mnist", true).describe(), "RandomCrop -> ToTensor -> Normalize");
  EXPECT_EQ(default_transform("cifar100", true).describe(),
            "RandomCrop -> RandomHorizontalFlip -> ToTensor -> Normalize");
  EXPECT_EQ(default_transform("cifar10", false).describe(), "ToTensor -> Normalize");
  EXPECT_EQ(default_transform("imagefolder", true).describe(),
            "RandomResizedCrop -> RandomHorizontalFlip -> ToTensor -> Normalize");
  EXPECT_EQ(default_transform("imagefolder", false).describe(),
            "Resize -> CenterCrop -> ToTensor -> Normalize");
  expect_error(
      [] { make_dataset(DatasetOptions("svhn", "/tmp")); },
      {"unknown dataset format 'svhn'", "mnist, fashion-mnist, cifar10, cifar100, imagefolder"});
  expect_error([] { make_dataset(DatasetOptions("imagefolder")); }, {"no data root"});
}

TEST(Dataset, TensorImageDatasetChecksItsInput) {
  const auto images = torch::zeros({4, 5, 6, 3}, torch::kUInt8);
  EXPECT_THROW(TensorImageDataset(images.to(torch::kFloat32), torch::zeros({4}), 10, Compose()),
               c10::Error);
  EXPECT_THROW(TensorImageDataset(images, torch::zeros({3}), 10, Compose()), c10::Error);
  EXPECT_THROW(TensorImageDataset(images, torch::full({4}, 10), 10, Compose()), c10::Error);
  TensorImageDataset ds(images, torch::tensor({0, 1, 2, 3}), 4, Compose());
  EXPECT_EQ(ds.size(), 4);
  EXPECT_EQ(ds.channels(), 3);
  EXPECT_EQ(ds.label(2), 2);
  Rng rng(0);
  EXPECT_EQ(ds.get(1, rng).image.sizes(), (std::vector<int64_t>{3, 5, 6}));
  EXPECT_THROW(ds.get(4, rng), c10::Error);
  EXPECT_THROW(ds.label(-1), c10::Error);
}

TEST(Dataset, IdxLayoutsAndErrors) {
  TempDir dir;
  write_mnist(dir.path(), "train", 30);
  write_mnist(dir.path(), "t10k", 20);
  auto train = make_dataset(DatasetOptions("mnist", dir.path()));
  auto test = make_dataset(DatasetOptions("mnist", dir.path()).split("test"));
  EXPECT_EQ(train->size(), 30);
  EXPECT_EQ(test->size(), 20);
  EXPECT_EQ(train->num_classes(), 10);
  EXPECT_EQ(train->channels(), 1);
  EXPECT_EQ(train->label(13), 3);
  Rng rng(1);
  EXPECT_EQ(train->get(0, rng).image.sizes(), (std::vector<int64_t>{1, 28, 28}));
  // torchvision's download layout: root/FashionMNIST/raw/.
  TempDir tv;
  write_mnist(tv / "FashionMNIST/raw", "t10k", 5);
  EXPECT_EQ(make_dataset(DatasetOptions("fashion-mnist", tv.path()).split("test"))->size(), 5);
  expect_error([&] { make_dataset(DatasetOptions("fashion-mnist", tv.path())); },
               {"cannot find train-images-idx3-ubyte[.gz]", tv.path()});
  expect_error([&] { make_dataset(DatasetOptions("mnist", dir / "missing")); },
               {dir / "missing", "is not a directory"});
  expect_error([&] { make_dataset(DatasetOptions("mnist", dir.path()).split("valid")); },
               {"unknown split 'valid'"});
  // Labels for a different number of images.
  write_file(dir / "t10k-labels-idx1-ubyte", idx_bytes({19}, std::vector<uint8_t>(19, 1)));
  expect_error([&] { make_dataset(DatasetOptions("mnist", dir.path()).split("test")); },
               {"holds 20 images but", "t10k-labels-idx1-ubyte holds 19 labels"});
}

TEST(Dataset, AugmentationFollowsSplitUnlessTold) {
  TempDir dir;
  write_file(dir / "test_batch.bin", cifar10_bytes(6));
  for (int b = 1; b <= 5; ++b)
    write_file(dir / ("data_batch_" + std::to_string(b) + ".bin"), cifar10_bytes(4));
  auto train = make_dataset(DatasetOptions("cifar10", dir.path()));
  auto plain = make_dataset(DatasetOptions("cifar10", dir.path()).augment(false));
  auto test = make_dataset(DatasetOptions("cifar10", dir.path()).split("test"));
  EXPECT_EQ(train->size(), 20);
  EXPECT_EQ(test->size(), 6);
  EXPECT_EQ(train->channels(), 3);
  // Augmented samples vary with the randomness; the others do not.
  bool varies = false;
  for (uint64_t s = 1; s < 6 && !varies; ++s) {
    Rng a(0), b(s);
    varies = !torch::equal(train->get(3, a).image, train->get(3, b).image);
  }
  EXPECT_TRUE(varies);
  Rng a(0), b(1);
  EXPECT_TRUE(torch::equal(plain->get(3, a).image, plain->get(3, b).image));
  // Without augmentation: ToTensor + CIFAR-10 normalisation of the stored pixels.
  const auto& tds = dynamic_cast<const TensorImageDataset&>(*plain);
  const torch::Tensor raw = tds.images()[3].permute({2, 0, 1}).to(torch::kFloat32) / 255;
  const torch::Tensor mean = torch::tensor({0.4914, 0.4822, 0.4465}).view({3, 1, 1});
  const torch::Tensor std = torch::tensor({0.2470, 0.2435, 0.2616}).view({3, 1, 1});
  EXPECT_TRUE(torch::allclose(plain->get(3, a).image, (raw - mean) / std, 1e-5, 1e-5));
  // A custom pipeline replaces the default.
  auto custom =
      make_dataset(DatasetOptions("cifar10", dir.path())
                       .transform(Compose({std::make_shared<CenterCrop>(CenterCropOptions(20))})));
  EXPECT_EQ(custom->get(0, a).image.sizes(), (std::vector<int64_t>{3, 20, 20}));
  // CIFAR-100 files are not there.
  expect_error([&] { make_dataset(DatasetOptions("cifar100", dir.path())); },
               {"missing", "train.bin"});
}

TEST(Dataset, ImageFolderThroughTheFactory) {
  TempDir dir;
  for (const std::string split : {"train", "valid"}) {
    for (int c = 0; c < 2; ++c) {
      fs::create_directories(dir / (split + "/c" + std::to_string(c)));
      for (int i = 0; i < 3; ++i) {
        write_file(dir / (split + "/c" + std::to_string(c) + "/" + std::to_string(i) + ".jpg"),
                   encode_jpeg(
                       dt::synthetic_image(80 + 10 * i, 100, 3, static_cast<uint64_t>(i + 3 * c))));
      }
    }
  }
  auto train = make_dataset(DatasetOptions("imagefolder", dir.path()).image_size(64));
  auto test = make_dataset(DatasetOptions("imagefolder", dir.path()).split("test").image_size(64));
  EXPECT_EQ(train->size(), 6);
  EXPECT_EQ(train->num_classes(), 2);
  Rng rng(3);
  EXPECT_EQ(train->get(0, rng).image.sizes(), (std::vector<int64_t>{3, 64, 64}));
  EXPECT_EQ(test->get(5, rng).image.sizes(), (std::vector<int64_t>{3, 64, 64}));
  EXPECT_EQ(test->get(5, rng).label, 1);
  EXPECT_EQ(dynamic_cast<const ImageFolderDataset&>(*test).directory(), dir / "valid");
}

TEST(Dataset, RealFashionMnist) {
  if (!fs::exists(std::string(kFashionMnist) + "/train-images-idx3-ubyte.gz")) {
    GTEST_SKIP() << "Fashion-MNIST is not installed at " << kFashionMnist
                 << " (Debian: dataset-fashion-mnist)";
  }
  auto train = make_dataset(DatasetOptions("fashion-mnist"));
  auto test = make_dataset(DatasetOptions("fashion-mnist").split("test"));
  ASSERT_EQ(train->size(), 60000);
  ASSERT_EQ(test->size(), 10000);
  EXPECT_EQ(train->num_classes(), 10);
  EXPECT_EQ(train->channels(), 1);
  const auto& tds = dynamic_cast<const TensorImageDataset&>(*train);
  EXPECT_EQ(tds.images().sizes(), (std::vector<int64_t>{60000, 28, 28, 1}));
  // Balanced classes: 6000 (train) and 1000 (test) of each.
  EXPECT_TRUE(torch::equal(torch::bincount(tds.labels()), torch::full({10}, 6000, torch::kInt64)));
  const auto& eds = dynamic_cast<const TensorImageDataset&>(*test);
  EXPECT_TRUE(torch::equal(torch::bincount(eds.labels()), torch::full({10}, 1000, torch::kInt64)));
  // The normalisation constants are the training set's statistics.
  const torch::Tensor x = tds.images().to(torch::kFloat64) / 255;
  EXPECT_NEAR(x.mean().item<double>(), 0.2860, 5e-4);
  EXPECT_NEAR(x.std().item<double>(), 0.3530, 5e-4);
  Rng rng(0);
  const Example e = test->get(0, rng);
  EXPECT_EQ(e.image.sizes(), (std::vector<int64_t>{1, 28, 28}));
  EXPECT_EQ(e.label, 9);  // the first test image is an ankle boot
}

}  // namespace
