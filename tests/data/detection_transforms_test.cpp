#include "mgd/data/detection_transforms.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <map>
#include <set>

#include "data/data_testing.h"

namespace {

using namespace mgd::data;
namespace dt = mgd::data_testing;

DetectionTarget target(std::vector<float> boxes, std::vector<int64_t> labels) {
  const int64_t n = static_cast<int64_t>(labels.size());
  return {torch::tensor(boxes).reshape({n, 4}), torch::tensor(labels, torch::kInt64)};
}

TEST(DetectionTransforms, ShortestEdgeSize) {
  // Detectron2's get_output_shape, worked by hand.
  EXPECT_EQ(detection::shortest_edge_size(480, 640, 800, 1333),
            (std::array<int64_t, 2>{800, 1067}));
  EXPECT_EQ(detection::shortest_edge_size(640, 480, 800, 1333),
            (std::array<int64_t, 2>{1067, 800}));
  EXPECT_EQ(detection::shortest_edge_size(500, 500, 640, 1333), (std::array<int64_t, 2>{640, 640}));
  // 100 x 1000 to 800 x 8000 passes the cap: scaled by 1333 / 8000 -> 133.3 x 1333.
  EXPECT_EQ(detection::shortest_edge_size(100, 1000, 800, 1333),
            (std::array<int64_t, 2>{133, 1333}));
  EXPECT_EQ(detection::shortest_edge_size(100, 1000, 800, 0), (std::array<int64_t, 2>{800, 8000}));
  // Rounding half up: 3 x 5 to short side 3 is 3 x 5; to 5: 5 x 8.33 -> 8; to 9: 15.
  EXPECT_EQ(detection::shortest_edge_size(3, 5, 5, 0), (std::array<int64_t, 2>{5, 8}));
  EXPECT_EQ(detection::shortest_edge_size(2, 5, 3, 0), (std::array<int64_t, 2>{3, 8}));  // 7.5
  EXPECT_THROW(detection::shortest_edge_size(0, 5, 3, 0), c10::Error);
}

TEST(DetectionTransforms, ResizeAndFlipMoveTheBoxes) {
  const Image image = dt::synthetic_image(10, 20, 3, 7);
  // Short side 10 -> 20: every coordinate doubles.
  detection::Compose resize({std::make_shared<detection::ResizeShortestEdge>(
      detection::ResizeShortestEdgeOptions(20).max_size(0))});
  Rng rng(0);
  DetectionSample s = resize(image, target({1, 2, 5, 6, 0, 0, 20, 10}, {4, 1}), rng);
  EXPECT_EQ(s.original_size, (std::array<int64_t, 2>{10, 20}));
  EXPECT_EQ(s.size, (std::array<int64_t, 2>{20, 40}));
  EXPECT_EQ(s.image.sizes(), (std::vector<int64_t>{3, 20, 40}));
  EXPECT_TRUE(torch::equal(s.target.boxes,
                           torch::tensor({{2.f, 4.f, 10.f, 12.f}, {0.f, 0.f, 40.f, 20.f}})));
  EXPECT_TRUE(torch::equal(s.target.labels, torch::tensor({4, 1}, torch::kInt64)));
  // The pixels are transforms.h's PIL bilinear resize.
  ResizePlan plan;
  plan.height = 10, plan.width = 20, plan.out_height = 20, plan.out_width = 40;
  EXPECT_TRUE(torch::equal(s.image, to_tensor(resize_region(image, plan))));

  // Resize 10 x 20 -> 15 x 30 (x 1.5), then a certain flip: x -> 30 - x.
  detection::Compose both(
      {std::make_shared<detection::ResizeShortestEdge>(
           detection::ResizeShortestEdgeOptions(15).max_size(0)),
       std::make_shared<detection::RandomHorizontalFlip>(detection::RandomFlipOptions().p(1.0))});
  s = both(image, target({1, 2, 5, 6}, {3}), rng);
  EXPECT_EQ(s.size, (std::array<int64_t, 2>{15, 30}));
  EXPECT_TRUE(torch::equal(s.target.boxes, torch::tensor({{22.5f, 3.f, 28.5f, 9.f}})));
  plan.out_height = 15, plan.out_width = 30;
  Image expected = resize_region(image, plan);
  hflip(expected);
  EXPECT_TRUE(torch::equal(s.image, to_tensor(expected)));

  // p = 0 never flips.
  detection::Compose never(
      {std::make_shared<detection::RandomHorizontalFlip>(detection::RandomFlipOptions().p(0.0))});
  s = never(image, target({1, 2, 5, 6}, {3}), rng);
  EXPECT_TRUE(torch::equal(s.target.boxes, torch::tensor({{1.f, 2.f, 5.f, 6.f}})));
  EXPECT_TRUE(torch::equal(s.image, to_tensor(image)));
}

TEST(DetectionTransforms, FlipIsAFairCoinFromTheSampleRng) {
  const Image image = dt::synthetic_image(4, 6, 1, 1);
  detection::Compose flip({std::make_shared<detection::RandomHorizontalFlip>()});
  int flipped = 0;
  for (int64_t i = 0; i < 400; ++i) {
    Rng a = Rng::for_sample(5, 0, i), b = Rng::for_sample(5, 0, i);
    const auto s1 = flip(image, target({0, 0, 1, 1}, {0}), a);
    const auto s2 = flip(image, target({0, 0, 1, 1}, {0}), b);
    EXPECT_TRUE(torch::equal(s1.target.boxes, s2.target.boxes));
    flipped += s1.target.boxes[0][0].item<float>() == 5.f;
  }
  EXPECT_GT(flipped, 150);
  EXPECT_LT(flipped, 250);
}

TEST(DetectionTransforms, MultiScaleChoiceIsAFunctionOfTheSample) {
  const Image image = dt::synthetic_image(8, 12, 1, 3);
  detection::ResizeShortestEdge resize(
      detection::ResizeShortestEdgeOptions({8, 16, 24, 32}).max_size(0));
  std::map<int64_t, int64_t> seen;
  int64_t differ = 0;
  for (int64_t i = 0; i < 200; ++i) {
    Rng a = Rng::for_sample(1, 0, i), b = Rng::for_sample(1, 0, i), c = Rng::for_sample(1, 1, i);
    const auto sa = resize.output_size(8, 12, a);
    EXPECT_EQ(sa, resize.output_size(8, 12, b));
    differ += sa != resize.output_size(8, 12, c);
    EXPECT_EQ(sa[1] * 2, sa[0] * 3);
    ++seen[sa[0]];
  }
  EXPECT_EQ(seen.size(), 4u);  // every length drawn
  for (const auto& kv : seen) EXPECT_GT(kv.second, 25) << kv.first;
  EXPECT_GT(differ, 100);  // another epoch, other choices
  // apply() resizes to what output_size() said, drawing the same.
  Rng a = Rng::for_sample(1, 0, 7), b = Rng::for_sample(1, 0, 7);
  Image im = image;
  torch::Tensor boxes = torch::zeros({0, 4}, torch::kFloat64);
  resize.apply(im, boxes, a);
  const auto expected = resize.output_size(8, 12, b);
  EXPECT_EQ((std::array<int64_t, 2>{im.height, im.width}), expected);
  EXPECT_EQ(a.next_u64(), b.next_u64());
}

TEST(DetectionTransforms, ClipsAndDropsEmptyBoxes) {
  const Image image = dt::synthetic_image(10, 10, 3, 1);
  detection::Compose none;
  Rng rng(0);
  const auto s = none(image, target({-1, 2, 4, 12, 3, 3, 3, 8, 5, 5, 6, 6}, {0, 1, 2}), rng);
  EXPECT_TRUE(
      torch::equal(s.target.boxes, torch::tensor({{0.f, 2.f, 4.f, 10.f}, {5.f, 5.f, 6.f, 6.f}})));
  EXPECT_TRUE(torch::equal(s.target.labels, torch::tensor({0, 2}, torch::kInt64)));
  // No boxes at all.
  const auto e = none(image, DetectionTarget(), rng);
  EXPECT_EQ(e.target.boxes.sizes(), (std::vector<int64_t>{0, 4}));
  EXPECT_EQ(e.target.labels.sizes(), (std::vector<int64_t>{0}));
}

TEST(DetectionTransforms, NormalizesAndDescribes) {
  const Image image = dt::synthetic_image(6, 4, 3, 2);
  const auto t = detection::eval_transform(4, 1333, imagenet_normalize());  // 4 x 6 stays
  EXPECT_EQ(t.describe(), "ResizeShortestEdge -> ToTensor -> Normalize");
  EXPECT_EQ(detection::train_transform().describe(),
            "ResizeShortestEdge -> RandomHorizontalFlip -> ToTensor -> Normalize");
  Rng rng(0);
  const auto s = t(image, DetectionTarget(), rng);
  EXPECT_TRUE(torch::allclose(s.image, normalize(to_tensor(image), imagenet_normalize())));
  EXPECT_THROW(detection::ResizeShortestEdge(std::vector<int64_t>{}), c10::Error);
  EXPECT_THROW(detection::ResizeShortestEdge(0), c10::Error);
  EXPECT_THROW(detection::RandomHorizontalFlip(detection::RandomFlipOptions().p(2)), c10::Error);
}

}  // namespace
