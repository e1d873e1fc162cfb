// RetinaNet inference post-processing by hand and against torchvision's
// RetinaNet.postprocess_detections.
#include "mgd/models/detection/postprocess.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "models/detection/detection_testing.h"

namespace {

namespace det = mgd::detection;
using mgd::testing::indices_equal;
using mgd::testing::tensors_close;

TEST(Postprocess, NothingAboveTheThresholdGivesNoDetection) {
  const auto anchors = torch::tensor({{0.0f, 0.0f, 10.0f, 10.0f}});
  const auto logits = torch::full({2, 1, 3}, -10.0f);  // sigmoid < 0.05
  const auto dets = det::postprocess({logits}, {torch::zeros({2, 1, 4})}, {anchors},
                                     {{20, 20}, {20, 20}}, det::BoxCoder(), {});
  ASSERT_EQ(dets.size(), 2u);
  for (const auto& d : dets) {
    EXPECT_EQ(d.boxes.sizes(), torch::IntArrayRef({0, 4}));
    EXPECT_EQ(d.scores.numel(), 0);
    EXPECT_TRUE(indices_equal(d.labels, torch::zeros({0}, torch::kLong)));
  }
}

TEST(Postprocess, HandSolved) {
  // Two levels of one anchor each; K = 2. Level 0's anchor pokes out of the 20 x 30 image.
  const std::vector<torch::Tensor> anchors = {torch::tensor({{-4.0f, 2.0f, 8.0f, 12.0f}}),
                                              torch::tensor({{-3.0f, 2.0f, 8.0f, 12.0f}})};
  const std::vector<torch::Tensor> logits = {torch::tensor({{{-5.0f, 2.0f}}}),
                                             torch::tensor({{{1.0f, 3.0f}}})};
  const std::vector<torch::Tensor> deltas = {torch::zeros({1, 1, 4}), torch::zeros({1, 1, 4})};
  const auto dets = det::postprocess(logits, deltas, anchors, {{20, 30}}, det::BoxCoder(), {})[0];
  // Class 1: level 1's box (score sigmoid(3)) suppresses level 0's (the same box once
  // clipped); class 0: level 1's box alone; sigmoid(-5) < 0.05 is dropped.
  EXPECT_TRUE(indices_equal(dets.labels, torch::tensor({int64_t{1}, int64_t{0}})));
  EXPECT_TRUE(tensors_close(dets.scores, torch::sigmoid(torch::tensor({3.0f, 1.0f}))));
  EXPECT_TRUE(tensors_close(dets.boxes,
                            torch::tensor({{0.0f, 2.0f, 8.0f, 12.0f}, {0.0f, 2.0f, 8.0f, 12.0f}})));
  // At most detections_per_img; without clipping the two class-1 boxes differ (IoU 11/12
  // still suppresses).
  const auto one = det::postprocess(logits, deltas, anchors, {{20, 30}}, det::BoxCoder(),
                                    det::PostprocessOptions().detections_per_img(1))[0];
  EXPECT_EQ(one.scores.numel(), 1);
  const auto unclipped = det::postprocess(logits, deltas, anchors, {{20, 30}}, det::BoxCoder(),
                                          det::PostprocessOptions().clip_boxes(false))[0];
  EXPECT_TRUE(tensors_close(unclipped.boxes[0], anchors[1][0]));
  // top-k per level: keep 1 candidate per level.
  const auto top1 = det::postprocess(logits, deltas, anchors, {{20, 30}}, det::BoxCoder(),
                                     det::PostprocessOptions().topk_candidates(1))[0];
  EXPECT_TRUE(indices_equal(top1.labels, torch::tensor({int64_t{1}})));
}

TEST(Postprocess, RejectsInconsistentInputs) {
  const auto anchors = torch::zeros({3, 4});
  const auto logits = torch::zeros({1, 3, 2});
  EXPECT_THROW(det::postprocess({logits}, {torch::zeros({1, 2, 4})}, {anchors}, {{5, 5}},
                                det::BoxCoder(), {}),
               c10::Error);
  EXPECT_THROW(det::postprocess({logits}, {torch::zeros({1, 3, 4})}, {anchors}, {{5, 5}, {5, 5}},
                                det::BoxCoder(), {}),
               c10::Error);
  EXPECT_THROW(det::postprocess({logits}, {torch::zeros({1, 3, 4})}, {torch::zeros({2, 4})},
                                {{5, 5}}, det::BoxCoder(), {}),
               c10::Error);
}

TEST(Postprocess, MatchesTorchvision) {
  MGD_DETECTION_ORACLE(oracle);
  for (const char* name : {"pp.small", "pp.big"}) {
    SCOPED_TRACE(name);
    const std::string n = name;
    const auto sizes_t = oracle.at(n + ".sizes");
    std::vector<std::array<int64_t, 2>> sizes;
    for (int64_t b = 0; b < sizes_t.size(0); ++b) {
      sizes.push_back({sizes_t[b][0].item<int64_t>(), sizes_t[b][1].item<int64_t>()});
    }
    const auto options = det::PostprocessOptions()
                             .topk_candidates(oracle.at(n + ".topk").item<int64_t>())
                             .detections_per_img(oracle.at(n + ".dets").item<int64_t>());
    const auto dets =
        det::postprocess(oracle.list(n + ".logits"), oracle.list(n + ".regression"),
                         oracle.list(n + ".anchors"), sizes, det::BoxCoder(), options);
    const auto boxes = oracle.list(n + ".boxes");
    const auto scores = oracle.list(n + ".scores");
    const auto labels = oracle.list(n + ".labels");
    ASSERT_EQ(dets.size(), boxes.size());
    for (size_t b = 0; b < dets.size(); ++b) {
      SCOPED_TRACE("image " + std::to_string(b));
      EXPECT_TRUE(indices_equal(dets[b].labels, labels[b]));
      EXPECT_TRUE(tensors_close(dets[b].scores, scores[b], 0, 0));
      EXPECT_TRUE(tensors_close(dets[b].boxes, boxes[b]));
    }
  }
}

TEST(Postprocess, TorchvisionVariantKeeps300) {
  EXPECT_EQ(det::PostprocessOptions::torchvision().detections_per_img(), 300);
  EXPECT_EQ(det::PostprocessOptions().detections_per_img(), 100);
}

}  // namespace
