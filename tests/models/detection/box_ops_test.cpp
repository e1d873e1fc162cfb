// Box geometry against hand-solved cases and torchvision.ops (bit for bit: the matcher
// thresholds these IoUs).
#include "mgd/models/detection/box_ops.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "models/detection/detection_testing.h"

namespace {

using mgd::detection::box_area;
using mgd::detection::box_iou;
using mgd::detection::clip_boxes_to_image;
using mgd::testing::tensors_close;

TEST(BoxOps, EmptySetsGiveEmptyResults) {
  const auto none = torch::zeros({0, 4});
  const auto three = torch::rand({3, 4});
  EXPECT_EQ(box_area(none).sizes(), torch::IntArrayRef({0}));
  EXPECT_EQ(box_iou(none, three).sizes(), torch::IntArrayRef({0, 3}));
  EXPECT_EQ(box_iou(three, none).sizes(), torch::IntArrayRef({3, 0}));
  EXPECT_EQ(clip_boxes_to_image(none, 10, 10).sizes(), torch::IntArrayRef({0, 4}));
}

TEST(BoxOps, HandSolved) {
  const auto a = torch::tensor({{0.0f, 0.0f, 2.0f, 2.0f}, {10.0f, 10.0f, 12.0f, 13.0f}});
  const auto b =
      torch::tensor({{1.0f, 1.0f, 3.0f, 3.0f}, {0.0f, 0.0f, 2.0f, 2.0f}, {5.0f, 5.0f, 6.0f, 6.0f}});
  EXPECT_TRUE(tensors_close(box_area(a), torch::tensor({4.0f, 6.0f})));
  const auto expected = torch::tensor({{1.0f / 7.0f, 1.0f, 0.0f}, {0.0f, 0.0f, 0.0f}});
  EXPECT_TRUE(tensors_close(box_iou(a, b), expected));
  // Integer boxes: areas stay integer, the IoU is floating point.
  const auto ia = a.to(torch::kInt), ib = b.to(torch::kInt);
  EXPECT_EQ(box_area(ia).scalar_type(), torch::kInt);
  EXPECT_TRUE(tensors_close(box_iou(ia, ib), expected));
}

TEST(BoxOps, DegenerateBoxesOverlapNothing) {
  const auto line = torch::tensor({{1.0f, 1.0f, 1.0f, 5.0f}});
  const auto box = torch::tensor({{0.0f, 0.0f, 4.0f, 4.0f}});
  EXPECT_EQ(box_iou(line, box).item<float>(), 0.0f);
  EXPECT_TRUE(std::isnan(box_iou(line, line).item<float>()));  // 0 / 0, as torchvision
}

TEST(BoxOps, ClipKeepsBoxesInsideTheImage) {
  const auto boxes = torch::tensor({{-5.0f, 3.0f, 50.0f, 70.0f}, {10.0f, -1.0f, 20.0f, 8.0f}});
  const auto clipped = clip_boxes_to_image(boxes, /*height=*/60, /*width=*/40);
  EXPECT_TRUE(tensors_close(
      clipped, torch::tensor({{0.0f, 3.0f, 40.0f, 60.0f}, {10.0f, 0.0f, 20.0f, 8.0f}})));
  // Any leading shape.
  EXPECT_TRUE(
      tensors_close(clip_boxes_to_image(boxes.view({1, 2, 4}), 60, 40), clipped.view({1, 2, 4})));
}

TEST(BoxOps, RejectsMalformedBoxes) {
  EXPECT_THROW(box_iou(torch::zeros({3, 5}), torch::zeros({2, 4})), c10::Error);
  EXPECT_THROW(box_area(torch::zeros({4})), c10::Error);
  EXPECT_THROW(clip_boxes_to_image(torch::zeros({2, 3}), 5, 5), c10::Error);
}

TEST(BoxOps, MatchTorchvisionBitForBit) {
  MGD_DETECTION_ORACLE(oracle);
  const auto& a = oracle.at("iou.a");
  const auto& b = oracle.at("iou.b");
  const auto iou = box_iou(a, b);
  EXPECT_TRUE(tensors_close(iou, oracle.at("iou.out"), 0, 0));
  EXPECT_TRUE(torch::equal(iou.nan_to_num(-1), oracle.at("iou.out").nan_to_num(-1)));
  EXPECT_TRUE(torch::equal(box_area(a), oracle.at("iou.area_a")));
  EXPECT_TRUE(
      torch::equal(clip_boxes_to_image(oracle.at("clip.boxes"), 120, 90), oracle.at("clip.out")));
}

}  // namespace
