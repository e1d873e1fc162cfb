// RetinaNet-FPN's network modules: FrozenBatchNorm2d, the ResNet norm and freezing options,
// the FPN, the heads' output layout, the detector's taps, and weights moving both ways with
// torchvision 0.14's RetinaNet (tests/oracle/retinanet_oracle.py).
#include "mgd/models/detection/retinanet.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <torch/torch.h>

#include <cmath>
#include <cstdio>
#include <functional>
#include <map>
#include <memory>
#include <sstream>
#include <string>

#include "mgd/models/detection/retinanet_head.h"
#include "mgd/models/norm.h"
#include "mgd/models/resnet.h"
#include "mgd/serialize/checkpoint.h"
#include "mgd/serialize/state_dict.h"
#include "support/temp_dir.h"

namespace {

using mgd::detection::make_retinanet;
using mgd::detection::RetinaNetOptions;
namespace serialize = mgd::serialize;

std::string oracle_command(const std::string& args) {
  return std::string(MGD_PYTHON) + " " + MGD_SOURCE_DIR + "/tests/oracle/retinanet_oracle.py " +
         args;
}

bool have_torchvision() {
  static const bool ok = std::system((std::string(MGD_PYTHON) +
                                      " -c 'import torchvision.models.detection' > /dev/null 2>&1")
                                         .c_str()) == 0;
  return ok;
}

#define SKIP_WITHOUT_TORCHVISION() \
  if (!have_torchvision())         \
  GTEST_SKIP() << MGD_PYTHON << " cannot import torchvision (python3-torchvision missing)"

int run_oracle(const std::string& args) {
  const int status = std::system(oracle_command(args).c_str());
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

std::string capture(const std::string& cmd) {
  std::unique_ptr<FILE, int (*)(FILE*)> pipe(popen(cmd.c_str(), "r"), pclose);
  if (!pipe) return "";
  std::string out;
  char buf[4096];
  while (size_t n = fread(buf, 1, sizeof buf, pipe.get())) out.append(buf, n);
  return out;
}

// max |a - b| / max |b|
double relative_difference(const torch::Tensor& a, const torch::Tensor& b) {
  return ((a - b).abs().max() / b.abs().max().clamp_min(1e-12)).item<double>();
}

std::string shape_of(const torch::Tensor& t) {
  std::ostringstream s;
  for (int64_t d = 0; d < t.dim(); ++d) s << (d ? "x" : "") << t.size(d);
  return s.str();
}

// 'name shape requires_grad' lines, as the oracle's `keys` mode prints them.
std::map<std::string, std::string> describe(const torch::nn::Module& net) {
  std::map<std::string, std::string> lines;
  for (const auto& p : net.named_parameters()) {
    lines[p.key()] = shape_of(p.value()) + (p.value().requires_grad() ? " 1" : " 0");
  }
  for (const auto& b : net.named_buffers()) lines[b.key()] = shape_of(b.value()) + " -";
  return lines;
}

std::map<std::string, std::string> parse(const std::string& text) {
  std::map<std::string, std::string> lines;
  std::istringstream in(text);
  std::string key, rest;
  while (in >> key) {
    std::getline(in, rest);
    if (!rest.empty() && rest[0] == ' ') rest.erase(0, 1);
    lines[key] = rest;
  }
  return lines;
}

// Random frozen statistics and affines, random head biases: a model whose outputs depend on
// every buffer a transfer could get wrong.
void randomize(mgd::detection::RetinaNetImpl& net) {
  torch::NoGradGuard no_grad;
  for (auto& b : net.named_buffers()) {
    const auto& k = b.key();
    auto& t = b.value();
    if (k.find("running_mean") != std::string::npos) t.uniform_(-0.2, 0.2);
    if (k.find("running_var") != std::string::npos) t.uniform_(0.5, 1.5);
    if (k.size() > 7 && k.compare(k.size() - 7, 7, ".weight") == 0) t.uniform_(0.5, 1.5);
    if (k.size() > 5 && k.compare(k.size() - 5, 5, ".bias") == 0) t.uniform_(-0.2, 0.2);
  }
  for (auto& p : net.head->named_parameters()) {
    if (p.key().find("bias") != std::string::npos) p.value().uniform_(-0.1, 0.1);
  }
}

TEST(FrozenBatchNorm2d, BuffersOnlyAndTheAffineFormula) {
  mgd::models::FrozenBatchNorm2d bn(2);
  EXPECT_TRUE(bn->parameters().empty());
  std::vector<std::string> names;
  for (const auto& b : bn->named_buffers()) names.push_back(b.key());
  EXPECT_EQ(names, (std::vector<std::string>{"weight", "bias", "running_mean", "running_var"}));
  // Fresh: the identity.
  auto x = torch::randn({2, 2, 3, 3});
  EXPECT_TRUE(torch::allclose(bn(x), x, 1e-5, 1e-5));
  // Hand-solved: channel 0: gamma 2, beta 1, mean 3, var 4 - eps -> (x - 3) * 2 / 2 + 1.
  bn->weight.copy_(torch::tensor({2.0f, 1.0f}));
  bn->bias.copy_(torch::tensor({1.0f, 0.0f}));
  bn->running_mean.copy_(torch::tensor({3.0f, 0.0f}));
  bn->running_var.copy_(torch::tensor({4.0f - 1e-5f, 1.0f - 1e-5f}));
  auto in = torch::full({1, 2, 1, 1}, 5.0f);
  auto out = bn(in);
  EXPECT_NEAR(out[0][0][0][0].item<float>(), 3.0f, 1e-5);
  EXPECT_NEAR(out[0][1][0][0].item<float>(), 5.0f, 1e-5);
  // Train mode changes nothing, and nothing learns.
  bn->train();
  EXPECT_TRUE(torch::equal(bn(in), out));
  EXPECT_FALSE(out.requires_grad());
  // Equal to BatchNorm2d in eval mode with the same state.
  torch::nn::BatchNorm2d ref(2);
  {
    torch::NoGradGuard no_grad;
    ref->weight.copy_(bn->weight);
    ref->bias.copy_(bn->bias);
    ref->running_mean.copy_(bn->running_mean);
    ref->running_var.copy_(bn->running_var);
  }
  ref->eval();
  EXPECT_TRUE(torch::allclose(bn(x), ref(x), 1e-5, 1e-5));
  EXPECT_THROW(bn(torch::randn({1, 3, 2, 2})), c10::Error);
  EXPECT_THROW(mgd::models::FrozenBatchNorm2d(0), c10::Error);
}

TEST(ResNetNorms, DefaultsKeepTheClassifierAndOptionsAreChecked) {
  // The default norm keeps BatchNorm2d under the same names (the zoo's interop tests check
  // the names against torchvision).
  auto net = mgd::models::resnet18();
  EXPECT_EQ(net->feature_norms().size(), 4u);
  for (const auto& p : net->parameters()) EXPECT_TRUE(p.requires_grad());
  auto config = mgd::models::resnet_config("resnet18");
  config.norm = "instance";
  EXPECT_THROW(mgd::models::ResNet{config}, c10::Error);
  config = mgd::models::resnet_config("resnet18");
  config.freeze_at = 6;
  EXPECT_THROW(mgd::models::ResNet{config}, c10::Error);
  // GroupNorm(32) cannot split 16 channels: a clear error.
  config = mgd::models::resnet_config("resnet20");
  config.group_norm_last_block = true;
  EXPECT_THROW(mgd::models::ResNet{config}, c10::Error);
  EXPECT_THROW(mgd::models::resnet_config("resnet19"), c10::Error);
  // Frozen norms have no BatchNorm2d to hand out, but affines and channels.
  config = mgd::models::resnet_config("resnet50");
  config.norm = "frozen_batch";
  config.classifier = false;
  mgd::models::ResNet frozen(config);
  EXPECT_THROW(frozen->feature_norms(), c10::Error);
  EXPECT_EQ(frozen->feature_channels(), (std::vector<int64_t>{256, 512, 1024, 2048}));
  EXPECT_EQ(frozen->feature_affines().size(), 4u);
  for (const auto& item : frozen->named_parameters()) {
    EXPECT_EQ(item.key().find("bn"), std::string::npos) << item.key();
    EXPECT_NE(item.key().rfind("fc", 0), 0u) << item.key();
  }
  EXPECT_FALSE(frozen->extract(torch::randn({1, 3, 32, 32})).logits.defined());
}

TEST(ResNetNorms, GroupNormInTheLastBlockAndFreezeAt) {
  for (int64_t freeze_at : {0, 1, 2, 3, 4, 5}) {
    SCOPED_TRACE(freeze_at);
    auto net = make_retinanet("retinanet_resnet18_fpn",
                              RetinaNetOptions().group_norm_last_block(true).freeze_at(freeze_at));
    auto& body = *net->body;
    const auto params = body.named_parameters();
    EXPECT_EQ(params["conv1.weight"].requires_grad(), freeze_at < 1);
    for (int64_t stage = 1; stage <= 4; ++stage) {
      const bool frozen = freeze_at >= stage + 1;
      const std::string layer = "layer" + std::to_string(stage);
      for (const char* conv : {".0.conv1.weight", ".0.conv2.weight", ".1.conv1.weight"}) {
        EXPECT_EQ(params[layer + conv].requires_grad(), !frozen) << layer << conv;
      }
      // The last block's norms: GroupNorm(32) unless the stage is frozen.
      auto block = body.named_modules()[layer + ".1"];
      for (const char* bn : {"bn1", "bn2"}) {
        auto norm = block->named_children()[bn];
        auto* gn = norm->as<torch::nn::GroupNorm>();
        if (frozen) {
          EXPECT_NE(norm->as<mgd::models::FrozenBatchNorm2d>(), nullptr) << layer << bn;
        } else {
          ASSERT_NE(gn, nullptr) << layer << bn;
          EXPECT_EQ(gn->options.num_groups(), 32);
          EXPECT_TRUE(gn->weight.requires_grad());
          EXPECT_TRUE(gn->bias.requires_grad());
        }
      }
      // Every other norm is frozen (buffers).
      EXPECT_NE(block->named_children()["bn1"], nullptr);
      EXPECT_NE(body.named_modules()[layer + ".0.bn1"]->as<mgd::models::FrozenBatchNorm2d>(),
                nullptr);
    }
    // The FPN and the head always train.
    for (const auto& p : net->fpn->parameters()) EXPECT_TRUE(p.requires_grad());
    for (const auto& p : net->head->parameters()) EXPECT_TRUE(p.requires_grad());
  }
}

// The frozen ResNet computed by hand from its state as torchvision does (every conv through
// torch::conv2d, every norm through frozen_batch_norm, nothing in place): the pre-ReLU stage
// outputs.
std::vector<torch::Tensor> plain_stages(mgd::models::ResNetImpl& net, const torch::Tensor& x) {
  auto p = net.named_parameters();
  auto b = net.named_buffers();
  auto norm = [&](const std::string& name, const torch::Tensor& in) {
    return mgd::functional::frozen_batch_norm(in, b[name + ".weight"], b[name + ".bias"],
                                              b[name + ".running_mean"], b[name + ".running_var"],
                                              1e-5);
  };
  auto conv = [&](const std::string& name, const torch::Tensor& in, int64_t stride) {
    const auto& w = p[name + ".weight"];
    return torch::conv2d(in, w, {}, stride, (w.size(2) - 1) / 2);
  };
  const auto& config = net.config();
  auto y = torch::max_pool2d(torch::relu(norm("bn1", conv("conv1", x, 2))), 3, 2, 1);
  std::vector<torch::Tensor> stages;
  for (size_t s = 0; s < config.blocks.size(); ++s) {
    torch::Tensor pre;
    for (int64_t i = 0; i < config.blocks[s]; ++i) {
      const std::string block = "layer" + std::to_string(s + 1) + "." + std::to_string(i) + ".";
      const int64_t stride = s > 0 && i == 0 ? 2 : 1;
      auto out = torch::relu(
          norm(block + "bn1", conv(block + "conv1", y, config.bottleneck ? 1 : stride)));
      out = norm(block + "bn2", conv(block + "conv2", out, config.bottleneck ? stride : 1));
      if (config.bottleneck) out = norm(block + "bn3", conv(block + "conv3", torch::relu(out), 1));
      const bool down = p.contains(block + "downsample.0.weight");
      pre =
          out + (down ? norm(block + "downsample.1", conv(block + "downsample.0", y, stride)) : y);
      y = torch::relu(pre);
    }
    stages.push_back(pre);
  }
  return stages;
}

// Outputs and gradients (of the weights and the input) of `run` for a fixed random loss.
std::vector<torch::Tensor> outputs_and_gradients(
    mgd::models::ResNetImpl& net, const torch::Tensor& x,
    const std::function<std::vector<torch::Tensor>(const torch::Tensor&)>& run) {
  net.zero_grad();
  auto input = x.detach().requires_grad_(true);
  auto stages = run(input);
  torch::manual_seed(7);
  auto loss = torch::zeros({});
  for (const auto& s : stages) loss = loss + (s * torch::randn(s.sizes()).to(s.dtype())).sum();
  loss.backward();
  std::vector<torch::Tensor> all;
  for (const auto& s : stages) all.push_back(s.detach());
  all.push_back(input.grad());
  for (const auto& p : net.parameters()) all.push_back(p.grad().clone());  // zero_grad reuses it
  return all;
}

TEST(ResNetNorms, FrozenBackboneEqualsTheDirectComputation) {
  // The backbone's fast path (in-place ReLUs and sums, 1x1 convs run dilated so oneDNN takes
  // them) computes the stage outputs, every weight's gradient and the input's gradient of the
  // plain formulation to float rounding, at one thread (where ATen would otherwise pick another
  // kernel for 1x1 convs) and two.
  for (const char* arch : {"resnet18", "resnet50"}) {
    SCOPED_TRACE(arch);
    auto config = mgd::models::resnet_config(arch);
    config.norm = "frozen_batch";
    config.classifier = false;
    torch::manual_seed(3);
    mgd::models::ResNet net(config);
    {
      torch::NoGradGuard no_grad;
      for (auto& b : net->named_buffers()) {
        const auto& k = b.key();
        if (k.find("running_mean") != std::string::npos) b.value().uniform_(-0.2, 0.2);
        if (k.find("running_var") != std::string::npos) b.value().uniform_(0.5, 1.5);
        if (k.find(".weight") != std::string::npos) b.value().uniform_(0.5, 1.5);
        if (k.find(".bias") != std::string::npos) b.value().uniform_(-0.2, 0.2);
      }
    }
    const auto x = torch::randn({2, 3, 64, 48});
    const int previous = torch::get_num_threads();
    std::vector<std::vector<torch::Tensor>> fast;
    for (int threads : {1, 2}) {
      torch::set_num_threads(threads);
      fast.push_back(outputs_and_gradients(
          *net, x, [&](const torch::Tensor& in) { return net->extract(in).pre_relu; }));
    }
    torch::set_num_threads(previous);
    // The reference in double precision (ATen's own float path for 1x1 convs at one thread is
    // off by ~1e-3 in the input's gradient here).
    net->to(torch::kDouble);
    const auto reference =
        outputs_and_gradients(*net, x.to(torch::kDouble),
                              [&](const torch::Tensor& in) { return plain_stages(*net, in); });
    for (size_t t = 0; t < fast.size(); ++t) {
      ASSERT_EQ(fast[t].size(), reference.size());
      for (size_t i = 0; i < reference.size(); ++i) {
        ASSERT_TRUE(fast[t][i].defined() && reference[i].defined()) << i;
        EXPECT_LT(relative_difference(fast[t][i].to(torch::kDouble), reference[i]), 1e-5)
            << (t + 1) << " threads, output/gradient " << i;
      }
    }
  }
}

TEST(FeaturePyramidNetwork, HandSolvedTopDownAndExtraLevels) {
  using mgd::detection::FeaturePyramidNetwork;
  using mgd::detection::FeaturePyramidNetworkOptions;
  // One channel everywhere; laterals x1, output convs the identity (centre tap 1), zero bias:
  // P_i = C_i + upsample(P_{i+1} before its output conv).
  FeaturePyramidNetwork fpn(FeaturePyramidNetworkOptions({1, 1}, 1).extra_levels(0));
  std::vector<std::string> names;
  for (const auto& p : fpn->named_parameters()) names.push_back(p.key());
  EXPECT_EQ(names, (std::vector<std::string>{"inner_blocks.0.0.weight", "inner_blocks.0.0.bias",
                                             "inner_blocks.1.0.weight", "inner_blocks.1.0.bias",
                                             "layer_blocks.0.0.weight", "layer_blocks.0.0.bias",
                                             "layer_blocks.1.0.weight", "layer_blocks.1.0.bias"}));
  {
    torch::NoGradGuard no_grad;
    for (auto& p : fpn->named_parameters()) {
      p.value().zero_();
      if (p.key().find("inner") == 0 && p.key().find("weight") != std::string::npos) {
        p.value().fill_(1);
      }
      if (p.key().find("layer") == 0 && p.key().find("weight") != std::string::npos) {
        p.value()[0][0][1][1] = 1;
      }
    }
  }
  auto c4 = torch::arange(16, torch::kFloat).view({1, 1, 4, 4});
  auto c5 = torch::tensor({100.0f, 200.0f, 300.0f, 400.0f}).view({1, 1, 2, 2});
  auto p = fpn->forward({c4, c5});
  ASSERT_EQ(p.size(), 2u);
  EXPECT_TRUE(torch::equal(p[1], c5));
  auto up = c5.repeat_interleave(2, 2).repeat_interleave(2, 3);
  EXPECT_TRUE(torch::equal(p[0], c4 + up));
  // Odd sizes: the upsampling goes to the lateral's size.
  auto odd = fpn->forward({torch::zeros({1, 1, 5, 3}), c5});
  EXPECT_EQ(odd[0].sizes(), (std::vector<int64_t>{1, 1, 5, 3}));
  // Extra levels: P6 from C5 (Detectron2) or P5 (torchvision); the conv's input differs.
  FeaturePyramidNetwork from_c5(FeaturePyramidNetworkOptions({8, 16}, 4));
  FeaturePyramidNetwork from_p5(FeaturePyramidNetworkOptions({8, 16}, 4).p6_source("p5"));
  EXPECT_EQ(from_c5->named_parameters()["extra_blocks.p6.weight"].sizes(),
            (std::vector<int64_t>{4, 16, 3, 3}));
  EXPECT_EQ(from_p5->named_parameters()["extra_blocks.p6.weight"].sizes(),
            (std::vector<int64_t>{4, 4, 3, 3}));
  auto levels = from_c5->forward({torch::randn({2, 8, 16, 16}), torch::randn({2, 16, 8, 8})});
  ASSERT_EQ(levels.size(), 4u);
  EXPECT_EQ(levels[2].sizes(), (std::vector<int64_t>{2, 4, 4, 4}));
  EXPECT_EQ(levels[3].sizes(), (std::vector<int64_t>{2, 4, 2, 2}));
  EXPECT_THROW(from_c5->forward({torch::randn({2, 8, 16, 16})}), c10::Error);
  EXPECT_THROW(from_c5->forward({torch::randn({2, 9, 16, 16}), torch::randn({2, 16, 8, 8})}),
               c10::Error);
  EXPECT_THROW(FeaturePyramidNetwork(FeaturePyramidNetworkOptions({8}, 4).p6_source("c4")),
               c10::Error);
}

TEST(RetinaNetHead, PriorBiasAndTheAnchorMajorLayout) {
  using mgd::detection::RetinaNetHead;
  using mgd::detection::RetinaNetHeadOptions;
  RetinaNetHead head(RetinaNetHeadOptions(8, 3).num_anchors(2).num_convs(1));
  EXPECT_TRUE(torch::allclose(head->classification_head->named_parameters()["cls_logits.bias"],
                              torch::full({6}, -std::log(99.0)), 1e-6, 1e-6));
  EXPECT_NEAR(head->classification_head->named_parameters()["conv.0.0.weight"].std().item<double>(),
              0.01, 0.002);
  // Zero predictor weights: every location outputs the predictor's bias, channel a * K + k
  // landing at [n, (y * W + x) * A + a, k].
  {
    torch::NoGradGuard no_grad;
    auto cls = head->classification_head->named_parameters();
    cls["cls_logits.weight"].zero_();
    cls["cls_logits.bias"].copy_(torch::arange(6, torch::kFloat));
    auto box = head->regression_head->named_parameters();
    box["bbox_reg.weight"].zero_();
    box["bbox_reg.bias"].copy_(torch::arange(8, torch::kFloat));
  }
  auto [cls, box] = head->forward({torch::randn({2, 8, 3, 5}), torch::randn({2, 8, 1, 1})});
  ASSERT_EQ(cls.size(), 2u);
  EXPECT_EQ(cls[0].sizes(), (std::vector<int64_t>{2, 3 * 5 * 2, 3}));
  EXPECT_EQ(box[0].sizes(), (std::vector<int64_t>{2, 3 * 5 * 2, 4}));
  EXPECT_EQ(cls[1].sizes(), (std::vector<int64_t>{2, 2, 3}));
  for (int64_t loc = 0; loc < 15; ++loc) {
    for (int64_t a = 0; a < 2; ++a) {
      for (int64_t k = 0; k < 3; ++k) {
        EXPECT_EQ(cls[0][1][loc * 2 + a][k].item<float>(), a * 3 + k);
      }
      for (int64_t j = 0; j < 4; ++j) EXPECT_EQ(box[0][0][loc * 2 + a][j].item<float>(), a * 4 + j);
    }
  }
  EXPECT_THROW(head->forward({torch::randn({1, 7, 2, 2})}), c10::Error);
  EXPECT_THROW(RetinaNetHead(RetinaNetHeadOptions(8, 3).prior_probability(1.0)), c10::Error);
}

TEST(RetinaNetHead, SmallLevelsShareOneMap) {
  using mgd::detection::detail::pack_small_levels;
  auto level = [](int64_t h, int64_t w) { return torch::zeros({1, 2, h, w}); };
  // Hand-solved: P5 4x4 at the origin, P6 2x2 and P7 1x1 in the next column, one zero row
  // and column between them; P3 and P4 (over 16 locations) alone.
  auto p =
      pack_small_levels({level(16, 16), level(8, 8), level(4, 4), level(2, 2), level(1, 1)}, 16);
  EXPECT_EQ(p.first, 2);
  EXPECT_EQ(p.height, 4);
  EXPECT_EQ(p.width, 7);
  ASSERT_EQ(p.places.size(), 3u);
  EXPECT_EQ(std::vector<int64_t>({p.places[1].y, p.places[1].x, p.places[2].y, p.places[2].x}),
            std::vector<int64_t>({0, 5, 3, 5}));
  EXPECT_EQ(p.mask.sum().item<float>(), 16 + 4 + 1);
  // A column full: the next level starts another.
  p = pack_small_levels({level(2, 3), level(2, 2), level(1, 1)}, 6);
  EXPECT_EQ(std::vector<int64_t>({p.places[1].y, p.places[1].x, p.places[2].y, p.places[2].x}),
            std::vector<int64_t>({0, 4, 0, 7}));
  EXPECT_EQ(p.width, 8);
  // One small level alone, or none: nothing packed.
  EXPECT_EQ(pack_small_levels({level(8, 8), level(2, 2)}, 16).first, 2);
  EXPECT_EQ(pack_small_levels({level(2, 2), level(1, 1)}, 0).first, 2);
}

TEST(RetinaNetHead, PackedLevelsEqualOneConvPerLevel) {
  // Outputs and every gradient (weights, biases, the levels) of the head with its small levels
  // packed equal those of one conv per level (packed_level_area 0).
  using mgd::detection::RetinaNetHead;
  using mgd::detection::RetinaNetHeadOptions;
  const auto options = RetinaNetHeadOptions(16, 5).num_anchors(3);
  for (const auto& sizes :
       std::vector<std::vector<int64_t>>{{16, 8, 4, 2, 1}, {13, 7, 4, 2, 1}, {5, 3, 2, 1}}) {
    torch::manual_seed(11);
    RetinaNetHead packed(RetinaNetHeadOptions(options).packed_level_area(64));
    RetinaNetHead plain(RetinaNetHeadOptions(options).packed_level_area(0));
    {
      torch::NoGradGuard no_grad;
      auto source = packed->named_parameters();
      for (auto& q : plain->named_parameters()) {
        source[q.key()].normal_(0, 0.2);
        q.value().copy_(source[q.key()]);
      }
    }
    std::vector<torch::Tensor> levels;
    for (int64_t s : sizes) levels.push_back(torch::randn({2, 16, s, s + 1}));
    auto run = [&](RetinaNetHead& head) {
      std::vector<torch::Tensor> inputs;
      for (const auto& l : levels) inputs.push_back(l.clone().requires_grad_(true));
      auto [cls, box] = head->forward(inputs);
      torch::manual_seed(5);
      auto loss = torch::zeros({});
      std::vector<torch::Tensor> all;
      for (const auto& t : cls) {
        loss = loss + (t * torch::randn_like(t)).sum();
        all.push_back(t.detach());
      }
      for (const auto& t : box) {
        loss = loss + (t * torch::randn_like(t)).sum();
        all.push_back(t.detach());
      }
      loss.backward();
      for (const auto& in : inputs) all.push_back(in.grad());
      for (const auto& q : head->parameters()) all.push_back(q.grad().clone());
      return all;
    };
    const auto a = run(packed), b = run(plain);
    ASSERT_EQ(a.size(), b.size());
    for (size_t i = 0; i < a.size(); ++i) {
      ASSERT_EQ(a[i].sizes(), b[i].sizes()) << i;
      EXPECT_LT(relative_difference(a[i], b[i]), 1e-5) << i;
    }
  }
}

TEST(RetinaNet, RegistryNames) {
  const auto names = mgd::detection::retinanet_names();
  EXPECT_TRUE(std::is_sorted(names.begin(), names.end()));
  for (const char* n : {"retinanet_resnet18_fpn", "retinanet_resnet34_fpn",
                        "retinanet_resnet50_fpn", "retinanet_resnet101_fpn"}) {
    EXPECT_NE(std::find(names.begin(), names.end(), n), names.end()) << n;
  }
  try {
    make_retinanet("retinanet_resnet19_fpn");
    FAIL() << "expected an error";
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what()).find("retinanet_resnet18_fpn"), std::string::npos);
  }
  // The name picks the backbone whatever the options say.
  auto net = make_retinanet("retinanet_resnet18_fpn", RetinaNetOptions().backbone("resnet50"));
  EXPECT_EQ(net->options.backbone(), "resnet18");
  EXPECT_THROW(make_retinanet("retinanet_resnet18_fpn", RetinaNetOptions().returned_stages({3, 2})),
               c10::Error);
  EXPECT_THROW(make_retinanet("retinanet_resnet18_fpn", RetinaNetOptions().norm("group")),
               c10::Error);
}

