// Anchors: Detectron2's style by hand, torchvision's against its AnchorGenerator.
#include "mgd/models/detection/anchors.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

#include "models/detection/detection_testing.h"

namespace {

using mgd::detection::AnchorOptions;
using mgd::detection::anchors_per_location;
using mgd::detection::cell_anchors;
using mgd::detection::make_anchors;
using mgd::testing::tensors_close;

TEST(Anchors, EmptyFeatureMapHasNoAnchors) {
  const auto anchors = make_anchors(AnchorOptions().sizes({{32.0}}).strides({8}), {{0, 5}}, {0, 0});
  ASSERT_EQ(anchors.size(), 1u);
  EXPECT_EQ(anchors[0].sizes(), torch::IntArrayRef({0, 4}));
}

TEST(Anchors, DefaultsAreDetectron2RetinaNet) {
  const AnchorOptions options;
  EXPECT_EQ(anchors_per_location(options), 9);
  EXPECT_EQ(options.style(), "detectron2");
  ASSERT_EQ(options.sizes().size(), 5u);
  EXPECT_DOUBLE_EQ(options.sizes()[4][2], 512.0 * std::pow(2.0, 2.0 / 3.0));
  EXPECT_EQ(AnchorOptions::torchvision().sizes()[0], (std::vector<double>{32, 40, 50}));
  EXPECT_EQ(AnchorOptions::torchvision().sizes()[4], (std::vector<double>{512, 645, 812}));
}

TEST(Anchors, Detectron2StyleHandSolved) {
  const AnchorOptions options;
  // Cell anchors of P3, size-major: a = size_index * 3 + ratio_index.
  const auto cell = cell_anchors(options, 0);
  ASSERT_EQ(cell.sizes(), torch::IntArrayRef({9, 4}));
  const double w0 = std::sqrt(32.0 * 32.0 / 0.5), h0 = 0.5 * w0;  // 45.25 x 22.63
  EXPECT_TRUE(tensors_close(cell[0], torch::tensor({-w0 / 2, -h0 / 2, w0 / 2, h0 / 2}), 1e-12));
  const double s1 = 32.0 * std::pow(2.0, 1.0 / 3.0);  // size 1, ratio 1: a square
  EXPECT_TRUE(tensors_close(cell[4], torch::tensor({-s1 / 2, -s1 / 2, s1 / 2, s1 / 2}), 1e-12));

  // A 2 x 3 map at stride 8: row (y * 3 + x) * 9 + a, centred on (8x, 8y).
  const auto anchors = make_anchors(options, {{2, 3}, {1, 1}, {1, 1}, {1, 1}, {1, 1}}, {0, 0});
  ASSERT_EQ(anchors.size(), 5u);
  ASSERT_EQ(anchors[0].sizes(), torch::IntArrayRef({2 * 3 * 9, 4}));
  EXPECT_EQ(anchors[0].scalar_type(), torch::kFloat);
  const auto expected = torch::tensor({16.0 - s1 / 2, 8.0 - s1 / 2, 16.0 + s1 / 2, 8.0 + s1 / 2});
  EXPECT_TRUE(tensors_close(anchors[0][(1 * 3 + 2) * 9 + 4], expected));
  EXPECT_TRUE(tensors_close(anchors[4], cell_anchors(options, 4).to(torch::kFloat)));
  // A half-stride offset moves every centre by 4 pixels on P3.
  const auto shifted = make_anchors(AnchorOptions(options).offset(0.5),
                                    {{2, 3}, {1, 1}, {1, 1}, {1, 1}, {1, 1}}, {0, 0});
  EXPECT_TRUE(tensors_close(shifted[0] - anchors[0], torch::full({54, 4}, 4.0f)));
  // dtype on request.
  EXPECT_EQ(
      make_anchors(options, {{2, 3}, {1, 1}, {1, 1}, {1, 1}, {1, 1}}, {0, 0}, torch::kDouble)[0]
          .scalar_type(),
      torch::kDouble);
}

TEST(Anchors, TorchvisionStyleRoundsAndDerivesStrides) {
  const auto options = AnchorOptions::torchvision();
  // Ratio-major and rounded: a = ratio_index * 3 + size_index; size 32, ratio 0.5 -> 45 x 23.
  const auto cell = cell_anchors(options, 0);
  EXPECT_TRUE(tensors_close(cell[0], torch::tensor({-23.0f, -11.0f, 23.0f, 11.0f}), 0, 0));
  EXPECT_TRUE(tensors_close(cell[3], torch::tensor({-16.0f, -16.0f, 16.0f, 16.0f}), 0, 0));
  // Strides from a 100 x 150 image: 100 // 13 = 7 down, 150 // 19 = 7 across on level 0.
  const auto anchors =
      make_anchors(options, {{13, 19}, {7, 10}, {4, 5}, {2, 3}, {1, 2}}, {100, 150});
  EXPECT_TRUE(tensors_close(anchors[0][(1 * 19 + 1) * 9 + 3],
                            torch::tensor({7.0f - 16, 7.0f - 16, 7.0f + 16, 7.0f + 16}), 0, 0));
}

TEST(Anchors, RejectsInconsistentOptions) {
  const std::vector<std::array<int64_t, 2>> five = {{2, 2}, {1, 1}, {1, 1}, {1, 1}, {1, 1}};
  EXPECT_THROW(make_anchors(AnchorOptions().style("mmdet"), five, {16, 16}), c10::Error);
  EXPECT_THROW(make_anchors(AnchorOptions(), {{2, 2}}, {16, 16}), c10::Error);
  EXPECT_THROW(make_anchors(AnchorOptions().strides({8, 16}), five, {16, 16}), c10::Error);
  EXPECT_THROW(anchors_per_location(AnchorOptions().sizes({{32.0}, {64.0, 80.0}})), c10::Error);
  EXPECT_THROW(make_anchors(AnchorOptions().aspect_ratios({0.0}), five, {16, 16}), c10::Error);
  EXPECT_THROW(make_anchors(AnchorOptions::torchvision(), five, {0, 16}), c10::Error);
}

TEST(Anchors, TorchvisionStyleMatchesAnchorGenerator) {
  MGD_DETECTION_ORACLE(oracle);
  for (const char* name : {"anchors.a", "anchors.b", "anchors.c"}) {
    SCOPED_TRACE(name);
    const std::string n = name;
    const auto image = oracle.at(n + ".image");
    const auto features = oracle.at(n + ".features");
    std::vector<std::array<int64_t, 2>> sizes;
    for (int64_t l = 0; l < features.size(0); ++l) {
      sizes.push_back({features[l][0].item<int64_t>(), features[l][1].item<int64_t>()});
    }
    const auto ours = make_anchors(AnchorOptions::torchvision(), sizes,
                                   {image[0].item<int64_t>(), image[1].item<int64_t>()});
    const auto theirs = oracle.list(n + ".out");
    ASSERT_EQ(ours.size(), theirs.size());
    for (size_t l = 0; l < ours.size(); ++l) {
      EXPECT_TRUE(tensors_close(ours[l], theirs[l], 0, 0)) << "level " << l;
    }
  }
}

}  // namespace
