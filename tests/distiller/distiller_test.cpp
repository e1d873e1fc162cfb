#include "mgd/distiller/distiller.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <array>
#include <cstdio>
#include <string>

#include "mgd/loss/loss.h"
#include "support/errors.h"
#include "support/toy_nets.h"

namespace {

using mgd::Distiller;
using mgd::DistillerOptions;
using mgd::testing::error_of;
using mgd::testing::FixedFeatures;
using mgd::testing::ToyLayer;
using mgd::testing::ToyNet;

ToyNet teacher_net() {
  return ToyNet(std::vector<ToyLayer>{{16, 1}, {32, 2}, {64, 2}});
}
ToyNet student_net() {
  return ToyNet(std::vector<ToyLayer>{{8, 1}, {16, 2}, {16, 2}});
}

Distiller matched_distiller(const std::string& reducer = "amp", bool kd = false) {
  Distiller d(teacher_net(), student_net(), DistillerOptions().reducer(reducer).with_kd(kd));
  d->reset_tracking();
  d->track(torch::randn({8, 1, 12, 12}));
  d->track(torch::randn({4, 1, 12, 12}));
  d->update_matching();
  return d;
}

TEST(Distiller, DerivesStructureFromNetworks) {
  torch::manual_seed(0);
  Distiller d(teacher_net(), student_net(), DistillerOptions().ignore_positions({0}));
  EXPECT_EQ(d->teacher_channels(), (std::vector<int64_t>{16, 32, 64}));
  EXPECT_EQ(d->student_channels(), (std::vector<int64_t>{8, 16, 16}));
  EXPECT_EQ(d->guided_positions(), (std::vector<int64_t>{1, 2}));
  EXPECT_EQ(d->groups(1), 2);
  EXPECT_EQ(d->groups(2), 4);
  EXPECT_DOUBLE_EQ(d->loss_divisor(0), 4.0);  // 2^(n-i-1), ignored positions still count
  EXPECT_DOUBLE_EQ(d->loss_divisor(1), 2.0);
  EXPECT_DOUBLE_EQ(d->loss_divisor(2), 1.0);
  EXPECT_EQ(d->matching(2).sizes(), (std::vector<int64_t>{4, 16}));
  EXPECT_EQ(d->margins(2).numel(), 64);
  Distiller sm(teacher_net(), student_net(), DistillerOptions().reducer("sm"));
  EXPECT_EQ(sm->groups(2), 1);
  EXPECT_EQ(sm->matching(2).sizes(), (std::vector<int64_t>{1, 16}));
  // Optimized parameters: the student's and the norm layers' (2 per BN), never the teacher's.
  auto student = d->student();
  EXPECT_EQ(d->trainable_parameters().size(), student->parameters().size() + 4);
  for (auto& p : d->teacher()->parameters()) EXPECT_FALSE(p.requires_grad());
}

TEST(Distiller, FindsTheKnownMatching) {
  // Student channel 0 looks like pattern A, channel 1 like pattern B. The teacher holds
  // [B, 2A, A + noise, 3B + noise]: the tiled matching must give student 0 <- {1, 2} and
  // student 1 <- {0, 3}; sparse matching takes the exact copies, 1 and 0.
  torch::manual_seed(1);
  FixedFeatures teacher(std::vector<int64_t>{4});
  FixedFeatures student(std::vector<int64_t>{2});
  auto a = torch::randn({6, 1, 5, 5}), b = torch::randn({6, 1, 5, 5});
  auto noise = [&] { return 0.05 * torch::randn({6, 1, 5, 5}); };
  auto t = torch::cat({b, 2 * a, a + noise(), 3 * b + noise()}, 1);
  auto s = torch::cat({a, b}, 1);
  teacher->features = {{t}, {torch::relu(t)}, torch::zeros({6, 3})};
  student->features = {{s}, {torch::relu(s)}, torch::zeros({6, 3})};
  for (std::string reducer : {"amp", "sm"}) {
    Distiller d(teacher, student, DistillerOptions().reducer(reducer));
    d->reset_tracking();
    d->track_features(teacher->features, student->features);
    EXPECT_EQ(d->tracked_images(), 6);
    auto cost = d->cost_matrix(0);
    EXPECT_NEAR(cost[0][1].item<double>(), 0.0, 1e-6);  // 2A is parallel to A
    d->update_matching();
    EXPECT_TRUE(d->matched());
    auto m = d->matching(0);
    if (reducer == "amp") {
      ASSERT_EQ(m.sizes(), (std::vector<int64_t>{2, 2}));
      EXPECT_TRUE(torch::equal(m, torch::tensor({{1, 0}, {2, 3}})));  // row j: ascending
    } else {
      EXPECT_TRUE(torch::equal(m, torch::tensor({{1, 0}})));
    }
  }
}

TEST(Distiller, CostIsMeanOfTwoMinusTwoCosine) {
  torch::manual_seed(2);
  FixedFeatures teacher(std::vector<int64_t>{3});
  FixedFeatures student(std::vector<int64_t>{2});
  auto t = torch::randn({4, 3, 2, 3}), s = torch::randn({4, 2, 2, 3});
  teacher->features = {{t}, {t}, torch::zeros({4, 2})};
  student->features = {{s}, {s}, torch::zeros({4, 2})};
  Distiller d(teacher, student);
  d->reset_tracking();
  d->track_features(teacher->features, student->features);
  auto expected = torch::zeros({2, 3}, torch::kDouble);
  for (int b = 0; b < 4; ++b) {
    for (int j = 0; j < 2; ++j) {
      for (int c = 0; c < 3; ++c) {
        auto sv = s[b][j].flatten().to(torch::kDouble), tv = t[b][c].flatten().to(torch::kDouble);
        expected[j][c] += 2 - 2 * (sv.dot(tv) / (sv.norm() * tv.norm()));
      }
    }
  }
  EXPECT_TRUE(torch::allclose(d->cost_matrix(0), expected / 4, 1e-6, 1e-6));
  // Accumulators reset.
  d->reset_tracking();
  EXPECT_EQ(d->tracked_images(), 0);
  EXPECT_EQ(d->cost_sum(0).abs().sum().item<double>(), 0.0);
}

// The tracking pass's own kernel accumulates each dot product in float, in order, a rounded
// product then a rounded sum -- what a reference sgemm does (Debian's LibTorch calls one), so
// runs do not change with the kernel -- for shapes that exercise its 4 x 16 blocks and their
// remainders, with the images side by side; and agrees with torch::matmul to float rounding.
TEST(Distiller, TrackedCostsEqualTheGemmFormulation) {
  for (auto [b, sc, tc, h, w] : std::vector<std::array<int64_t, 5>>{
           {3, 16, 32, 7, 9}, {2, 5, 19, 4, 4}, {5, 21, 70, 3, 5}, {1, 4, 16, 1, 1}, {8, 64, 128, 7, 7}}) {
    torch::manual_seed(sc * 131 + tc);
    FixedFeatures teacher(std::vector<int64_t>{tc});
    FixedFeatures student(std::vector<int64_t>{sc});
    auto t = torch::randn({b, tc, h, w}), s = torch::randn({b, sc, h, w});
    teacher->features = {{t}, {t}, torch::zeros({b, 2})};
    student->features = {{s}, {s}, torch::zeros({b, 2})};
    Distiller d(teacher, student);
    d->reset_tracking();
    d->track_features(teacher->features, student->features);
    auto unit = [&](const torch::Tensor& x) {
      auto f = x.reshape({b, x.size(1), h * w});
      return f / f.norm(2, {2}, true).clamp_min(1e-12);
    };
    auto sr = unit(s).permute({1, 0, 2}).reshape({sc, b * h * w});
    auto tr = unit(t).permute({1, 0, 2}).reshape({tc, b * h * w});
    auto dots = torch::empty({sc, tc}, torch::kFloat);
    auto sa = sr.contiguous(), ta = tr.contiguous();
    const int64_t n = sa.size(1);
    for (int64_t i = 0; i < sc; ++i) {
      for (int64_t j = 0; j < tc; ++j) {
        float acc = 0.f;
        for (int64_t k = 0; k < n; ++k) {
          const volatile float product = sa.data_ptr<float>()[i * n + k] * ta.data_ptr<float>()[j * n + k];
          acc = acc + product;
        }
        dots[i][j] = acc;
      }
    }
    auto expected = (2.0 * static_cast<double>(b)) - 2.0 * dots.to(torch::kDouble);
    EXPECT_TRUE(torch::equal(d->cost_sum(0), expected)) << sc << " x " << tc << ": max difference "
        << (d->cost_sum(0) - expected).abs().max().item<double>();
    auto gemm = (2.0 * static_cast<double>(b)) - 2.0 * torch::matmul(sr, tr.t()).to(torch::kDouble);
    EXPECT_TRUE(torch::allclose(d->cost_sum(0), gemm, 0, 1e-5 * static_cast<double>(b)));
  }
}

TEST(Distiller, ShaveRules) {
  // t = 6, s = 4 -> k = 1. The best columns for rows are 4 and 5 (cheap), which the
  // reference rule may not use; the rectangular rule does.
  FixedFeatures teacher(std::vector<int64_t>{6});
  FixedFeatures student(std::vector<int64_t>{4});
  for (auto rule : {mgd::ShaveRule::kFirst, mgd::ShaveRule::kBest}) {
    Distiller d(teacher, student, DistillerOptions().shave(rule));
    d->reset_tracking();
    d->tracked_count().fill_(1);
    auto cost = torch::full({4, 6}, 2.0, torch::kDouble);
    cost.select(1, 4).fill_(0.0);
    cost.select(1, 5).fill_(0.0);
    d->cost_sum(0).copy_(cost);
    d->update_matching();
    auto m = d->matching(0);
    if (rule == mgd::ShaveRule::kFirst) {
      EXPECT_LT(m.max().item<int64_t>(), 4);
    } else {
      EXPECT_EQ(((m == 4) | (m == 5)).sum().item<int64_t>(), 2);
    }
  }
}

TEST(Distiller, LossIsZeroWhenStudentEqualsReducedTeacher) {
  // Student = copy of the teacher (t = s, k = 1); the distiller's norm layers are identities
  // in eval mode; the matching found from tracking is the identity, so the normalized
  // student equals the reduced teacher and the loss vanishes.
  torch::manual_seed(3);
  auto teacher = teacher_net();
  auto student = teacher_net();
  {
    torch::NoGradGuard no_grad;
    auto src = teacher->named_parameters();
    for (auto& p : student->named_parameters()) p.value().copy_(src[p.key()]);
    auto bsrc = teacher->named_buffers();
    for (auto& b : student->named_buffers()) b.value().copy_(bsrc[b.key()]);
    // Non-trivial teacher BN parameters so margins differ from channel to channel.
    for (auto& bn : teacher->feature_norms()) {
      bn->bias.uniform_(-1, 1);
      bn->weight.uniform_(0.5, 1.5);
    }
    for (size_t i = 0; i < 3; ++i) {
      student->feature_norms()[i]->bias.copy_(teacher->feature_norms()[i]->bias);
      student->feature_norms()[i]->weight.copy_(teacher->feature_norms()[i]->weight);
    }
  }
  Distiller d(teacher, student);
  d->eval();
  {
    torch::NoGradGuard no_grad;
    for (auto& b : d->named_buffers()) {
      if (b.key().rfind("norm", 0) == 0 && b.key().find("running_var") != std::string::npos) {
        b.value().fill_(1.0 - 1e-5);  // BN eval: (x - 0) / sqrt(var + eps) = x
      }
    }
  }
  d->reset_tracking();
  d->track(torch::randn({6, 1, 12, 12}));
  d->update_matching();
  for (int64_t i = 0; i < 3; ++i) {
    EXPECT_TRUE(
        torch::equal(d->matching(i), torch::arange(d->student_channels()[i]).view({1, -1})));
  }
  auto out = d->forward(torch::randn({3, 1, 12, 12}));
  EXPECT_LT(out.loss.item<double>(), 1e-8);
}

TEST(Distiller, GradientsReachStudentAndNormsNeverTeacher) {
  torch::manual_seed(4);
  auto d = matched_distiller("amp", /*kd=*/true);
  d->train();
  EXPECT_FALSE(d->teacher()->is_training());
  EXPECT_TRUE(d->student()->is_training());
  auto out = d->forward(torch::randn({4, 1, 12, 12}));
  EXPECT_FALSE(out.teacher_logits.requires_grad());
  ASSERT_TRUE(out.kd_loss.defined());
  EXPECT_NEAR(out.kd_loss.item<double>(),
              mgd::functional::kd_loss(out.logits, out.teacher_logits, 1.5).item<double>(), 1e-6);
  double sum = 0;
  for (auto& l : out.position_losses) sum += l.item<double>();
  EXPECT_NEAR(out.loss.item<double>(), sum, 1e-4 * sum);
  EXPECT_GT(out.loss.item<double>(), 0);
  (out.loss + out.kd_loss).backward();
  for (auto& p : d->trainable_parameters()) {
    ASSERT_TRUE(p.grad().defined());
    EXPECT_GT(p.grad().abs().sum().item<double>(), 0);
  }
  for (auto& p : d->teacher()->parameters()) EXPECT_FALSE(p.grad().defined());
}

TEST(Distiller, EveryReducerRuns) {
  for (const auto& name : mgd::reducer_names()) {
    SCOPED_TRACE(name);
    torch::manual_seed(5);
    auto d = matched_distiller(name);
    auto out = d->forward(torch::randn({2, 1, 12, 12}));
    EXPECT_TRUE(std::isfinite(out.loss.item<double>()));
    EXPECT_GT(out.loss.item<double>(), 0);
  }
}

TEST(Distiller, SameSeedSameResults) {
  auto run = [] {
    torch::manual_seed(6);
    auto d = matched_distiller("rd");
    return std::make_pair(d->matching(2).clone(), d->forward(torch::randn({2, 1, 12, 12})).loss);
  };
  auto a = run(), b = run();
  EXPECT_TRUE(torch::equal(a.first, b.first));
  EXPECT_EQ(a.second.item<double>(), b.second.item<double>());
}

TEST(Distiller, CheckpointRestoresMatchingState) {
  torch::manual_seed(7);
  auto d = matched_distiller();
  const std::string path = ::testing::TempDir() + "/mgd_distiller_state.pt";
  torch::save(d, path);
  torch::manual_seed(8);
  Distiller fresh(teacher_net(), student_net());
  EXPECT_FALSE(fresh->matched());
  torch::load(fresh, path);
  std::remove(path.c_str());
  EXPECT_TRUE(fresh->matched());
  EXPECT_EQ(fresh->tracked_images(), 12);
  for (int64_t i = 0; i < 3; ++i) {
    EXPECT_TRUE(torch::equal(fresh->matching(i), d->matching(i)));
    EXPECT_TRUE(torch::equal(fresh->margins(i), d->margins(i)));
    EXPECT_TRUE(torch::equal(fresh->cost_sum(i), d->cost_sum(i)));
  }
  d->eval();
  fresh->eval();
  auto x = torch::randn({2, 1, 12, 12});
  EXPECT_EQ(d->forward(x).loss.item<double>(), fresh->forward(x).loss.item<double>());
}

TEST(Distiller, BadInputMessages) {
  torch::manual_seed(9);
  // Student wider than teacher.
  auto msg = error_of([] {
    Distiller(ToyNet(std::vector<ToyLayer>{{8}, {8}}), ToyNet(std::vector<ToyLayer>{{8}, {16}}));
  });
  EXPECT_NE(msg.find("position 1"), std::string::npos) << msg;
  EXPECT_NE(msg.find("wider"), std::string::npos) << msg;
  // Position index out of range.
  msg = error_of(
      [] { Distiller(teacher_net(), student_net(), DistillerOptions().ignore_positions({3})); });
  EXPECT_NE(msg.find("ignored position 3 out of range [0, 3)"), std::string::npos) << msg;
  // Wrong number of divisors.
  msg = error_of([] {
    Distiller(teacher_net(), student_net(), DistillerOptions().loss_divisors({1, 2}));
  });
  EXPECT_NE(msg.find("expected 3 loss divisors"), std::string::npos) << msg;
  // Unknown reducer.
  msg = error_of([] { Distiller(teacher_net(), student_net(), DistillerOptions().reducer("xx")); });
  EXPECT_NE(msg.find("Unknown reducer 'xx'"), std::string::npos) << msg;
  // Different position counts.
  msg = error_of([] { Distiller(teacher_net(), ToyNet(std::vector<ToyLayer>{{8}})); });
  EXPECT_NE(msg.find("3 feature positions but the student has 1"), std::string::npos) << msg;
  // Forward before any matching.
  Distiller d(teacher_net(), student_net());
  msg = error_of([&] { d->forward(torch::randn({2, 1, 12, 12})); });
  EXPECT_NE(msg.find("forward before any matching"), std::string::npos) << msg;
  msg = error_of([&] { d->update_matching(); });
  EXPECT_NE(msg.find("before any tracking"), std::string::npos) << msg;
  // Mismatched spatial sizes at a position (student downsamples earlier).
  Distiller bad(teacher_net(), ToyNet(std::vector<ToyLayer>{{8, 2}, {16, 2}, {16, 2}}));
  msg = error_of([&] { bad->track(torch::randn({2, 1, 12, 12})); });
  EXPECT_NE(msg.find("at position 0"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[2, 16, 12, 12]"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[2, 8, 6, 6]"), std::string::npos) << msg;
  // GroupNorm needs s divisible by 32.
  msg = error_of(
      [] { Distiller(teacher_net(), student_net(), DistillerOptions().group_norm(true)); });
  EXPECT_NE(msg.find("GroupNorm(32, s) at position 0"), std::string::npos) << msg;
}

TEST(Distiller, NonFiniteFeaturesAreCaught) {
  FixedFeatures teacher(std::vector<int64_t>{4});
  FixedFeatures student(std::vector<int64_t>{2});
  auto t = torch::randn({2, 4, 3, 3});
  t[1][2][0][0] = NAN;
  teacher->features = {{t}, {t}, torch::zeros({2, 3})};
  student->features = {
      {torch::randn({2, 2, 3, 3})}, {torch::randn({2, 2, 3, 3})}, torch::zeros({2, 3})};
  Distiller d(teacher, student);
  auto msg = error_of([&] { d->track_features(teacher->features, student->features); });
  EXPECT_NE(msg.find("non-finite matching cost at position 0"), std::string::npos) << msg;
}

}  // namespace
