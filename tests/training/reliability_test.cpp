// Interrupted runs lose nothing (issue 6): SIGKILL at random moments, SIGINT/SIGTERM, a full
// disk and a read-only output directory, each against the `mgd` binary on a tiny MGD run.
//
// The run distils the committed Fashion-MNIST teacher (WRN-16-2) into ResNet-20 on synthetic
// Fashion-MNIST-format data with the random-drop reducer (so the RNG state must survive a
// resume), a tracking pass every 7 steps as well as before each epoch, and a checkpoint every
// 2 steps, at one thread: every resumed run must end with exactly the weights and optimizer
// state of the uninterrupted one.
#include <gtest/gtest.h>
#include <sys/mount.h>
#include <torch/torch.h>

#include <chrono>
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
    ASSERT_EQ(mgd::testing::run(args(reference_), {reference_ + ".log"}), 0) << log(reference_);
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }

  // The tiny run, writing into `out`; resumed from out/checkpoint.pth when there is one.
  // `every`: --checkpoint-every (0: at epoch ends only).
  static std::vector<std::string> args(const std::string& out, int epochs = 3, int every = 2) {
    std::vector<std::string> a = {
        MGD_CLI,
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
    }
    return a;
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

  // Waits (up to a minute) until `log` grows past `size`: the run has started.
  static void wait_for_output(const std::string& log, uintmax_t size) {
    for (int i = 0; i < 6000; ++i) {
      if (fs::exists(log) && fs::file_size(log) > size) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
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
    const auto a = mgd::serialize::load_file(reference_ + "/checkpoint.pth");
    const auto b = mgd::serialize::load_file(path);
    EXPECT_EQ(a.at("epoch").to_int(), b.at("epoch").to_int());
    EXPECT_EQ(a.at("global_step").to_int(), b.at("global_step").to_int());
    const auto sa = mgd::serialize::to_state_dict(a.at("state_dict"), {}, "reference");
    const auto sb = mgd::serialize::to_state_dict(b.at("state_dict"), {}, path);
    ASSERT_EQ(sa.size(), sb.size());
    for (const auto& item : sa) {
      ASSERT_TRUE(sb.contains(item.key())) << item.key();
      EXPECT_TRUE(torch::equal(item.value(), sb[item.key()])) << item.key();
    }
    const auto& ma = a.at("momentum").items();
    const auto& mb = b.at("momentum").items();
    ASSERT_EQ(ma.size(), mb.size());
    for (size_t i = 0; i < ma.size(); ++i) {
      ASSERT_EQ(ma[i].is_tensor(), mb[i].is_tensor()) << "momentum " << i;
      if (ma[i].is_tensor()) {
        EXPECT_TRUE(torch::equal(ma[i].to_tensor(), mb[i].to_tensor())) << i;
      }
    }
    const auto da = mgd::serialize::to_state_dict(
        a.at("distiller"), mgd::serialize::LoadStateDictOptions().strip_prefix(""), "reference");
    const auto db = mgd::serialize::to_state_dict(
        b.at("distiller"), mgd::serialize::LoadStateDictOptions().strip_prefix(""), path);
    for (const auto& item : da) {  // matchings, margins, norm layers
      ASSERT_TRUE(db.contains(item.key())) << item.key();
      EXPECT_TRUE(torch::equal(item.value(), db[item.key()])) << item.key();
    }
  }

  static mgd::testing::TempDir* dir_;
  static std::string data_, reference_;
};

mgd::testing::TempDir* Reliability::dir_ = nullptr;
std::string Reliability::data_, Reliability::reference_;

TEST_F(Reliability, KilledAtRandomMomentsAndResumedEndsAsUninterrupted) {
  const std::string out = *dir_ / "killed";
  // Kill points drawn from a fixed seed (MGD_KILL_SEED overrides it): one start in four is
  // killed 0-0.5 s after the spawn (loading, startup), the others 0-0.9 s after the run's
  // first output, whatever the machine's load: teacher evaluation, tracking passes, steps,
  // checkpoint writes (one after every step here) and evaluations are all hit. At least 24
  // kills, 16 of them with a checkpoint to resume from.
  const char* env_seed = std::getenv("MGD_KILL_SEED");
  std::mt19937 rng(env_seed ? static_cast<unsigned>(std::atoi(env_seed)) : 2020u);
  std::uniform_int_distribution<int> early_ms(0, 500), late_ms(0, 900);
  int starts = 0, kills = 0, during_write = 0, resumable = 0;
  std::set<int64_t> steps_resumed;
  while ((kills < 24 || resumable < 16) && starts < 100) {
    const auto size_before = fs::exists(out + ".log") ? fs::file_size(out + ".log") : 0;
    const pid_t pid = mgd::testing::spawn(args(out, 3, /*every=*/1), {out + ".log"});
    ASSERT_GT(pid, 0);
    if (starts++ % 4 == 0) {
      std::this_thread::sleep_for(std::chrono::milliseconds(early_ms(rng)));
    } else {
      wait_for_output(out + ".log", size_before);
      std::this_thread::sleep_for(std::chrono::milliseconds(late_ms(rng)));
    }
    ::kill(pid, SIGKILL);
    const int status = mgd::testing::wait_exit(pid);
    if (status == 0) continue;  // finished before the kill: not a kill point
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
  std::cout << "[ kills    ] " << kills << " SIGKILLs, " << during_write
            << " while a checkpoint was being written, " << resumable
            << " with a checkpoint to resume from (" << steps_resumed.size()
            << " different steps); the resumed run matched the uninterrupted one\n";
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
