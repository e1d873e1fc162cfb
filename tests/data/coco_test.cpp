#include "mgd/data/coco.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "data/data_testing.h"

namespace {

using namespace mgd::data;
namespace dt = mgd::data_testing;
namespace fs = std::filesystem;

CocoInstances parse(const std::string& text, const std::string& name = "inst.json") {
  return parse_coco_instances(text.data(), text.size(), name);
}

void write_text(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

// Three categories with ids out of order, three images (one without boxes, one with only a
// crowd box), annotations with and without the optional keys.
const char* kInstances = R"({
  "info": {"description": "test"},
  "images": [
    {"id": 9, "file_name": "b.png", "width": 8, "height": 6},
    {"id": 2, "file_name": "a.png", "width": 10, "height": 5},
    {"id": 4, "file_name": "c.png", "width": 4, "height": 4},
    {"id": 5, "file_name": "d.png", "width": 4, "height": 4}
  ],
  "annotations": [
    {"id": 11, "image_id": 2, "category_id": 20, "bbox": [1, 1, 3, 2], "area": 5.5,
     "iscrowd": 0, "segmentation": [[1, 1, 4, 1, 4, 3]]},
    {"id": 12, "image_id": 9, "category_id": 3, "bbox": [0.5, 0, 7.5, 6]},
    {"id": 13, "image_id": 2, "category_id": 7, "bbox": [0, 0, 10, 5], "area": 50,
     "iscrowd": 1, "segmentation": {"counts": "abc", "size": [5, 10]}},
    {"id": 14, "image_id": 2, "category_id": 3, "bbox": [6, 2, 4, 3], "iscrowd": false},
    {"id": 15, "image_id": 4, "category_id": 7, "bbox": [0, 0, 4, 4], "iscrowd": 1}
  ],
  "categories": [
    {"id": 7, "name": "seven"}, {"id": 3, "name": "three", "supercategory": "x"},
    {"id": 20, "name": "twenty"}
  ]
})";

TEST(CocoInstances, NoAnnotationsKey) {
  const auto inst = parse(R"({"images": [{"id": 1, "file_name": "x.jpg", "width": 3,
      "height": 2}], "categories": [{"id": 1, "name": "a"}]})");
  EXPECT_EQ(inst.images.size(), 1u);
  EXPECT_TRUE(inst.annotations.empty());
  ASSERT_EQ(inst.image_annotations.size(), 1u);
  EXPECT_TRUE(inst.image_annotations[0].empty());
  EXPECT_EQ(inst.num_classes(), 1);
}

TEST(CocoInstances, ContiguousLabelsCrowdAndEmptyImages) {
  const auto inst = parse(kInstances);
  // Categories sorted by id; labels 0..K-1 both ways.
  ASSERT_EQ(inst.num_classes(), 3);
  EXPECT_EQ(inst.categories[0].id, 3);
  EXPECT_EQ(inst.categories[0].name, "three");
  EXPECT_EQ(inst.categories[2].name, "twenty");
  EXPECT_EQ(inst.label(3), 0);
  EXPECT_EQ(inst.label(7), 1);
  EXPECT_EQ(inst.label(20), 2);
  EXPECT_EQ(inst.category_id(0), 3);
  EXPECT_EQ(inst.category_id(1), 7);
  EXPECT_EQ(inst.category_id(2), 20);
  EXPECT_THROW(inst.label(4), c10::Error);
  EXPECT_THROW(inst.category_id(3), c10::Error);
  // Images sorted by id.
  ASSERT_EQ(inst.images.size(), 4u);
  EXPECT_EQ(inst.images[0].id, 2);
  EXPECT_EQ(inst.images[0].file_name, "a.png");
  EXPECT_EQ(inst.images[0].width, 10);
  EXPECT_EQ(inst.images[0].height, 5);
  EXPECT_EQ(inst.images[3].id, 9);
  EXPECT_EQ(inst.image_index(9), 3);
  EXPECT_THROW(inst.image_index(3), c10::Error);
  // Annotations in file order, grouped per image.
  ASSERT_EQ(inst.annotations.size(), 5u);
  EXPECT_EQ(inst.image_annotations[0], (std::vector<int64_t>{0, 2, 3}));
  EXPECT_EQ(inst.image_annotations[1], (std::vector<int64_t>{4}));
  EXPECT_TRUE(inst.image_annotations[2].empty());
  EXPECT_EQ(inst.image_annotations[3], (std::vector<int64_t>{1}));
  const CocoAnnotation& a = inst.annotations[0];
  EXPECT_EQ(a.id, 11);
  EXPECT_EQ(a.bbox, (std::array<double, 4>{1, 1, 3, 2}));
  EXPECT_DOUBLE_EQ(a.area, 5.5);
  EXPECT_FALSE(a.iscrowd);
  EXPECT_DOUBLE_EQ(inst.annotations[1].area, 7.5 * 6);  // absent: w * h
  EXPECT_TRUE(inst.annotations[2].iscrowd);
  EXPECT_FALSE(inst.annotations[3].iscrowd);
}

