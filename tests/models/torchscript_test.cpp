// Models written in Python, distilled through TorchScript (models/torchscript.h): torchvision's
// ResNet-18 and MobileNet-V2 scripted by tools/mgd_script.py give the zoo's native networks'
// features, margins, matching, distillation loss and SGD steps with the same weights; a model
// with the reference's interface round-trips; checkpoints resume exactly; every bad input is
// one clear message.
#include <gtest/gtest.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <torch/torch.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>

#include "mgd/distiller/distiller.h"
#include "mgd/models/registry.h"
#include "mgd/models/torchscript.h"
#include "mgd/serialize/checkpoint.h"
#include "mgd/serialize/state_dict.h"
#include "mgd/training/engine.h"
#include "support/errors.h"
#include "support/synthetic_data.h"

namespace {

namespace fs = std::filesystem;
using mgd::models::TorchScriptNet;
using mgd::testing::error_of;

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

int run(const std::string& cmd) {
  const int status = std::system(cmd.c_str());
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

std::string oracle() {
  return std::string(MGD_PYTHON) + " " + MGD_SOURCE_DIR + "/tests/oracle/torchscript_models.py";
}

// The scripted models, made once (about 30 s) and shared by the tests of every process that
// ctest starts: a directory keyed by the Python sources, made under a file lock.
const std::string& models_dir() {
  static const std::string dir = [] {
    const auto key = read_file(std::string(MGD_SOURCE_DIR) + "/tools/mgd_script.py") +
                     read_file(std::string(MGD_SOURCE_DIR) + "/tests/oracle/torchscript_models.py");
    const std::string d = ::testing::TempDir() + "/mgd_torchscript_" +
                          std::to_string(std::hash<std::string>{}(key));
    const int fd = ::open((d + ".lock").c_str(), O_CREAT | O_RDWR, 0644);
    if (fd >= 0) ::flock(fd, LOCK_EX);
    if (!fs::exists(d + "/done")) {
      fs::remove_all(d);
      if (run(oracle() + " export " + d) == 0) std::ofstream(d + "/done") << "ok\n";
    }
    if (fd >= 0) {
      ::flock(fd, LOCK_UN);
      ::close(fd);
    }
    return d;
  }();
  return dir;
}

std::string model(const std::string& file) {
  const auto path = models_dir() + "/" + file;
  EXPECT_TRUE(fs::exists(models_dir() + "/done"))
      << "tests/oracle/torchscript_models.py export failed (python3-torch, python3-torchvision?)";
  return path;
}

bool close_at_scale(const torch::Tensor& ours, const torch::Tensor& theirs) {
  const double scale = theirs.abs().max().item<double>();
  return torch::allclose(ours, theirs, 1e-4, 1e-4 + 1e-5 * scale);
}

mgd::FeatureNet native(const std::string& name) {
  auto net = mgd::models::make_model(name, mgd::models::ModelOptions().classes(10));
  mgd::serialize::load_state_dict_into(*net,
                                       mgd::serialize::load_state_dict(model(name + ".pth")));
  return net;
}

void expect_same_features(const mgd::Features& a, const mgd::Features& b, const char* what) {
  SCOPED_TRACE(what);
  ASSERT_EQ(a.pre_relu.size(), b.pre_relu.size());
  for (size_t i = 0; i < a.pre_relu.size(); ++i) {
    ASSERT_EQ(a.pre_relu[i].sizes(), b.pre_relu[i].sizes()) << "position " << i;
    EXPECT_TRUE(close_at_scale(a.pre_relu[i], b.pre_relu[i]))
        << "pre, position " << i << ": max diff "
        << (a.pre_relu[i] - b.pre_relu[i]).abs().max().item<float>();
    EXPECT_TRUE(close_at_scale(a.post_relu[i], b.post_relu[i]))
        << "post, position " << i << ": max diff "
        << (a.post_relu[i] - b.post_relu[i]).abs().max().item<float>();
  }
  ASSERT_TRUE(a.logits.defined() && b.logits.defined());
  EXPECT_TRUE(close_at_scale(a.logits, b.logits))
      << "logits: max diff " << (a.logits - b.logits).abs().max().item<float>();
}

class TorchScriptModels : public ::testing::TestWithParam<std::string> {};

TEST_P(TorchScriptModels, GiveTheZoosNamesFeaturesAndNorms) {
  torch::manual_seed(0);
  const auto name = GetParam();
  auto ts = TorchScriptNet(model(name + ".pt"));
  auto zoo = native(name);
  // The same parameters and buffers under the same (torchvision's) names.
  auto a = mgd::serialize::module_state_dict(*ts);
  auto b = mgd::serialize::module_state_dict(*zoo);
  ASSERT_EQ(a.size(), b.size());
  for (const auto& item : b) {
    ASSERT_TRUE(a.contains(item.key())) << item.key();
    EXPECT_TRUE(torch::equal(a[item.key()], item.value())) << item.key();
  }
  EXPECT_EQ(ts->feature_channels(), zoo->feature_channels());
  const auto fa = ts->feature_affines(), fb = zoo->feature_affines();
  ASSERT_EQ(fa.size(), fb.size());
  for (size_t i = 0; i < fa.size(); ++i) {
    EXPECT_TRUE(torch::equal(fa[i].weight, fb[i].weight)) << i;
    EXPECT_TRUE(torch::equal(fa[i].bias, fb[i].bias)) << i;
  }
  const auto x = torch::randn({2, 3, 64, 64});
  ts->eval();
  zoo->eval();
  {
    torch::NoGradGuard no_grad;
    expect_same_features(ts->extract(x), zoo->extract(x), "eval");
    expect_same_features(ts->extract_frozen(x), zoo->extract_frozen(x), "frozen");
  }
  // Train mode: batch statistics, and the running statistics move alike.
  ts->train();
  zoo->train();
  torch::manual_seed(1);  // MobileNet-V2's dropout draws the same mask on both
  const auto ft = ts->extract(x);
  torch::manual_seed(1);
  const auto fz = zoo->extract(x);
  expect_same_features(ft, fz, "train");
  a = mgd::serialize::module_state_dict(*ts);
  b = mgd::serialize::module_state_dict(*zoo);
  for (const auto& item : b) {
    if (item.key().find("running_") != std::string::npos) {
      EXPECT_TRUE(torch::allclose(a[item.key()], item.value(), 1e-5, 1e-6)) << item.key();
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Torchvision, TorchScriptModels,
                         ::testing::Values("resnet18", "mobilenet_v2"));

// MobileNet-V2 teaches ResNet-18 (wider at every position, the same spatial sizes): scripted
// pair against native pair.
TEST(TorchScriptNet, DistillsAndTrainsLikeTheZoo) {
  torch::manual_seed(0);
  auto ts_t = TorchScriptNet(model("mobilenet_v2.pt"));
  auto ts_s = TorchScriptNet(model("resnet18.pt"));
  auto nat_t = native("mobilenet_v2");
  auto nat_s = native("resnet18");
  for (auto& t : {mgd::FeatureNet(ts_t.ptr()), nat_t}) {
    t->eval();
    for (auto& p : t->parameters()) p.requires_grad_(false);
  }
  auto opts = mgd::DistillerOptions().reducer("amp");
  mgd::Distiller d_ts(ts_t, ts_s, opts), d_nat(nat_t, nat_s, opts);
  for (int64_t i = 0; i < d_ts->num_positions(); ++i) {
    EXPECT_TRUE(torch::allclose(d_ts->margins(i), d_nat->margins(i), 1e-5, 1e-6)) << i;
  }
  const auto track = torch::randn({4, 3, 64, 64});
  d_ts->train();
  d_nat->train();
  d_ts->track(track);
  d_nat->track(track);
  d_ts->update_matching();
  d_nat->update_matching();
  for (int64_t i = 0; i < d_ts->num_positions(); ++i) {
    EXPECT_TRUE(torch::equal(d_ts->matching(i), d_nat->matching(i))) << "position " << i;
  }
  torch::optim::SGD sgd_ts(d_ts->trainable_parameters(),
                           torch::optim::SGDOptions(0.01).momentum(0.9).weight_decay(1e-4));
  torch::optim::SGD sgd_nat(d_nat->trainable_parameters(),
                            torch::optim::SGDOptions(0.01).momentum(0.9).weight_decay(1e-4));
  for (int step = 0; step < 3; ++step) {
    SCOPED_TRACE(step);
    const auto x = torch::randn({4, 3, 64, 64});
    const auto y = torch::randint(0, 10, {4});
    auto o_ts = d_ts->forward(x);
    auto o_nat = d_nat->forward(x);
    EXPECT_NEAR(o_ts.loss.item<double>(), o_nat.loss.item<double>(),
                1e-4 * std::abs(o_nat.loss.item<double>()));
    auto l_ts = torch::nn::functional::cross_entropy(o_ts.logits, y) + o_ts.loss;
    auto l_nat = torch::nn::functional::cross_entropy(o_nat.logits, y) + o_nat.loss;
    sgd_ts.zero_grad();
    sgd_nat.zero_grad();
    l_ts.backward();
    l_nat.backward();
    sgd_ts.step();
    sgd_nat.step();
  }
  const auto a = mgd::serialize::module_state_dict(*ts_s);
  const auto b = mgd::serialize::module_state_dict(*nat_s);
  ASSERT_EQ(a.size(), b.size());
  for (const auto& item : b) {
    const auto& ours = a[item.key()];
    EXPECT_TRUE(torch::allclose(ours, item.value(), 1e-4, 1e-5))
        << item.key() << ": max diff " << (ours - item.value()).abs().max().item<double>();
  }
  // The trained student's weights go back to torchvision's model, which computes its logits.
  const auto dir = models_dir() + "/trained_" + std::to_string(::getpid());
  fs::create_directories(dir);
  ts_s->eval();
  const auto x = torch::randn({2, 3, 64, 64});
  torch::Tensor logits;
  {
    torch::NoGradGuard no_grad;
    logits = ts_s->extract(x).logits;
  }
  mgd::serialize::save_state_dict(dir + "/resnet18.pth", *ts_s);
  mgd::serialize::Dict io;
  io.insert_or_assign("input", x);
  io.insert_or_assign("logits", logits);
  mgd::serialize::save_file(dir + "/io.pth", mgd::serialize::Value(std::move(io)));
  EXPECT_EQ(run(oracle() + " check resnet18 " + dir + "/resnet18.pth " + dir + "/io.pth"), 0);
  fs::remove_all(dir);
}

TEST(TorchScriptNet, ReferenceInterfaceRoundTrips) {
  auto net = TorchScriptNet(model("reference.pt"));
  const auto expected = mgd::serialize::load_file(model("reference.expected.pth"));
  const auto& input = expected.at("input").to_tensor();
  const auto& pre = expected.at("pre").items();
  const auto state = mgd::serialize::to_state_dict(expected.at("state_dict"));
  EXPECT_EQ(net->feature_channels(), (std::vector<int64_t>{8, 16}));
  EXPECT_EQ(net->norm_paths(), (std::vector<std::string>{"bn1", "bn2"}));
  const auto affines = net->feature_affines();
  EXPECT_TRUE(torch::equal(affines[1].weight, state["bn2.weight"]));
  EXPECT_TRUE(torch::equal(affines[1].bias, state["bn2.bias"]));
  net->eval();
  torch::NoGradGuard no_grad;
  const auto f = net->extract(input);
  ASSERT_EQ(f.pre_relu.size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    // Its in-place ReLUs would have overwritten these maps with their ReLU.
    EXPECT_TRUE(close_at_scale(f.pre_relu[i], pre[i].to_tensor())) << i;
    EXPECT_LT(f.pre_relu[i].min().item<float>(), 0.f) << i;
    EXPECT_TRUE(torch::equal(f.post_relu[i], torch::relu(f.pre_relu[i]))) << i;
  }
  EXPECT_TRUE(close_at_scale(f.logits, expected.at("logits").to_tensor()));
  const auto dir = models_dir() + "/reference_" + std::to_string(::getpid());
  fs::create_directories(dir);
  mgd::serialize::save_state_dict(dir + "/reference.pth", *net);
  mgd::serialize::Dict io;
  io.insert_or_assign("input", input);
  io.insert_or_assign("logits", f.logits);
  mgd::serialize::save_file(dir + "/io.pth", mgd::serialize::Value(std::move(io)));
  EXPECT_EQ(run(oracle() + " check reference " + dir + "/reference.pth " + dir + "/io.pth"), 0);
  fs::remove_all(dir);
}

TEST(TorchScriptNet, BadInputsAreOneClearMessage) {
  const auto dir = models_dir() + "/bad_" + std::to_string(::getpid());
  fs::create_directories(dir);
  const auto missing = error_of([&] { TorchScriptNet(dir + "/missing.pt"); });
  EXPECT_NE(missing.find(dir + "/missing.pt"), std::string::npos) << missing;
  std::ofstream(dir + "/garbage.pt") << "this is not a zip archive at all, just text";
  const auto garbage = error_of([&] { TorchScriptNet(dir + "/garbage.pt"); });
  EXPECT_NE(garbage.find("garbage.pt"), std::string::npos) << garbage;
  // A torch.save checkpoint given as the network.
  const auto pth = error_of([&] { TorchScriptNet(model("resnet18.pth")); });
  EXPECT_NE(pth.find("not a TorchScript file"), std::string::npos) << pth;
  EXPECT_NE(pth.find("--checkpoint"), std::string::npos) << pth;
  // TorchScript, but not written by tools/mgd_script.py.
  const auto plain = error_of([&] { TorchScriptNet(model("plain.pt")); });
  EXPECT_NE(plain.find("not one written by tools/mgd_script.py"), std::string::npos) << plain;
  // Tied weights: one tensor under two names.
  const auto tied = error_of([&] { TorchScriptNet(model("tied.pt")); });
  EXPECT_NE(tied.find("parameters 'fc.weight' and 'fc2.weight' are one tensor"), std::string::npos)
      << tied;
  // A truncated file: its central directory is gone.
  const auto bytes = read_file(model("reference.pt"));
  std::ofstream(dir + "/truncated.pt", std::ios::binary) << bytes.substr(0, bytes.size() / 2);
  const auto truncated = error_of([&] { TorchScriptNet(dir + "/truncated.pt"); });
  EXPECT_NE(truncated.find("truncated.pt"), std::string::npos) << truncated;
  // One flipped byte inside a record: its CRC.
  auto flipped = bytes;
  flipped[flipped.size() / 3] ^= 0x55;
  std::ofstream(dir + "/flipped.pt", std::ios::binary) << flipped;
  const auto crc = error_of([&] { TorchScriptNet(dir + "/flipped.pt"); });
  EXPECT_NE(crc.find("flipped.pt"), std::string::npos) << crc;
  // The run's classes and channels against the file's.
  const auto classes = error_of([&] {
    mgd::models::make_model("torchscript:" + model("resnet18.pt"),
                            mgd::models::ModelOptions().classes(100));
  });
  EXPECT_NE(classes.find("10 logits, but the run needs 100 classes"), std::string::npos) << classes;
  const auto channels = error_of([&] {
    mgd::models::make_model("torchscript:" + model("resnet18.pt"),
                            mgd::models::ModelOptions().classes(10).in_channels(1));
  });
  EXPECT_NE(channels.find("takes 3-channel images"), std::string::npos) << channels;
  auto net = TorchScriptNet(model("resnet18.pt"));
  const auto shape = error_of([&] { net->extract(torch::randn({2, 1, 64, 64})); });
  EXPECT_NE(shape.find("expected a batch of 3-channel images"), std::string::npos) << shape;
  fs::remove_all(dir);
  // The tool's own errors: a tap that does not exist, a tap not ending in a ReLU, a tap
  // without a norm -- exit status 2 and one line each.
  std::istringstream lines(read_file(model("errors.txt")));
  std::vector<std::string> errors;
  for (std::string line; std::getline(lines, line);) errors.push_back(line);
  ASSERT_EQ(errors.size(), 3u);
  EXPECT_EQ(errors[0].rfind("2\tmgd_script: tap 'layer9': ResNet has no module of that name", 0), 0u)
      << errors[0];
  EXPECT_NE(errors[1].find("does not come from a ReLU"), std::string::npos) << errors[1];
  EXPECT_NE(errors[2].find("no norm produces its pre-ReLU map"), std::string::npos) << errors[2];
  EXPECT_NE(errors[2].find("--norm act=MODULE_PATH"), std::string::npos) << errors[2];
}

// The engine with a scripted student: distillation from a zoo teacher, killed after one epoch
// and resumed, ends with the weights of the uninterrupted run.
TEST(TorchScriptNet, EngineResumesAScriptedStudentExactly) {
  const auto root = ::testing::TempDir() + "/mgd_torchscript_engine_" + std::to_string(::getpid());
  fs::remove_all(root);
  mgd::testing::make_synthetic_fashion_mnist(root + "/data");
  auto base = [&](const std::string& name) {
    mgd::training::TrainOptions o;
    o.arch = "resnet20";
    o.data_format = "fashion-mnist";
    o.data_root = root + "/data";
    o.epochs = 1;
    o.batch_size = 32;
    o.lr = 0.05;
    o.workers = 2;
    o.threads = 1;
    o.print_freq = 4;
    o.seed = 3;
    o.augment = false;
    o.output_dir = root + "/" + name;
    return o;
  };
  auto teacher = base("teacher");
  const auto t = mgd::training::run_training(teacher);
  auto distill = [&](const std::string& name) {
    auto o = base(name);
    o.arch = "torchscript:" + model("tiny.pt");
    o.method = mgd::training::Method::kMgd;
    o.teacher_arch = "resnet20";
    o.teacher_checkpoint = t.checkpoint;
    o.tracking_images = 64;
    o.update_freq = 1;
    o.epochs = 2;
    return o;
  };
  auto full = distill("full");
  const auto s_full = mgd::training::run_training(full);
  EXPECT_GT(s_full.final_eval.top1, 10.0);
  auto part = distill("part");
  part.epochs = 1;
  mgd::training::run_training(part);
  part.epochs = 2;
  part.resume = part.output_dir + "/checkpoint.pth";
  const auto s_part = mgd::training::run_training(part);
  const auto a = mgd::serialize::load_state_dict(s_full.checkpoint);
  const auto b = mgd::serialize::load_state_dict(s_part.checkpoint);
  ASSERT_EQ(a.size(), b.size());
  for (const auto& item : a) {
    ASSERT_TRUE(b.contains(item.key())) << item.key();
    EXPECT_TRUE(torch::equal(item.value(), b[item.key()])) << item.key();
  }
  EXPECT_TRUE(a.contains("stage2.1.running_mean"));  // the Python model's own names
  EXPECT_DOUBLE_EQ(s_full.final_eval.top1, s_part.final_eval.top1);
  // `mgd export` writes the trained student as the Python model's state_dict.
  const auto exported = root + "/tiny.pth";
  ASSERT_EQ(run(std::string(MGD_CLI) + " export --arch torchscript:" + model("tiny.pt") +
                " --checkpoint " + s_full.checkpoint + " -o " + exported + " > /dev/null"),
            0);
  auto net = TorchScriptNet(model("tiny.pt"));
  mgd::serialize::load_state_dict_into(*net, mgd::serialize::load_state_dict(s_full.checkpoint));
  net->eval();
  const auto x = torch::randn({2, 1, 28, 28});
  torch::Tensor logits;
  {
    torch::NoGradGuard no_grad;
    logits = net->extract(x).logits;
  }
  mgd::serialize::Dict io;
  io.insert_or_assign("input", x);
  io.insert_or_assign("logits", logits);
  mgd::serialize::save_file(root + "/io.pth", mgd::serialize::Value(std::move(io)));
  EXPECT_EQ(run(oracle() + " check tiny " + exported + " " + root + "/io.pth"), 0);

  // A scripted teacher carries its weights: no --teacher-checkpoint needed.
  auto scripted_teacher = distill("scripted_teacher");
  scripted_teacher.teacher_arch = "torchscript:" + model("tiny.pt");
  scripted_teacher.teacher_checkpoint.clear();
  scripted_teacher.epochs = 1;
  EXPECT_EQ(mgd::training::run_training(scripted_teacher).epochs_done, 1);
  fs::remove_all(root);
}

}  // namespace
