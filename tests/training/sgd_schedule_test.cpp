#include <gtest/gtest.h>
#include <torch/torch.h>

#include "mgd/training/metrics.h"
#include "mgd/training/schedule.h"
#include "mgd/training/sgd.h"

namespace {

using mgd::training::LrSchedule;
using mgd::training::MatchingSchedule;

TEST(SGD, MatchesLibTorchSGD) {
  // LibTorch's own SGD implements PyTorch's update: an independent oracle.
  torch::manual_seed(0);
  auto target = torch::randn({5, 3});
  auto a = torch::randn({5, 3}, torch::requires_grad());
  auto b = a.detach().clone().requires_grad_(true);
  mgd::training::SGD ours({a}, mgd::training::SGDOptions(0.05).momentum(0.9).weight_decay(1e-2));
  torch::optim::SGD theirs(
      {b}, torch::optim::SGDOptions(0.05).momentum(0.9).weight_decay(1e-2).nesterov(true));
  for (int step = 0; step < 6; ++step) {
    if (step == 3) {
      ours.set_lr(0.01);
      static_cast<torch::optim::SGDOptions&>(theirs.param_groups()[0].options()).lr(0.01);
    }
    ours.zero_grad();
    theirs.zero_grad();
    ((a - target).pow(2).sum() + a.pow(3).sum()).backward();
    ((b - target).pow(2).sum() + b.pow(3).sum()).backward();
    ours.step();
    theirs.step();
    // The default (tensor ops) is LibTorch's update bit for bit: earlier runs reproduce.
    ASSERT_TRUE(torch::equal(a, b)) << "step " << step;
  }
  EXPECT_TRUE(ours.momentum_buffers()[0].defined());
  EXPECT_THROW(mgd::training::SGD({a}, mgd::training::SGDOptions(-1)), c10::Error);
}

TEST(SGD, OnePassAndTensorOpsAgree) {
  // Float parameters update in one pass (several threads' chunks for the large one); a
  // non-contiguous parameter and a double one take the tensor ops. All match LibTorch's SGD.
  torch::manual_seed(1);
  std::vector<torch::Tensor> ours_p = {torch::randn({300, 400}), torch::randn({7, 3}).t(),
                                       torch::randn({4, 5}, torch::kDouble), torch::randn({9})};
  std::vector<torch::Tensor> theirs_p;
  for (auto& p : ours_p) {
    p.requires_grad_(true);
    theirs_p.push_back(p.detach().clone().requires_grad_(true));
  }
  EXPECT_FALSE(ours_p[1].is_contiguous());
  mgd::training::SGD ours(ours_p, mgd::training::SGDOptions(0.02).one_pass(true));
  torch::optim::SGD theirs(
      theirs_p, torch::optim::SGDOptions(0.02).momentum(0.9).weight_decay(1e-4).nesterov(true));
  const int previous = torch::get_num_threads();
  torch::set_num_threads(2);
  for (int step = 0; step < 4; ++step) {
    ours.zero_grad();
    theirs.zero_grad();
    for (auto* params : {&ours_p, &theirs_p}) {
      auto loss = torch::zeros({}, torch::kDouble);
      for (auto& p : *params) loss = loss + (p.sin() * p).sum().to(torch::kDouble);
      loss.backward();
    }
    ours.step();
    theirs.step();
    for (size_t i = 0; i < ours_p.size(); ++i) {
      ASSERT_TRUE(torch::allclose(ours_p[i], theirs_p[i], 1e-6, 1e-7))
          << "step " << step << " " << i;
    }
  }
  torch::set_num_threads(previous);
  // Without momentum or weight decay: p -= lr * grad.
  auto q = torch::ones({3}, torch::requires_grad());
  mgd::training::SGD plain(
      {q}, mgd::training::SGDOptions(0.5).momentum(0).weight_decay(0).nesterov(false));
  (q * torch::tensor({1.0f, 2.0f, 4.0f})).sum().backward();
  plain.step();
  EXPECT_TRUE(torch::equal(q, torch::tensor({0.5f, 0.0f, -1.0f})));
}

TEST(LrSchedule, MultiStepWithWarmup) {
  LrSchedule s;
  s.base_lr = 0.1;
  s.drop_epochs = {3, 5};
  s.warmup_epochs = 1;
  s.epochs = 6;
  EXPECT_NEAR(s.at(0, 0, 10), 0.01, 1e-12);  // 1/10 of the warm-up done after iteration 0
  EXPECT_NEAR(s.at(0, 9, 10), 0.1, 1e-12);
  EXPECT_NEAR(s.at(2, 5, 10), 0.1, 1e-12);
  EXPECT_NEAR(s.at(3, 0, 10), 0.01, 1e-12);
  EXPECT_NEAR(s.at(5, 9, 10), 0.001, 1e-12);
}

TEST(LrSchedule, Cosine) {
  LrSchedule s;
  s.kind = LrSchedule::Kind::kCosine;
  s.base_lr = 0.2;
  s.epochs = 4;
  EXPECT_NEAR(s.at(0, 0, 5), 0.2, 1e-12);
  EXPECT_NEAR(s.at(2, 0, 5), 0.1, 1e-12);
  EXPECT_NEAR(s.at(4, 0, 5), 0.0, 1e-12);
}

TEST(LrSchedule, Detectron2WarmupOverIterations) {
  // WarmupMultiStepLR: factor 0.001 at iteration 0 rising linearly to 1 at 1000, times the
  // step schedule; then the schedule alone.
  LrSchedule s;
  s.base_lr = 0.01;
  s.drop_epochs = {2};
  s.epochs = 3;
  s.warmup_iters = 1000;
  s.warmup_factor = 0.001;
  EXPECT_DOUBLE_EQ(s.at(0, 0, 800), 0.01 * 0.001);
  EXPECT_DOUBLE_EQ(s.at(0, 500, 800), 0.01 * (0.001 * 0.5 + 0.5));
  EXPECT_DOUBLE_EQ(s.at(1, 100, 800), 0.01 * (0.001 * (1 - 0.9) + 0.9));  // iteration 900
  EXPECT_DOUBLE_EQ(s.at(1, 200, 800), 0.01);                              // iteration 1000
  EXPECT_DOUBLE_EQ(s.at(2, 0, 800), 0.001);
  s.kind = LrSchedule::Kind::kCosine;
  EXPECT_DOUBLE_EQ(s.at(0, 0, 800), 0.001 * 0.01);  // cosine at its start is the base rate
}

TEST(MatchingSchedule, EpochsListsAndIterations) {
  MatchingSchedule every2;
  EXPECT_TRUE(every2.due_before_epoch(0));
  EXPECT_FALSE(every2.due_before_epoch(1));
  EXPECT_TRUE(every2.due_before_epoch(2));
  MatchingSchedule listed;
  listed.epochs = {1, 2, 3, 6, 9, 15, 26, 43, 74, 126};  // the unsupervised recipe
  EXPECT_TRUE(listed.due_before_epoch(0));
  EXPECT_TRUE(listed.due_before_epoch(6));
  EXPECT_FALSE(listed.due_before_epoch(7));
  MatchingSchedule iters;
  iters.every_iters = 5000;
  EXPECT_FALSE(iters.due_after_step(4999));
  EXPECT_TRUE(iters.due_after_step(5000));
  EXPECT_FALSE(every2.due_after_step(5000));
}

TEST(MatchingSchedule, StepListsAndTheReferenceDetectionFractions) {
  MatchingSchedule steps;
  steps.every_epochs = 0;  // detection: no epoch rule
  steps.steps = {0, 5000, 10000};
  EXPECT_TRUE(steps.due_before_epoch(0));  // the pass before training, always
  EXPECT_FALSE(steps.due_before_epoch(1));
  EXPECT_FALSE(steps.due_after_step(0));
  EXPECT_TRUE(steps.due_after_step(5000));
  EXPECT_FALSE(steps.due_after_step(5001));
  EXPECT_TRUE(steps.due_after_step(10000));
  // The reference's list for a 90k schedule, given as fractions, gives it back exactly...
  MatchingSchedule reference;
  reference.every_epochs = 0;
  std::vector<double> fractions;
  for (double k : {0.0, 5.0, 10.0, 15.0, 31.0, 62.0}) fractions.push_back(k / 90.0);
  reference.add_fractions(fractions, 90000);
  EXPECT_EQ(reference.steps, (std::vector<int64_t>{0, 5000, 10000, 15000, 31000, 62000}));
  // ...and scales to a short run: 9 epochs of 100 steps.
  MatchingSchedule scaled;
  scaled.every_epochs = 0;
  scaled.add_fractions(fractions, 900);
  EXPECT_EQ(scaled.steps, (std::vector<int64_t>{0, 50, 100, 150, 310, 620}));
  EXPECT_TRUE(scaled.due_after_step(310));
  EXPECT_FALSE(scaled.due_after_step(300));
}

TEST(Metrics, TopK) {
  auto logits = torch::tensor({{0.1, 0.9, 0.0}, {0.8, 0.05, 0.15}, {0.2, 0.3, 0.5}});
  auto labels = torch::tensor({1, 2, 0}, torch::kLong);
  auto c = mgd::training::topk_correct(logits, labels, {1, 2, 5});
  EXPECT_EQ(c, (std::vector<int64_t>{1, 2, 3}));
  mgd::training::AccuracyMeter m;
  m.add(logits, labels, 3.0);
  EXPECT_NEAR(m.top1_percent(), 100.0 / 3, 1e-9);
  EXPECT_NEAR(m.top5_percent(), 100.0, 1e-9);
  EXPECT_NEAR(m.mean_loss(), 1.0, 1e-12);
}

}  // namespace
