#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstdio>
#include <limits>
#include <map>
#include <memory>
#include <sstream>
#include <string>

#include "mgd/distiller/distiller.h"
#include "mgd/models/pooling.h"
#include "mgd/models/registry.h"

namespace {

using mgd::models::make_model;
using mgd::models::ModelOptions;

struct Expected {
  std::vector<int64_t> channels;
  std::vector<int64_t> strides;  // input size / feature size at each position
  int64_t input;                 // test input size
  int64_t in_channels;
};

const std::map<std::string, Expected>& expectations() {
  static const std::map<std::string, Expected> kExpected = {
      {"resnet10", {{64, 128, 256, 512}, {4, 8, 16, 32}, 64, 3}},
      {"resnet18", {{64, 128, 256, 512}, {4, 8, 16, 32}, 64, 3}},
      {"resnet34", {{64, 128, 256, 512}, {4, 8, 16, 32}, 64, 3}},
      {"resnet50", {{256, 512, 1024, 2048}, {4, 8, 16, 32}, 64, 3}},
      {"resnet101", {{256, 512, 1024, 2048}, {4, 8, 16, 32}, 32, 3}},
      {"resnet152", {{256, 512, 1024, 2048}, {4, 8, 16, 32}, 32, 3}},
      {"mobilenet_v1", {{128, 256, 512, 1024}, {4, 8, 16, 32}, 64, 3}},
      {"mobilenet_v2", {{144, 192, 384, 960}, {4, 8, 16, 32}, 64, 3}},
      {"mobilenet_v2_mgd", {{144, 192, 384, 960}, {8, 8, 16, 32}, 64, 3}},
      {"shufflenet_v2_x0_5", {{24, 48, 96, 192}, {4, 8, 16, 32}, 64, 3}},
      {"shufflenet_v2_x1_0", {{24, 116, 232, 464}, {4, 8, 16, 32}, 64, 3}},
      {"resnet20", {{16, 32, 64}, {1, 2, 4}, 28, 1}},
      {"resnet56", {{16, 32, 64}, {1, 2, 4}, 28, 1}},
      {"resnet8x4", {{64, 128, 256}, {1, 2, 4}, 28, 1}},
      {"resnet32x4", {{64, 128, 256}, {1, 2, 4}, 32, 3}},
      {"wrn_16_2", {{32, 64, 128}, {1, 2, 4}, 28, 1}},
      {"wrn_40_2", {{32, 64, 128}, {1, 2, 4}, 32, 3}},
  };
  return kExpected;
}

TEST(Models, RegistryCoversTheZoo) {
  std::vector<std::string> expected;
  for (const auto& e : expectations()) expected.push_back(e.first);
  EXPECT_EQ(mgd::models::model_names(), expected);
  try {
    make_model("resnet19");
    FAIL() << "expected an error";
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what()).find("Unknown model 'resnet19'"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("resnet18, resnet20"), std::string::npos);
  }
  EXPECT_THROW(make_model("resnet18", ModelOptions().classes(0)), c10::Error);
}

TEST(Models, ShapesAndFeatureTaps) {
  torch::manual_seed(0);
  for (const auto& [name, e] : expectations()) {
    SCOPED_TRACE(name);
    auto net = make_model(name, ModelOptions().classes(7).in_channels(e.in_channels));
    EXPECT_EQ(net->feature_channels(), e.channels);
    EXPECT_EQ(net->feature_norms().size(), e.channels.size());
    net->eval();
    torch::NoGradGuard no_grad;
    auto x = torch::randn({2, e.in_channels, e.input, e.input});
    auto f = net->extract(x);
    ASSERT_EQ(f.pre_relu.size(), e.channels.size());
    ASSERT_EQ(f.post_relu.size(), e.channels.size());
    EXPECT_EQ(f.logits.sizes(), (std::vector<int64_t>{2, 7}));
    const bool relu6 = name.rfind("mobilenet_v2", 0) == 0;
    for (size_t i = 0; i < e.channels.size(); ++i) {
      const int64_t side = e.input / e.strides[i];
      EXPECT_EQ(f.pre_relu[i].sizes(), (std::vector<int64_t>{2, e.channels[i], side, side}))
          << "position " << i;
      auto act = relu6 ? torch::relu6(f.pre_relu[i]) : torch::relu(f.pre_relu[i]);
      EXPECT_TRUE(torch::equal(f.post_relu[i], act)) << "position " << i;
      EXPECT_LT(f.pre_relu[i].min().item<float>(), 0) << "position " << i << " is not pre-ReLU";
    }
    // The taps come from the same pass as the logits.
    EXPECT_TRUE(torch::equal(net->forward(x), f.logits));
    // A wrong input is a clear error.
    EXPECT_THROW(net->extract(torch::randn({1, e.in_channels + 1, e.input, e.input})), c10::Error);
  }
}