TEST(CocoInstances, BoxesWithinTheToleranceAreKept) {
  const auto inst = parse(R"({"images": [{"id": 1, "file_name": "x", "width": 10, "height": 10}],
      "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [-0.5, 0, 10.9, 10]}],
      "categories": [{"id": 1, "name": "a"}]})");
  EXPECT_EQ(inst.annotations[0].bbox[2], 10.9);
}

// A file with one image (id 3, 20x10) and category 1, plus `annotation`.
std::string with_annotation(const std::string& annotation) {
  return R"({"images": [{"id": 3, "file_name": "img.png", "width": 20, "height": 10}],
             "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}],
             "annotations": [)" +
         annotation + "]}";
}

TEST(CocoInstances, ErrorsNameTheFileAndTheEntry) {
  struct Case {
    std::string json;
    std::vector<std::string> needles;
  };
  const std::vector<Case> cases = {
      {R"({"images": [{"id": 1,)", {"malformed JSON", "line 1"}},
      {"[1, 2]", {"top level", "object"}},
      {R"({"images": []})", {"missing key \"categories\""}},
      {with_annotation(R"({"id": 17, "image_id": 3, "category_id": 1, "bbox": [15, 2, 7, 3]})"),
       {"annotation id 17", "image id 3", "outside the 20x10 image"}},
      {with_annotation(R"({"id": 18, "image_id": 3, "category_id": 1, "bbox": [1, 2, 0, 3]})"),
       {"annotation id 18", "image id 3", "w or h <= 0"}},
      {with_annotation(R"({"id": 19, "image_id": 3, "category_id": 1, "bbox": [1, 2, 3, -1]})"),
       {"annotation id 19", "w or h <= 0"}},
      {with_annotation(R"({"id": 20, "image_id": 3, "category_id": 99, "bbox": [1, 2, 3, 3]})"),
       {"annotation id 20", "category_id 99"}},
      {with_annotation(R"({"id": 21, "image_id": 42, "category_id": 1, "bbox": [1, 2, 3, 3]})"),
       {"annotation id 21", "image_id 42"}},
      {with_annotation(R"({"id": 22, "image_id": 3, "category_id": 1})"),
       {"annotation id 22", "missing key \"bbox\""}},
      {with_annotation(R"({"id": 23, "image_id": "3", "category_id": 1, "bbox": [1, 2, 3, 3]})"),
       {"annotation id 23", "\"image_id\" should be an integer, got a string"}},
      {with_annotation(R"({"id": 24, "image_id": 3, "category_id": 1, "bbox": [1, 2, 3]})"),
       {"annotation id 24", "array of 4 numbers"}},
      {with_annotation(R"({"id": 25, "image_id": 3, "category_id": 1, "bbox": [1, 2, 3, 1e999]})"),
       {"1e999"}},
      {with_annotation(R"({"id": 26, "image_id": 3, "category_id": 1, "bbox": [1, 2, 3, 3]},
                          {"id": 26, "image_id": 3, "category_id": 1, "bbox": [1, 2, 3, 3]})"),
       {"annotation id 26", "appears twice"}},
      {with_annotation(R"({"image_id": 3})"), {"annotations[0]", "missing key \"id\""}},
      {R"({"images": [{"id": 1, "file_name": "x", "width": 0, "height": 4}],
           "categories": [{"id": 1, "name": "a"}]})",
       {"image id 1", "invalid size"}},
      {std::string(100, '[') + std::string(100, ']'), {"nested deeper"}},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.json);
    std::vector<std::string> needles = c.needles;
    needles.push_back("bad.json");
    dt::expect_error([&] { parse(c.json, "bad.json"); }, needles);
  }
}

// kInstances with a.png (10x5 RGB), b.png (8x6 gray), c.png and d.png (4x4) in a folder.
class CocoDatasetTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fs::create_directories(dir_ / "images");
    write_text(dir_ / "instances.json", kInstances);
    a_ = dt::synthetic_image(5, 10, 3, 1);
    b_ = dt::synthetic_image(6, 8, 1, 2);
    write_file(dir_ / "images/a.png", encode_png(a_));
    write_file(dir_ / "images/b.png", encode_png(b_));
    write_file(dir_ / "images/c.png", encode_png(dt::synthetic_image(4, 4, 3, 3)));
    write_file(dir_ / "images/d.png", encode_png(dt::synthetic_image(4, 4, 3, 4)));
  }
  CocoOptions options() const { return CocoOptions(dir_ / "instances.json", dir_ / "images"); }

  dt::TempDir dir_;
  Image a_, b_;
};

