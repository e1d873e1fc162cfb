// The loss-scale table printed at a distillation's first step (loss_scale.h).
#include "mgd/training/loss_scale.h"

#include <gtest/gtest.h>

#include <cmath>

namespace {

using mgd::training::loss_scale_of;

TEST(LossScale, NoDistillationPartsGiveAnEmptyTable) {
  auto s = loss_scale_of({{"task_loss", 2.0}, {"kd_loss", 0.5}}, 1e4);
  EXPECT_TRUE(s.positions.empty());
  EXPECT_EQ(s.distill_loss, 0.0);
  EXPECT_EQ(s.task_loss, 2.0);
}

TEST(LossScale, FactorsThatMatchTheTaskLoss) {
  // Position 2's loss 0.02 with factor 5e7 is 1% of the task loss 2.0: 5e5 would equal it.
  auto s = loss_scale_of({{"task_loss", 2.0},
                          {"distill_loss", 0.1},
                          {"distill_loss_0", 0.08},
                          {"distill_loss_2", 0.02},
                          {"loss_cls", 1.5}},
                         5e7);
  ASSERT_EQ(s.positions.size(), 2u);
  EXPECT_EQ(s.positions[0].first, 0);
  EXPECT_EQ(s.positions[1].first, 2);
  EXPECT_DOUBLE_EQ(s.distill_loss, 0.1);
  EXPECT_DOUBLE_EQ(s.factor_for(0.02), 5e5);
  EXPECT_DOUBLE_EQ(s.factor_for(0.1), 2.5e6);
  const auto text = s.describe();
  EXPECT_NE(text.find("loss factor 5e+07"), std::string::npos) << text;
  EXPECT_NE(text.find("2.5e+06"), std::string::npos) << text;  // the total's factor
  // 0.05x the task loss: not far enough off for the hint; 0.01x is.
  EXPECT_EQ(text.find("would make them equal"), std::string::npos) << text;
  auto small = loss_scale_of({{"task_loss", 2.0}, {"distill_loss_3", 0.02}}, 5e7);
  EXPECT_NE(small.describe().find("--loss-factor 5e+05 would make them equal"), std::string::npos)
      << small.describe();
}

TEST(LossScale, ZeroTaskLossHasNoFactor) {
  auto s = loss_scale_of({{"task_loss", 0.0}, {"distill_loss_0", 1.0}}, 1e4);
  EXPECT_TRUE(std::isnan(s.factor_for(1.0)));
  EXPECT_FALSE(s.describe().empty());
}

}  // namespace
