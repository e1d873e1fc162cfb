// The detection task on the one engine (issue 14): `mgd train --task detection` trains a
// RetinaNet on COCO-format data, writes its run like any other, resumes bit for bit after a
// SIGKILL, and `mgd eval --task detection` prints COCO's table and writes the results file.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <torch/torch.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "mgd/data/scenes.h"
#include "mgd/serialize/checkpoint.h"
#include "mgd/serialize/state_dict.h"
#include "support/checkpoints.h"
#include "support/tiny_scenes.h"
#include "support/process.h"
#include "support/temp_dir.h"

namespace {

namespace fs = std::filesystem;

std::string read(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

class DetectionTask : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new mgd::testing::TempDir("mgd-detection-task");
    data_ = *dir_ / "scenes";
    skip_ = mgd::testing::write_tiny_scenes(data_);
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }
  void SetUp() override {
    if (!skip_.empty()) GTEST_SKIP() << skip_;
  }

  // A tiny RetinaNet run (tiny_scenes.h), checkpointed after every step.
  static std::vector<std::string> train_args(const std::string& out, int epochs) {
    auto more = mgd::testing::tiny_training(out, epochs);
    more.insert(more.end(), {"--checkpoint-every", "1"});
    if (fs::exists(out + "/checkpoint.pth")) more.insert(more.end(), {"--resume", out + "/checkpoint.pth"});
    return mgd::testing::tiny_detector("train", data_, more);
  }
  static std::vector<std::string> eval_args(const std::string& checkpoint, const std::string& out,
                                            const std::vector<std::string>& more = {}) {
    std::vector<std::string> a = {"--checkpoint", checkpoint, "-o", out};
    a.insert(a.end(), more.begin(), more.end());
    return mgd::testing::tiny_detector("eval", data_, a);
  }

  static mgd::testing::TempDir* dir_;
  static std::string data_, skip_;
};

mgd::testing::TempDir* DetectionTask::dir_ = nullptr;
std::string DetectionTask::data_, DetectionTask::skip_;

TEST_F(DetectionTask, TrainsWritesItsRunAndResumesBitForBitAfterSigkill) {
  const std::string reference = *dir_ / "reference";
  ASSERT_EQ(mgd::testing::run(train_args(reference, 2), {reference + ".log"}), 0)
      << read(reference + ".log");
  const auto metrics = read(reference + "/metrics.jsonl");
  EXPECT_NE(metrics.find("\"AP\""), std::string::npos) << metrics;
  EXPECT_NE(metrics.find("\"loss_cls\""), std::string::npos) << metrics;
  EXPECT_NE(read(reference + "/config.yaml").find("task: detection"), std::string::npos);
  EXPECT_TRUE(fs::exists(reference + "/best.pth"));

  // Killed once it has saved step 3 (of 12), then resumed: the same weights as the reference.
  const std::string killed = *dir_ / "killed";
  const pid_t pid = mgd::testing::spawn(train_args(killed, 2), {killed + ".log"});
  ASSERT_GT(pid, 0);
  const int status = mgd::testing::kill_once_saved(pid, killed + "/checkpoint.pth", 3);
  EXPECT_TRUE(status == 128 + SIGKILL || status == 0) << status;
  ASSERT_EQ(mgd::testing::run(train_args(killed, 2), {killed + ".log"}), 0) << read(killed + ".log");
  mgd::testing::expect_same_checkpoint(reference + "/checkpoint.pth", killed + "/checkpoint.pth");

  // Evaluation: COCO's table and the results file.
  const std::string eval_dir = *dir_ / "eval";
  const auto eval = eval_args(reference + "/checkpoint.pth", eval_dir);
  ASSERT_EQ(mgd::testing::run(eval, {eval_dir + ".log"}), 0) << read(eval_dir + ".log");
  const auto log = read(eval_dir + ".log");
  EXPECT_NE(log.find("Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ]"),
            std::string::npos)
      << log;
  // A list in COCO's results format (empty when no score passes 0.05 after so short a run).
  const std::string results = eval_dir + "/coco_instances_results.json";
  ASSERT_TRUE(fs::exists(results));
  EXPECT_EQ(std::system(("/usr/bin/python3 -c \"import json,sys; d = json.load(open(sys.argv[1])); "
                         "assert isinstance(d, list); assert all(set(x) == {'image_id', "
                         "'category_id', 'bbox', 'score'} for x in d)\" " + results)
                            .c_str()),
            0)
      << read(results).substr(0, 500);
}