TEST(RetinaNet, TapsChannelsAndAffines) {
  torch::manual_seed(3);
  auto net = make_retinanet("retinanet_resnet18_fpn", RetinaNetOptions().num_classes(5));
  randomize(*net);
  net->eval();
  EXPECT_EQ(net->tap_channels(),
            (std::vector<int64_t>{64, 128, 256, 512, 256, 256, 256, 256, 256}));
  EXPECT_EQ(net->num_stage_taps(), 4);
  EXPECT_EQ(net->num_levels(), 5);
  torch::NoGradGuard no_grad;
  auto x = torch::randn({2, 3, 64, 96});
  auto out = net->forward(x);
  ASSERT_EQ(out.taps.size(), 9u);
  ASSERT_EQ(out.cls_logits.size(), 5u);
  ASSERT_EQ(out.bbox_regression.size(), 5u);
  ASSERT_EQ(out.feature_sizes.size(), 5u);
  const std::vector<std::array<int64_t, 2>> sizes = {{8, 12}, {4, 6}, {2, 3}, {1, 2}, {1, 1}};
  EXPECT_EQ(out.feature_sizes, sizes);
  for (size_t l = 0; l < 5; ++l) {
    const int64_t hwa = sizes[l][0] * sizes[l][1] * 9;
    EXPECT_EQ(out.cls_logits[l].sizes(), (std::vector<int64_t>{2, hwa, 5}));
    EXPECT_EQ(out.bbox_regression[l].sizes(), (std::vector<int64_t>{2, hwa, 4}));
    EXPECT_EQ(out.taps[4 + l].sizes(), (std::vector<int64_t>{2, 256, sizes[l][0], sizes[l][1]}));
  }
  // C taps are pre-ReLU, and the FPN consumed their ReLU: feeding relu(C3..C5) to it again
  // reproduces P3..P7.
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_EQ(out.taps[i].size(1), net->tap_channels()[i]);
    EXPECT_LT(out.taps[i].min().item<float>(), 0) << "C" << i + 2 << " is not pre-ReLU";
  }
  auto again = net->fpn->forward(
      {torch::relu(out.taps[1]), torch::relu(out.taps[2]), torch::relu(out.taps[3])});
  for (size_t l = 0; l < 5; ++l) EXPECT_TRUE(torch::equal(again[l], out.taps[4 + l])) << l;
  // extract(x, false), what a distiller that ignores P3-P7 needs: the same stage maps, the
  // FPN's positions undefined.
  auto all = net->extract(x), stages = net->extract(x, /*levels=*/false);
  ASSERT_EQ(all.pre_relu.size(), 9u);
  ASSERT_EQ(stages.pre_relu.size(), 9u);
  ASSERT_EQ(stages.post_relu.size(), 9u);
  for (size_t i = 0; i < 9; ++i) {
    if (i < 4) {
      EXPECT_TRUE(torch::equal(stages.pre_relu[i], out.taps[i])) << i;
      EXPECT_TRUE(torch::equal(stages.post_relu[i], torch::relu(out.taps[i]))) << i;
    } else {
      EXPECT_TRUE(torch::equal(all.pre_relu[i], out.taps[i])) << i;
      EXPECT_FALSE(stages.pre_relu[i].defined()) << i;
      EXPECT_FALSE(stages.post_relu[i].defined()) << i;
    }
  }
  // The affines are the last norm's buffers of each stage (bn2 of the last basic block).
  const auto affines = net->tap_affines();
  ASSERT_EQ(affines.size(), 9u);
  auto buffers = net->named_buffers();
  for (int64_t s = 0; s < 4; ++s) {
    const auto prefix = "backbone.body.layer" + std::to_string(s + 1) + ".1.bn2.";
    EXPECT_TRUE(affines[s].weight.is_same(buffers[prefix + "weight"])) << prefix;
    EXPECT_TRUE(affines[s].bias.is_same(buffers[prefix + "bias"])) << prefix;
  }
  for (size_t i = 4; i < 9; ++i) {
    EXPECT_FALSE(affines[i].weight.defined());
    EXPECT_FALSE(affines[i].bias.defined());
  }
  // With GroupNorm in the last blocks, the affines are its (trainable) parameters; R50: bn3.
  auto gn = make_retinanet("retinanet_resnet50_fpn",
                           RetinaNetOptions().group_norm_last_block(true).freeze_at(1));
  auto params = gn->named_parameters();
  const auto gn_affines = gn->tap_affines();
  EXPECT_TRUE(gn_affines[3].weight.is_same(params["backbone.body.layer4.2.bn3.weight"]));
  EXPECT_TRUE(gn_affines[0].bias.is_same(params["backbone.body.layer1.2.bn3.bias"]));
  EXPECT_TRUE(gn_affines[0].weight.requires_grad());
}

