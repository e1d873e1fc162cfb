// The MoCo task on the one engine (issue 16): `mgd train --task moco` trains MoCo v2 on
// Fashion-MNIST, logs its kNN monitor, resumes bit for bit after a SIGKILL (key encoder and
// queue included); `mgd distill --task moco` adds MGD from a MoCo teacher, with margins from
// the teacher or the reference's constant, and resumes bit for bit too; `mgd eval --task moco`
// reports the kNN monitor of a checkpoint.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "mgd/serialize/checkpoint.h"
#include "mgd/serialize/state_dict.h"
#include "support/checkpoints.h"
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

bool have_fashion_mnist() {
  return fs::exists("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz") ||
         fs::exists("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte");
}

class MoCoTask : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { dir_ = new mgd::testing::TempDir("mgd-moco-task"); }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }
  void SetUp() override {
    if (!have_fashion_mnist()) GTEST_SKIP() << "no Fashion-MNIST in /usr/share/datasets";
  }

  // A tiny MoCo run: CIFAR-style ResNet-20 on 64 Fashion-MNIST images, batches of 16 in two
  // BatchNorm groups, a queue of 48 (the wrap-around is exercised), 2 epochs of 4 steps.
  static std::vector<std::string> args(const std::string& command, const std::string& out,
                                       const std::vector<std::string>& extra = {}) {
    std::vector<std::string> a = {MGD_CLI,
                                  command,
                                  "--task",
                                  "moco",
                                  "--arch",
                                  "resnet20",
                                  "--epochs",
                                  "2",
                                  "--batch-size",
                                  "16",
                                  "--train-subset",
                                  "64",
                                  "--test-subset",
                                  "32",
                                  "--moco-k",
                                  "48",
                                  "--moco-dim",
                                  "16",
                                  "--moco-bn-splits",
                                  "2",
                                  "--knn-k",
                                  "10",
                                  "--lr",
                                  "0.03",
                                  "--threads",
                                  "1",
                                  "--workers",
                                  "0",
                                  "--checkpoint-every",
                                  "1",
                                  "--seed",
                                  "11",
                                  "--print-freq",
                                  "1",
                                  "-o",
                                  out};
    // `extra` holds flag / value pairs; a flag already above gets the new value.
    for (size_t i = 0; i + 1 < extra.size(); i += 2) {
      auto it = std::find(a.begin(), a.end(), extra[i]);
      if (it != a.end()) {
        *(it + 1) = extra[i + 1];
      } else {
        a.push_back(extra[i]);
        a.push_back(extra[i + 1]);
      }
    }
    if (fs::exists(out + "/checkpoint.pth")) {
      a.push_back("--resume");
      a.push_back(out + "/checkpoint.pth");
    }
    return a;
  }

  // Runs `argv` until its checkpoint holds `step` steps, SIGKILLs it, then runs it to the end.
  static void kill_then_resume(const std::vector<std::string>& argv, const std::string& out,
                               int64_t step) {
    const pid_t pid = mgd::testing::spawn(argv, {out + ".log"});
    ASSERT_GT(pid, 0);
    int status = -1;
    const auto t0 = std::chrono::steady_clock::now();
    bool ended = false;
    while (!(ended = mgd::testing::try_wait(pid, &status))) {
      if (fs::exists(out + "/checkpoint.pth")) {
        try {
          if (mgd::serialize::load_file(out + "/checkpoint.pth").at("global_step").to_int() >= step)
            break;
        } catch (const c10::Error&) {
        }
      }
      ASSERT_LT(std::chrono::steady_clock::now() - t0, std::chrono::minutes(10));
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    if (!ended) {
      ::kill(pid, SIGKILL);
      EXPECT_EQ(mgd::testing::wait_exit(pid), 128 + SIGKILL);
    }
  }

  static mgd::testing::TempDir* dir_;
};

mgd::testing::TempDir* MoCoTask::dir_ = nullptr;

