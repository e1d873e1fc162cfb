// Data-parallel training (spec 8): rendezvous from the launchers' environments, the shared
// matching, gradient averaging against a single process, and failures.
//
// Multi-process cases start ranks as separate processes on loopback: either the `mgd` binary
// (MGD_CLI) or this test binary in "child mode" (DistributedChild.Run with MGD_DIST_CHILD set,
// skipped otherwise). Every case takes its own free port, so ctest -j runs them side by side.
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <torch/torch.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <thread>

#include "mgd/data/dataset.h"
#include "mgd/data/loader.h"
#include "mgd/distiller/distiller.h"
#include "mgd/distributed/communicator.h"
#include "mgd/distributed/data_parallel.h"
#include "mgd/distributed/environment.h"
#include "mgd/distributed/launch.h"
#include "mgd/models/registry.h"
#include "mgd/serialize/checkpoint.h"
#include "mgd/serialize/state_dict.h"
#include "mgd/training/checkpoint.h"
#include "mgd/training/engine.h"
#include "support/checkpoints.h"
#include "support/synthetic_data.h"
#include "support/toy_nets.h"

extern char** environ;

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using Env = std::map<std::string, std::string>;

std::string work_dir() {
  return ::testing::TempDir() + "/mgd_distributed_test_" + std::to_string(::getpid());
}

std::string data_dir() {
  static const std::string dir =
      mgd::testing::make_synthetic_fashion_mnist(work_dir() + "/data", 128, 40);
  return dir;
}

// Starts argv[0] with the current environment minus the launchers' variables, plus `env`;
// stdout and stderr go to `log`.
pid_t spawn(const std::vector<std::string>& args, const Env& env, const std::string& log) {
  std::vector<std::string> vars;
  for (char** e = environ; *e; ++e) {
    const std::string kv = *e;
    const auto key = kv.substr(0, kv.find('='));
    if (env.count(key) || key == "RANK" || key == "WORLD_SIZE" || key == "LOCAL_RANK" ||
        key.rfind("SLURM_", 0) == 0 || key.rfind("OMPI_", 0) == 0 || key == "MGD_DIST_CHILD") {
      continue;
    }
    vars.push_back(kv);
  }
  for (const auto& [k, v] : env) vars.push_back(k + "=" + v);
  std::vector<char*> argv, envp;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  for (auto& v : vars) envp.push_back(const_cast<char*>(v.c_str()));
  envp.push_back(nullptr);
  const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(fd, 1);
    ::dup2(fd, 2);
    ::execve(argv[0], argv.data(), envp.data());
    ::_exit(127);
  }
  ::close(fd);
  return pid;
}