TEST(RetinaNet, BackboneFromAClassifier) {
  torch::manual_seed(4);
  auto classifier = mgd::models::resnet18(mgd::models::ModelOptions().classes(10));
  {
    torch::NoGradGuard no_grad;
    for (auto& b : classifier->named_buffers()) {
      if (b.key().find("running_mean") != std::string::npos) b.value().uniform_(-0.2, 0.2);
      if (b.key().find("running_var") != std::string::npos) b.value().uniform_(0.5, 1.5);
    }
    for (auto& p : classifier->named_parameters()) {
      if (p.key().find("bn") != std::string::npos) p.value().uniform_(0.5, 1.5);
    }
  }
  classifier->eval();
  const auto state = serialize::module_state_dict(*classifier);
  auto net = make_retinanet("retinanet_resnet18_fpn");
  net->load_backbone_from_classifier(state);
  net->eval();
  for (const auto& item : serialize::module_state_dict(*net->body)) {
    EXPECT_TRUE(torch::equal(item.value(), state[item.key()])) << item.key();
  }
  // The frozen body computes the classifier's stage maps (BN in eval mode).
  torch::NoGradGuard no_grad;
  auto x = torch::randn({1, 3, 64, 64});
  auto expected = classifier->extract(x);
  auto out = net->forward(x);
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_LT(relative_difference(out.taps[i], expected.pre_relu[i]), 1e-5) << i;
  }
  // requires_grad survives the copy (freeze_at 2: stem and layer1 frozen).
  EXPECT_FALSE(net->body->named_parameters()["layer1.0.conv1.weight"].requires_grad());
  EXPECT_TRUE(net->body->named_parameters()["layer2.0.conv1.weight"].requires_grad());
  // GroupNorm takes the BatchNorm's gamma and beta; its statistics are not needed.
  auto gn =
      make_retinanet("retinanet_resnet18_fpn", RetinaNetOptions().group_norm_last_block(true));
  gn->load_backbone_from_classifier(state);
  EXPECT_TRUE(torch::equal(gn->body->named_parameters()["layer3.1.bn1.weight"],
                           state["layer3.1.bn1.weight"]));
  // A missing key is named; a key of another network too.
  auto partial = state;
  partial.erase("layer2.1.conv2.weight");
  try {
    net->load_backbone_from_classifier(partial);
    FAIL() << "expected an error";
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what()).find("missing: layer2.1.conv2.weight"), std::string::npos)
        << e.what();
  }
  const auto r50 = serialize::module_state_dict(*mgd::models::resnet50());
  EXPECT_THROW(net->load_backbone_from_classifier(r50), c10::Error);
}