TEST(Models, TapsAreTheOutputsOfTheirBatchNorms) {
  // Where the pre-ReLU map is one BN's output (not a residual sum), it equals a hook on that
  // BN. Checked through the BN's statistics: in train mode a BN's output has per-channel
  // mean ~beta and std ~|gamma|; set distinctive beta and compare.
  torch::manual_seed(1);
  for (std::string name : {"mobilenet_v1", "mobilenet_v2", "mobilenet_v2_mgd", "wrn_16_2"}) {
    SCOPED_TRACE(name);
    auto net = make_model(name, ModelOptions().classes(3));
    for (auto& bn : net->feature_norms()) {
      torch::NoGradGuard no_grad;
      bn->bias.copy_(torch::linspace(-3, 3, bn->bias.numel()));
    }
    net->train();
    auto f = net->extract(torch::randn({4, 3, 64, 64}));
    for (size_t i = 0; i < f.pre_relu.size(); ++i) {
      auto mean = f.pre_relu[i].mean({0, 2, 3});
      auto beta = net->feature_norms()[i]->bias;
      EXPECT_TRUE(torch::allclose(mean, beta, 1e-3, 1e-3)) << "position " << i;
    }
  }
}

// Runs a command, returns its standard output.
std::string run(const std::string& cmd) {
  std::unique_ptr<FILE, int (*)(FILE*)> pipe(popen(cmd.c_str(), "r"), pclose);
  if (!pipe) return "";
  std::string out;
  char buf[4096];
  while (size_t n = fread(buf, 1, sizeof buf, pipe.get())) out.append(buf, n);
  return out;
}

TEST(Models, ParameterNamesMatchTorchvision) {
  for (std::string name :
       {"resnet18", "resnet50", "mobilenet_v2", "shufflenet_v2_x0_5", "shufflenet_v2_x1_0"}) {
    SCOPED_TRACE(name);
    const std::string expected = run(std::string(MGD_PYTHON) + " " + MGD_SOURCE_DIR +
                                     "/tests/oracle/torchvision_keys.py " + name + " 10 2>&1");
    ASSERT_FALSE(expected.empty())
        << "no output from " << MGD_PYTHON << " (python3-torchvision missing?)";
    auto net = make_model(name, ModelOptions().classes(10));
    std::ostringstream got;
    // torchvision's state_dict order: parameters and buffers interleaved per module, which
    // is what named_parameters + named_buffers per submodule gives.
    std::map<std::string, std::string> ours;
    for (auto& p : net->named_parameters()) ours[p.key()] = "";
    for (auto& b : net->named_buffers()) ours[b.key()] = "";
    std::map<std::string, std::string> shapes;
    for (auto& p : net->named_parameters()) {
      std::ostringstream s;
      for (int64_t d = 0; d < p.value().dim(); ++d) s << (d ? "x" : "") << p.value().size(d);
      shapes[p.key()] = s.str();
    }
    for (auto& b : net->named_buffers()) {
      std::ostringstream s;
      for (int64_t d = 0; d < b.value().dim(); ++d) s << (d ? "x" : "") << b.value().size(d);
      shapes[b.key()] = s.str();
    }
    std::map<std::string, std::string> theirs;
    std::istringstream lines(expected);
    std::string key, shape;
    while (lines >> key) {
      std::getline(lines, shape);
      if (!shape.empty() && shape[0] == ' ') shape.erase(0, 1);
      theirs[key] = shape;
    }
    EXPECT_EQ(shapes, theirs);
  }
}

