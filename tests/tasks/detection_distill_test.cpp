// MGD on RetinaNet (issue 15): the detector's distillation positions and margins, and
// `mgd distill --task detection` on the one engine -- the reference's schedule of matchings,
// the loss-scale table, a kill/resume that ends bit for bit where an uninterrupted run ends,
// and two ranks that find the matching one process finds.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <torch/torch.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "mgd/data/scenes.h"
#include "mgd/distiller/distiller.h"
#include "mgd/margins/margins.h"
#include "mgd/models/detection/retinanet.h"
#include "mgd/models/resnet.h"
#include "mgd/serialize/checkpoint.h"
#include "mgd/serialize/state_dict.h"
#include "support/checkpoints.h"
#include "support/tiny_scenes.h"
#include "support/process.h"
#include "support/temp_dir.h"

namespace {

namespace fs = std::filesystem;
using mgd::detection::make_retinanet;
using mgd::detection::RetinaNetOptions;

std::string read(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// Trained-looking norms: statistics and affines away from their initial 0/1.
void randomize_norms(torch::nn::Module& net) {
  torch::NoGradGuard no_grad;
  for (auto& b : net.named_buffers()) {
    if (b.key().find("running_var") != std::string::npos)
      b.value().uniform_(0.5, 2.0);
    else if (b.key().find("running_mean") != std::string::npos)
      b.value().normal_(0, 0.3);
    else if (b.value().is_floating_point())
      b.value().normal_(0.5, 0.5);  // frozen affines
  }
  for (auto& p : net.named_parameters()) {
    if (p.key().find("bn") != std::string::npos) p.value().normal_(0.5, 0.5);
  }
}

TEST(DetectionDistillation, TapsAreTheBackboneStagesBeforeTheirReLU) {
  // The detector's C2-C5 taps equal the stage outputs (before the final ReLU) of the zoo's
  // classifier carrying the same weights -- itself checked against torchvision elsewhere.
  torch::manual_seed(5);
  auto classifier = mgd::models::resnet18();
  randomize_norms(*classifier);
  classifier->eval();
  auto det = make_retinanet("retinanet_resnet18_fpn",
                            RetinaNetOptions().num_classes(3).norm("frozen_batch"));
  det->load_backbone_from_classifier(mgd::serialize::module_state_dict(*classifier));
  det->eval();
  torch::NoGradGuard no_grad;
  auto x = torch::randn({2, 3, 64, 96});
  auto c = classifier->extract(x);
  auto d = det->extract(x);
  ASSERT_EQ(d.pre_relu.size(), 9u);
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_TRUE(torch::allclose(d.pre_relu[i], c.pre_relu[i], 1e-5, 1e-5)) << "C" << i + 2;
    EXPECT_TRUE(torch::allclose(d.post_relu[i], torch::relu(c.pre_relu[i]), 1e-5, 1e-5));
    EXPECT_LT(d.pre_relu[i].min().item<float>(), 0) << "C" << i + 2 << " is after its ReLU";
  }
  EXPECT_FALSE(d.logits.defined());
}

TEST(DetectionDistillation, MarginsComeFromTheTeachersFrozenBatchNorms) {
  torch::manual_seed(6);
  auto teacher = make_retinanet("retinanet_resnet50_fpn",
                                RetinaNetOptions().num_classes(3).norm("frozen_batch"));
  randomize_norms(*teacher);
  auto student = make_retinanet("retinanet_resnet18_fpn",
                                RetinaNetOptions().num_classes(3).group_norm_last_block(true));
  mgd::Distiller d(teacher, student,
                   mgd::DistillerOptions().ignore_positions({4, 5, 6, 7, 8}).group_norm(true));
  auto buffers = teacher->named_buffers();
  for (int64_t s = 0; s < 4; ++s) {
    // R50: the last block's bn3 of each stage (3, 4, 6, 3 blocks).
    const int64_t last = std::vector<int64_t>{2, 3, 5, 2}[static_cast<size_t>(s)];
    const auto prefix =
        "backbone.body.layer" + std::to_string(s + 1) + "." + std::to_string(last) + ".bn3.";
    auto expected = mgd::margins_from_bn(buffers[prefix + "weight"], buffers[prefix + "bias"]);
    EXPECT_TRUE(torch::equal(d->margins(s), expected)) << prefix;
  }
  EXPECT_EQ(d->guided_positions(), (std::vector<int64_t>{0, 1, 2, 3}));
}

class DetectionDistill : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new mgd::testing::TempDir("mgd-detection-distill");
    data_ = *dir_ / "scenes";
    skip_ = mgd::testing::write_tiny_scenes(data_);
    if (!skip_.empty()) return;
    // A teacher of one epoch: good enough to have features.
    const std::string teacher = *dir_ / "teacher";
    const auto a = mgd::testing::tiny_detector("train", data_, mgd::testing::tiny_training(teacher, 1));
    if (mgd::testing::run(a, {teacher + ".log"}) != 0) {
      skip_ = "the teacher did not train: " + read(teacher + ".log");
    }
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }
  void SetUp() override {
    if (!skip_.empty()) GTEST_SKIP() << skip_;
  }

  // The tiny detector (tiny_scenes.h) distilled from the teacher, checkpointed every step.
  static std::vector<std::string> distill_args(const std::string& out, int epochs) {
    auto more = mgd::testing::tiny_training(out, epochs);
    more.insert(more.end(), {"--teacher-arch", "retinanet_resnet18_fpn", "--teacher-checkpoint",
                             *dir_ / "teacher/checkpoint.pth", "--checkpoint-every", "1",
                             "--tracking-images", "12"});
    if (fs::exists(out + "/checkpoint.pth")) more.insert(more.end(), {"--resume", out + "/checkpoint.pth"});
    return mgd::testing::tiny_detector("distill", data_, more);
  }

  static mgd::testing::TempDir* dir_;
  static std::string data_, skip_;
};

