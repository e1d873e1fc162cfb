#include <gtest/gtest.h>
#include <torch/torch.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>

#include "mgd/models/registry.h"
#include "mgd/serialize/checkpoint.h"
#include "mgd/serialize/state_dict.h"
#include "mgd/training/checkpoint.h"
#include "mgd/training/engine.h"
#include "support/errors.h"
#include "support/synthetic_data.h"

namespace {

namespace fs = std::filesystem;
using mgd::testing::error_of;
using mgd::training::Method;
using mgd::training::TrainOptions;

class EngineTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    // One directory per process: ctest runs the tests of this suite in parallel processes.
    root_ = ::testing::TempDir() + "/mgd_engine_test_" + std::to_string(::getpid());
    fs::remove_all(root_);
    mgd::testing::make_synthetic_fashion_mnist(root_ + "/data");
  }
  TrainOptions base(const std::string& name) {
    TrainOptions o;
    o.arch = "resnet20";
    o.data_format = "fashion-mnist";
    o.data_root = root_ + "/data";
    o.epochs = 2;
    o.batch_size = 32;
    o.lr = 0.05;
    o.workers = 2;
    o.threads = 1;  // ctest runs two test processes at once on two cores
    o.print_freq = 4;
    o.seed = 3;
    o.augment = false;  // the classes are positions: flips and shifts would blur them
    o.output_dir = root_ + "/" + name;
    return o;
  }
  // A teacher trained by mgd for one epoch (its BatchNorm statistics must be real: a
  // freshly initialized deep ResNet in eval mode has exploding features).
  std::string teacher() {
    const auto dir = root_ + "/teacher_resnet56";
    if (!fs::exists(dir + "/best.pth")) {
      auto o = base("teacher_resnet56");
      o.arch = "resnet56";
      o.epochs = 1;
      mgd::training::run_training(o);
    }
    return dir + "/best.pth";
  }
  TrainOptions distill(const std::string& name, Method method = Method::kMgd) {
    auto o = base(name);
    o.method = method;
    o.teacher_arch = "resnet56";
    o.teacher_checkpoint = teacher();
    o.tracking_images = 64;
    o.update_freq = 1;
    return o;
  }
  static std::string read(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }
  static std::string root_;
};
std::string EngineTest::root_;

TEST_F(EngineTest, BaseTrainingLearnsAndWritesItsRun) {
  auto o = base("base");
  o.epochs = 4;
  o.lr = 0.1;
  auto s = mgd::training::run_training(o);
  EXPECT_EQ(s.epochs_done, 4);
  EXPECT_GT(s.final_eval.top1, 50.0) << "the synthetic classes are easy";
  EXPECT_EQ(s.final_eval.images, 64);
  for (const char* f : {"checkpoint.pth", "best.pth", "config.yaml", "metrics.jsonl"}) {
    EXPECT_TRUE(fs::exists(o.output_dir + "/" + f)) << f;
  }
  bool events = false;
  for (auto& e : fs::directory_iterator(o.output_dir)) {
    events |= e.path().filename().string().rfind("events.out.tfevents.", 0) == 0;
  }
  EXPECT_TRUE(events);
  const auto metrics = read(o.output_dir + "/metrics.jsonl");
  size_t evals = 0;
  for (size_t p = metrics.find("\"kind\": \"eval\""); p != std::string::npos;
       p = metrics.find("\"kind\": \"eval\"", p + 1)) {
    ++evals;
  }
  EXPECT_EQ(evals, 4u) << metrics;
  EXPECT_NE(read(o.output_dir + "/config.yaml").find("epochs: 4"), std::string::npos);
  // The checkpoint's weights are Python-loadable state_dict entries, and evaluate the same.
  auto eval_opts = base("base");
  eval_opts.init_checkpoint = s.checkpoint;
  auto e = mgd::training::run_evaluation(eval_opts);
  EXPECT_DOUBLE_EQ(e.top1, s.final_eval.top1);
}

TEST_F(EngineTest, ResumedRunEndsWithTheSameWeights) {
  // RD draws random groups and the matching is redone every epoch: the RNG state, the
  // matching state and the optimizer must all come back for the weights to agree.
  auto full = distill("full");
  full.reducer = "rd";
  full.method = Method::kMgdKd;
  auto s_full = mgd::training::run_training(full);

  auto part = distill("part");
  part.reducer = "rd";
  part.method = Method::kMgdKd;
  part.epochs = 1;
  mgd::training::run_training(part);
  part.epochs = 2;
  part.resume = part.output_dir + "/checkpoint.pth";
  auto s_part = mgd::training::run_training(part);
  EXPECT_EQ(s_part.epochs_done, 2);

  auto a = mgd::serialize::load_state_dict(s_full.checkpoint);
  auto b = mgd::serialize::load_state_dict(s_part.checkpoint);
  ASSERT_EQ(a.size(), b.size());
  for (const auto& item : a) {
    EXPECT_TRUE(torch::equal(item.value(), b[item.key()])) << item.key();
  }
  EXPECT_DOUBLE_EQ(s_full.final_eval.top1, s_part.final_eval.top1);
}