TEST_F(MoCoTask, TrainsLogsKnnAndResumesBitForBitAfterSigkillThenDistillsWithMgd) {
  const std::string reference = *dir_ / "reference";
  ASSERT_EQ(mgd::testing::run(args("train", reference), {reference + ".log"}), 0)
      << read(reference + ".log");
  const auto metrics = read(reference + "/metrics.jsonl");
  EXPECT_NE(metrics.find("\"knn_acc1\""), std::string::npos) << metrics;
  EXPECT_NE(metrics.find("\"pretext_acc1\""), std::string::npos) << metrics;
  const auto config = read(reference + "/config.yaml");
  EXPECT_NE(config.find("task: moco"), std::string::npos) << config;
  EXPECT_NE(config.find("moco_k: 48"), std::string::npos) << config;
  EXPECT_NE(config.find("lr_schedule: cosine"), std::string::npos) << config;  // MoCo's default
  EXPECT_NE(config.find("nesterov: false"), std::string::npos) << config;
  // MoCo's default SGD update is the one-pass loop (the resume below is bit-exact with it).
  EXPECT_NE(config.find("sgd_update: one-pass"), std::string::npos) << config;
  // The checkpoint holds the key encoder and the queue; 8 steps of 16 keys wrapped the queue
  // of 48 twice (128 = 2 x 48 + 32).
  const auto ckpt = mgd::serialize::load_file(reference + "/checkpoint.pth");
  const auto state = mgd::serialize::to_state_dict(
      ckpt.at("state_dict"), mgd::serialize::LoadStateDictOptions().strip_prefix(""));
  EXPECT_TRUE(state.contains("encoder_k.conv1.weight"));
  EXPECT_EQ(state["queue"].sizes(), (std::vector<int64_t>{16, 48}));
  EXPECT_EQ(state["queue_ptr"].item<int64_t>(), 128 % 48);
  EXPECT_FALSE(torch::equal(state["encoder_q.conv1.weight"], state["encoder_k.conv1.weight"]));

  const std::string killed = *dir_ / "killed";
  kill_then_resume(args("train", killed), killed, 3);
  ASSERT_EQ(mgd::testing::run(args("train", killed), {killed + ".log"}), 0)
      << read(killed + ".log");
  mgd::testing::expect_same_checkpoint(reference + "/checkpoint.pth", killed + "/checkpoint.pth");

  // The kNN monitor of a checkpoint.
  const std::string eval_log = *dir_ / "eval.log";
  ASSERT_EQ(
      mgd::testing::run({MGD_CLI, "eval", "--task", "moco", "--arch", "resnet20", "--checkpoint",
                         reference + "/checkpoint.pth", "--moco-dim", "16", "--knn-k", "10",
                         "--train-subset", "64", "--test-subset", "32", "--threads", "1"},
                        {eval_log}),
      0)
      << read(eval_log);
  EXPECT_NE(read(eval_log).find("knn_acc1"), std::string::npos) << read(eval_log);

  // MoCo + MGD from that run's encoder as the teacher: the margins come from its BatchNorms
  // (different per channel), or with --margins reference all -sqrt(2/pi).
  const std::vector<std::string> mgd_args = {"--teacher-arch",       "resnet20",
                                             "--teacher-checkpoint", reference + "/checkpoint.pth",
                                             "--tracking-images",    "32"};
  const std::string distilled = *dir_ / "distilled";
  ASSERT_EQ(mgd::testing::run(args("distill", distilled, mgd_args), {distilled + ".log"}), 0)
      << read(distilled + ".log");
  const auto dmetrics = read(distilled + "/metrics.jsonl");
  EXPECT_NE(dmetrics.find("\"distill_loss_2\""), std::string::npos) << dmetrics;
  const auto margins_of = [](const std::string& path) {
    const auto c = mgd::serialize::load_file(path);
    return mgd::serialize::to_state_dict(
        c.at("distiller"),
        mgd::serialize::LoadStateDictOptions().strip_prefix(""))["reducer0.margins"];
  };
  const auto teacher_margins = margins_of(distilled + "/checkpoint.pth");
  EXPECT_GT((teacher_margins - teacher_margins[0]).abs().max().item<double>(), 1e-3);

  const std::string killed_mgd = *dir_ / "killed_mgd";
  kill_then_resume(args("distill", killed_mgd, mgd_args), killed_mgd, 5);
  ASSERT_EQ(mgd::testing::run(args("distill", killed_mgd, mgd_args), {killed_mgd + ".log"}), 0)
      << read(killed_mgd + ".log");
  mgd::testing::expect_same_checkpoint(distilled + "/checkpoint.pth",
                                       killed_mgd + "/checkpoint.pth");

  auto reference_margins_args = mgd_args;
  reference_margins_args.insert(reference_margins_args.end(),
                                {"--margins", "reference", "--epochs", "1"});
  const std::string constant = *dir_ / "constant";
  ASSERT_EQ(
      mgd::testing::run(args("distill", constant, reference_margins_args), {constant + ".log"}), 0)
      << read(constant + ".log");
  const auto constant_margins = margins_of(constant + "/checkpoint.pth");
  EXPECT_TRUE(torch::allclose(
      constant_margins, torch::full_like(constant_margins, -std::sqrt(2.0 / M_PI)), 1e-6, 1e-6))
      << constant_margins;
}

