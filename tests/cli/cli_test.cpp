#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>

#include "support/synthetic_data.h"

namespace {

namespace fs = std::filesystem;

struct Result {
  int status;
  std::string output;  // stdout and stderr
};

Result mgd(const std::string& args) {
  const std::string cmd = std::string(MGD_CLI) + " " + args + " 2>&1";
  FILE* pipe = popen(cmd.c_str(), "r");
  if (!pipe) return {-1, ""};
  std::string out;
  char buf[4096];
  while (size_t n = fread(buf, 1, sizeof buf, pipe)) out.append(buf, n);
  const int status = pclose(pipe);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

// One directory per process: ctest runs these tests in parallel processes.
std::string work_dir() { return ::testing::TempDir() + "/mgd_cli_test_" + std::to_string(::getpid()); }

std::string data_dir() {
  static const std::string dir = mgd::testing::make_synthetic_fashion_mnist(work_dir() + "/data", 128, 32);
  return dir;
}

TEST(Cli, HelpForNewcomers) {
  auto r = mgd("--help");
  EXPECT_EQ(r.status, 0);
  for (const char* word : {"train", "distill", "eval", "models", "Typical use", "--config"}) {
    EXPECT_NE(r.output.find(word), std::string::npos) << word << "\n" << r.output;
  }
  r = mgd("distill --help");
  EXPECT_EQ(r.status, 0);
  for (const char* flag : {"--teacher-checkpoint", "--reducer", "--update-freq", "--tracking-images",
                           "--with-kd", "--loss-factor", "--ignore-positions", "--shave",
                           "--post-relu", "--lr-drop-epochs", "--warmup-epochs", "--resume",
                           "--device", "--threads", "--output-dir", "--evaluate"}) {
    EXPECT_NE(r.output.find(flag), std::string::npos) << flag;
  }
  r = mgd("models");
  EXPECT_EQ(r.status, 0);
  EXPECT_NE(r.output.find("resnet50"), std::string::npos);
  EXPECT_NE(r.output.find("amp"), std::string::npos);
}

TEST(Cli, EveryRecipeIsAcceptedAsItIs) {
  // Every key of every shipped recipe is an option of its command: with --epochs 0 the run
  // stops at the first check of the values, after the whole file was read.
  int recipes = 0;
  for (const auto& entry : fs::recursive_directory_iterator(std::string(MGD_SOURCE_DIR) + "/recipes")) {
    if (entry.path().extension() != ".yaml") continue;
    std::ifstream in(entry.path());
    std::stringstream text;
    text << in.rdbuf();
    const bool distill = text.str().find("\nmethod: ") != std::string::npos ||
                         text.str().find("\nteacher_arch: ") != std::string::npos;
    auto r = mgd(std::string(distill ? "distill" : "train") + " --config " + entry.path().string() +
                 " --epochs 0 -o " + work_dir() + "/recipe");
    EXPECT_EQ(r.status, 1) << entry.path() << "\n" << r.output;
    EXPECT_NE(r.output.find("Invalid epochs: 0"), std::string::npos) << entry.path() << "\n"
                                                                     << r.output;
    ++recipes;
  }
  EXPECT_GE(recipes, 8);
}

TEST(Cli, UserErrorsExitNonZeroWithOneMessage) {
  auto r = mgd("train --bogus");
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.output.find("--bogus"), std::string::npos) << r.output;
  r = mgd("distill --reducer maxpool");
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.output.find("maxpool"), std::string::npos) << r.output;
  r = mgd("distill --arch resnet20 --data-root " + data_dir());
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.output.find("needs a teacher architecture"), std::string::npos) << r.output;
  r = mgd("train --arch nosuchnet --data-root " + data_dir());
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.output.find("mgd: error: Unknown model 'nosuchnet'"), std::string::npos) << r.output;
  r = mgd("train --data-root /nonexistent/dir");
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.output.find("/nonexistent/dir"), std::string::npos) << r.output;
  r = mgd("eval --arch resnet20 --checkpoint /nonexistent.pth --data-root " + data_dir());
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.output.find("/nonexistent.pth"), std::string::npos) << r.output;
}

TEST(Cli, ConfigFileWithFlagsOverriding) {
  const auto dir = work_dir();
  fs::create_directories(dir);
  const auto cfg = dir + "/run.yaml";
  {
    std::ofstream out(cfg);
    out << "arch: resnet20\nepochs: 5\nlr: 0.02\nbatch_size: 32\naugment: false\n"
           "lr_drop_epochs: [3, 4]\nworkers: 1\n";
  }
  const auto out_dir = dir + "/run";
  auto r = mgd("train --threads 1 --config " + cfg + " --epochs 1 --data-root " + data_dir() + " -o " + out_dir);
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("final top-1"), std::string::npos) << r.output;
  std::ifstream saved(out_dir + "/config.yaml");
  std::stringstream text;
  text << saved.rdbuf();
  for (const char* line : {"epochs: 1\n", "lr: 0.02", "batch_size: 32\n", "augment: false\n",
                           "lr_drop_epochs: [3, 4]\n", "workers: 1\n"}) {
    EXPECT_NE(text.str().find(line), std::string::npos) << line << "\n" << text.str();
  }
  // The run's own config.yaml is a valid config file: it reproduces the run.
  r = mgd("train --config " + out_dir + "/config.yaml --threads 1 -o " + dir + "/rerun");
  ASSERT_EQ(r.status, 0) << r.output;
  std::ifstream rerun(dir + "/rerun/config.yaml");
  std::stringstream again;
  again << rerun.rdbuf();
  EXPECT_EQ(again.str().substr(0, again.str().find("output_dir")),
            text.str().substr(0, text.str().find("output_dir")));
  r = mgd("eval --arch resnet20 --checkpoint " + out_dir + "/checkpoint.pth --data-root " + data_dir());
  EXPECT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("top-1"), std::string::npos) << r.output;
  const auto accuracy = r.output.substr(r.output.find("top-1"));
  // export: the weights alone, as a PyTorch state_dict, evaluate the same.
  r = mgd("export --arch resnet20 --in-channels 1 --checkpoint " + out_dir + "/checkpoint.pth -o " +
          dir + "/weights.pth");
  ASSERT_EQ(r.status, 0) << r.output;
  r = mgd("eval --arch resnet20 --checkpoint " + dir + "/weights.pth --data-root " + data_dir());
  EXPECT_EQ(r.status, 0) << r.output;
  EXPECT_EQ(r.output.substr(r.output.find("top-1")), accuracy);
  {
    std::ofstream out(cfg);
    out << "epochs: 2\nbogus_key: 3\n";
  }
  r = mgd("train --config " + cfg);
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.output.find("unknown option 'bogus_key'"), std::string::npos) << r.output;
  {
    std::ofstream out(cfg);
    out << "epochs: [2\n";
  }
  r = mgd("train --config " + cfg);
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.output.find("not valid YAML"), std::string::npos) << r.output;
}

}  // namespace
