// State dicts: finding them in checkpoints, loading them into torch::nn modules by name, and
// Python-trained weights giving Python's outputs in C++.
#include "mgd/serialize/state_dict.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <string>

#include "mgd/serialize/checkpoint.h"
#include "serialize/serialize_testing.h"

namespace {

namespace ser = mgd::serialize;
using mgd::testing::error_of;
using mgd::testing::Net;
using mgd::testing::TempDir;
using ser::Dict;
using ser::Value;

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

std::vector<std::string> keys_of(const ser::StateDict& state) {
  return state.keys();
}

Dict tensors(std::initializer_list<std::string> names, const std::string& prefix = "") {
  Dict d = Dict::ordered_dict();
  float k = 0;
  for (const auto& n : names) d.insert_or_assign(prefix + n, torch::full({2}, k++));
  return d;
}

// A Net whose BatchNorm has seen data, so its running statistics and counter are not defaults.
Net trained_cpp_net(int seed) {
  torch::manual_seed(seed);
  Net net;
  net->train();
  torch::NoGradGuard no_grad;
  for (int i = 0; i < 3; ++i) net->forward(mgd::testing::net_input() * (i + 1));
  net->eval();
  return net;
}

TEST(SerializeStateDict, BareStateDict) {
  const auto state = ser::to_state_dict(Value(tensors({"a.weight", "b.bias"})));
  EXPECT_EQ(keys_of(state), (std::vector<std::string>{"a.weight", "b.bias"}));
  EXPECT_EQ(state["b.bias"][0].item<float>(), 1.0f);
  EXPECT_EQ(ser::to_state_dict(Value(Dict())).size(), 0u);
}

TEST(SerializeStateDict, TrainingCheckpointWithDataParallelPrefix) {
  Dict ckpt;
  ckpt.insert_or_assign("epoch", 3);
  ckpt.insert_or_assign("state_dict", tensors({"conv.weight", "fc.bias"}, "module."));
  ckpt.insert_or_assign("optimizer", Dict());
  EXPECT_EQ(keys_of(ser::to_state_dict(Value(ckpt))),
            (std::vector<std::string>{"conv.weight", "fc.bias"}));
  // The prefix is kept when stripping is off.
  EXPECT_EQ(keys_of(ser::to_state_dict(Value(ckpt), ser::LoadStateDictOptions().strip_prefix(""))),
            (std::vector<std::string>{"module.conv.weight", "module.fc.bias"}));

  Dict model;  // {'model': ...} is found by default, other keys when asked for
  model.insert_or_assign("model", tensors({"x"}));
  EXPECT_EQ(keys_of(ser::to_state_dict(Value(model))), (std::vector<std::string>{"x"}));
  Dict net;
  net.insert_or_assign("net", tensors({"y"}, "backbone."));
  net.insert_or_assign("step", 10);
  const auto opts = ser::LoadStateDictOptions().keys({"net"}).strip_prefix("backbone.");
  EXPECT_EQ(keys_of(ser::to_state_dict(Value(net), opts)), (std::vector<std::string>{"y"}));
}

TEST(SerializeStateDict, NotAStateDict) {
  EXPECT_TRUE(
      contains(error_of([] { ser::to_state_dict(Value(1), {}, "f.pt"); }),
               "f.pt: expected a state_dict or a training checkpoint (a dict), found a int"));
  Dict d = tensors({"w"});
  d.insert_or_assign("epoch", 1);
  std::string msg = error_of([&] { ser::to_state_dict(Value(d), {}, "f.pt"); });
  EXPECT_TRUE(contains(msg, "f.pt: no state_dict found")) << msg;
  EXPECT_TRUE(contains(msg, "'state_dict' 'model'")) << msg;
  EXPECT_TRUE(contains(msg, "'epoch' (int)")) << msg;

  Dict inner = tensors({"w"});
  inner.insert_or_assign(5, torch::zeros({1}));
  Dict ckpt;
  ckpt.insert_or_assign("state_dict", inner);
  msg = error_of([&] { ser::to_state_dict(Value(ckpt), {}, "f.pt"); });
  EXPECT_TRUE(contains(msg, "f.pt: 'state_dict' is not a state_dict")) << msg;
  EXPECT_TRUE(contains(msg, "5 (Tensor)")) << msg;

  Dict clash = tensors({"module.a", "a"});
  msg = error_of([&] { ser::to_state_dict(Value(clash), {}, "f.pt"); });
  EXPECT_TRUE(contains(msg, "f.pt: two weights are named 'a' once the prefix 'module.' is removed"))
      << msg;
}

TEST(SerializeStateDict, ModuleStateDictHasPythonNamesAndOrder) {
  Net net;
  EXPECT_EQ(keys_of(ser::module_state_dict(*net)),
            (std::vector<std::string>{"features.0.weight", "features.0.bias", "features.1.weight",
                                      "features.1.bias", "features.1.running_mean",
                                      "features.1.running_var", "features.1.num_batches_tracked",
                                      "fc.weight", "fc.bias"}));
  const Value v = ser::state_dict_value(*net);
  EXPECT_EQ(v.type_name(), "OrderedDict");
  EXPECT_FALSE(v.at("fc.weight").to_tensor().requires_grad());
}

TEST(SerializeStateDict, LoadsParametersAndBuffers) {
  Net source = trained_cpp_net(1);
  Net target = trained_cpp_net(2);
  ASSERT_FALSE(torch::equal(source->fc->weight, target->fc->weight));
  source->features[1]->as<torch::nn::BatchNorm2d>()->num_batches_tracked.fill_(17);
  ser::load_state_dict_into(*target, ser::module_state_dict(*source));
  for (const auto& item : ser::module_state_dict(*source)) {
    EXPECT_TRUE(torch::equal(ser::module_state_dict(*target)[item.key()], item.value()))
        << item.key();
  }
  EXPECT_EQ(target->features[1]->as<torch::nn::BatchNorm2d>()->num_batches_tracked.item<int64_t>(),
            17);
  EXPECT_TRUE(target->fc->weight.requires_grad());  // still a trainable parameter
  const auto x = mgd::testing::net_input();
  EXPECT_TRUE(torch::equal(target->forward(x), source->forward(x)));
}

TEST(SerializeStateDict, AllMismatchesInOneError) {
  Net net = trained_cpp_net(3);
  const auto before = ser::module_state_dict(*net);
  ser::StateDict state;
  for (const auto& item : before) {
    if (item.key() == "fc.bias" || item.key() == "features.0.bias") continue;
    state.insert(item.key(), item.value().clone());
  }
  state["features.0.weight"] = torch::zeros({4, 2, 1, 1});
  state["features.1.num_batches_tracked"] = torch::zeros({}, torch::kFloat32);
  state.insert("extra.weight", torch::zeros({2}));
  state.insert("head.bias", torch::zeros({5}));
  state["fc.weight"].fill_(42);

  const std::string msg = error_of([&] { ser::load_state_dict_into(*net, state); });
  EXPECT_TRUE(contains(msg, "nothing was loaded")) << msg;
  EXPECT_TRUE(contains(msg, "missing keys (2):\n    features.0.bias [4]\n    fc.bias [3]")) << msg;
  EXPECT_TRUE(contains(msg, "unexpected keys (2):\n    extra.weight [2]\n    head.bias [5]"))
      << msg;
  EXPECT_TRUE(contains(msg,
                       "features.0.weight: shape [4, 2, 1, 1] in the state dict, [4, 2, 3, 3] "
                       "in the module"))
      << msg;
  EXPECT_TRUE(contains(msg,
                       "features.1.num_batches_tracked: dtype Float in the state dict, Long in "
                       "the module"))
      << msg;
  // Nothing was copied, not even the weights that matched.
  EXPECT_TRUE(torch::equal(net->fc->weight, before["fc.weight"]));

  // Not strict: missing and unexpected names are ignored, shapes and dtypes still checked.
  const std::string loose = error_of([&] { ser::load_state_dict_into(*net, state, false); });
  EXPECT_FALSE(contains(loose, "missing keys")) << loose;
  EXPECT_TRUE(contains(loose, "features.0.weight: shape")) << loose;
  state["features.0.weight"] = before["features.0.weight"];
  state["features.1.num_batches_tracked"] = before["features.1.num_batches_tracked"];
  ser::load_state_dict_into(*net, state, /*strict=*/false);
  EXPECT_EQ(net->fc->weight[0][0].item<float>(), 42.0f);
}

TEST(SerializeStateDict, ConvertsDtypesOfTheSameKind) {
  Net net;
  ser::StateDict state;
  for (const auto& item : ser::module_state_dict(*net)) {
    const auto& t = item.value();
    state.insert(item.key(), t.is_floating_point() ? torch::full_like(t, 0.25, torch::kFloat64)
                                                   : torch::full_like(t, 9, torch::kInt32));
  }
  ser::load_state_dict_into(*net, state);
  EXPECT_EQ(net->fc->weight.scalar_type(), torch::kFloat32);
  EXPECT_EQ(net->fc->weight[1][2].item<float>(), 0.25f);
  auto bn = net->features[1]->as<torch::nn::BatchNorm2d>();
  EXPECT_EQ(bn->num_batches_tracked.scalar_type(), torch::kInt64);
  EXPECT_EQ(bn->num_batches_tracked.item<int64_t>(), 9);
}

TEST(SerializeStateDict, MissingNumBatchesTrackedIsZero) {
  // Checkpoints from before PyTorch 0.4.1 (torchvision's ImageNet weights) lack it.
  Net net = trained_cpp_net(4);
  auto bn = net->features[1]->as<torch::nn::BatchNorm2d>();
  ASSERT_EQ(bn->num_batches_tracked.item<int64_t>(), 3);
  ser::StateDict state = ser::module_state_dict(*trained_cpp_net(5));
  state.erase("features.1.num_batches_tracked");
  ser::load_state_dict_into(*net, state);
  EXPECT_EQ(bn->num_batches_tracked.item<int64_t>(), 0);
}

TEST(SerializeStateDict, SaveAndLoadBack) {
  TempDir dir;
  Net source = trained_cpp_net(6);
  ser::save_state_dict(dir / "net.pt", *source);
  Net target;
  ser::load_state_dict_into(*target, ser::load_state_dict(dir / "net.pt"));
  target->eval();
  const auto x = mgd::testing::net_input();
  EXPECT_TRUE(torch::equal(target->forward(x), source->forward(x)));
}

TEST(SerializeStateDict, PythonWeightsGivePythonOutputs) {
  TempDir dir;
  const auto result = mgd::testing::run_python("write_checkpoints.py", dir.path());
  ASSERT_EQ(result.status, 0) << result.output;
  const Value io = ser::load_file(dir / "io.pt");
  const auto& input = io.at("input").to_tensor();
  ASSERT_TRUE(torch::equal(input, mgd::testing::net_input()));
  for (const std::string file :
       {"state_zip.pt", "state_legacy.pt", "train_zip.pt", "train_legacy.pt"}) {
    SCOPED_TRACE(file);
    Net net;
    ser::load_state_dict_into(*net, ser::load_state_dict(dir / file));
    net->eval();
    torch::NoGradGuard no_grad;
    EXPECT_TRUE(torch::allclose(net->forward(input), io.at("output").to_tensor(), 1e-5, 1e-6));
    EXPECT_EQ(net->features[1]->as<torch::nn::BatchNorm2d>()->num_batches_tracked.item<int64_t>(),
              2);
  }
}

}  // namespace