TEST_F(CocoDatasetTest, SamplesWithoutTransform) {
  CocoDataset ds(options(), detection::Compose());
  ASSERT_EQ(ds.size(), 4);  // every image, by id: 2, 4, 5, 9
  EXPECT_EQ(ds.num_classes(), 3);
  EXPECT_EQ(ds.channels(), 3);
  Rng rng(0);
  // Image 2: the crowd box (id 13) is left out; boxes as x0 y0 x1 y1.
  DetectionSample s = ds.get(0, rng);
  EXPECT_EQ(s.image_id, 2);
  EXPECT_EQ(s.original_size, (std::array<int64_t, 2>{5, 10}));
  EXPECT_EQ(s.size, (std::array<int64_t, 2>{5, 10}));
  ASSERT_EQ(s.image.sizes(), (std::vector<int64_t>{3, 5, 10}));
  EXPECT_TRUE(torch::equal(s.image, to_tensor(a_)));
  EXPECT_TRUE(
      torch::equal(s.target.boxes, torch::tensor({{1.f, 1.f, 4.f, 3.f}, {6.f, 2.f, 10.f, 5.f}})));
  EXPECT_TRUE(torch::equal(s.target.labels, torch::tensor({2, 0}, torch::kInt64)));
  // Image 4: only a crowd box; image 5: none.
  for (int64_t i : {1, 2}) {
    s = ds.get(i, rng);
    EXPECT_EQ(s.target.boxes.sizes(), (std::vector<int64_t>{0, 4}));
    EXPECT_EQ(s.target.labels.sizes(), (std::vector<int64_t>{0}));
  }
  // Image 9: a grayscale file, expanded to RGB.
  s = ds.get(3, rng);
  EXPECT_EQ(s.image_id, 9);
  EXPECT_TRUE(torch::equal(s.image[1], to_tensor(b_)[0]));
  EXPECT_TRUE(torch::allclose(s.target.boxes, torch::tensor({{0.5f, 0.f, 8.f, 6.f}})));
}

TEST_F(CocoDatasetTest, FilterEmptyAndOneChannel) {
  CocoDataset ds(options().filter_empty(true).channels(1), detection::Compose());
  ASSERT_EQ(ds.size(), 2);  // image 4 (crowd only) and 5 (nothing) left out
  EXPECT_EQ(ds.image(0).id, 2);
  EXPECT_EQ(ds.image(1).id, 9);
  EXPECT_EQ(ds.instances().images.size(), 4u);  // evaluation still sees every image
  Rng rng(0);
  const DetectionSample s = ds.get(1, rng);
  ASSERT_EQ(s.image.sizes(), (std::vector<int64_t>{1, 6, 8}));
  EXPECT_TRUE(torch::equal(s.image, to_tensor(b_)));  // a gray file keeps its values
  // An RGB file becomes PIL's luma.
  const Image gray = ds.read(0);
  const uint8_t* p = a_.data.data();
  EXPECT_EQ(gray.data[0], (p[0] * 19595 + p[1] * 38470 + p[2] * 7471 + 0x8000) >> 16);
}

TEST_F(CocoDatasetTest, MissingAndMismatchedImages) {
  fs::remove(dir_ / "images/b.png");
  dt::expect_error([&] { CocoDataset(options(), detection::Compose()); },
                   {"instances.json", "image id 9", "b.png", "does not exist"});
  // Without the up-front check the read fails naming the file.
  CocoDataset lazy(options().check_files(false), detection::Compose());
  Rng rng(0);
  dt::expect_error([&] { lazy.get(3, rng); }, {"b.png"});
  // A file whose size differs from the JSON's.
  write_file(dir_ / "images/b.png", encode_png(dt::synthetic_image(7, 8, 1, 2)));
  CocoDataset ds(options(), detection::Compose());
  dt::expect_error([&] { ds.get(3, rng); }, {"b.png", "image id 9", "8x6"});
}

TEST_F(CocoDatasetTest, LayoutOfASplit) {
  fs::create_directories(dir_ / "root/annotations");
  fs::create_directories(dir_ / "root/val2017");
  write_text(dir_ / "root/annotations/instances_val2017.json", "{}");
  const CocoOptions o = coco_split(dir_ / "root", "val");
  EXPECT_EQ(o.annotation_file(), dir_ / "root/annotations/instances_val2017.json");
  EXPECT_EQ(o.image_dir(), dir_ / "root/val2017");
  dt::expect_error([&] { coco_split(dir_ / "root", "train"); },
                   {"instances_train.json", "instances_train2017.json"});
}

}  // namespace
