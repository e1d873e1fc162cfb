// The frozen program (mgd/models/frozen.h): FeatureNetImpl::extract_frozen gives the maps,
// logits and distillation losses of extract() in eval mode, to float rounding; it follows
// the weights when they change; it never touches the module's state.
#include "mgd/models/frozen.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstdlib>
#include <limits>
#include <string>

#include "mgd/distiller/distiller.h"
#include "mgd/models/moco.h"
#include "mgd/models/registry.h"
#include "mgd/models/resnet.h"

namespace {

using mgd::FeatureNet;
using mgd::Features;

// BatchNorm statistics and affines away from their initial 0/1 (folding them must matter).
void randomize_norms(torch::nn::Module& net, int64_t seed) {
  torch::NoGradGuard no_grad;
  torch::manual_seed(seed);
  for (auto& m : net.modules()) {
    if (auto* bn = m->as<torch::nn::BatchNorm2d>()) {
      bn->running_mean.uniform_(-0.2, 0.2);
      bn->running_var.uniform_(0.5, 1.5);
      bn->weight.uniform_(0.5, 1.5);
      bn->bias.uniform_(-0.2, 0.2);
    }
  }
}

// |a - b| <= 1e-4 * max|b| + 1e-5 elementwise: float rounding of a folded convolution
// through a few dozen layers (observed: ~1e-6 relative).
void expect_close(const torch::Tensor& a, const torch::Tensor& b, const std::string& what) {
  ASSERT_TRUE(a.defined() && b.defined()) << what;
  ASSERT_EQ(a.sizes(), b.sizes()) << what;
  EXPECT_FALSE(a.is_inference()) << what << ": an inference tensor escaped";
  EXPECT_FALSE(a.is_mkldnn()) << what;
  const double tol = 1e-4 * b.abs().max().item<double>() + 1e-5;
  const double diff = (a - b).abs().max().item<double>();
  EXPECT_LE(diff, tol) << what;
}

void expect_same_features(const Features& f, const Features& g, const std::string& what) {
  ASSERT_EQ(f.pre_relu.size(), g.pre_relu.size());
  for (size_t i = 0; i < f.pre_relu.size(); ++i) {
    expect_close(f.pre_relu[i], g.pre_relu[i], what + " pre_relu " + std::to_string(i));
    expect_close(f.post_relu[i], g.post_relu[i], what + " post_relu " + std::to_string(i));
  }
  if (g.logits.defined()) expect_close(f.logits, g.logits, what + " logits");
}

struct Case {
  std::string arch;
  int64_t channels, size;
};

TEST(FrozenProgram, SameMapsAndLogitsAsExtractForEveryZooResNetAndWrn) {
  // Each network in its own layout, then in the other one.
  for (const char* layout : {"", "blocked", "channels_last"}) {
    SCOPED_TRACE(std::string("MGD_FROZEN_LAYOUT=") + layout);
    ::setenv("MGD_FROZEN_LAYOUT", layout, 1);
    for (const Case& c :
         {Case{"resnet18", 3, 64}, Case{"resnet50", 3, 64}, Case{"resnet20", 1, 28},
          Case{"resnet8x4", 1, 28}, Case{"wrn_16_2", 1, 28}, Case{"wrn_40_2", 3, 32}}) {
      auto net =
          mgd::models::make_model(c.arch, mgd::models::ModelOptions().in_channels(c.channels));
      randomize_norms(*net, 7);
      net->eval();
      torch::manual_seed(1);
      auto x = torch::randn({5, c.channels, c.size, c.size});
      Features ref;
      {
        torch::NoGradGuard no_grad;
        ref = net->extract(x);
      }
      auto frozen = net->extract_frozen(x);
      expect_same_features(frozen, ref, c.arch);
      // The program ran: folded weights round differently from conv-then-BatchNorm.
      EXPECT_FALSE(torch::equal(frozen.pre_relu.back(), ref.pre_relu.back())) << c.arch;
      // A second call reuses the program: the same result bit for bit.
      auto again = net->extract_frozen(x);
      for (size_t i = 0; i < frozen.pre_relu.size(); ++i) {
        EXPECT_TRUE(torch::equal(again.pre_relu[i], frozen.pre_relu[i])) << c.arch;
      }
    }
  }
  ::unsetenv("MGD_FROZEN_LAYOUT");
}

TEST(FrozenProgram, FollowsWeightsLoadedAfterItWasBuiltAndNeverChangesTheState) {
  auto net = mgd::models::make_model("resnet20", mgd::models::ModelOptions().in_channels(1));
  auto other = mgd::models::make_model("resnet20", mgd::models::ModelOptions().in_channels(1));
  randomize_norms(*net, 1);
  randomize_norms(*other, 2);
  net->eval();
  auto x = torch::randn({4, 1, 28, 28});
  auto before = net->named_parameters(), buffers = net->named_buffers();
  std::vector<torch::Tensor> saved;
  for (const auto& p : before) saved.push_back(p.value().clone());
  for (const auto& b : buffers) saved.push_back(b.value().clone());
  const auto keys = net->named_parameters().size() + net->named_buffers().size();
  auto first = net->extract_frozen(x);

  // The state is the original weights, no folded copy, no extra entry.
  EXPECT_EQ(net->named_parameters().size() + net->named_buffers().size(), keys);
  size_t i = 0;
  for (const auto& p : net->named_parameters()) {
    EXPECT_TRUE(torch::equal(p.value(), saved[i++])) << p.key();
  }
  for (const auto& b : net->named_buffers()) {
    EXPECT_TRUE(torch::equal(b.value(), saved[i++])) << b.key();
  }

  // Weights copied in (as a checkpoint load does): the program is rebuilt from them.
  {
    torch::NoGradGuard no_grad;
    auto theirs = other->named_parameters();
    for (auto& p : net->named_parameters()) p.value().copy_(theirs[p.key()]);
    auto their_buffers = other->named_buffers();
    for (auto& b : net->named_buffers()) b.value().copy_(their_buffers[b.key()]);
  }
  Features ref;
  {
    torch::NoGradGuard no_grad;
    ref = net->extract(x);
  }
  auto second = net->extract_frozen(x);
  expect_same_features(second, ref, "after loading");
  EXPECT_FALSE(torch::allclose(second.pre_relu[0], first.pre_relu[0]));
  // Only a BatchNorm statistic changed: rebuilt too.
  {
    torch::NoGradGuard no_grad;
    net->named_buffers()["layer3.2.bn2.running_var"].mul_(2.0);
    ref = net->extract(x);
  }
  expect_same_features(net->extract_frozen(x), ref, "after a statistic changed");
}

TEST(FrozenProgram, OutputsCanBeSavedForBackwardByTheCallersLosses) {
  auto teacher = mgd::models::make_model("resnet8x4", mgd::models::ModelOptions().in_channels(1));
  teacher->eval();
  auto x = torch::randn({4, 1, 28, 28});
  auto t = teacher->extract_frozen(x);
  auto s = torch::randn(t.pre_relu[1].sizes(), torch::requires_grad());
  // mul saves both operands; KD's KL divergence saves its target.
  (s * t.pre_relu[1]).sum().backward();
  EXPECT_TRUE(s.grad().defined());
  auto logits = torch::randn(t.logits.sizes(), torch::requires_grad());
  torch::kl_div(torch::log_softmax(logits, 1), torch::softmax(t.logits, 1)).backward();
  EXPECT_TRUE(logits.grad().defined());
}

TEST(FrozenProgram, WhereItDoesNotApplyItIsExtractWithoutAGraph) {
  // Training mode, doubles, GroupNorm: extract() under a no-grad guard, bit for bit.
  auto net = mgd::models::make_model("resnet20", mgd::models::ModelOptions().in_channels(1));
  net->eval();
  auto xd = torch::randn({3, 1, 28, 28}, torch::kDouble);
  net->to(torch::kDouble);
  auto a = net->extract_frozen(xd);
  torch::NoGradGuard no_grad;
  auto b = net->extract(xd);
  for (size_t i = 0; i < a.pre_relu.size(); ++i)
    EXPECT_TRUE(torch::equal(a.pre_relu[i], b.pre_relu[i]));

  mgd::models::ResNetConfig config = mgd::models::resnet_config("resnet18");
  config.group_norm_last_block = true;
  config.classifier = false;
  mgd::models::ResNet gn(config);
  gn->eval();
  auto x = torch::randn({2, 3, 64, 64});
  auto g1 = gn->extract_frozen(x);
  auto g2 = gn->extract(x);
  for (size_t i = 0; i < g1.pre_relu.size(); ++i)
    EXPECT_TRUE(torch::equal(g1.pre_relu[i], g2.pre_relu[i]));
  EXPECT_FALSE(g1.pre_relu[0].requires_grad());
}

TEST(FrozenProgram, NanWeightsOrInputsStayNan) {
  // oneDNN's ReLU maps NaN to 0: such networks and inputs take the unfolded path.
  auto net = mgd::models::make_model("wrn_16_2", mgd::models::ModelOptions().in_channels(1));
  net->eval();
  auto x = torch::randn({2, 1, 28, 28});
  auto bad = x.clone();
  bad[0][0][3][3] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_TRUE(torch::isnan(net->extract_frozen(bad).pre_relu.back()).any().item<bool>());
  {
    torch::NoGradGuard no_grad;
    net->named_parameters()["conv1.weight"].fill_(std::numeric_limits<float>::quiet_NaN());
  }
  EXPECT_TRUE(torch::isnan(net->extract_frozen(x).pre_relu.back()).any().item<bool>());
}

TEST(FrozenProgram, MoCoEncoderAsTeacherGivesExtractsMapsAndProjections) {
  auto encoder =
      mgd::models::MoCoEncoder(mgd::models::MoCoEncoderOptions("resnet8x4").in_channels(1).dim(16));
  randomize_norms(*encoder, 3);
  encoder->eval();
  auto x = torch::randn({6, 1, 28, 28});
  Features ref;
  {
    torch::NoGradGuard no_grad;
    ref = encoder->extract(x);
  }
  auto frozen = encoder->extract_frozen(x);
  expect_same_features(frozen, ref, "MoCo encoder");
  EXPECT_FALSE(torch::equal(frozen.pre_relu.back(), ref.pre_relu.back())) << "program not used";
}

TEST(FrozenProgram, DistillationLossesEqualThoseFromTheUnfoldedTeacher) {
  auto teacher = mgd::models::make_model("wrn_16_2", mgd::models::ModelOptions().in_channels(1));
  auto student = mgd::models::make_model("resnet20", mgd::models::ModelOptions().in_channels(1));
  randomize_norms(*teacher, 5);
  mgd::Distiller d(teacher, student, mgd::DistillerOptions().reducer("amp"));
  torch::manual_seed(4);
  d->track(torch::randn({16, 1, 28, 28}));
  d->update_matching();
  auto x = torch::randn({8, 1, 28, 28});
  auto out = d->forward(x);  // the teacher through extract_frozen
  Features tf, sf;
  {
    torch::NoGradGuard no_grad;
    tf = teacher->extract(x);
  }
  sf = student->extract(x);
  auto ref = d->forward_features(tf, sf);
  ASSERT_EQ(out.position_losses.size(), ref.position_losses.size());
  for (size_t i = 0; i < ref.position_losses.size(); ++i) {
    if (!ref.position_losses[i].defined()) continue;
    const double a = out.position_losses[i].item<double>(),
                 b = ref.position_losses[i].item<double>();
    EXPECT_NEAR(a, b, 1e-4 * std::abs(b) + 1e-6) << "position " << i;
  }
  EXPECT_NEAR(out.loss.item<double>(), ref.loss.item<double>(),
              1e-4 * std::abs(ref.loss.item<double>()));
}

}  // namespace