TEST_F(MoCoTask, TwoRanksShuffleKeysAcrossThemTheirKnnAndMgdMatchingEqualOneProcess) {
  // Two ranks (mgd launch) of 8 images each: the key views are shuffled over both ranks'
  // batches and every rank enqueues all 16 keys; the kNN monitor gathers the bank of both
  // ranks and sums their counts. The same checkpoint evaluated by one process: the same value.
  const std::string out = *dir_ / "two_ranks";
  std::vector<std::string> a = {MGD_CLI, "launch", "--nproc-per-node", "2", "--"};
  const auto run = args("train", out, {"--batch-size", "8", "--epochs", "1"});
  a.insert(a.end(), run.begin() + 1, run.end());
  ASSERT_EQ(mgd::testing::run(a, {out + ".log"}), 0) << read(out + ".log");
  const auto ckpt = mgd::serialize::load_file(out + "/checkpoint.pth");
  const auto state = mgd::serialize::to_state_dict(
      ckpt.at("state_dict"), mgd::serialize::LoadStateDictOptions().strip_prefix(""));
  EXPECT_EQ(state["queue_ptr"].item<int64_t>(), 64 % 48);  // 4 steps of 16 keys
  const auto metrics = read(out + "/metrics.jsonl");
  const auto at = metrics.rfind("\"knn_acc1\": ");
  ASSERT_NE(at, std::string::npos) << metrics;
  const double ranks = std::stod(metrics.substr(at + 12));
  const std::string eval_log = *dir_ / "two_ranks_eval.log";
  ASSERT_EQ(
      mgd::testing::run({MGD_CLI,          "eval",     "--task",        "moco",
                         "--arch",         "resnet20", "--checkpoint",  out + "/checkpoint.pth",
                         "--moco-dim",     "16",       "--knn-k",       "10",
                         "--train-subset", "64",       "--test-subset", "32",
                         "--seed",         "11",       "--batch-size",  "8",
                         "--threads",      "1"},
                        {eval_log}),
      0)
      << read(eval_log);
  const auto log = read(eval_log);
  const auto line = log.find("knn_acc1 ");
  ASSERT_NE(line, std::string::npos) << log;
  EXPECT_NEAR(std::stod(log.substr(line + 9)), ranks, 0.006) << log << "\n" << metrics;

  // MoCo + MGD with that run as the teacher, one epoch: its matching before training depends
  // on the teacher, the seeded initial student and the tracked images, which two ranks split
  // between them and all-reduce. Two ranks find the matching one process finds.
  const std::vector<std::string> mgd_args = {
      "--teacher-arch", "resnet20", "--teacher-checkpoint", out + "/checkpoint.pth",
      "--tracking-images", "32", "--epochs", "1", "--batch-size", "8"};
  const std::string one = *dir_ / "mgd_one_process";
  ASSERT_EQ(mgd::testing::run(args("distill", one, mgd_args), {one + ".log"}), 0)
      << read(one + ".log");
  const std::string two = *dir_ / "mgd_two_ranks";
  std::vector<std::string> b = {MGD_CLI, "launch", "--nproc-per-node", "2", "--"};
  const auto distill = args("distill", two, mgd_args);
  b.insert(b.end(), distill.begin() + 1, distill.end());
  ASSERT_EQ(mgd::testing::run(b, {two + ".log"}), 0) << read(two + ".log");
  const int compared =
      mgd::testing::expect_same_matching(one + "/checkpoint.pth", two + "/checkpoint.pth");
  EXPECT_EQ(compared, 3 * 3 + 1);  // per position (ResNet-20: 3): index, margins, cost sum
  const auto distiller = mgd::serialize::to_state_dict(
      mgd::serialize::load_file(two + "/checkpoint.pth").at("distiller"),
      mgd::serialize::LoadStateDictOptions().strip_prefix(""));
  EXPECT_EQ(distiller["tracked_images"].item<int64_t>(), 32);  // both ranks' 16
}