TEST_F(EngineTest, EveryMethodRuns) {
  for (auto [method, reducer] : {std::pair<Method, std::string>{Method::kKd, "amp"},
                                 {Method::kMgd, "sm"},
                                 {Method::kMgd, "sp"}}) {
    SCOPED_TRACE(std::string(mgd::training::method_name(method)) + " " + reducer);
    auto o = distill(std::string("m_") + mgd::training::method_name(method) + reducer, method);
    o.reducer = reducer;
    o.epochs = 1;
    auto s = mgd::training::run_training(o);
    EXPECT_EQ(s.epochs_done, 1);
    EXPECT_GE(s.teacher_top1, 0.0);
    const auto metrics = read(o.output_dir + "/metrics.jsonl");
    EXPECT_NE(metrics.find("\"kind\": \"teacher\""), std::string::npos);
    if (method == Method::kMgd) {
      EXPECT_NE(metrics.find("\"kind\": \"matching\""), std::string::npos);
      EXPECT_NE(metrics.find("\"distill_loss_2\""), std::string::npos);
    } else {
      EXPECT_NE(metrics.find("\"kd_loss\""), std::string::npos);
    }
  }
}

TEST_F(EngineTest, BadInputIsOneClearError) {
  auto o = base("bad");
  o.arch = "resnet19";
  EXPECT_NE(error_of([&] { mgd::training::run_training(o); }).find("Unknown model 'resnet19'"),
            std::string::npos);
  o = base("bad");
  o.data_root = root_ + "/nowhere";
  auto missing = error_of([&] { mgd::training::run_training(o); });
  EXPECT_NE(missing.find("nowhere"), std::string::npos) << missing;
  o = base("bad");
  o.batch_size = 1000;
  EXPECT_NE(error_of([&] { mgd::training::run_training(o); }).find("Batch size 1000 is larger than the 256"),
            std::string::npos);
  o = distill("bad");
  o.teacher_arch = "wrn_16_2";  // the checkpoint holds a resnet56
  auto msg = error_of([&] { mgd::training::run_training(o); });
  EXPECT_NE(msg.find("holds a resnet56 network, expected wrn_16_2"), std::string::npos) << msg;
  {
    // A bare state_dict (as Python writes) of another architecture: the key/shape mismatch.
    auto net = mgd::models::make_model("resnet20", mgd::models::ModelOptions().classes(10).in_channels(1));
    mgd::serialize::save_state_dict(root_ + "/resnet20_weights.pth", *net);
  }
  o.teacher_checkpoint = root_ + "/resnet20_weights.pth";
  msg = error_of([&] { mgd::training::run_training(o); });
  EXPECT_NE(msg.find("does not fit the wrn_16_2 network"), std::string::npos) << msg;
  o = base("bad");
  o.resume = root_ + "/missing.pth";
  msg = error_of([&] { mgd::training::run_training(o); });
  EXPECT_NE(msg.find("missing.pth"), std::string::npos) << msg;
  {
    std::ofstream(root_ + "/corrupt.pth") << "this is not a checkpoint";
  }
  o.resume = root_ + "/corrupt.pth";
  msg = error_of([&] { mgd::training::run_training(o); });
  EXPECT_NE(msg.find("corrupt.pth"), std::string::npos) << msg;
}

TEST_F(EngineTest, NonFiniteLossStopsAndKeepsTheLastGoodCheckpoint) {
  auto o = base("nan");
  o.epochs = 1;
  mgd::training::run_training(o);
  const auto ckpt = o.output_dir + "/checkpoint.pth";
  const auto before = read(ckpt);
  o.epochs = 2;
  o.resume = ckpt;
  o.lr = 1e30;  // diverges at once
  auto msg = error_of([&] { mgd::training::run_training(o); });
  EXPECT_NE(msg.find("Non-finite loss at epoch 2"), std::string::npos) << msg;
  EXPECT_EQ(read(ckpt), before);
  // ... or skips the steps when asked.
  o.skip_nonfinite = true;
  o.output_dir = root_ + "/nan_skip";
  o.resume.clear();
  o.epochs = 1;
  EXPECT_NO_THROW(mgd::training::run_training(o));
}

// A student whose features are NaN: the tracking pass names itself, the batch and the
// position, and no checkpoint is written; with --skip-nonfinite its batches are skipped,
// and a pass left with none stops the run all the same.
TEST_F(EngineTest, NonFiniteCostStopsWhereItAppears) {
  auto o = base("nan_student");
  o.epochs = 1;
  mgd::training::run_training(o);
  auto student = mgd::models::make_model("resnet20", mgd::models::ModelOptions().classes(10).in_channels(1));
  mgd::training::load_weights(o.output_dir + "/checkpoint.pth", *student, "resnet20");
  {
    torch::NoGradGuard no_grad;
    for (auto& item : student->named_parameters()) {
      if (item.key() == "conv1.weight") item.value().fill_(std::numeric_limits<float>::quiet_NaN());
    }
  }
  mgd::serialize::save_file(root_ + "/nan_student.pth", mgd::serialize::state_dict_value(*student));
  auto d = distill("nan_cost");
  d.init_checkpoint = root_ + "/nan_student.pth";
  auto msg = error_of([&] { mgd::training::run_training(d); });
  EXPECT_NE(msg.find("Tracking pass before epoch 1, tracking batch 1: Distiller: non-finite "
                     "matching cost at position 0 (the student's feature map holds NaN or inf)"),
            std::string::npos) << msg;
  EXPECT_FALSE(fs::exists(d.output_dir + "/checkpoint.pth"));
  d.skip_nonfinite = true;
  msg = error_of([&] { mgd::training::run_training(d); });
  EXPECT_NE(msg.find("every tracking batch was skipped (2 non-finite)"), std::string::npos) << msg;
}

}  // namespace