TEST(FrozenProgram, StrideOne3x3ConvolutionsRunAsWinogradInChannelsLastPrograms) {
  using mgd::models::detail::FoldedConv;
  using mgd::models::detail::FrozenLayout;
  using mgd::models::detail::WinogradConv;
  if (!WinogradConv::applies(8, 8)) GTEST_SKIP() << "no AVX2 + FMA on this CPU";
  torch::manual_seed(6);
  torch::nn::Conv2d conv3(torch::nn::Conv2dOptions(16, 32, 3).padding(1).bias(false));
  torch::nn::Conv2d strided(torch::nn::Conv2dOptions(16, 32, 3).padding(1).stride(2).bias(false));
  torch::nn::Conv2d narrow(torch::nn::Conv2dOptions(12, 32, 3).padding(1).bias(false));
  torch::nn::BatchNorm2d bn(32);
  randomize_norms(*bn, 8);
  bn->eval();
  EXPECT_TRUE(FoldedConv(conv3, bn, FrozenLayout::kChannelsLast).winograd());
  EXPECT_FALSE(FoldedConv(conv3, bn, FrozenLayout::kBlocked).winograd());
  EXPECT_FALSE(FoldedConv(strided, bn, FrozenLayout::kChannelsLast).winograd());
  EXPECT_FALSE(FoldedConv(narrow, bn, FrozenLayout::kChannelsLast).winograd());
  ::setenv("MGD_WINOGRAD", "0", 1);
  EXPECT_FALSE(FoldedConv(conv3, bn, FrozenLayout::kChannelsLast).winograd());
  ::unsetenv("MGD_WINOGRAD");

  // forward(x, relu, residual) == relu(bn(conv(x)) + residual) in both layouts.
  auto x = torch::randn({3, 16, 10, 9});
  auto residual = torch::randn({3, 32, 10, 9});
  torch::Tensor ref;
  {
    torch::NoGradGuard no_grad;
    ref = torch::relu(bn(conv3(x)) + residual);
  }
  for (auto layout : {FrozenLayout::kChannelsLast, FrozenLayout::kBlocked}) {
    FoldedConv folded(conv3, bn, layout);
    torch::Tensor y;
    {
      c10::InferenceMode inference;
      auto xl = mgd::models::detail::to_frozen_layout(x, layout);
      auto rl = mgd::models::detail::to_frozen_layout(residual, layout);
      y = folded.forward(xl, /*relu=*/true, rl);
    }
    expect_close(mgd::models::detail::from_frozen_layout(y), ref,
                 layout == FrozenLayout::kBlocked ? "blocked" : "channels_last");
  }
}

