#include "mgd/data/scenes.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <map>

#include "data/data_testing.h"
#include "mgd/data/coco.h"
#include "mgd/data/dataset.h"
#include "mgd/data/detection.h"

namespace {

using namespace mgd::data;
namespace dt = mgd::data_testing;
namespace fs = std::filesystem;

#define MGD_REQUIRE_FASHION_MNIST()                                                     \
  do {                                                                                  \
    if (!fs::exists(default_root("fashion-mnist") + "/t10k-images-idx3-ubyte.gz"))      \
      GTEST_SKIP() << "Fashion-MNIST is not installed (Debian: dataset-fashion-mnist)"; \
  } while (0)

// Every regular file under `dir`, relative path -> bytes.
std::map<std::string, std::vector<uint8_t>> files_under(const std::string& dir) {
  std::map<std::string, std::vector<uint8_t>> out;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    if (e.is_regular_file()) out[fs::relative(e.path(), dir).string()] = read_file(e.path());
  }
  return out;
}

TEST(Scenes, RejectsBadOptions) {
  EXPECT_THROW(write_scenes(ScenesOptions("")), c10::Error);
  dt::TempDir dir;
  EXPECT_THROW(write_scenes(ScenesOptions(dir.path()).size(8)), c10::Error);
  EXPECT_THROW(write_scenes(ScenesOptions(dir.path()).min_objects(3).max_objects(2)), c10::Error);
  EXPECT_THROW(write_scenes(ScenesOptions(dir.path()).train(-1)), c10::Error);
}