TEST(RetinaNetOracle, StateDictKeysShapesAndTrainableFlagsEqualTorchvision) {
  SKIP_WITHOUT_TORCHVISION();
  struct Case {
    std::string backbone, norm, p6;
    int64_t trainable;
  };
  for (const auto& c :
       {Case{"resnet50", "batch", "p5", 5}, Case{"resnet50", "frozen_batch", "p5", 3},
        Case{"resnet50", "frozen_batch", "c5", 3}, Case{"resnet18", "batch", "c5", 4},
        Case{"resnet18", "frozen_batch", "p5", 3}, Case{"resnet18", "frozen_batch", "c5", 0}}) {
    SCOPED_TRACE(c.backbone + " " + c.norm + " " + c.p6 + " " + std::to_string(c.trainable));
    const auto theirs = parse(capture(oracle_command("keys " + c.backbone + " " + c.norm + " " +
                                                     c.p6 + " 7 " + std::to_string(c.trainable))));
    ASSERT_FALSE(theirs.empty()) << "no output from the oracle";
    auto net = make_retinanet(
        "retinanet_" + c.backbone + "_fpn",
        RetinaNetOptions().num_classes(7).norm(c.norm).p6_source(c.p6).trainable_layers(
            c.trainable));
    EXPECT_EQ(describe(*net), theirs);
    // The order of the state_dict is Python's too.
    std::vector<std::string> order;
    for (const auto& item : serialize::module_state_dict(*net)) order.push_back(item.key());
    EXPECT_EQ(order.front(), "backbone.body.conv1.weight");
    EXPECT_EQ(order.back(), "head.regression_head.bbox_reg.bias");
  }
  // Detectron2's FREEZE_AT k equals torchvision's trainable_layers 5 - k where no BatchNorm
  // parameter is involved (frozen norms).
  for (int64_t k = 0; k <= 5; ++k) {
    auto d2 = make_retinanet("retinanet_resnet18_fpn", RetinaNetOptions().freeze_at(k));
    auto tv = make_retinanet("retinanet_resnet18_fpn", RetinaNetOptions().trainable_layers(5 - k));
    EXPECT_EQ(describe(*d2), describe(*tv)) << k;
  }
}