TEST(FrozenProgram, WinogradProgramsGiveTheMapsOfOneDnnOnes) {
  if (!mgd::models::detail::WinogradConv::applies(8, 8)) GTEST_SKIP() << "no AVX2 + FMA";
  for (const Case& c : {Case{"wrn_16_2", 1, 28}, Case{"resnet20", 1, 28}, Case{"resnet18", 3, 40}}) {
    torch::manual_seed(9);
    auto net = mgd::models::make_model(c.arch, mgd::models::ModelOptions().in_channels(c.channels));
    torch::manual_seed(9);
    auto twin =
        mgd::models::make_model(c.arch, mgd::models::ModelOptions().in_channels(c.channels));
    randomize_norms(*net, 10);
    randomize_norms(*twin, 10);
    net->eval();
    twin->eval();
    auto x = torch::randn({7, c.channels, c.size, c.size});
    auto winograd = net->extract_frozen(x);  // the default program: channels-last, Winograd
    ::setenv("MGD_WINOGRAD", "0", 1);
    auto onednn = twin->extract_frozen(x);  // built now: oneDNN's blocked convolutions
    ::unsetenv("MGD_WINOGRAD");
    expect_same_features(winograd, onednn, c.arch);
    EXPECT_FALSE(torch::equal(winograd.pre_relu[0], onednn.pre_relu[0])) << c.arch;
  }
}