TEST(Scenes, DeterministicCountsAndBoxes) {
  MGD_REQUIRE_FASHION_MNIST();
  dt::TempDir a, b, c;
  const auto options = ScenesOptions(a.path()).train(30).val(12).size(96).seed(5);
  const ScenesSummary sa = write_scenes(options);
  write_scenes(ScenesOptions(options).output(b.path()));
  write_scenes(ScenesOptions(options).output(c.path()).seed(6));
  EXPECT_EQ(sa.train_images, 30);
  EXPECT_EQ(sa.val_images, 12);
  EXPECT_EQ(sa.train_annotations, a / "annotations/instances_train.json");

  // The same seed writes the same bytes; another seed other scenes.
  const auto fa = files_under(a.path()), fb = files_under(b.path()), fc = files_under(c.path());
  EXPECT_EQ(fa.size(), 30u + 12u + 2u);
  EXPECT_TRUE(fa == fb);
  EXPECT_NE(fa.at("annotations/instances_train.json"), fc.at("annotations/instances_train.json"));
  EXPECT_TRUE(fa.count("train/000030.png") && fa.count("val/000012.png"));

  for (const char* split : {"train", "val"}) {
    SCOPED_TRACE(split);
    const CocoInstances inst =
        read_coco_instances(a / (std::string("annotations/instances_") + split + ".json"), 0.0);
    const int64_t n = std::string(split) == "train" ? 30 : 12;
    ASSERT_EQ(static_cast<int64_t>(inst.images.size()), n);
    EXPECT_EQ(inst.num_classes(), 10);
    EXPECT_EQ(inst.categories[0].id, 1);
    EXPECT_EQ(inst.categories[9].name, "Ankle boot");
    EXPECT_EQ(split == std::string("train") ? sa.train_objects : sa.val_objects,
              static_cast<int64_t>(inst.annotations.size()));
    int64_t sizes_small = 0, sizes_large = 0;
    for (size_t i = 0; i < inst.images.size(); ++i) {
      EXPECT_EQ(inst.images[i].id, static_cast<int64_t>(i) + 1);
      EXPECT_EQ(inst.images[i].width, 96);
      const auto& anns = inst.image_annotations[i];
      EXPECT_GE(anns.size(), 1u);
      EXPECT_LE(anns.size(), 6u);
      for (int64_t k : anns) {
        const auto& box = inst.annotations[static_cast<size_t>(k)].bbox;
        // Inside the canvas (parsed with zero tolerance), between 1 and 64 px a side.
        EXPECT_GE(box[0], 0);
        EXPECT_GE(box[1], 0);
        EXPECT_LE(box[0] + box[2], 96);
        EXPECT_LE(box[1] + box[3], 96);
        const double side = std::max(box[2], box[3]);
        EXPECT_LE(side, 64);
        sizes_small += side < 32;
        sizes_large += side >= 40;
        EXPECT_GT(inst.annotations[static_cast<size_t>(k)].area, 0);
        EXPECT_LE(inst.annotations[static_cast<size_t>(k)].area, box[2] * box[3]);
        EXPECT_FALSE(inst.annotations[static_cast<size_t>(k)].iscrowd);
      }
    }
    EXPECT_GT(sizes_small, 0);  // varied scales
    EXPECT_GT(sizes_large, 0);
  }

  // CocoDataset reads it, in one channel or three.
  CocoDataset ds(coco_split(a.path(), "val").channels(1), detection::Compose());
  EXPECT_EQ(ds.size(), 12);
  Rng rng(0);
  const DetectionSample s = ds.get(0, rng);
  EXPECT_EQ(s.image.sizes(), (std::vector<int64_t>{1, 96, 96}));
  EXPECT_GE(s.target.boxes.size(0), 1);
  CocoDataset rgb(coco_split(a.path(), "train"), detection::Compose());
  EXPECT_EQ(rgb.get(3, rng).image.size(0), 3);

  // Through the multi-scale training transform and the loader: padded batches whose boxes lie
  // in their images.
  auto train = std::make_shared<CocoDataset>(
      coco_split(a.path(), "train").channels(1).filter_empty(true),
      detection::train_transform({64, 128}, 0, NormalizeOptions({0.2}, {0.3})));
  DetectionLoader loader(train, LoaderOptions().batch_size(8).workers(2).seed(1));
  int64_t batches = 0;
  for (const DetectionBatch& batch : loader) {
    ++batches;
    EXPECT_EQ(batch.images.size(1), 1);
    EXPECT_EQ(batch.images.size(2) % 32, 0);
    for (size_t k = 0; k < batch.targets.size(); ++k) {
      const auto& size = batch.image_sizes[k];
      EXPECT_TRUE(size[0] == 64 || size[0] == 128);
      const auto& boxes = batch.targets[k].boxes;
      ASSERT_GE(boxes.size(0), 1);
      EXPECT_LE(boxes.select(1, 2).max().item<float>(), static_cast<float>(size[1]));
      EXPECT_LE(boxes.select(1, 3).max().item<float>(), static_cast<float>(size[0]));
      EXPECT_GE(boxes.min().item<float>(), 0.f);
    }
  }
  EXPECT_EQ(batches, 4);

  // Python's json reads it too.
  if (dt::run_python("-c 'import sys' > /dev/null 2>&1") == 0) {
    const std::string check =
        "-c \"import json, sys; d = json.load(open(sys.argv[1])); "
        "assert len(d['images']) == 30 and len(d['categories']) == 10; "
        "assert all(len(a['bbox']) == 4 for a in d['annotations'])\" " +
        (a / "annotations/instances_train.json");
    EXPECT_EQ(dt::run_python(check), 0);
  }
}

TEST(Scenes, AFailedWriteLeavesNoCompleteLookingJson) {
  MGD_REQUIRE_FASHION_MNIST();
  dt::TempDir dir;
  write_scenes(ScenesOptions(dir.path()).train(2).val(1).size(64));
  ASSERT_TRUE(fs::exists(dir / "annotations/instances_train.json"));
  // A second write that fails (no Fashion-MNIST there) removes the old JSONs first.
  EXPECT_THROW(
      write_scenes(ScenesOptions(dir.path()).train(2).val(1).fashion_mnist_root(dir / "nowhere")),
      c10::Error);
  EXPECT_FALSE(fs::exists(dir / "annotations/instances_train.json"));
  EXPECT_FALSE(fs::exists(dir / "annotations/instances_val.json"));
  for (const auto& e : fs::recursive_directory_iterator(dir.path())) {
    EXPECT_NE(e.path().extension(), ".tmp") << e.path();
  }
}

}  // namespace