class RetinaNetTorchvision : public ::testing::TestWithParam<std::pair<std::string, std::string>> {
};

TEST_P(RetinaNetTorchvision, WeightsMoveBothWaysWithEqualOutputs) {
  SKIP_WITHOUT_TORCHVISION();
  const auto& [backbone, p6] = GetParam();
  mgd::testing::TempDir dir("mgd-retinanet");
  ASSERT_EQ(run_oracle("export " + backbone + " " + p6 + " 6 " + dir.path()), 0);
  const auto expected = serialize::load_file(dir / "expected.pth");
  const auto& input = expected.at("input").to_tensor();
  auto net = make_retinanet("retinanet_" + backbone + "_fpn",
                            RetinaNetOptions().num_classes(6).p6_source(p6));
  serialize::load_state_dict_into(*net, serialize::load_state_dict(dir / "weights.pth"));
  net->eval();
  torch::NoGradGuard no_grad;
  auto out = net->forward(input);
  auto compare = [](const std::vector<torch::Tensor>& ours, const mgd::serialize::Value& theirs,
                    const std::string& what) {
    const auto& items = theirs.items();
    ASSERT_EQ(ours.size(), items.size()) << what;
    for (size_t i = 0; i < ours.size(); ++i) {
      const auto& t = items[i].to_tensor();
      ASSERT_EQ(ours[i].sizes(), t.sizes()) << what << " " << i;
      EXPECT_LT(relative_difference(ours[i], t), 1e-4) << what << " " << i;
    }
  };
  compare(out.taps, expected.at("taps"), "taps");
  compare(out.cls_logits, expected.at("cls_logits"), "cls_logits");
  compare(out.bbox_regression, expected.at("bbox_regression"), "bbox_regression");

  // mgd -> torchvision: a fresh mgd model with random frozen statistics, saved by mgd and
  // loaded strictly by torchvision, computes mgd's outputs there.
  torch::manual_seed(5);
  auto ours = make_retinanet("retinanet_" + backbone + "_fpn",
                             RetinaNetOptions().num_classes(6).p6_source(p6));
  randomize(*ours);
  ours->eval();
  auto mine = ours->forward(input);
  const auto path = dir / "from_mgd.pth";
  serialize::save_state_dict(path, *ours);
  auto list = [](const std::vector<torch::Tensor>& ts) {
    std::vector<mgd::serialize::Value> items(ts.begin(), ts.end());
    return mgd::serialize::Value::list(std::move(items));
  };
  mgd::serialize::Dict io;
  io.insert_or_assign("input", input);
  io.insert_or_assign("taps", list(mine.taps));
  io.insert_or_assign("cls_logits", list(mine.cls_logits));
  io.insert_or_assign("bbox_regression", list(mine.bbox_regression));
  serialize::save_file(path + ".io", mgd::serialize::Value(std::move(io)));
  EXPECT_EQ(run_oracle("check " + backbone + " " + p6 + " 6 " + path), 0);
}

