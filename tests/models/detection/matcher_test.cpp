// Anchor labelling against hand-solved cases and torchvision's Matcher.
#include "mgd/models/detection/matcher.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "models/detection/detection_testing.h"

namespace {

using mgd::detection::kBelowLowThreshold;
using mgd::detection::kBetweenThresholds;
using mgd::detection::match;
using mgd::detection::MatcherOptions;
using mgd::testing::indices_equal;

torch::Tensor idx(std::vector<int64_t> v) {
  return torch::tensor(v, torch::kLong);
}

TEST(Matcher, NoGroundTruthMakesEveryAnchorBackground) {
  EXPECT_TRUE(indices_equal(match(torch::zeros({0, 4})), idx({-1, -1, -1, -1})));
  EXPECT_TRUE(indices_equal(match(torch::zeros({3, 0})), idx({})));
}

TEST(Matcher, HandSolvedThresholds) {
  EXPECT_EQ(kBelowLowThreshold, -1);
  EXPECT_EQ(kBetweenThresholds, -2);
  const auto iou = torch::tensor({{0.6f, 0.45f, 0.1f, 0.5f}, {0.2f, 0.3f, 0.39f, 0.7f}});
  const auto strict = MatcherOptions().allow_low_quality_matches(false);
  // 0.5 is foreground (>= high), 0.4 <= 0.45 < 0.5 ignored, 0.39 background.
  EXPECT_TRUE(indices_equal(match(iou, strict), idx({0, -2, -1, 1})));
  // Every ground truth already has its best anchor matched: nothing changes.
  EXPECT_TRUE(indices_equal(match(iou), idx({0, -2, -1, 1})));
}

TEST(Matcher, LowQualityMatchesIncludeTies) {
  // Gt 0's best IoU, 0.3, is shared by anchors 1 and 3: both are claimed, each by the ground
  // truth it overlaps most (anchor 3: gt 1, at 0.35). Gt 2's best (0.45) lifts anchor 2 out
  // of the ignored band.
  const auto iou = torch::tensor({{0.10f, 0.30f, 0.00f, 0.30f, 0.20f, 0.00f},
                                  {0.00f, 0.10f, 0.05f, 0.35f, 0.00f, 0.60f},
                                  {0.00f, 0.00f, 0.45f, 0.00f, 0.39f, 0.00f}});
  EXPECT_TRUE(indices_equal(match(iou), idx({-1, 0, 2, 1, -1, 1})));
  EXPECT_TRUE(indices_equal(match(iou, MatcherOptions().allow_low_quality_matches(false)),
                            idx({-1, -1, -2, -1, -1, 1})));
}

TEST(Matcher, RejectsBadInput) {
  EXPECT_THROW(match(torch::zeros({4})), c10::Error);
  EXPECT_THROW(match(torch::zeros({2, 3}), MatcherOptions().low_threshold(0.6)), c10::Error);
}

TEST(Matcher, MatchesTorchvision) {
  MGD_DETECTION_ORACLE(oracle);
  const auto& iou = oracle.at("match.rand.iou");
  EXPECT_TRUE(indices_equal(match(iou), oracle.at("match.rand.out")));
  EXPECT_TRUE(indices_equal(match(iou, MatcherOptions().allow_low_quality_matches(false)),
                            oracle.at("match.rand.strict")));
  EXPECT_TRUE(indices_equal(match(oracle.at("match.ties.iou")), oracle.at("match.ties.out")));
}

}  // namespace
