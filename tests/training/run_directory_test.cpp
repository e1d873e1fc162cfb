// A run directory is never clobbered (issue 13): a second run in it is refused, a run that
// fails before its first checkpoint leaves it byte for byte as it was, --overwrite replaces
// it, --resume continues its metrics.jsonl and TensorBoard files. And the messages users see
// (warnings, the unreadable-data and non-finite-loss errors) come in one format.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "mgd/data/image.h"
#include "support/process.h"
#include "support/synthetic_data.h"
#include "support/temp_dir.h"

namespace {

namespace fs = std::filesystem;

std::string read(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// Every file of `dir` (recursively) and its bytes.
std::map<std::string, std::string> snapshot(const std::string& dir) {
  std::map<std::string, std::string> files;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    if (e.is_regular_file()) files[fs::relative(e.path(), dir).string()] = read(e.path().string());
  }
  return files;
}

int count(const std::string& text, const std::string& needle) {
  int n = 0;
  for (size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) ++n;
  return n;
}

int events_files(const std::string& dir) {
  int n = 0;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.path().filename().string().rfind("events.out.tfevents.", 0) == 0) ++n;
  }
  return n;
}

class RunDirectory : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new mgd::testing::TempDir("mgd-run-directory");
    data_ = mgd::testing::make_synthetic_fashion_mnist(*dir_ / "data", 128, 32);
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }

  struct Result {
    int status;
    std::string output;
  };
  // `mgd train` of a tiny network into `out`, plus `extra` flags.
  static Result train(const std::string& out, const std::vector<std::string>& extra,
                      int epochs = 1) {
    std::vector<std::string> a = {MGD_CLI,  "train",     "--arch",    "resnet8x4",
                                  "--data-root", data_,  "--epochs",  std::to_string(epochs),
                                  "--batch-size", "16",  "--threads", "1",
                                  "--workers", "0",      "--print-freq", "1",
                                  "-o",        out};
    a.insert(a.end(), extra.begin(), extra.end());
    const std::string log = out + ".log";
    fs::remove(log);
    const int status = mgd::testing::run(a, {log});
    return {status, read(log)};
  }

  static mgd::testing::TempDir* dir_;
  static std::string data_;
};

mgd::testing::TempDir* RunDirectory::dir_ = nullptr;
std::string RunDirectory::data_;