TEST(FrozenProgram, MapsTooSmallForWinogradTilesRunOnOneDnn) {
  using mgd::models::detail::FoldedConv;
  using mgd::models::detail::FrozenLayout;
  if (!mgd::models::detail::WinogradConv::applies(8, 8)) GTEST_SKIP() << "no AVX2 + FMA";
  torch::manual_seed(11);
  torch::nn::Conv2d conv(torch::nn::Conv2dOptions(16, 16, 3).padding(1).bias(false));
  FoldedConv folded(conv, nullptr, FrozenLayout::kChannelsLast);  // no norm: the weights as they are
  ASSERT_TRUE(folded.winograd());
  const auto w = conv->weight.detach().contiguous(torch::MemoryFormat::ChannelsLast);
  // 2 x 2 and 1 x n maps (a 4 x 4 tile would cost as much or more than the direct convolution):
  // oneDNN's result bit for bit; 3 x 3 and larger: the Winograd one (close, not equal).
  for (auto [h, wd, direct] : std::vector<std::tuple<int64_t, int64_t, bool>>{
           {2, 2, true}, {1, 1, true}, {1, 7, true}, {3, 3, false}, {6, 5, false}}) {
    auto x = torch::randn({3, 16, h, wd}).contiguous(torch::MemoryFormat::ChannelsLast);
    torch::Tensor y, ref;
    {
      c10::InferenceMode inference;
      y = folded(x);
      ref = torch::conv2d(x, w, torch::zeros({16}), 1, 1);
    }
    const std::string what = std::to_string(h) + "x" + std::to_string(wd);
    EXPECT_EQ(torch::equal(y, ref), direct) << what;
    expect_close(mgd::models::detail::from_frozen_layout(y),
                 mgd::models::detail::from_frozen_layout(ref), what);
  }
}
