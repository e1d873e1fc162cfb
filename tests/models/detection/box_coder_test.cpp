// The R-CNN box parametrization against hand-solved values and torchvision's BoxCoder.
#include "mgd/models/detection/box_coder.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

#include "models/detection/detection_testing.h"

namespace {

using mgd::detection::BoxCoder;
using mgd::detection::BoxCoderOptions;
using mgd::testing::tensors_close;

TEST(BoxCoder, EmptyInputs) {
  const BoxCoder coder;
  EXPECT_EQ(coder.encode(torch::zeros({0, 4}), torch::zeros({0, 4})).sizes(),
            torch::IntArrayRef({0, 4}));
  EXPECT_EQ(coder.decode(torch::zeros({0, 4}), torch::zeros({0, 4})).sizes(),
            torch::IntArrayRef({0, 4}));
}

TEST(BoxCoder, HandSolved) {
  const BoxCoder coder;
  const auto anchor = torch::tensor({{0.0f, 0.0f, 10.0f, 10.0f}});
  const auto target = torch::tensor({{5.0f, 5.0f, 15.0f, 25.0f}});
  // Centres (5, 5) -> (10, 15), sizes 10 x 10 -> 10 x 20; no "+ 1" in the widths.
  const auto deltas = torch::tensor({{0.5f, 1.0f, 0.0f, std::log(2.0f)}});
  EXPECT_TRUE(tensors_close(coder.encode(target, anchor), deltas));
  EXPECT_TRUE(tensors_close(coder.decode(deltas, anchor), target));
  const BoxCoder weighted(BoxCoderOptions().weights({10.0, 10.0, 5.0, 5.0}));
  const auto scaled = torch::tensor({{5.0f, 10.0f, 0.0f, 5 * std::log(2.0f)}});
  EXPECT_TRUE(tensors_close(weighted.encode(target, anchor), scaled));
  EXPECT_TRUE(tensors_close(weighted.decode(scaled, anchor), target));
}

TEST(BoxCoder, DecodeClampsTheScaleDeltas) {
  const BoxCoder coder;
  const auto anchor = torch::tensor({{0.0f, 0.0f, 16.0f, 16.0f}});
  const auto boxes = coder.decode(torch::tensor({{0.0f, 0.0f, 100.0f, 100.0f}}), anchor);
  // exp(log(1000 / 16)) * 16 = 1000 wide, centred on 8.
  EXPECT_TRUE(tensors_close(boxes, torch::tensor({{-492.0f, -492.0f, 508.0f, 508.0f}}), 1e-5));
  EXPECT_TRUE(torch::isfinite(coder.decode(torch::full({1, 4}, 1e30f), anchor)).all().item<bool>());
}

TEST(BoxCoder, DecodeHandlesSeveralDeltasPerAnchorAndPassesGradients) {
  const BoxCoder coder;
  const auto anchors = torch::tensor({{0.0f, 0.0f, 10.0f, 10.0f}, {2.0f, 4.0f, 8.0f, 6.0f}});
  const auto deltas = torch::randn({2, 8}, torch::requires_grad());
  const auto boxes = coder.decode(deltas, anchors);
  ASSERT_EQ(boxes.sizes(), torch::IntArrayRef({2, 8}));
  EXPECT_TRUE(tensors_close(boxes.slice(1, 4, 8), coder.decode(deltas.slice(1, 4, 8), anchors)));
  boxes.sum().backward();
  EXPECT_TRUE(deltas.grad().defined());
}

TEST(BoxCoder, RejectsBadOptionsAndShapes) {
  EXPECT_THROW(BoxCoder(BoxCoderOptions().weights({1.0, 1.0, 1.0})), c10::Error);
  EXPECT_THROW(BoxCoder(BoxCoderOptions().weights({1.0, 0.0, 1.0, 1.0})), c10::Error);
  const BoxCoder coder;
  EXPECT_THROW(coder.encode(torch::zeros({3, 4}), torch::zeros({2, 4})), c10::Error);
  EXPECT_THROW(coder.decode(torch::zeros({2, 5}), torch::zeros({2, 4})), c10::Error);
}

TEST(BoxCoder, MatchesTorchvision) {
  MGD_DETECTION_ORACLE(oracle);
  const auto& anchors = oracle.at("coder.anchors");
  const auto& targets = oracle.at("coder.targets");
  const BoxCoder coder;
  EXPECT_TRUE(tensors_close(coder.encode(targets, anchors), oracle.at("coder.encoded")));
  EXPECT_TRUE(
      tensors_close(coder.decode(oracle.at("coder.deltas"), anchors), oracle.at("coder.decoded")));
  const BoxCoder weighted(BoxCoderOptions().weights({10.0, 10.0, 5.0, 5.0}));
  EXPECT_TRUE(tensors_close(weighted.encode(targets, anchors), oracle.at("coder.w.encoded")));
  EXPECT_TRUE(tensors_close(weighted.decode(oracle.at("coder.deltas8"), anchors),
                            oracle.at("coder.w.decoded8")));
}

}  // namespace