TEST_F(RunDirectory, ASecondRunIsRefusedAndTheFirstKeptByteForByte) {
  const std::string out = *dir_ / "twice";
  auto r = train(out, {});
  ASSERT_EQ(r.status, 0) << r.output;
  const auto before = snapshot(out);
  ASSERT_TRUE(before.count("checkpoint.pth") && before.count("config.yaml") &&
              before.count("metrics.jsonl"));
  r = train(out, {});  // the same command again
  EXPECT_EQ(r.status, 1) << r.output;
  EXPECT_EQ(count(r.output, "mgd: error: "), 1) << r.output;
  EXPECT_NE(r.output.find("The output directory '" + out + "' holds another run"),
            std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("--resume " + out + "/checkpoint.pth"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("--overwrite"), std::string::npos) << r.output;
  EXPECT_EQ(snapshot(out), before) << "the refused run changed the directory";
}

TEST_F(RunDirectory, ARunFailingBeforeItsFirstCheckpointLeavesTheDirectoryAsItWas) {
  const std::string out = *dir_ / "nonfinite";
  auto r = train(out, {});
  ASSERT_EQ(r.status, 0) << r.output;
  const auto before = snapshot(out);
  // A new run replacing it (--overwrite) diverges in its first epoch: nothing is replaced.
  r = train(out, {"--overwrite", "--lr", "1e30"});
  EXPECT_EQ(r.status, 1) << r.output;
  EXPECT_NE(r.output.find("Non-finite loss"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("No checkpoint was written; '" + out + "' is left as it was"),
            std::string::npos)
      << r.output;
  EXPECT_EQ(r.output.find("last good checkpoint"), std::string::npos) << r.output;
  EXPECT_EQ(snapshot(out), before) << "the failed run changed the directory";
  // A resumed run diverging before its first checkpoint leaves it as it was too.
  r = train(out, {"--resume", out + "/checkpoint.pth", "--lr", "1e30"}, 2);
  EXPECT_EQ(r.status, 1) << r.output;
  EXPECT_NE(r.output.find("No checkpoint was written since '" + out +
                          "/checkpoint.pth', which is kept as it was"),
            std::string::npos)
      << r.output;
  EXPECT_EQ(snapshot(out), before) << "the failed resumed run changed the directory";
}

TEST_F(RunDirectory, OverwriteReplacesTheRunAndResumeContinuesItsRecords) {
  const std::string out = *dir_ / "records";
  auto r = train(out, {});
  ASSERT_EQ(r.status, 0) << r.output;
  ASSERT_EQ(count(read(out + "/metrics.jsonl"), "\"kind\": \"eval\""), 1);
  ASSERT_EQ(events_files(out), 1);
  const auto first_events = snapshot(out);
  // --overwrite: the new run's records only (2 epochs), the old event file gone.
  r = train(out, {"--overwrite"}, 2);
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_EQ(count(read(out + "/metrics.jsonl"), "\"kind\": \"eval\""), 2);
  EXPECT_EQ(count(read(out + "/metrics.jsonl"), "\"kind\": \"summary\""), 1);
  ASSERT_EQ(events_files(out), 1);
  for (const auto& [name, bytes] : first_events) {
    if (name.rfind("events.out.tfevents.", 0) == 0) {
      EXPECT_FALSE(fs::exists(out + "/" + name));
    }
  }
  // The lines up to the last checkpoint (the summary line comes after it).
  std::string metrics_before = read(out + "/metrics.jsonl");
  ASSERT_NE(metrics_before.rfind("\"kind\": \"summary\""), std::string::npos);
  metrics_before.erase(metrics_before.rfind('\n', metrics_before.size() - 2) + 1);
  // A killed run's lines after its last checkpoint are cut on resume: simulate them.
  { std::ofstream(out + "/metrics.jsonl", std::ios::app) << "{\"kind\": \"lost\"}\n"; }
  r = train(out, {"--resume", out + "/checkpoint.pth"}, 3);
  ASSERT_EQ(r.status, 0) << r.output;
  const std::string metrics = read(out + "/metrics.jsonl");
  EXPECT_EQ(metrics.rfind(metrics_before, 0), 0u) << "the earlier lines are kept as they were";
  EXPECT_EQ(count(metrics, "\"kind\": \"eval\""), 3) << metrics;
  EXPECT_EQ(count(metrics, "\"lost\""), 0) << metrics;
  EXPECT_EQ(count(metrics, "\"kind\": \"summary\""), 1) << metrics;
  EXPECT_EQ(events_files(out), 2) << "the earlier TensorBoard file is kept, a new one added";
}

TEST_F(RunDirectory, MessagesComeInOneFormat) {
  // An image folder with one unreadable image among readable ones: one warning line, no
  // logging banner, no function names.
  const std::string root = *dir_ / "images";
  mgd::data::Image image(36, 36, 3);
  std::fill(image.data.begin(), image.data.end(), uint8_t{100});
  const auto png = mgd::data::encode_png(image);
  for (const char* split : {"train", "valid"}) {
    for (int c = 0; c < 2; ++c) {
      const auto d = fs::path(root) / split / ("class" + std::to_string(c));
      fs::create_directories(d);
      for (int i = 0; i < 4; ++i) {
        std::ofstream(d / (std::to_string(i) + ".png"), std::ios::binary)
            .write(reinterpret_cast<const char*>(png.data()), static_cast<std::streamsize>(png.size()));
      }
    }
  }
  std::ofstream(fs::path(root) / "train/class0/bad.png") << "not a PNG";
  const std::string out = *dir_ / "messages";
  std::vector<std::string> a = {MGD_CLI,       "train",    "--arch",     "resnet18",
                                "--data",      "imagefolder", "--data-root", root,
                                "--image-size", "32",      "--epochs",   "1",
                                "--batch-size", "4",       "--threads",  "1",
                                "--workers",   "0",        "-o",         out};
  ASSERT_EQ(mgd::testing::run(a, {out + ".log"}), 0) << read(out + ".log");
  std::string log = read(out + ".log");
  EXPECT_NE(log.find("mgd: warning: ImageFolder: skipping an unreadable image"),
            std::string::npos)
      << log;
  EXPECT_EQ(log.find("InitGoogleLogging"), std::string::npos) << log;
  EXPECT_EQ(log.find("(function "), std::string::npos) << log;
  // A split where every image is unreadable says so.
  const std::string bad_root = *dir_ / "unreadable";
  for (const char* split : {"train", "valid"}) {
    for (int i = 0; i < 6; ++i) {
      const auto d = fs::path(bad_root) / split / ("class" + std::to_string(i % 2));
      fs::create_directories(d);
      std::ofstream(d / (std::to_string(i) + ".png")) << "not a PNG either";
    }
  }
  a[7] = bad_root;
  a.back() = *dir_ / "messages2";
  fs::remove(out + ".log");
  EXPECT_EQ(mgd::testing::run(a, {out + ".log"}), 1);
  log = read(out + ".log");
  EXPECT_NE(log.find("mgd: error: ImageFolder: none of the 6 images in"), std::string::npos) << log;
  EXPECT_EQ(log.find("consecutive"), std::string::npos) << log;
  // The default data root is named when the batch is too large for the data set.
  fs::remove(out + ".log");
  const int status = mgd::testing::run(
      {MGD_CLI, "train", "--data", "fashion-mnist", "--batch-size", "100000000", "--threads", "1",
       "-o", *dir_ / "messages3"},
      {out + ".log"});
  log = read(out + ".log");
  if (fs::exists("/usr/share/datasets/fashion-mnist")) {
    EXPECT_EQ(status, 1) << log;
    EXPECT_NE(log.find("at '/usr/share/datasets/fashion-mnist'"), std::string::npos) << log;
    EXPECT_EQ(log.find("at ''"), std::string::npos) << log;
  }
}

}  // namespace
