// Checkpoint comparisons for tests that resume, kill or launch runs.
#pragma once

#include <gtest/gtest.h>
#include <signal.h>
#include <torch/torch.h>

#include <chrono>
#include <filesystem>
#include <string>
#include <thread>

#include "mgd/serialize/checkpoint.h"
#include "mgd/serialize/state_dict.h"
#include "support/process.h"

namespace mgd::testing {

/// Two mgd checkpoints hold the same point of training bit for bit: step counters, weights and
/// buffers, SGD momentum, and (when present) the distiller's own state (matchings, margins,
/// norms) and the task's state.
inline void expect_same_checkpoint(const std::string& a_path, const std::string& b_path) {
  const auto a = mgd::serialize::load_file(a_path);
  const auto b = mgd::serialize::load_file(b_path);
  EXPECT_EQ(a.at("epoch").to_int(), b.at("epoch").to_int()) << b_path;
  EXPECT_EQ(a.at("global_step").to_int(), b.at("global_step").to_int()) << b_path;
  const auto opts = mgd::serialize::LoadStateDictOptions().strip_prefix("");
  for (const char* key : {"state_dict", "distiller"}) {
    ASSERT_EQ(a.contains(key), b.contains(key)) << key;
    if (!a.contains(key)) continue;
    const auto sa = mgd::serialize::to_state_dict(a.at(key), opts, a_path);
    const auto sb = mgd::serialize::to_state_dict(b.at(key), opts, b_path);
    ASSERT_EQ(sa.size(), sb.size()) << key;
    for (const auto& item : sa) {
      ASSERT_TRUE(sb.contains(item.key())) << key << " " << item.key();
      EXPECT_TRUE(torch::equal(item.value(), sb[item.key()])) << b_path << ": " << item.key();
    }
  }
  const auto& ma = a.at("momentum").items();
  const auto& mb = b.at("momentum").items();
  ASSERT_EQ(ma.size(), mb.size());
  for (size_t i = 0; i < ma.size(); ++i) {
    ASSERT_EQ(ma[i].is_tensor(), mb[i].is_tensor()) << "momentum " << i;
    if (ma[i].is_tensor()) {
      EXPECT_TRUE(torch::equal(ma[i].to_tensor(), mb[i].to_tensor())) << "momentum " << i;
    }
  }
  if (a.contains("task_state") && b.contains("task_state") && a.at("task_state").is_list()) {
    const auto& ta = a.at("task_state").items();
    const auto& tb = b.at("task_state").items();
    ASSERT_EQ(ta.size(), tb.size());
    for (size_t i = 0; i < ta.size(); ++i) {
      if (ta[i].is_double()) {
        EXPECT_EQ(ta[i].to_double(), tb[i].to_double()) << "task_state " << i;
      } else if (ta[i].is_int()) {
        EXPECT_EQ(ta[i].to_int(), tb[i].to_int()) << "task_state " << i;
      }
    }
  }
}

/// Two distillations' checkpoints hold the same matching: per guided position the matching
/// and the margins bit for bit and the cost sums to float rounding (sums of other batch
/// compositions, as ranks that split the tracking make), and the same tracked image count.
/// Returns how many entries were compared.
inline int expect_same_matching(const std::string& a_path, const std::string& b_path) {
  const auto opts = mgd::serialize::LoadStateDictOptions().strip_prefix("");
  const auto da = mgd::serialize::to_state_dict(
      mgd::serialize::load_file(a_path).at("distiller"), opts, a_path);
  const auto db = mgd::serialize::to_state_dict(
      mgd::serialize::load_file(b_path).at("distiller"), opts, b_path);
  int compared = 0;
  for (const auto& item : da) {
    const auto& key = item.key();
    if (key.find("reducer") == std::string::npos && key.find("cost_sum") == std::string::npos &&
        key != "tracked_images")
      continue;
    if (!db.contains(key)) {
      ADD_FAILURE() << b_path << " lacks " << key;
      continue;
    }
    if (key.find("cost_sum") != std::string::npos) {
      EXPECT_LT((item.value() - db[key]).abs().max().item<double>(), 1e-4) << key;
    } else {
      EXPECT_TRUE(torch::equal(item.value(), db[key])) << key;  // matchings, margins, count
    }
    ++compared;
  }
  return compared;
}

/// Waits for the run `pid` to save `checkpoint` at global step >= `step` and SIGKILLs it then;
/// returns the exit status (128 + SIGKILL when killed, the run's own if it ended first). Fails
/// the test after `limit`.
inline int kill_once_saved(pid_t pid, const std::string& checkpoint, int64_t step,
                           std::chrono::seconds limit = std::chrono::minutes(10)) {
  int status = -1;
  const auto t0 = std::chrono::steady_clock::now();
  while (!try_wait(pid, &status)) {
    if (std::filesystem::exists(checkpoint)) {
      try {
        if (mgd::serialize::load_file(checkpoint).at("global_step").to_int() >= step) {
          ::kill(pid, SIGKILL);
          return wait_exit(pid);
        }
      } catch (const c10::Error&) {  // being replaced: read it again
      }
    }
    if (std::chrono::steady_clock::now() - t0 > limit) {
      ADD_FAILURE() << "no checkpoint at step " << step << " in '" << checkpoint << "' after "
                    << limit.count() << " s";
      ::kill(pid, SIGKILL);
      return wait_exit(pid);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return status;
}

}  // namespace mgd::testing
