// Interrupted runs lose nothing (issue 6): SIGKILL at random moments, SIGINT/SIGTERM, a full
// disk and a read-only output directory, each against the `mgd` binary on a tiny MGD run.
//
// The run distils the committed Fashion-MNIST teacher (WRN-16-2) into ResNet-20 on synthetic
// Fashion-MNIST-format data with the random-drop reducer (so the RNG state must survive a
// resume), a tracking pass every 7 steps as well as before each epoch, and a checkpoint every
// 2 steps, at one thread: every resumed run must end with exactly the weights and optimizer
// state of the uninterrupted one. MGD_TEST_CLI=path/to/mgd runs them against another build of
// `mgd` (a sanitizer build, say: the kill points follow the run's own progress, whatever its
// speed).
#include <gtest/gtest.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <torch/torch.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "mgd/serialize/checkpoint.h"
#include "mgd/serialize/state_dict.h"
#include "support/checkpoints.h"
#include "support/process.h"
#include "support/synthetic_data.h"
#include "support/temp_dir.h"

namespace {

namespace fs = std::filesystem;
using mgd::testing::SpawnOptions;

class Reliability : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new mgd::testing::TempDir("mgd-reliability");
    data_ = mgd::testing::make_synthetic_fashion_mnist(*dir_ / "data", 256, 64);
    reference_ = *dir_ / "reference";
    // The uninterrupted run, timed: how long this build on this machine takes to its first
    // checkpoint and per step afterwards. The kill test places its kills on that scale.
    const auto t0 = Clock::now();
    const pid_t pid = mgd::testing::spawn(args(reference_), {reference_ + ".log"});
    ASSERT_GT(pid, 0);
    int status = -1;
    double first_checkpoint = -1;
    while (!mgd::testing::try_wait(pid, &status)) {
      if (first_checkpoint < 0 && !file_key(reference_ + "/checkpoint.pth").empty()) {
        first_checkpoint = seconds_since(t0);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    ASSERT_EQ(status, 0) << log(reference_);
    const double total = seconds_since(t0);
    const auto steps =
        mgd::serialize::load_file(reference_ + "/checkpoint.pth").at("global_step").to_int();
    ASSERT_GT(first_checkpoint, 0);
    startup_seconds_ = first_checkpoint;
    step_seconds_ = (total - first_checkpoint) / static_cast<double>(std::max<int64_t>(1, steps));
    run_seconds_ = total;
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }

  // The tiny run, writing into `out`; resumed from out/checkpoint.pth when there is one,
  // started afresh (--overwrite) otherwise.
  // `every`: --checkpoint-every (0: at epoch ends only).
  static std::vector<std::string> args(const std::string& out, int epochs = 3, int every = 2) {
    // MGD_TEST_CLI runs these against another build of `mgd` (e.g. build-sanitize/mgd).
    const char* cli = std::getenv("MGD_TEST_CLI");
    std::vector<std::string> a = {
        cli && *cli ? std::string(cli) : std::string(MGD_CLI),
        "distill",
        "--arch",
        "resnet20",
        "--teacher-arch",
        "wrn_16_2",
        "--teacher-checkpoint",
        std::string(MGD_SOURCE_DIR) + "/recipes/fashion_mnist_teacher.pth",
        "--reducer",
        "rd",
        "--data-root",
        data_,
        "--epochs",
        std::to_string(epochs),
        "--batch-size",
        "16",
        "--lr",
        "0.05",
        "--update-iters",
        "7",
        "--tracking-images",
        "64",
        "--loss-factor",
        "1000",
        "--checkpoint-every",
        std::to_string(every),
        "--threads",
        "1",
        "--workers",
        "1",
        "--seed",
        "3",
        "--print-freq",
        "1000",
        "-o",
        out};
    if (fs::exists(out + "/checkpoint.pth")) {
      a.push_back("--resume");
      a.push_back(out + "/checkpoint.pth");
    } else {
      // A run killed while committing its first checkpoint leaves config.yaml and
      // metrics.jsonl without one: start over.
      a.push_back("--overwrite");
    }
    return a;
  }

  using Clock = std::chrono::steady_clock;
  static double seconds_since(Clock::time_point t0) {
    return std::chrono::duration<double>(Clock::now() - t0).count();
  }

  // The identity of the file at `path` ("" when there is none): a checkpoint is replaced by a
  // rename, so each write gives a new inode and modification time.
  static std::string file_key(const std::string& path) {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) return "";
    return std::to_string(st.st_ino) + ":" + std::to_string(st.st_mtim.tv_sec) + "." +
           std::to_string(st.st_mtim.tv_nsec) + ":" + std::to_string(st.st_size);
  }

