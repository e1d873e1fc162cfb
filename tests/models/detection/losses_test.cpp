// RetinaNet's losses: focal and smooth-L1 by hand and against torchvision; the torchvision
// normalization against RetinaNet.compute_loss; Detectron2's against its formula.
#include "mgd/models/detection/losses.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

#include "models/detection/detection_testing.h"

namespace {

namespace det = mgd::detection;
using mgd::testing::tensors_close;

double sigmoid(double x) {
  return 1.0 / (1.0 + std::exp(-x));
}

// -alpha_t (1 - p_t)^gamma log(p_t), in double.
double focal(double x, double y, double alpha = 0.25, double gamma = 2.0) {
  const double p = sigmoid(x);
  const double p_t = y > 0.5 ? p : 1 - p;
  const double alpha_t = y > 0.5 ? alpha : 1 - alpha;
  return -alpha_t * std::pow(1 - p_t, gamma) * std::log(p_t);
}

// One image, two anchors, K = 2: a box on anchor 0 of class 1, anchor 1 far away.
struct TinyBatch {
  torch::Tensor anchors =
      torch::tensor({{0.0f, 0.0f, 10.0f, 10.0f}, {100.0f, 100.0f, 110.0f, 110.0f}});
  torch::Tensor logits = torch::tensor({{{0.0f, 1.0f}, {-2.0f, 0.5f}}}, torch::requires_grad());
  torch::Tensor regression = torch::tensor({{{0.05f, -0.2f, 0.0f, 1.0f}, {3.0f, 3.0f, 3.0f, 3.0f}}},
                                           torch::requires_grad());
  std::vector<det::Target> targets = {
      {torch::tensor({{0.0f, 0.0f, 10.0f, 10.0f}}), torch::tensor({int64_t{1}})}};
  double focal_sum = focal(0.0, 0) + focal(1.0, 1) + focal(-2.0, 0) + focal(0.5, 0);
};

TEST(FocalLoss, EmptyInputsSumToZero) {
  const auto loss = det::sigmoid_focal_loss(torch::zeros({0, 3}), torch::zeros({0, 3}), 0.25, 2.0,
                                            at::Reduction::Sum);
  EXPECT_EQ(loss.item<float>(), 0.0f);
}

TEST(FocalLoss, HandSolved) {
  const auto x = torch::tensor({0.0, 2.0, -1.0}, torch::kDouble);
  const auto y = torch::tensor({1.0, 0.0, 1.0}, torch::kDouble);
  const auto loss = det::sigmoid_focal_loss(x, y);
  EXPECT_TRUE(tensors_close(loss, torch::tensor({focal(0, 1), focal(2, 0), focal(-1, 1)}), 1e-12));
  EXPECT_NEAR(loss[0].item<double>(), 0.25 * 0.25 * std::log(2.0), 1e-12);
  // alpha < 0: no alpha_t; gamma 0: plain binary cross-entropy.
  EXPECT_TRUE(tensors_close(det::sigmoid_focal_loss(x, y, -1.0, 0.0, at::Reduction::Mean),
                            torch::binary_cross_entropy_with_logits(x, y), 1e-12));
}

TEST(SmoothL1Loss, HandSolved) {
  const auto x = torch::tensor({0.05f, -0.2f, 0.0f, 1.0f});
  const auto zero = torch::zeros({4});
  EXPECT_TRUE(tensors_close(det::smooth_l1_loss(x, zero, 0.1),
                            torch::tensor({0.0125f, 0.15f, 0.0f, 0.95f})));
  EXPECT_NEAR(det::smooth_l1_loss(x, zero, 0.0, at::Reduction::Sum).item<float>(), 1.25f, 1e-6);
  EXPECT_NEAR(det::smooth_l1_loss(x, zero, 0.1, at::Reduction::Mean).item<float>(), 1.1125f / 4,
              1e-6);
  EXPECT_THROW(det::smooth_l1_loss(x, torch::zeros({3}), 0.1), c10::Error);
}

TEST(RetinaNetLoss, Detectron2StyleHandSolved) {
  TinyBatch b;
  double normalizer = det::kInitialLossNormalizer;
  const auto losses =
      det::retinanet_losses(b.logits, b.regression, {b.anchors}, b.targets, det::MatcherOptions(),
                            det::BoxCoder(), det::RetinaNetLossOptions(), normalizer);
  EXPECT_DOUBLE_EQ(normalizer, 0.9 * 100 + 0.1 * 1);
  EXPECT_EQ(losses.num_foreground, 1);
  EXPECT_NEAR(losses.loss_cls.item<double>(), b.focal_sum / 90.1, 1e-7);
  EXPECT_NEAR(losses.loss_box_reg.item<double>(), 1.1125 / 90.1, 1e-7);
  (losses.loss_cls + losses.loss_box_reg).backward();
  // Background anchor 1 gets no box gradient.
  EXPECT_TRUE(torch::equal(b.regression.grad()[0][1], torch::zeros({4})));
  // The normalizer is state: a second step moves it on.
  det::retinanet_losses(b.logits, b.regression, {b.anchors}, b.targets, det::MatcherOptions(),
                        det::BoxCoder(), det::RetinaNetLossOptions(), normalizer);
  EXPECT_NEAR(normalizer, 0.9 * 90.1 + 0.1, 1e-12);
}

TEST(RetinaNetLoss, TorchvisionStyleHandSolved) {
  TinyBatch b;
  double normalizer = 7.0;
  const auto losses =
      det::retinanet_losses(b.logits, b.regression, {b.anchors}, b.targets, det::MatcherOptions(),
                            det::BoxCoder(), det::RetinaNetLossOptions::torchvision(), normalizer);
  EXPECT_EQ(normalizer, 7.0);  // not used
  EXPECT_NEAR(losses.loss_cls.item<double>(), b.focal_sum, 1e-6);
  EXPECT_NEAR(losses.loss_box_reg.item<double>(), 1.25, 1e-6);  // L1 over the 1 foreground
}

TEST(RetinaNetLoss, ImagesWithoutBoxesAreAllBackground) {
  TinyBatch b;
  const std::vector<det::Target> none = {{torch::zeros({0, 4}), torch::zeros({0}, torch::kLong)}};
  const double all_background = focal(0.0, 0) + focal(1.0, 0) + focal(-2.0, 0) + focal(0.5, 0);
  double normalizer = det::kInitialLossNormalizer;
  auto losses =
      det::retinanet_losses(b.logits, b.regression, {b.anchors}, none, det::MatcherOptions(),
                            det::BoxCoder(), det::RetinaNetLossOptions(), normalizer);
  EXPECT_EQ(losses.num_foreground, 0);
  EXPECT_DOUBLE_EQ(normalizer, 90.1);  // max(foreground, 1)
  EXPECT_NEAR(losses.loss_cls.item<double>(), all_background / 90.1, 1e-7);
  EXPECT_EQ(losses.loss_box_reg.item<float>(), 0.0f);
  (losses.loss_cls + losses.loss_box_reg).backward();
  EXPECT_TRUE(torch::isfinite(b.regression.grad()).all().item<bool>());
  losses =
      det::retinanet_losses(b.logits, b.regression, {b.anchors}, none, det::MatcherOptions(),
                            det::BoxCoder(), det::RetinaNetLossOptions::torchvision(), normalizer);
  EXPECT_NEAR(losses.loss_cls.item<double>(), all_background, 1e-6);
  EXPECT_EQ(losses.loss_box_reg.item<float>(), 0.0f);
}

TEST(RetinaNetLoss, RejectsInconsistentInputs) {
  TinyBatch b;
  double normalizer = det::kInitialLossNormalizer;
  const auto call = [&](const std::vector<det::Target>& targets, const torch::Tensor& anchors,
                        const det::RetinaNetLossOptions& options) {
    det::retinanet_losses(b.logits, b.regression, {anchors}, targets, det::MatcherOptions(),
                          det::BoxCoder(), options, normalizer);
  };
  const det::RetinaNetLossOptions options;
  const std::vector<det::Target> bad_label = {
      {torch::tensor({{0.0f, 0.0f, 10.0f, 10.0f}}), torch::tensor({int64_t{2}})}};
  EXPECT_THROW(call(bad_label, b.anchors, options), c10::Error);
  EXPECT_THROW(call({}, b.anchors, options), c10::Error);
  EXPECT_THROW(call(b.targets, b.anchors.slice(0, 0, 1), options), c10::Error);
  EXPECT_THROW(call(b.targets, b.anchors, det::RetinaNetLossOptions().style("mmdet")), c10::Error);
  normalizer = 0.0;
  EXPECT_THROW(call(b.targets, b.anchors, options), c10::Error);
}

std::vector<det::Target> oracle_targets(const mgd::testing::DetectionOracle& oracle,
                                        const std::string& name) {
  const auto boxes = oracle.list(name + ".boxes");
  const auto labels = oracle.list(name + ".labels");
  std::vector<det::Target> targets;
  for (size_t i = 0; i < boxes.size(); ++i) targets.push_back({boxes[i], labels[i]});
  return targets;
}

TEST(FocalLoss, MatchesTorchvisionValueAndGradient) {
  MGD_DETECTION_ORACLE(oracle);
  const auto x = oracle.at("focal.x").clone().requires_grad_();
  const auto& y = oracle.at("focal.y");
  for (const auto& [name, alpha, gamma] : std::vector<std::tuple<std::string, double, double>>{
           {"focal.a", 0.25, 2.0}, {"focal.b", -1.0, 1.5}}) {
    SCOPED_TRACE(name);
    const auto loss = det::sigmoid_focal_loss(x, y, alpha, gamma);
    EXPECT_TRUE(tensors_close(loss, oracle.at(name + ".none")));
    EXPECT_TRUE(tensors_close(det::sigmoid_focal_loss(x, y, alpha, gamma, at::Reduction::Mean),
                              oracle.at(name + ".mean")));
    const auto grad = torch::autograd::grad({loss.sum()}, {x})[0];
    EXPECT_TRUE(tensors_close(grad, oracle.at(name + ".grad")));
  }
}

TEST(RetinaNetLoss, TorchvisionStyleMatchesComputeLoss) {
  MGD_DETECTION_ORACLE(oracle);
  const auto logits = oracle.at("tvloss.logits").clone().requires_grad_();
  const auto regression = oracle.at("tvloss.regression").clone().requires_grad_();
  double normalizer = det::kInitialLossNormalizer;
  const auto losses = det::retinanet_losses(
      logits, regression, {oracle.at("tvloss.anchors")}, oracle_targets(oracle, "tvloss"),
      det::MatcherOptions(), det::BoxCoder(), det::RetinaNetLossOptions::torchvision(), normalizer);
  EXPECT_TRUE(tensors_close(losses.loss_cls, oracle.at("tvloss.cls")));
  EXPECT_TRUE(tensors_close(losses.loss_box_reg, oracle.at("tvloss.box")));
  const auto grads =
      torch::autograd::grad({losses.loss_cls + 2 * losses.loss_box_reg}, {logits, regression});
  EXPECT_TRUE(tensors_close(grads[0], oracle.at("tvloss.grad_logits")));
  EXPECT_TRUE(tensors_close(grads[1], oracle.at("tvloss.grad_regression")));
}

TEST(RetinaNetLoss, Detectron2StyleMatchesItsDefinition) {
  MGD_DETECTION_ORACLE(oracle);
  const auto logits = oracle.at("d2loss.logits").clone().requires_grad_();
  const auto regression = oracle.at("d2loss.regression").clone().requires_grad_();
  const auto targets = oracle_targets(oracle, "d2loss");
  double normalizer = det::kInitialLossNormalizer;
  // Per-image anchors (the same tensor three times) must give what shared anchors give.
  const std::vector<torch::Tensor> anchors(targets.size(), oracle.at("d2loss.anchors"));
  const auto losses =
      det::retinanet_losses(logits, regression, anchors, targets, det::MatcherOptions(),
                            det::BoxCoder(), det::RetinaNetLossOptions(), normalizer);
  EXPECT_NEAR(normalizer, oracle.at("d2loss.normalizer").item<double>(), 1e-12);
  EXPECT_EQ(losses.num_foreground, oracle.at("d2loss.num_fg").item<int64_t>());
  EXPECT_TRUE(tensors_close(losses.loss_cls, oracle.at("d2loss.cls")));
  EXPECT_TRUE(tensors_close(losses.loss_box_reg, oracle.at("d2loss.box")));
  const auto grads =
      torch::autograd::grad({losses.loss_cls + losses.loss_box_reg}, {logits, regression});
  EXPECT_TRUE(tensors_close(grads[0], oracle.at("d2loss.grad_logits")));
  EXPECT_TRUE(tensors_close(grads[1], oracle.at("d2loss.grad_regression")));
}

}  // namespace
