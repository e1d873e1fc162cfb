// NMS and batched NMS against hand-solved cases and torchvision.ops.nms / batched_nms,
// index for index (ties in scores, duplicate boxes, both of batched_nms's code paths).
#include "mgd/models/detection/nms.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "models/detection/detection_testing.h"

namespace {

using mgd::detection::batched_nms;
using mgd::detection::nms;
using mgd::testing::indices_equal;

torch::Tensor idx(std::vector<int64_t> v) {
  return torch::tensor(v, torch::kLong);
}

TEST(Nms, EmptyInputKeepsNothing) {
  const auto keep = nms(torch::zeros({0, 4}), torch::zeros({0}), 0.5);
  EXPECT_TRUE(indices_equal(keep, idx({})));
  EXPECT_TRUE(indices_equal(
      batched_nms(torch::zeros({0, 4}), torch::zeros({0}), torch::zeros({0}, torch::kLong), 0.5),
      idx({})));
}

TEST(Nms, SingleBoxIsKept) {
  const auto box = torch::tensor({{1.0f, 2.0f, 3.0f, 4.0f}});
  EXPECT_TRUE(indices_equal(nms(box, torch::tensor({0.3f}), 0.5), idx({0})));
  EXPECT_TRUE(indices_equal(batched_nms(box, torch::tensor({0.3f}), idx({7}), 0.5), idx({0})));
}

TEST(Nms, HandSolved) {
  // 0 and 2 overlap by IoU 81/119 > 0.5; 1 is apart. Kept by decreasing score.
  const auto boxes = torch::tensor(
      {{0.0f, 0.0f, 10.0f, 10.0f}, {20.0f, 20.0f, 30.0f, 30.0f}, {1.0f, 1.0f, 11.0f, 11.0f}});
  EXPECT_TRUE(indices_equal(nms(boxes, torch::tensor({0.5f, 0.7f, 0.9f}), 0.5), idx({2, 1})));
  EXPECT_TRUE(indices_equal(nms(boxes, torch::tensor({0.9f, 0.7f, 0.5f}), 0.5), idx({0, 1})));
  EXPECT_TRUE(indices_equal(nms(boxes, torch::tensor({0.9f, 0.7f, 0.5f}), 0.7), idx({0, 1, 2})));
  EXPECT_TRUE(indices_equal(nms(boxes.to(torch::kDouble), torch::tensor({0.9, 0.7, 0.5}), 0.5),
                            idx({0, 1})));
}

TEST(Nms, SuppressesOnlyAboveTheThreshold) {
  // IoU exactly 0.5: kept at threshold 0.5 (strict), suppressed below it.
  const auto boxes = torch::tensor({{0.0f, 0.0f, 2.0f, 1.0f}, {0.0f, 0.0f, 1.0f, 1.0f}});
  const auto scores = torch::tensor({0.9f, 0.8f});
  EXPECT_TRUE(indices_equal(nms(boxes, scores, 0.5), idx({0, 1})));
  EXPECT_TRUE(indices_equal(nms(boxes, scores, 0.49), idx({0})));
}

TEST(Nms, EqualScoresAreVisitedInIndexOrder) {
  // Three copies of one box with one score: the first copy survives.
  const auto boxes = torch::tensor({{0.0f, 0.0f, 4.0f, 4.0f},
                                    {9.0f, 9.0f, 12.0f, 12.0f},
                                    {0.0f, 0.0f, 4.0f, 4.0f},
                                    {0.0f, 0.0f, 4.0f, 4.0f}});
  const auto scores = torch::full({4}, 0.5f);
  EXPECT_TRUE(indices_equal(nms(boxes, scores, 0.5), idx({0, 1})));
  EXPECT_TRUE(indices_equal(nms(boxes, torch::tensor({0.5f, 0.4f, 0.6f, 0.6f}), 0.5), idx({2, 1})));
}

TEST(BatchedNms, SuppressesWithinACategoryOnly) {
  const auto boxes = torch::tensor({{0.0f, 0.0f, 10.0f, 10.0f},
                                    {1.0f, 1.0f, 11.0f, 11.0f},
                                    {0.0f, 0.0f, 10.0f, 10.0f},
                                    {0.5f, 0.5f, 10.0f, 10.0f}});
  const auto scores = torch::tensor({0.9f, 0.8f, 0.7f, 0.95f});
  EXPECT_TRUE(indices_equal(batched_nms(boxes, scores, idx({0, 0, 1, 1}), 0.5), idx({3, 0})));
  EXPECT_TRUE(indices_equal(batched_nms(boxes, scores, idx({0, 1, 2, 3}), 0.5), idx({3, 0, 1, 2})));
  // Negative coordinates: categories still never meet (torchvision's offset trick would let
  // these two boxes of neighbouring categories overlap and suppress each other).
  const auto negative = torch::tensor({{-50.0f, -50.0f, 1.0f, 1.0f}, {-50.0f, -50.0f, 1.0f, 1.0f}});
  EXPECT_TRUE(indices_equal(batched_nms(negative, torch::tensor({0.9f, 0.8f}), idx({0, 1}), 0.5),
                            idx({0, 1})));
}

TEST(Nms, RejectsMismatchedInputs) {
  EXPECT_THROW(nms(torch::zeros({3, 4}), torch::zeros({2}), 0.5), c10::Error);
  EXPECT_THROW(nms(torch::zeros({3, 5}), torch::zeros({3}), 0.5), c10::Error);
  EXPECT_THROW(nms(torch::zeros({3, 4}, torch::kLong), torch::zeros({3}), 0.5), c10::Error);
  EXPECT_THROW(batched_nms(torch::zeros({3, 4}), torch::zeros({3}), torch::zeros({2}), 0.5),
               c10::Error);
  EXPECT_THROW(batched_nms(torch::zeros({3, 4}), torch::zeros({3}), torch::zeros({3}), 0.5),
               c10::Error);  // float category ids
}

TEST(Nms, MatchesTorchvision) {
  MGD_DETECTION_ORACLE(oracle);
  for (const char* name : {"nms.rand", "nms.low", "nms.double", "nms.big", "nms.ties"}) {
    SCOPED_TRACE(name);
    const std::string n = name;
    const auto keep = nms(oracle.at(n + ".boxes"), oracle.at(n + ".scores"),
                          oracle.at(n + ".thr").item<double>());
    EXPECT_TRUE(indices_equal(keep, oracle.at(n + ".keep")));
  }
}

TEST(BatchedNms, MatchesTorchvisionOnBothCodePaths) {
  MGD_DETECTION_ORACLE(oracle);
  for (const char* name : {"bnms.small", "bnms.big"}) {
    SCOPED_TRACE(name);
    const std::string n = name;
    const auto keep = batched_nms(oracle.at(n + ".boxes"), oracle.at(n + ".scores"),
                                  oracle.at(n + ".idxs"), oracle.at(n + ".thr").item<double>());
    EXPECT_TRUE(indices_equal(keep, oracle.at(n + ".keep")));
  }
}

}  // namespace