mgd::testing::TempDir* DetectionDistill::dir_ = nullptr;
std::string DetectionDistill::data_, DetectionDistill::skip_;

TEST_F(DetectionDistill, ReferenceScheduleLossScaleAndBitExactResumeAfterSigkill) {
  // 2 epochs of 6 steps: the reference's fractions of 12 steps re-match after steps 1, 2, 4
  // and 8 (0/90, 5/90 round to step 0 and 1 ... 62/90 to 8).
  const std::string reference = *dir_ / "reference";
  ASSERT_EQ(mgd::testing::run(distill_args(reference, 2), {reference + ".log"}), 0)
      << read(reference + ".log");
  const auto log = read(reference + ".log");
  EXPECT_NE(log.find("distillation loss at the first step (loss factor 5e+07"), std::string::npos)
      << log;
  const auto metrics = read(reference + "/metrics.jsonl");
  EXPECT_NE(metrics.find("\"kind\": \"loss_scale\""), std::string::npos) << metrics;
  std::vector<int64_t> matched_at;
  for (size_t at = metrics.find("\"kind\": \"matching\""); at != std::string::npos;
       at = metrics.find("\"kind\": \"matching\"", at + 1)) {
    const auto k = metrics.find("\"step\": ", at);
    matched_at.push_back(std::stoll(metrics.substr(k + 8)));
  }
  EXPECT_EQ(matched_at, (std::vector<int64_t>{0, 1, 2, 4, 8})) << metrics;
  const auto config = read(reference + "/config.yaml");
  EXPECT_NE(config.find("loss_factor: 50000000"), std::string::npos) << config;
  EXPECT_NE(config.find("tracking_padding: exclude"), std::string::npos) << config;
  // Detection's default update (resumed bit-exactly below like any other state).
  EXPECT_NE(config.find("sgd_update: one-pass"), std::string::npos) << config;
  EXPECT_NE(config.find("update_fractions: [0, 0.055555555555555552"), std::string::npos) << config;

  // Killed once step 5 is saved (after the matchings of steps 1, 2, 4), resumed.
  const std::string killed = *dir_ / "killed";
  const pid_t pid = mgd::testing::spawn(distill_args(killed, 2), {killed + ".log"});
  ASSERT_GT(pid, 0);
  const int status = mgd::testing::kill_once_saved(pid, killed + "/checkpoint.pth", 5);
  EXPECT_TRUE(status == 128 + SIGKILL || status == 0) << status;
  ASSERT_EQ(mgd::testing::run(distill_args(killed, 2), {killed + ".log"}), 0)
      << read(killed + ".log");
  mgd::testing::expect_same_checkpoint(reference + "/checkpoint.pth", killed + "/checkpoint.pth");
}

TEST_F(DetectionDistill, TwoRanksFindTheMatchingOfOneProcess) {
  // Only the matching before training: it depends on the teacher, the seeded initial student
  // and the tracked images, which two ranks split between them and all-reduce.
  auto args = [&](const std::string& out) {
    auto a = distill_args(out, 1);
    a.insert(a.end(), {"--update-steps", "0", "--train-subset", "8"});
    return a;
  };
  const std::string one = *dir_ / "one_process";
  ASSERT_EQ(mgd::testing::run(args(one), {one + ".log"}), 0) << read(one + ".log");
  const std::string two = *dir_ / "two_ranks";
  std::vector<std::string> a = {MGD_CLI, "launch", "--nproc-per-node", "2", "--"};
  const auto run = args(two);
  a.insert(a.end(), run.begin() + 1, run.end());
  ASSERT_EQ(mgd::testing::run(a, {two + ".log"}), 0) << read(two + ".log");
  const int compared =
      mgd::testing::expect_same_matching(one + "/checkpoint.pth", two + "/checkpoint.pth");
  EXPECT_EQ(compared, 4 * 3 + 1);  // per guided position: index, margins, cost sum
}

TEST_F(DetectionDistill, TrackingOptionsAreCheckedAndRecorded) {
  const std::string out = *dir_ / "bad_tracking";
  auto a = distill_args(out, 1);
  a.insert(a.end(), {"--tracking-padding", "sometimes"});
  ASSERT_NE(mgd::testing::run(a, {out + ".log"}), 0);
  EXPECT_NE(read(out + ".log").find("sometimes"), std::string::npos) << read(out + ".log");
  fs::remove(out + ".log");
  a = distill_args(out, 1);
  a.insert(a.end(), {"--update-fractions", "0,1.5"});
  ASSERT_EQ(mgd::testing::run(a, {out + ".log"}), 1);
  EXPECT_NE(read(out + ".log").find("Invalid update fraction 1.5"), std::string::npos)
      << read(out + ".log");
}

}  // namespace
