// Weights move between torchvision (Python) and mgd's models in both directions and both
// torch.save formats, and the models then compute the same logits and feature maps.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <torch/torch.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <string>

#include "mgd/models/registry.h"
#include "mgd/serialize/checkpoint.h"
#include "mgd/serialize/state_dict.h"

namespace {

namespace fs = std::filesystem;

int run_python(const std::string& args) {
  const std::string cmd = std::string(MGD_PYTHON) + " " + MGD_SOURCE_DIR +
                          "/tests/oracle/torchvision_roundtrip.py " + args;
  const int status = std::system(cmd.c_str());
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// Equal up to float rounding at the tensor's own scale: different convolution kernels (mgd
// runs 1x1 convolutions on oneDNN; ATen, at one thread and two images, on im2col + BLAS)
// round differently, and that compounds over 50 layers -- PyTorch's own ResNet-50 logits at 1
// and 2 threads differ by 1e-6 of their largest value (6.7e-4 on 578 here).
bool close_at_scale(const torch::Tensor& ours, const torch::Tensor& theirs) {
  const double scale = theirs.abs().max().item<double>();
  return torch::allclose(ours, theirs, 1e-4, 1e-4 + 1e-5 * scale);
}

class Interop : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    dir_ = ::testing::TempDir() + "/mgd_interop_" + std::to_string(::getpid());
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string dir_;
};

TEST_P(Interop, PythonWeightsGiveTheSameOutputsAndMgdWeightsLoadInPython) {
  const std::string name = GetParam();
  ASSERT_EQ(run_python("export " + name + " " + dir_), 0)
      << "the PyTorch side failed (are python3-torch and python3-torchvision installed?)";
  const auto expected = mgd::serialize::load_file(dir_ + "/" + name + ".expected.pth");
  const auto& input = expected.at("input").to_tensor();
  const auto& logits = expected.at("logits").to_tensor();
  const auto& features = expected.at("features").items();
  const bool relu6_taps = name == "mobilenet_v2";  // torchvision's hook sees the pre-ReLU6 BN
  for (const char* format : {"zip", "legacy"}) {
    SCOPED_TRACE(format);
    auto net = mgd::models::make_model(name);
    mgd::serialize::load_state_dict_into(
        *net, mgd::serialize::load_state_dict(dir_ + "/" + name + "." + format + ".pth"));
    net->eval();
    torch::NoGradGuard no_grad;
    auto f = net->extract(input);
    EXPECT_TRUE(close_at_scale(f.logits, logits))
        << "max diff " << (f.logits - logits).abs().max().item<float>();
    ASSERT_EQ(features.size(), f.pre_relu.size());
    for (size_t i = 0; i < features.size(); ++i) {
      const auto& ours = relu6_taps ? f.pre_relu[i] : f.post_relu[i];
      const auto& theirs = features[i].to_tensor();
      ASSERT_EQ(ours.sizes(), theirs.sizes()) << "position " << i;
      EXPECT_TRUE(close_at_scale(ours, theirs))
          << "position " << i << ": max diff " << (ours - theirs).abs().max().item<float>();
    }
    // Back to Python: mgd writes the weights, torchvision loads them (strictly) and must
    // compute mgd's logits.
    const auto out = dir_ + "/" + name + ".from_mgd." + format + ".pth";
    mgd::serialize::save_state_dict(out, *net);
    mgd::serialize::Dict io;
    io.insert_or_assign("input", input);
    io.insert_or_assign("logits", f.logits);
    mgd::serialize::save_file(out + ".io", mgd::serialize::Value(std::move(io)));
    EXPECT_EQ(run_python("check " + name + " " + out), 0);
  }
}

INSTANTIATE_TEST_SUITE_P(Torchvision, Interop,
                         ::testing::Values("resnet18", "resnet50", "mobilenet_v2",
                                           "shufflenet_v2_x1_0"));

}  // namespace