TEST_F(DetectionTask, TwoRanksTrainAndTheirGatheredEvaluationEqualsOneProcess) {
  // Two ranks (mgd launch): every rank evaluates its shard and rank 0 scores the gathered
  // detections; the same checkpoint evaluated by one process must give the same AP.
  const std::string out = *dir_ / "two_ranks";
  std::vector<std::string> a = {MGD_CLI, "launch", "--nproc-per-node", "2", "--"};
  auto run = train_args(out, 1);
  // Every score kept, so that so short a run still has detections to score. Trainable
  // BatchNorm: each rank's running statistics follow its own batches, and every rank must
  // evaluate with rank 0's, which the checkpoint holds.
  run.insert(run.end(), {"--score-thresh", "0", "--backbone-norm", "batch"});
  a.insert(a.end(), run.begin() + 1, run.end());
  ASSERT_EQ(mgd::testing::run(a, {out + ".log"}), 0) << read(out + ".log");
  const auto metrics = read(out + "/metrics.jsonl");
  const auto at = metrics.rfind("\"kind\": \"eval\"");
  ASSERT_NE(at, std::string::npos) << metrics;
  auto number_after = [](const std::string& text, size_t from, const std::string& key) {
    const auto k = text.find("\"" + key + "\": ", from);
    return k == std::string::npos ? std::string("?")
                                  : text.substr(k + key.size() + 4,
                                                text.find_first_of(",}", k + key.size() + 4) -
                                                    (k + key.size() + 4));
  };
  const std::string eval_dir = *dir_ / "two_ranks_eval";
  // The run's batch size: the same batches, so the same padding.
  const auto eval = eval_args(out + "/checkpoint.pth", eval_dir,
                              {"--score-thresh", "0", "--batch-size", "4"});
  ASSERT_EQ(mgd::testing::run(eval, {eval_dir + ".log"}), 0) << read(eval_dir + ".log");
  const auto log = read(eval_dir + ".log");
  // mgd eval's summary line "retinanet_resnet18_fpn: AP x AP50 y ... on N images".
  const auto line_at = log.find("retinanet_resnet18_fpn: AP ");
  ASSERT_NE(line_at, std::string::npos) << log;
  const std::string line = log.substr(line_at, log.find('\n', line_at) - line_at);
  for (const char* key : {"AP", "AP50", "AR100"}) {
    const auto mine = line.find(std::string(" ") + key + " ");
    ASSERT_NE(mine, std::string::npos) << line;
    const double single = std::stod(line.substr(mine + std::string(key).size() + 2));
    const double ranks = std::stod(number_after(metrics, at, key));
    EXPECT_NEAR(single, ranks, 0.006) << key << "\n" << log << "\n" << metrics;
  }
  EXPECT_GT(std::stod(number_after(metrics, at, "AR100")), 0.0) << "nothing was detected\n"
                                                                 << metrics;
}

TEST_F(DetectionTask, BadInputIsOneClearError) {
  const std::string out = *dir_ / "bad";
  auto a = train_args(out, 1);
  a[5] = "retinanet_resnet19_fpn";
  ASSERT_EQ(mgd::testing::run(a, {out + ".log"}), 1);
  EXPECT_NE(read(out + ".log").find("mgd: error: "), std::string::npos);
  EXPECT_NE(read(out + ".log").find("retinanet_resnet19_fpn"), std::string::npos) << read(out + ".log");
  fs::remove(out + ".log");
  a = train_args(out, 1);
  a[7] = *dir_ / "nowhere";
  ASSERT_EQ(mgd::testing::run(a, {out + ".log"}), 1);
  EXPECT_NE(read(out + ".log").find("nowhere"), std::string::npos) << read(out + ".log");
}

}  // namespace