TEST(Models, ZooPairsDistill) {
  // The reference pairs (spec 1, 7) build, and their positions line up at 224 px.
  torch::manual_seed(2);
  auto teacher = make_model("resnet50");
  struct Pair {
    std::string student;
    std::vector<int64_t> ignore;
  };
  for (const auto& p : {Pair{"mobilenet_v1", {}}, Pair{"resnet18", {}},
                        Pair{"mobilenet_v2_mgd", {0}}, Pair{"shufflenet_v2_x1_0", {0}}}) {
    SCOPED_TRACE(p.student);
    mgd::Distiller d(teacher, make_model(p.student),
                     mgd::DistillerOptions().ignore_positions(p.ignore));
    d->reset_tracking();
    d->track(torch::randn({1, 3, 224, 224}));
    EXPECT_EQ(d->tracked_images(), 1);
  }
  // ShuffleNet-V2's stage maps have no single BN: not a teacher at those positions.
  try {
    mgd::Distiller(make_model("shufflenet_v2_x1_0"), make_model("shufflenet_v2_x0_5"));
    FAIL() << "expected an error";
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what()).find("cannot serve as a teacher"), std::string::npos)
        << e.what();
  }
}

}  // namespace

// The stem's max pooling without a graph (mgd's separable loop) gives ATen's values on every
// map size (odd, even, 1 and 2 wide), NaN included; with a graph, or on other dtypes and
// layouts, it is ATen's own (and its gradient).
TEST(Models, StemMaxPoolEqualsATen) {
  torch::manual_seed(8);
  for (const auto& shape : std::vector<std::vector<int64_t>>{{2, 3, 7, 9},
                                                             {1, 2, 8, 8},
                                                             {3, 1, 1, 1},
                                                             {1, 4, 2, 2},
                                                             {2, 2, 1, 5},
                                                             {4, 64, 32, 32},
                                                             {1, 3, 57, 56}}) {
    auto x = torch::randn(shape);
    torch::NoGradGuard no_grad;
    EXPECT_TRUE(
        torch::equal(mgd::models::detail::max_pool_3x3_s2(x), torch::max_pool2d(x, 3, 2, 1)))
        << x.sizes();
  }
  auto x = torch::randn({2, 3, 9, 9});
  x[0][1][3][3] = std::numeric_limits<float>::quiet_NaN();  // inside four windows
  x[1][2][0][0] = std::numeric_limits<float>::quiet_NaN();  // a corner
  {
    torch::NoGradGuard no_grad;
    const auto mine = mgd::models::detail::max_pool_3x3_s2(x), aten = torch::max_pool2d(x, 3, 2, 1);
    EXPECT_TRUE(torch::equal(mine.isnan(), aten.isnan()));
    EXPECT_GT(mine.isnan().sum().item<int64_t>(), 4);
    EXPECT_TRUE(torch::equal(mine.nan_to_num(0), aten.nan_to_num(0)));
  }
  // Strided and double inputs, and a graph: ATen's results and gradient.
  const auto wide = torch::randn({2, 3, 11, 10}).transpose(2, 3);
  EXPECT_TRUE(
      torch::equal(mgd::models::detail::max_pool_3x3_s2(wide), torch::max_pool2d(wide, 3, 2, 1)));
  const auto d = torch::randn({2, 3, 6, 7}, torch::kDouble);
  EXPECT_TRUE(torch::equal(mgd::models::detail::max_pool_3x3_s2(d), torch::max_pool2d(d, 3, 2, 1)));
  auto g = torch::randn({2, 3, 8, 8}).requires_grad_();
  mgd::models::detail::max_pool_3x3_s2(g).sum().backward();
  auto g2 = g.detach().clone().requires_grad_();
  torch::max_pool2d(g2, 3, 2, 1).sum().backward();
  EXPECT_TRUE(torch::equal(g.grad(), g2.grad()));
}