// Exit status of `pid`, or -1 (after killing it) when it runs longer than `timeout_s`.
int wait_exit(pid_t pid, double timeout_s, double* seconds = nullptr) {
  const auto t0 = Clock::now();
  while (true) {
    int status = 0;
    if (::waitpid(pid, &status, WNOHANG) == pid) {
      if (seconds) *seconds = std::chrono::duration<double>(Clock::now() - t0).count();
      return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    }
    if (std::chrono::duration<double>(Clock::now() - t0).count() > timeout_s) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      return -1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

std::string read(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

Env rank_env(int rank, int world, int port) {
  return {{"RANK", std::to_string(rank)},
          {"WORLD_SIZE", std::to_string(world)},
          {"LOCAL_RANK", std::to_string(rank)},
          {"MASTER_ADDR", "127.0.0.1"},
          {"MASTER_PORT", std::to_string(port)}};
}

std::string self_exe() {
  return fs::read_symlink("/proc/self/exe").string();
}

// Runs `world` ranks of this binary's child mode `scenario`; returns their exit statuses.
std::vector<int> run_children(const std::string& scenario, int world, const Env& extra,
                              const std::string& dir, double timeout_s = 60) {
  fs::create_directories(dir);
  const int port = mgd::distributed::free_port();
  std::vector<pid_t> pids;
  for (int r = 0; r < world; ++r) {
    Env env = rank_env(r, world, port);
    env["MGD_DIST_CHILD"] = scenario;
    env["MGD_DIST_DIR"] = dir;
    for (const auto& [k, v] : extra) env[k] = v;
    pids.push_back(spawn({self_exe(), "--gtest_filter=DistributedChild.Run"}, env,
                         dir + "/rank" + std::to_string(r) + ".log"));
  }
  std::vector<int> codes;
  for (pid_t p : pids) codes.push_back(wait_exit(p, timeout_s));
  return codes;
}

// --- the two workloads run in child mode and, for reference, in this process ---

mgd::Distiller toy_distiller() {
  torch::manual_seed(0);
  auto teacher = mgd::testing::ToyNet(std::vector<mgd::testing::ToyLayer>{{16, 1}, {32, 2}});
  auto student = mgd::testing::ToyNet(std::vector<mgd::testing::ToyLayer>{{8, 1}, {16, 2}});
  teacher->eval();
  return mgd::Distiller(teacher, student, mgd::DistillerOptions());
}

torch::Tensor tracking_images() {
  auto gen = at::detail::createCPUGenerator(7);
  return torch::randn({30, 1, 12, 12}, gen);
}

// Rank r of w tracks images r, r + w, ... in batches of 4 (w = 1: all of them).
std::vector<torch::Tensor> matching_of_shard(mgd::Distiller& d,
                                             mgd::distributed::Communicator& comm) {
  auto images = tracking_images();
  auto mine = images.index_select(
      0, torch::arange(comm.rank(), images.size(0), comm.world_size(), torch::kLong));
  d->reset_tracking();
  for (int64_t i = 0; i < mine.size(0); i += 4)
    d->track(mine.narrow(0, i, std::min<int64_t>(4, mine.size(0) - i)));
  mgd::distributed::synchronize_matching(d, comm);
  std::vector<torch::Tensor> out;
  for (int64_t i : d->guided_positions()) out.push_back(d->matching(i).clone());
  out.push_back(d->tracked_count().clone());
  return out;
}

// A network without BatchNorm, so a per-rank batch of b trains exactly like a batch of 2b.
class NoNormNetImpl : public mgd::FeatureNetImpl {
 public:
  explicit NoNormNetImpl(const mgd::models::ModelOptions& o) {
    conv_ = register_module(
        "conv", torch::nn::Conv2d(torch::nn::Conv2dOptions(o.in_channels(), 6, 5).stride(3)));
    fc_ = register_module("fc", torch::nn::Linear(6 * 8 * 8, o.classes()));
  }
  mgd::Features extract(const torch::Tensor& input) override {
    mgd::Features f;
    auto pre = conv_->forward(input);
    auto x = torch::relu(pre);
    f.pre_relu.push_back(pre);
    f.post_relu.push_back(x);
    f.logits = fc_->forward(x.flatten(1));
    return f;
  }
  std::vector<torch::nn::BatchNorm2d> feature_norms() override { return {}; }

 private:
  torch::nn::Conv2d conv_{nullptr};
  torch::nn::Linear fc_{nullptr};
};
TORCH_MODULE(NoNormNet);

mgd::training::TrainOptions no_norm_training(const std::string& out, int64_t batch) {
  mgd::models::register_model("test_no_norm", [](const mgd::models::ModelOptions& o) {
    return mgd::FeatureNet(NoNormNet(o).ptr());
  });
  mgd::training::TrainOptions o;
  o.arch = "test_no_norm";
  o.data_root = data_dir();
  o.epochs = 2;
  o.batch_size = batch;
  o.lr = 0.05;
  o.workers = 0;
  o.threads = 1;
  o.seed = 5;
  o.augment = true;  // per-sample augmentation depends on (seed, epoch, sample) alone
  o.output_dir = out;
  o.dist_timeout = 30;
  return o;
}

std::map<std::string, torch::Tensor> weights_of(const std::string& checkpoint) {
  mgd::models::ModelOptions mo;
  mo.classes(10).in_channels(1);
  NoNormNet net(mo);
  mgd::training::load_weights(checkpoint, *net);
  std::map<std::string, torch::Tensor> w;
  for (const auto& p : net->named_parameters()) w[p.key()] = p.value().clone();
  return w;
}

}  // namespace

// Child mode: what one rank of a multi-process case does (skipped in a normal run).
TEST(DistributedChild, Run) {
  const char* scenario = std::getenv("MGD_DIST_CHILD");
  if (!scenario) GTEST_SKIP() << "runs only as a rank started by the other tests";
  const std::string dir = std::getenv("MGD_DIST_DIR");
  const auto world = mgd::distributed::detect_world();
  if (std::string(scenario) == "matching") {
    torch::set_num_threads(1);
    auto comm = mgd::distributed::Communicator::create(
        world, mgd::distributed::CommunicatorOptions().timeout_seconds(30));
    auto d = toy_distiller();
    torch::save(matching_of_shard(d, *comm),
                dir + "/matching" + std::to_string(world.rank) + ".pt");
  } else if (std::string(scenario) == "train") {
    const int64_t batch = std::stoll(std::getenv("MGD_DIST_BATCH"));
    mgd::training::run_training(no_norm_training(dir + "/run", batch));
  } else {
    FAIL() << "unknown scenario " << scenario;
  }
}

TEST(DistributedEnvironment, ReadsTheLaunchers) {
  auto from = [](Env env) {
    return mgd::distributed::detect_world([env](const char* name) -> const char* {
      auto it = env.find(name);
      return it == env.end() ? nullptr : it->second.c_str();
    });
  };
  auto none = from({});
  EXPECT_EQ(none.world_size, 1);
  EXPECT_FALSE(none.distributed());
  auto tr = from({{"RANK", "1"},
                  {"WORLD_SIZE", "4"},
                  {"LOCAL_RANK", "1"},
                  {"MASTER_ADDR", "10.0.0.2"},
                  {"MASTER_PORT", "1234"}});
  EXPECT_EQ(tr.source, "torchrun");
  EXPECT_EQ(tr.rank, 1);
  EXPECT_EQ(tr.world_size, 4);
  EXPECT_EQ(tr.master_addr, "10.0.0.2");
  EXPECT_EQ(tr.master_port, 1234);
  auto slurm = from({{"SLURM_PROCID", "3"},
                     {"SLURM_NTASKS", "8"},
                     {"SLURM_LOCALID", "1"},
                     {"SLURM_JOB_NODELIST", "gpu[07-09,12],cpu1"}});
  EXPECT_EQ(slurm.source, "slurm");
  EXPECT_EQ(slurm.rank, 3);
  EXPECT_EQ(slurm.local_rank, 1);
  EXPECT_EQ(slurm.master_addr, "gpu07");
  EXPECT_EQ(slurm.master_port, 29500);
  auto mpi = from({{"OMPI_COMM_WORLD_RANK", "2"},
                   {"OMPI_COMM_WORLD_SIZE", "3"},
                   {"OMPI_COMM_WORLD_LOCAL_RANK", "0"},
                   {"MASTER_ADDR", "h"}});
  EXPECT_EQ(mpi.source, "openmpi");
  EXPECT_EQ(mpi.rank, 2);
  EXPECT_EQ(mpi.master_addr, "h");
  EXPECT_EQ(mgd::distributed::first_slurm_host("a,b"), "a");
  EXPECT_EQ(mgd::distributed::first_slurm_host("n[1-2]-ib"), "n1-ib");
  auto error = [&](Env env) {
    try {
      from(env);
    } catch (const c10::Error& e) {
      return std::string(e.what_without_backtrace());
    }
    return std::string();
  };
  EXPECT_NE(error({{"RANK", "2"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", "a"}, {"MASTER_PORT", "1"}})
                .find("RANK=2 is not below WORLD_SIZE=2"),
            std::string::npos);
  EXPECT_NE(error({{"RANK", "x"}, {"WORLD_SIZE", "2"}}).find("RANK='x'"), std::string::npos);
  EXPECT_NE(error({{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"MASTER_PORT", "1"}}).find("MASTER_ADDR"),
            std::string::npos);
}

TEST(DistributedLoader, UnpaddedShardsCoverEverySampleOnce) {
  auto set =
      mgd::data::make_dataset(mgd::data::DatasetOptions("fashion-mnist", data_dir()).split("test"));
  for (int64_t w : {2, 3}) {
    std::vector<int64_t> all;
    for (int64_t r = 0; r < w; ++r) {
      mgd::data::Loader loader(
          set, mgd::data::LoaderOptions().rank(r).world_size(w).pad(false).max_samples(31));
      auto mine = loader.epoch_indices();
      EXPECT_EQ(static_cast<int64_t>(mine.size()), loader.num_samples());
      all.insert(all.end(), mine.begin(), mine.end());
    }
    mgd::data::Loader single(set, mgd::data::LoaderOptions().max_samples(31));
    auto expected = single.epoch_indices();
    std::sort(all.begin(), all.end());
    std::sort(expected.begin(), expected.end());
    EXPECT_EQ(all, expected) << "world " << w;
  }
}

// Spec 8: each rank tracks its own shard; the sums are all-reduced, rank 0 solves and
// broadcasts. Every rank then holds the matching a single process finds over all images.
TEST(DistributedMatching, IdenticalOnEveryRankAndEqualToOneProcess) {
  auto single_comm = mgd::distributed::Communicator::create({});
  auto d = toy_distiller();
  const auto expected = matching_of_shard(d, *single_comm);
  for (int world : {2, 3}) {
    const auto dir = work_dir() + "/matching" + std::to_string(world);
    const auto codes = run_children("matching", world, {}, dir);
    for (int r = 0; r < world; ++r) {
      ASSERT_EQ(codes[r], 0) << read(dir + "/rank" + std::to_string(r) + ".log");
      std::vector<torch::Tensor> got;
      torch::load(got, dir + "/matching" + std::to_string(r) + ".pt");
      ASSERT_EQ(got.size(), expected.size());
      for (size_t i = 0; i < got.size(); ++i) {
        EXPECT_TRUE(torch::equal(got[i], expected[i]))
            << "world " << world << " rank " << r << " entry " << i;
      }
    }
  }
}

// World size 2 with batch b ends where one process with batch 2b does: rank r's batch k is
// the even/odd positions of the single process's batch k (the Loader's DistributedSampler
// order), the losses are batch means, and the network has no BatchNorm.
TEST(DistributedTraining, TwoRanksMatchOneProcessWithTwiceTheBatch) {
  const auto dir = work_dir() + "/train";
  auto single = no_norm_training(dir + "/single", 16);
  single.print_freq = 100;
  mgd::training::run_training(single);
  const auto codes = run_children("train", 2, {{"MGD_DIST_BATCH", "8"}}, dir + "/two");
  for (int r = 0; r < 2; ++r)
    ASSERT_EQ(codes[r], 0) << read(dir + "/two/rank" + std::to_string(r) + ".log");
  const auto a = weights_of(dir + "/single/checkpoint.pth");
  const auto b = weights_of(dir + "/two/run/checkpoint.pth");
  ASSERT_EQ(a.size(), b.size());
  for (const auto& [name, w] : a) {
    EXPECT_LT((w - b.at(name)).abs().max().item<double>(), 1e-4) << name;
  }
  // Rank 0 alone wrote the run.
  EXPECT_TRUE(fs::exists(dir + "/two/run/metrics.jsonl"));
}

// --- the command line: launch, resume on another world size, failures ---

std::vector<std::string> cli_train(const std::string& out, int epochs, double timeout) {
  return {MGD_CLI,
          "train",
          "--arch",
          "resnet8x4",
          "--data-root",
          data_dir(),
          "--epochs",
          std::to_string(epochs),
          "--batch-size",
          "16",
          "--threads",
          "1",
          "--workers",
          "0",
          "--no-augment",
          "-o",
          out,
          "--dist-timeout",
          std::to_string(timeout)};
}

TEST(DistributedCli, LaunchTrainsAndResumesOnAnotherWorldSize) {
  const auto dir = work_dir() + "/launch";
  fs::create_directories(dir);
  std::vector<std::string> args = {MGD_CLI, "launch", "--nproc-per-node", "2", "--"};
  auto train = cli_train(dir + "/run", 1, 30);
  args.insert(args.end(), train.begin() + 1, train.end());
  int code = wait_exit(spawn(args, {}, dir + "/launch.log"), 120);
  const auto log = read(dir + "/launch.log");
  ASSERT_EQ(code, 0) << log;
  EXPECT_NE(log.find("final top-1"), std::string::npos) << log;
  EXPECT_EQ(log.find("final top-1"), log.rfind("final top-1")) << "only rank 0 reports\n" << log;
  ASSERT_TRUE(fs::exists(dir + "/run/checkpoint.pth"));
  // Resume the world-size-2 checkpoint in one process for a second epoch.
  auto resume = cli_train(dir + "/run", 2, 30);
  resume.push_back("--resume");
  resume.push_back(dir + "/run/checkpoint.pth");
  code = wait_exit(spawn(resume, {}, dir + "/resume.log"), 120);
  ASSERT_EQ(code, 0) << read(dir + "/resume.log");
  EXPECT_NE(read(dir + "/resume.log").find("(2 epochs"), std::string::npos)
      << read(dir + "/resume.log");
}

TEST(DistributedCli, LaunchForwardsAFailureAndStopsTheOthers) {
  const auto dir = work_dir() + "/launch_fail";
  fs::create_directories(dir);
  double seconds = 0;
  const int code = wait_exit(spawn({MGD_CLI, "launch", "--nproc-per-node", "2", "--", "/bin/sh",
                                    "-c", "if [ \"$RANK\" = 1 ]; then exit 3; fi; sleep 60"},
                                   {}, dir + "/log"),
                             30, &seconds);
  EXPECT_EQ(code, 3) << read(dir + "/log");
  EXPECT_LT(seconds, 20);
}

TEST(DistributedFailure, KilledRankMakesTheOtherExitWithinTheTimeout) {
  const auto dir = work_dir() + "/kill";
  fs::create_directories(dir);
  const int port = mgd::distributed::free_port();
  const double timeout = 10;
  const auto args = cli_train(dir + "/run", 50, timeout);
  const pid_t r0 = spawn(args, rank_env(0, 2, port), dir + "/rank0.log");
  const pid_t r1 = spawn(args, rank_env(1, 2, port), dir + "/rank1.log");
  // Let them rendezvous and train a little, then kill rank 1.
  const auto t0 = Clock::now();
  while (read(dir + "/run/metrics.jsonl").empty() && Clock::now() - t0 < std::chrono::seconds(40)) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ::kill(r1, SIGKILL);
  ::waitpid(r1, nullptr, 0);
  double seconds = 0;
  const int code = wait_exit(r0, timeout + 20, &seconds);
  const auto log = read(dir + "/rank0.log");
  EXPECT_NE(code, 0) << log;
  EXPECT_NE(code, -1) << "rank 0 still ran " << timeout + 20 << " s after rank 1 died\n" << log;
  EXPECT_NE(log.find("Distributed"), std::string::npos) << log;
}

TEST(DistributedFailure, RendezvousErrorsAreClear) {
  const auto dir = work_dir() + "/rendezvous";
  fs::create_directories(dir);
  // A port in use on rank 0.
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(::listen(fd, 1), 0);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  const int busy = ntohs(addr.sin_port);
  int code =
      wait_exit(spawn(cli_train(dir + "/a", 1, 3), rank_env(0, 2, busy), dir + "/busy.log"), 30);
  ::close(fd);
  EXPECT_EQ(code, 1);
  EXPECT_NE(read(dir + "/busy.log")
                .find("cannot serve the rendezvous on 127.0.0.1:" + std::to_string(busy)),
            std::string::npos)
      << read(dir + "/busy.log");
  // No master at all.
  const int nobody = mgd::distributed::free_port();
  code = wait_exit(spawn(cli_train(dir + "/b", 1, 2), rank_env(1, 2, nobody), dir + "/nobody.log"),
                   30);
  EXPECT_EQ(code, 1);
  EXPECT_NE(read(dir + "/nobody.log")
                .find("Cannot reach the rendezvous server (rank 0) at 127.0.0.1:" +
                      std::to_string(nobody)),
            std::string::npos)
      << read(dir + "/nobody.log");
  // Ranks that disagree on the world size.
  const int port = mgd::distributed::free_port();
  const pid_t r0 = spawn(cli_train(dir + "/c", 1, 4), rank_env(0, 2, port), dir + "/ws0.log");
  const pid_t r1 = spawn(cli_train(dir + "/c", 1, 4), rank_env(1, 3, port), dir + "/ws1.log");
  EXPECT_EQ(wait_exit(r1, 30), 1);
  EXPECT_EQ(wait_exit(r0, 30), 1);
  EXPECT_NE(read(dir + "/ws1.log")
                .find("World size mismatch: rank 1 was started with 3 processes "
                      "but rank 0 at 127.0.0.1:" +
                      std::to_string(port) + " with 2"),
            std::string::npos)
      << read(dir + "/ws1.log");
  EXPECT_NE(read(dir + "/ws0.log").find("Only 1 of 2 processes joined"), std::string::npos)
      << read(dir + "/ws0.log");
}

// --- torchrun as the README documents it, and signals while waiting on other ranks ---

namespace torchrun {

bool available() {
  return std::system("/usr/bin/python3 -c 'import torch.distributed.run' >/dev/null 2>&1") == 0;
}

std::vector<std::string> distill_args(const std::string& out) {
  return {"distill",
          "--arch",
          "resnet20",
          "--teacher-arch",
          "wrn_16_2",
          "--teacher-checkpoint",
          std::string(MGD_SOURCE_DIR) + "/recipes/fashion_mnist_teacher.pth",
          "--data-root",
          data_dir(),
          "--epochs",
          "1",
          "--batch-size",
          "16",
          "--tracking-images",
          "64",
          "--update-iters",
          "2",
          "--threads",
          "1",
          "--workers",
          "0",
          "--seed",
          "5",
          "--dist-timeout",
          "60",
          "-o",
          out};
}

// True once `pid` catches SIGTERM (mgd has installed its stop handlers).
bool catches_sigterm(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("SigCgt:", 0) == 0) {
      const unsigned long long mask = std::stoull(line.substr(7), nullptr, 16);
      return (mask >> (SIGTERM - 1)) & 1ULL;
    }
  }
  return false;
}

void wait_for_handlers(pid_t pid) {
  const auto t0 = Clock::now();
  while (!catches_sigterm(pid) && Clock::now() - t0 < std::chrono::seconds(60)) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

}  // namespace torchrun

TEST(DistributedCli, TorchrunInBothRendezvousModesEqualsMgdLaunch) {
  if (!torchrun::available()) GTEST_SKIP() << "/usr/bin/python3 has no torch.distributed.run";
  const auto dir = work_dir() + "/torchrun";
  fs::create_directories(dir);
  const auto mgd_args = [&](const std::string& out) { return torchrun::distill_args(dir + out); };
  // mgd's own launcher.
  std::vector<std::string> launch = {MGD_CLI, "launch", "--nproc-per-node", "2", "--master-port",
                                     std::to_string(mgd::distributed::free_port()), "--"};
  for (const auto& a : mgd_args("/launch")) launch.push_back(a);
  ASSERT_EQ(wait_exit(spawn(launch, {}, dir + "/launch.log"), 300), 0) << read(dir + "/launch.log");
  // Debian's torchrun (flags with underscores), its default static rendezvous: the launcher
  // serves the store itself (TORCHELASTIC_USE_AGENT_STORE=True). Its default "--redirects 0
  // --tee 0" crashes the launcher on Python 3.11 (an IntFlag change PyTorch 1.13 predates);
  // "2" (stderr to a file, teed back to the console) is the spelling that runs.
  std::vector<std::string> fixed = {"/usr/bin/python3", "-m", "torch.distributed.run",
                                    "--redirects", "2", "--tee", "2",
                                    "--no_python", "--nproc_per_node", "2", "--master_port",
                                    std::to_string(mgd::distributed::free_port()), MGD_CLI};
  for (const auto& a : mgd_args("/static")) fixed.push_back(a);
  ASSERT_EQ(wait_exit(spawn(fixed, {}, dir + "/static.log"), 300), 0) << read(dir + "/static.log");
  // --standalone: the c10d rendezvous backend; rank 0 serves the workers' store.
  std::vector<std::string> standalone = {"/usr/bin/python3", "-m", "torch.distributed.run",
                                         "--redirects", "2", "--tee", "2",
                                         "--no_python", "--standalone", "--nproc_per_node", "2",
                                         MGD_CLI};
  for (const auto& a : mgd_args("/c10d")) standalone.push_back(a);
  ASSERT_EQ(wait_exit(spawn(standalone, {}, dir + "/c10d.log"), 300), 0)
      << read(dir + "/c10d.log");
  for (const char* run : {"/static", "/c10d"}) {
    const auto log = read(dir + run + ".log");
    EXPECT_NE(log.find("final top-1"), std::string::npos) << log;
    EXPECT_EQ(log.find("final top-1"), log.rfind("final top-1")) << "only rank 0 reports\n" << log;
    mgd::testing::expect_same_checkpoint(dir + "/launch/checkpoint.pth",
                                     dir + run + "/checkpoint.pth");
  }
}

TEST(DistributedFailure, SignalsEndEveryWaitOnOtherRanksWithinTwoSeconds) {
  const auto dir = work_dir() + "/signals";
  fs::create_directories(dir);
  // Waits at most 2 s for `pid` after `signal`; its status, or -1.
  auto stop = [](pid_t pid, int signal, double* seconds) {
    ::kill(pid, signal);
    return wait_exit(pid, 2.0, seconds);
  };
  double seconds = 0;
  // Rank 1 trying to reach a rank 0 that never comes.
  {
    const int port = mgd::distributed::free_port();
    const pid_t r1 = spawn(cli_train(dir + "/a", 1, 60), rank_env(1, 2, port), dir + "/a.log");
    torchrun::wait_for_handlers(r1);
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    EXPECT_EQ(stop(r1, SIGTERM, &seconds), 128 + SIGTERM) << read(dir + "/a.log");
    EXPECT_NE(read(dir + "/a.log").find("mgd: error: stopped by SIGTERM while waiting for the "
                                        "other ranks to join (rank 1 of 2"),
              std::string::npos)
        << read(dir + "/a.log");
  }
  // Rank 0 serving the rendezvous, waiting for a rank 1 that never comes.
  {
    const int port = mgd::distributed::free_port();
    const pid_t r0 = spawn(cli_train(dir + "/b", 1, 60), rank_env(0, 2, port), dir + "/b.log");
    torchrun::wait_for_handlers(r0);
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    EXPECT_EQ(stop(r0, SIGINT, &seconds), 128 + SIGINT) << read(dir + "/b.log");
    EXPECT_NE(read(dir + "/b.log").find("mgd: error: stopped by SIGINT while waiting"),
              std::string::npos)
        << read(dir + "/b.log");
    EXPECT_EQ(read(dir + "/b.log").find("Interrupted system call"), std::string::npos);
  }
  // Two ranks training; rank 1 freezes (SIGSTOP), so rank 0 waits in a collective forever.
  {
    const int port = mgd::distributed::free_port();
    const auto args = cli_train(dir + "/c", 50, 60);
    const pid_t r0 = spawn(args, rank_env(0, 2, port), dir + "/c0.log");
    const pid_t r1 = spawn(args, rank_env(1, 2, port), dir + "/c1.log");
    const auto t0 = Clock::now();
    while (!fs::exists(dir + "/c/checkpoint.pth") && Clock::now() - t0 < std::chrono::seconds(120)) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    ::kill(r1, SIGSTOP);
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    EXPECT_EQ(stop(r0, SIGTERM, &seconds), 128 + SIGTERM) << read(dir + "/c0.log");
    EXPECT_NE(read(dir + "/c0.log").find("mgd: error: stopped by SIGTERM while waiting for the "
                                         "other ranks in the "),
              std::string::npos)
        << read(dir + "/c0.log");
    ::kill(r1, SIGKILL);
    ::waitpid(r1, nullptr, 0);
  }
}