TEST_F(MoCoTask, TheLinearProtocolTrainsOnlyTheClassifierOnTheFrozenEncoder) {
  // A MoCo run, then `mgd train --task linear` on its query encoder: the classifier learns,
  // the body (weights and BatchNorm statistics) stays the encoder's bit for bit, and
  // `mgd eval --task linear` gives the run's last accuracy.
  const std::string moco = *dir_ / "linear_moco";
  ASSERT_EQ(mgd::testing::run(args("train", moco, {"--epochs", "1"}), {moco + ".log"}), 0)
      << read(moco + ".log");
  const std::string out = *dir_ / "linear";
  const std::vector<std::string> linear = {MGD_CLI,
                                           "train",
                                           "--task",
                                           "linear",
                                           "--arch",
                                           "resnet20",
                                           "--init-backbone",
                                           moco + "/checkpoint.pth",
                                           "--epochs",
                                           "2",
                                           "--batch-size",
                                           "16",
                                           "--train-subset",
                                           "64",
                                           "--test-subset",
                                           "32",
                                           "--threads",
                                           "1",
                                           "--workers",
                                           "0",
                                           "--seed",
                                           "3",
                                           "-o",
                                           out};
  ASSERT_EQ(mgd::testing::run(linear, {out + ".log"}), 0) << read(out + ".log");
  const auto config = read(out + "/config.yaml");
  EXPECT_NE(config.find("lr: 30"), std::string::npos) << config;  // MoCo's linear settings
  EXPECT_NE(config.find("weight_decay: 0\n"), std::string::npos) << config;
  const auto opts = mgd::serialize::LoadStateDictOptions().strip_prefix("");
  const auto mine = mgd::serialize::load_file(out + "/checkpoint.pth");
  const auto state = mgd::serialize::to_state_dict(mine.at("state_dict"), opts);
  const auto encoder = mgd::serialize::to_state_dict(
      mgd::serialize::load_file(moco + "/checkpoint.pth").at("state_dict"), opts);
  int64_t body = 0;
  for (const auto& item : state) {
    if (item.key().rfind("fc.", 0) == 0) continue;
    ++body;
    ASSERT_TRUE(encoder.contains("encoder_q." + item.key())) << item.key();
    EXPECT_TRUE(torch::equal(item.value(), encoder["encoder_q." + item.key()])) << item.key();
  }
  EXPECT_GT(body, 50);
  EXPECT_EQ(state["fc.weight"].sizes(), (std::vector<int64_t>{10, 64}));
  EXPECT_EQ(mine.at("momentum").items().size(), 2u);  // fc.weight and fc.bias alone
  const auto metrics = read(out + "/metrics.jsonl");
  const auto at = metrics.rfind("\"acc1\": ");
  ASSERT_NE(at, std::string::npos) << metrics;
  const std::string eval_log = *dir_ / "linear_eval.log";
  ASSERT_EQ(mgd::testing::run({MGD_CLI, "eval", "--task", "linear", "--arch", "resnet20",
                               "--checkpoint", out + "/checkpoint.pth", "--test-subset", "32",
                               "--batch-size", "16", "--threads", "1"},
                              {eval_log}),
            0)
      << read(eval_log);
  const auto log = read(eval_log);
  const auto top1 = log.find("top-1 ");
  ASSERT_NE(top1, std::string::npos) << log;
  EXPECT_NEAR(std::stod(log.substr(top1 + 6)), std::stod(metrics.substr(at + 8)), 0.006) << log;
  // The encoder exported as a plain ResNet body (torchvision names, no fc).
  const std::string exported = *dir_ / "encoder.pth";
  ASSERT_EQ(
      mgd::testing::run({MGD_CLI, "export", "--task", "moco", "--arch", "resnet20", "--in-channels",
                         "1", "--checkpoint", moco + "/checkpoint.pth", "-o", exported},
                        {exported + ".log"}),
      0)
      << read(exported + ".log");
  const auto plain = mgd::serialize::load_state_dict(exported);
  EXPECT_FALSE(plain.contains("fc.weight"));
  EXPECT_EQ(static_cast<int64_t>(plain.size()), body);
  EXPECT_TRUE(torch::equal(plain["layer3.2.bn2.running_mean"],
                           encoder["encoder_q.layer3.2.bn2.running_mean"]));
  // With --head: the whole query encoder under its own names (a teacher file, as the MoCo
  // demo ships one): every encoder_q.* tensor, unchanged, and nothing else.
  const std::string whole = *dir_ / "encoder_head.pth";
  ASSERT_EQ(mgd::testing::run({MGD_CLI, "export", "--task", "moco", "--head", "--moco-dim", "16",
                               "--arch", "resnet20", "--in-channels", "1", "--checkpoint",
                               moco + "/checkpoint.pth", "-o", whole},
                              {whole + ".log"}),
            0)
      << read(whole + ".log");
  const auto with_head = mgd::serialize::load_state_dict(whole);
  int64_t query = 0;
  for (const auto& item : encoder) {
    if (item.key().rfind("encoder_q.", 0) != 0) continue;
    ++query;
    const auto name = item.key().substr(10);
    ASSERT_TRUE(with_head.contains(name)) << name;
    EXPECT_TRUE(torch::equal(with_head[name], item.value())) << name;
  }
  EXPECT_EQ(static_cast<int64_t>(with_head.size()), query);
  EXPECT_EQ(with_head["fc.2.weight"].sizes(), (std::vector<int64_t>{16, 64}));

  // Without the pretrained body: one clear error.
  const std::string bad_log = *dir_ / "linear_bad.log";
  auto no_body = linear;
  no_body.erase(no_body.begin() + 6, no_body.begin() + 8);
  no_body.back() = *dir_ / "linear_bad";
  EXPECT_NE(mgd::testing::run(no_body, {bad_log}), 0);
  EXPECT_NE(read(bad_log).find("--init-backbone"), std::string::npos) << read(bad_log);
}

TEST_F(MoCoTask, BadOptionsAreOneClearError) {
  const std::string out = *dir_ / "bad";
  const std::string log = *dir_ / "bad.log";
  auto bad = args("train", out, {"--moco-bn-splits", "3"});
  EXPECT_NE(mgd::testing::run(bad, {log}), 0);
  EXPECT_NE(read(log).find("--moco-bn-splits"), std::string::npos) << read(log);
  bad = args("train", out, {"--arch", "mobilenet_v2"});
  EXPECT_NE(mgd::testing::run(bad, {log}), 0);
  EXPECT_NE(read(log).find("not a zoo ResNet"), std::string::npos) << read(log);
}

}  // namespace