  static std::string log(const std::string& out) {
    std::ifstream in(out + ".log");
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }

  static std::string bytes(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }

  static int temp_files(const std::string& out) {
    int n = 0;
    if (!fs::exists(out)) return 0;  // killed before it was created
    for (const auto& e : fs::directory_iterator(out)) {
      if (e.path().filename().string().find(".tmp.") != std::string::npos) ++n;
    }
    return n;
  }

  // Weights, buffers, optimizer state and counters of `path` equal the reference's, bit for bit.
  static void expect_same_as_reference(const std::string& path) {
    mgd::testing::expect_same_checkpoint(reference_ + "/checkpoint.pth", path);
  }

  static mgd::testing::TempDir* dir_;
  static std::string data_, reference_;
  // The uninterrupted run of this build: seconds to its first checkpoint, per step after it,
  // in all.
  static double startup_seconds_, step_seconds_, run_seconds_;
};

mgd::testing::TempDir* Reliability::dir_ = nullptr;
std::string Reliability::data_, Reliability::reference_;
double Reliability::startup_seconds_ = 0, Reliability::step_seconds_ = 0,
       Reliability::run_seconds_ = 0;

TEST_F(Reliability, KilledAtRandomMomentsAndResumedEndsAsUninterrupted) {
  const std::string out = *dir_ / "killed";
  // Kill points follow the run's own progress, not the clock, so the verdict does not depend
  // on the machine's speed (sanitizers, a slow VM): one start in four is killed at a random
  // moment before its first checkpoint would be written (startup, loading, the teacher's
  // evaluation, a tracking pass -- timed on the uninterrupted run of this build); the others
  // once the run has written a new checkpoint, plus up to two steps (the kill then lands in
  // a step, a tracking pass, an evaluation or the next checkpoint write; one is written after
  // every step here). Kill points come from a fixed seed (MGD_KILL_SEED overrides it). At
  // least 24 kills, 16 of them with a checkpoint to resume from. Should a run finish before
  // that, it is checked and the next one starts afresh.
  const char* env_seed = std::getenv("MGD_KILL_SEED");
  std::mt19937 rng(env_seed ? static_cast<unsigned>(std::atoi(env_seed)) : 2020u);
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  // Waits for a new checkpoint time out at many times the uninterrupted run's length.
  const double patience = std::max(120.0, 20.0 * run_seconds_);
  int starts = 0, kills = 0, during_write = 0, resumable = 0, finished = 0;
  std::set<int64_t> steps_resumed;
  while ((kills < 24 || resumable < 16) && starts < 100) {
    const std::string before = file_key(out + "/checkpoint.pth");
    const auto t0 = Clock::now();
    const pid_t pid = mgd::testing::spawn(args(out, 3, /*every=*/1), {out + ".log"});
    ASSERT_GT(pid, 0);
    int status = -1;
    bool ended = false;
    if (starts++ % 4 == 0) {
      const double at = unit(rng) * startup_seconds_;
      while (!(ended = mgd::testing::try_wait(pid, &status)) && seconds_since(t0) < at) {
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
      }
    } else {
      while (!(ended = mgd::testing::try_wait(pid, &status)) &&
             file_key(out + "/checkpoint.pth") == before) {
        ASSERT_LT(seconds_since(t0), patience) << "no new checkpoint\n" << log(out);
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
      }
      const auto t1 = Clock::now();
      const double at = unit(rng) * 2.0 * step_seconds_;
      while (!ended && !(ended = mgd::testing::try_wait(pid, &status)) && seconds_since(t1) < at) {
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
      }
    }
    if (!ended) {
      ::kill(pid, SIGKILL);
      status = mgd::testing::wait_exit(pid);
    }
    if (status == 0) {  // finished before the kill: check it, then start again from nothing
      ++finished;
      expect_same_as_reference(out + "/checkpoint.pth");
      fs::remove_all(out);
      fs::remove(out + ".log");
      continue;
    }
    ASSERT_EQ(status, 128 + SIGKILL) << log(out);
    ++kills;
    if (temp_files(out) > 0) ++during_write;
    if (!fs::exists(out + "/checkpoint.pth")) continue;
    ++resumable;
    // Never a half-written checkpoint under the final name: it always parses.
    try {
      steps_resumed.insert(
          mgd::serialize::load_file(out + "/checkpoint.pth").at("global_step").to_int());
    } catch (const std::exception& e) {
      ADD_FAILURE() << "after kill " << kills << ": " << e.what();
    }
  }
  EXPECT_GE(kills, 24);
  EXPECT_GE(resumable, 16);
  ASSERT_EQ(mgd::testing::run(args(out, 3, 1), {out + ".log"}), 0) << log(out);
  EXPECT_EQ(temp_files(out), 0) << "stale temporary files are removed on resume";
  expect_same_as_reference(out + "/checkpoint.pth");
  std::cout << "[ kills    ] " << kills << " SIGKILLs in " << starts << " starts, " << during_write
            << " while a checkpoint was being written, " << resumable
            << " with a checkpoint to resume from (" << steps_resumed.size()
            << " different steps), " << finished
            << " runs finished first; the resumed run matched the uninterrupted one (which "
               "took "
            << run_seconds_ << " s, " << startup_seconds_ << " s to its first checkpoint, "
            << step_seconds_ << " s per step after it)\n";
  RecordProperty("kills", kills);
  RecordProperty("kills_during_checkpoint_write", during_write);
}