TEST(RetinaNetOracle, LossesAndDetectionsEqualTorchvisionsWithItsPreset) {
  SKIP_WITHOUT_TORCHVISION();
  mgd::testing::TempDir dir("mgd-retinanet-task");
  ASSERT_EQ(run_oracle("task resnet18 6 " + dir.path()), 0);
  const auto expected = serialize::load_file(dir / "task.pth");
  auto net =
      make_retinanet("retinanet_resnet18_fpn", RetinaNetOptions::torchvision().num_classes(6));
  serialize::load_state_dict_into(*net, serialize::load_state_dict(dir / "weights.pth"));
  net->eval();
  torch::NoGradGuard no_grad;
  auto out = net->forward(expected.at("input").to_tensor());
  std::vector<mgd::detection::Target> targets;
  std::vector<std::array<int64_t, 2>> image_sizes;
  for (size_t b = 0; b < 2; ++b) {
    targets.push_back({expected.at("boxes").items()[b].to_tensor(),
                       expected.at("labels").items()[b].to_tensor()});
    const auto& size = expected.at("image_sizes").items()[b].items();
    image_sizes.push_back({size[0].to_int(), size[1].to_int()});
  }
  double normalizer = mgd::detection::kInitialLossNormalizer;
  const auto losses = net->losses(out, targets, normalizer);
  EXPECT_NEAR(losses.loss_cls.item<double>(), expected.at("loss_cls").to_tensor().item<double>(),
              1e-4 * std::abs(expected.at("loss_cls").to_tensor().item<double>()));
  EXPECT_NEAR(losses.loss_box_reg.item<double>(),
              expected.at("loss_box_reg").to_tensor().item<double>(),
              1e-4 * std::abs(expected.at("loss_box_reg").to_tensor().item<double>()));
  EXPECT_GT(losses.num_foreground, 0);
  const auto detections = net->detect(out, image_sizes);
  ASSERT_EQ(detections.size(), 2u);
  for (size_t b = 0; b < 2; ++b) {
    SCOPED_TRACE(b);
    const auto& theirs = expected.at("detections").items()[b].items();
    ASSERT_EQ(detections[b].boxes.sizes(), theirs[0].to_tensor().sizes());
    ASSERT_GT(detections[b].boxes.size(0), 0);
    // The same detections in the same order, except that two whose scores tie to float
    // rounding (1e-6) may come in either order: the convolutions' rounding differs between
    // CPUs (oneDNN's kernels per instruction set), and so does such a tie's order.
    const auto boxes = theirs[0].to_tensor(), scores = theirs[1].to_tensor(),
               labels = theirs[2].to_tensor();
    EXPECT_TRUE(torch::allclose(detections[b].scores, scores, 1e-5, 1e-6));
    const int64_t n = boxes.size(0);
    std::vector<bool> used(static_cast<size_t>(n), false);
    int64_t unmatched = 0;
    for (int64_t i = 0; i < n; ++i) {
      bool found = false;
      for (int64_t j = std::max<int64_t>(0, i - 3); j < std::min(n, i + 4) && !found; ++j) {
        if (used[static_cast<size_t>(j)] ||
            std::abs(detections[b].scores[i].item<double>() - scores[j].item<double>()) > 1e-6 ||
            detections[b].labels[i].item<int64_t>() != labels[j].item<int64_t>() ||
            !torch::allclose(detections[b].boxes[i], boxes[j], 1e-4, 1e-3))
          continue;
        used[static_cast<size_t>(j)] = found = true;
      }
      if (!found) ++unmatched;
    }
    EXPECT_EQ(unmatched, 0) << "mgd:\n"
                            << torch::cat({detections[b].boxes, detections[b].scores.unsqueeze(1)}, 1)
                            << "\ntorchvision:\n"
                            << torch::cat({boxes, scores.unsqueeze(1)}, 1);
  }
  // The preset's anchors and the detectron2 ones disagree: the options must match the
  // checkpoint, and a head/anchor mismatch is refused at construction.
  EXPECT_THROW(make_retinanet("retinanet_resnet18_fpn", RetinaNetOptions().num_anchors(3)),
               c10::Error);
}

INSTANTIATE_TEST_SUITE_P(Backbones, RetinaNetTorchvision,
                         ::testing::Values(std::make_pair("resnet18", "c5"),
                                           std::make_pair("resnet18", "p5"),
                                           std::make_pair("resnet50", "p5")));

}  // namespace
