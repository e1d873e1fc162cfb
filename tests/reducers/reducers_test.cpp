#include <gtest/gtest.h>
#include <torch/torch.h>

#include <limits>

#include "mgd/reducers/amp.h"
#include "mgd/reducers/rd.h"
#include "mgd/reducers/sm.h"
#include "mgd/reducers/sp.h"
#include "support/gradcheck.h"

namespace {

using mgd::testing::expect_gradients_match;

// Teacher with t = 4 channels of one pixel each, image 0: values 1, -5, 3, 2.
// index (k = 2, s = 2): student 0 <- {0, 1}, student 1 <- {2, 3}.
struct Fixture {
  torch::Tensor teacher = torch::tensor({1.0, -5.0, 3.0, 2.0}, torch::kDouble).view({1, 4, 1, 1});
  torch::Tensor margins = torch::tensor({-1.0, -2.0, -0.5, -0.1}, torch::kDouble);
  torch::Tensor index = torch::tensor({0, 2, 1, 3}, torch::kLong).view({2, 2});
};

TEST(Reducers, AmpHandComputed) {
  Fixture f;
  auto r = mgd::functional::amp_reduce(f.teacher, f.margins, f.index);
  ASSERT_EQ(r.feature.sizes(), (std::vector<int64_t>{1, 2, 1, 1}));
  EXPECT_DOUBLE_EQ(r.feature[0][0][0][0].item<double>(), -5.0);  // |-5| > |1|, sign kept
  EXPECT_DOUBLE_EQ(r.feature[0][1][0][0].item<double>(), 3.0);
  EXPECT_DOUBLE_EQ(r.margin[0].item<double>(), -1.5);  // mean(-1, -2)
  EXPECT_DOUBLE_EQ(r.margin[1].item<double>(), -0.3);  // mean(-0.5, -0.1)
}

// The CPU kernel (no autograd) gives the composed form's map bit for bit -- values, signs,
// NaN, infinities, ties (the first group wins, also between +x and -x) -- for float (vector
// lanes and a scalar tail) and double, k = 1, 2, 4, and a non-contiguous teacher.
TEST(Reducers, AmpKernelEqualsComposedFormBitForBit) {
  torch::manual_seed(11);
  auto composed = [](const torch::Tensor& teacher, const torch::Tensor& index) {
    auto groups = mgd::functional::group_channels(teacher, index);
    auto feature = groups[0], largest = groups[0].abs();
    for (size_t g = 1; g < groups.size(); ++g) {
      auto magnitude = groups[g].abs();
      auto take = magnitude > largest;
      feature = torch::where(take, groups[g], feature);
      largest = torch::where(take, magnitude, largest);
    }
    return feature;
  };
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  for (auto dtype : {torch::kFloat, torch::kDouble}) {
    for (int64_t k : {1, 2, 4}) {
      const int64_t s = 3, t = k * s + 1;
      // 5 x 5 planes: three vectors of 8 and a tail of one; values rounded to halves so that
      // magnitudes tie often.
      auto teacher = (torch::randn({4, t, 5, 5}, dtype) * 2).round() / 2;
      auto flat = teacher.view({-1});
      for (int64_t i = 0; i < flat.numel(); i += 13) {
        if (i % 3 == 0) flat[i] = nan; else flat[i] = -flat[i];
      }
      for (int64_t i = 5; i < flat.numel(); i += 29) flat[i] = (i % 2 == 0) ? inf : -inf;
      auto index = torch::randperm(t, torch::kLong).narrow(0, 0, k * s).view({k, s});
      auto margins = -torch::rand({t}, dtype);
      SCOPED_TRACE("k = " + std::to_string(k));
      for (const auto& input : {teacher, teacher.transpose(2, 3)}) {
        auto fused = mgd::functional::amp_reduce(input, margins, index).feature;
        auto reference = composed(input, index);
        ASSERT_EQ(fused.sizes(), reference.sizes());
        // Bitwise: equal values, equal signs of zero, NaN where the reference has NaN.
        auto bits = [&](const torch::Tensor& x) {
          return x.contiguous().view(dtype == torch::kFloat ? torch::kInt : torch::kLong);
        };
        EXPECT_TRUE(torch::equal(bits(fused), bits(reference)));
      }
    }
  }
}

TEST(Reducers, SpMaxAndAverageHandComputed) {
  Fixture f;
  auto mx = mgd::functional::sp_reduce(f.teacher, f.margins, f.index, mgd::Pooling::kMax);
  EXPECT_DOUBLE_EQ(mx.feature[0][0][0][0].item<double>(), 1.0);  // plain max, no abs
  EXPECT_DOUBLE_EQ(mx.feature[0][1][0][0].item<double>(), 3.0);
  EXPECT_DOUBLE_EQ(mx.margin[0].item<double>(), -1.0);
  EXPECT_DOUBLE_EQ(mx.margin[1].item<double>(), -0.1);
  auto av = mgd::functional::sp_reduce(f.teacher, f.margins, f.index, mgd::Pooling::kAverage);
  EXPECT_DOUBLE_EQ(av.feature[0][0][0][0].item<double>(), -2.0);
  EXPECT_DOUBLE_EQ(av.feature[0][1][0][0].item<double>(), 2.5);
  EXPECT_DOUBLE_EQ(av.margin[0].item<double>(), -1.5);
}

TEST(Reducers, SmHandComputed) {
  Fixture f;
  auto r = mgd::functional::sm_reduce(f.teacher, f.margins, torch::tensor({{3, 1}}));
  EXPECT_DOUBLE_EQ(r.feature[0][0][0][0].item<double>(), 2.0);
  EXPECT_DOUBLE_EQ(r.feature[0][1][0][0].item<double>(), -5.0);
  EXPECT_DOUBLE_EQ(r.margin[0].item<double>(), -0.1);
  EXPECT_DOUBLE_EQ(r.margin[1].item<double>(), -2.0);
  EXPECT_THROW(mgd::functional::sm_reduce(f.teacher, f.margins, f.index), c10::Error);
}

TEST(Reducers, RdPicksOneGroupPerElementAndVaries) {
  torch::manual_seed(3);
  // Group 0 holds +1 everywhere, group 1 holds -1: every output is +-1, both occur.
  auto teacher = torch::cat({torch::ones({2, 3, 8, 8}), -torch::ones({2, 3, 8, 8})}, 1);
  auto margins = torch::cat({torch::full({3}, -1.0), torch::full({3}, -2.0)});
  auto index = torch::arange(6, torch::kLong).view({2, 3});
  auto r = mgd::functional::rd_reduce(teacher, margins, index);
  EXPECT_TRUE((r.feature.abs() == 1).all().item<bool>());
  const double frac = (r.feature > 0).to(torch::kDouble).mean().item<double>();
  EXPECT_GT(frac, 0.35);
  EXPECT_LT(frac, 0.65);
  EXPECT_TRUE(((r.margin == -1) | (r.margin == -2)).all().item<bool>());
  // Drawn afresh: a second call differs somewhere; a seeded generator reproduces a call.
  auto again = mgd::functional::rd_reduce(teacher, margins, index);
  EXPECT_FALSE(torch::equal(r.feature, again.feature));
  auto g1 = at::detail::createCPUGenerator(7), g2 = at::detail::createCPUGenerator(7);
  EXPECT_TRUE(torch::equal(mgd::functional::rd_reduce(teacher, margins, index, g1).feature,
                           mgd::functional::rd_reduce(teacher, margins, index, g2).feature));
}

TEST(Reducers, GradientsMatchFiniteDifferences) {
  torch::manual_seed(4);
  auto teacher = torch::randn({2, 6, 3, 3}, torch::kDouble);
  auto margins = -torch::rand({6}, torch::kDouble);
  auto index = torch::tensor({{4, 0}, {1, 5}, {2, 3}}, torch::kLong);  // k = 3, s = 2
  auto weights = torch::randn({2, 2, 3, 3}, torch::kDouble);
  for (const auto& name : std::vector<std::string>{"amp", "sp", "sp_avg"}) {
    auto reducer = mgd::make_reducer(name);
    SCOPED_TRACE(name);
    expect_gradients_match(
        [&](const std::vector<torch::Tensor>& x) {
          auto r = reducer->reduce(x[0], x[1], index);
          return (r.feature * weights).sum() +
                 (r.margin * torch::tensor({0.7, -1.3}, torch::kDouble)).sum();
        },
        {teacher, margins});
  }
  auto sm = torch::tensor({{5, 2}}, torch::kLong);
  expect_gradients_match(
      [&](const std::vector<torch::Tensor>& x) {
        auto r = mgd::functional::sm_reduce(x[0], x[1], sm);
        return (r.feature * weights).sum() + r.margin.sum();
      },
      {teacher, margins});
}

TEST(Reducers, RegistryAndErrors) {
  EXPECT_EQ(mgd::reducer_names(), (std::vector<std::string>{"amp", "rd", "sm", "sp", "sp_avg"}));
  for (const auto& name : mgd::reducer_names()) EXPECT_EQ(mgd::make_reducer(name)->name(), name);
  EXPECT_TRUE(mgd::make_reducer("sm")->sparse());
  EXPECT_FALSE(mgd::make_reducer("amp")->sparse());
  for (const auto& name : mgd::reducer_names())
    EXPECT_EQ(mgd::make_reducer(name)->amp_selection(), name == "amp" || name == "sm") << name;
  try {
    mgd::make_reducer("maxpool");
    FAIL() << "expected an error";
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what()).find("Unknown reducer 'maxpool'"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("amp, rd, sm, sp, sp_avg"), std::string::npos);
  }
  Fixture f;
  EXPECT_THROW(mgd::functional::amp_reduce(f.teacher.view({4, 1, 1}), f.margins, f.index),
               c10::Error);
  EXPECT_THROW(
      mgd::functional::amp_reduce(f.teacher, f.margins, torch::zeros({3, 2}, torch::kLong)),
      c10::Error);  // 6 channels needed, 4 present
}

TEST(Reducers, ModuleOwnsMatchingAndMargins) {
  Fixture f;
  mgd::ChannelReducer module(mgd::make_reducer("amp"), f.margins, 2, 2);
  EXPECT_EQ(module->named_buffers().size(), 2u);
  module->set_index(f.index);
  auto r = module(f.teacher);
  EXPECT_DOUBLE_EQ(r.feature[0][0][0][0].item<double>(), -5.0);
  EXPECT_THROW(module->set_index(torch::tensor({{0, 0}, {1, 2}})), c10::Error);  // duplicate
  EXPECT_THROW(module->set_index(torch::tensor({{0, 9}, {1, 2}})), c10::Error);  // range
  EXPECT_THROW(module->set_index(torch::tensor({{0, 1, 2}})), c10::Error);       // shape
}

}  // namespace