TEST_F(Reliability, SigintAndSigtermWriteACheckpointAndSayHowToResume) {
  const std::string out = *dir_ / "signalled";
  int stops = 0;
  // Each signal comes once the run has started (its first output: the handlers are in place;
  // a signal before that ends the process before it has anything to save), then after a delay
  // that lands in a tracking pass, a step or an evaluation.
  for (const auto& [signal, delay_ms] :
       {std::pair<int, int>{SIGINT, 0}, {SIGTERM, 300}, {SIGINT, 650}, {SIGTERM, 150}}) {
    const auto size_before = fs::exists(out + ".log") ? fs::file_size(out + ".log") : 0;
    const pid_t pid = mgd::testing::spawn(args(out), {out + ".log"});
    ASSERT_GT(pid, 0);
    for (int i = 0;
         i < 6000 && (!fs::exists(out + ".log") || fs::file_size(out + ".log") == size_before);
         ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
    ::kill(pid, signal);
    const int status = mgd::testing::wait_exit(pid);
    if (status == 0) break;  // finished first
    ++stops;
    EXPECT_EQ(status, 128 + signal) << log(out);
    const auto text = log(out);
    EXPECT_NE(text.find(signal == SIGINT ? "Stopped by SIGINT" : "Stopped by SIGTERM"),
              std::string::npos)
        << text;
    EXPECT_NE(text.find("Resume with: mgd distill --config " + out + "/config.yaml --resume " +
                        out + "/checkpoint.pth"),
              std::string::npos)
        << text;
    ASSERT_TRUE(fs::exists(out + "/checkpoint.pth"));
    EXPECT_NO_THROW(mgd::serialize::load_file(out + "/checkpoint.pth"));
    EXPECT_EQ(temp_files(out), 0);
  }
  EXPECT_GE(stops, 3);
  ASSERT_EQ(mgd::testing::run(args(out), {out + ".log"}), 0) << log(out);
  expect_same_as_reference(out + "/checkpoint.pth");
}

// After one good epoch, the second epoch's checkpoint cannot be written: the run must stop
// with a message naming the file, and leave the first checkpoint exactly as it was.
void expect_write_failure_keeps_checkpoint(const std::string& out, const std::string& log_text,
                                           int status, const std::string& before) {
  EXPECT_EQ(status, 1) << log_text;
  EXPECT_NE(log_text.find("Cannot write the checkpoint '" + out + "/checkpoint.pth'"),
            std::string::npos)
      << log_text;
  EXPECT_NE(log_text.find("is intact"), std::string::npos) << log_text;
  std::ifstream in(out + "/checkpoint.pth", std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  EXPECT_TRUE(s.str() == before) << "the previous checkpoint changed";
  EXPECT_NO_THROW(mgd::serialize::load_file(out + "/checkpoint.pth"));
}

TEST_F(Reliability, FullDiskKeepsThePreviousCheckpoint) {
  // A file-size limit: what a full disk does to a write, without privileges.
  const std::string out = *dir_ / "fsize";
  const auto first = args(out, 1, /*every=*/0);
  ASSERT_EQ(mgd::testing::run(first, {out + ".log"}), 0) << log(out);
  const auto before = bytes(out + "/checkpoint.pth");
  ASSERT_GT(before.size(), 600000u);
  SpawnOptions limited{out + ".log", /*file_size_limit=*/512 * 1024};
  const int status = mgd::testing::run(args(out, 2, /*every=*/0), limited);
  expect_write_failure_keeps_checkpoint(out, log(out), status, before);
  EXPECT_EQ(temp_files(out), 0) << "the partial temporary file is removed";
}

// A real small filesystem: tmpfs (needs CAP_SYS_ADMIN; skipped without it).
class MountedDir {
 public:
  MountedDir(const std::string& path, const std::string& size) : path_(path) {
    fs::create_directories(path);
    const std::string opts = "size=" + size;
    mounted_ = ::mount("tmpfs", path.c_str(), "tmpfs", 0, opts.c_str()) == 0;
  }
  ~MountedDir() {
    if (mounted_) ::umount2(path_.c_str(), MNT_DETACH);
  }
  bool mounted() const { return mounted_; }
  bool remount_read_only() {
    return ::mount("tmpfs", path_.c_str(), "tmpfs", MS_REMOUNT | MS_RDONLY, nullptr) == 0;
  }

 private:
  std::string path_;
  bool mounted_ = false;
};

TEST_F(Reliability, FullTmpfsKeepsThePreviousCheckpoint) {
  const std::string mnt = *dir_ / "small-disk";
  // Room for one checkpoint (about 2.3 MB; best.pth is a hard link to it) and the logs, not
  // for the temporary second one.
  MountedDir disk(mnt, "3500k");
  if (!disk.mounted()) GTEST_SKIP() << "cannot mount a tmpfs here (needs CAP_SYS_ADMIN)";
  const std::string out = mnt + "/run";
  const auto first = args(out, 1, /*every=*/0);
  ASSERT_EQ(mgd::testing::run(first, {*dir_ / "tmpfs.log"}), 0) << bytes(*dir_ / "tmpfs.log");
  const auto before = bytes(out + "/checkpoint.pth");
  const int status = mgd::testing::run(args(out, 2, 0), {*dir_ / "tmpfs.log"});
  expect_write_failure_keeps_checkpoint(out, bytes(*dir_ / "tmpfs.log"), status, before);
  EXPECT_NE(bytes(*dir_ / "tmpfs.log").find("No space left on device"), std::string::npos);
  EXPECT_EQ(temp_files(out), 0);
}

TEST_F(Reliability, ReadOnlyOutputDirectoryIsReportedBeforeTraining) {
  const std::string mnt = *dir_ / "read-only";
  MountedDir disk(mnt, "8m");
  const std::string out = (disk.mounted() ? mnt : *dir_ / "read-only-chmod") + "/run";
  const auto first = args(out, 1, /*every=*/0);
  ASSERT_EQ(mgd::testing::run(first, {*dir_ / "ro.log"}), 0) << bytes(*dir_ / "ro.log");
  const auto before = bytes(out + "/checkpoint.pth");
  if (disk.mounted()) {
    ASSERT_TRUE(disk.remount_read_only());
  } else {
    if (::geteuid() == 0)
      GTEST_SKIP() << "root without CAP_SYS_ADMIN: no way to make a read-only dir";
    fs::permissions(out, fs::perms::owner_read | fs::perms::owner_exec);
  }
  const int status = mgd::testing::run(args(out, 2, 0), {*dir_ / "ro.log"});
  const auto text = bytes(*dir_ / "ro.log");
  if (!disk.mounted()) fs::permissions(out, fs::perms::owner_all);
  EXPECT_EQ(status, 1) << text;
  EXPECT_NE(text.find("The output directory '" + out + "' is not writable"), std::string::npos)
      << text;
  EXPECT_EQ(bytes(out + "/checkpoint.pth"), before);
}

}  // namespace
