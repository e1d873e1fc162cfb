// `mgd launch`: starts a data-parallel job on this machine, like torchrun --nproc-per-node.
//
//   mgd launch --nproc-per-node 2 -- mgd distill --arch resnet20 ...
//
// Forks `nproc_per_node` children running `command`, each with RANK, WORLD_SIZE, LOCAL_RANK,
// LOCAL_WORLD_SIZE, MASTER_ADDR and MASTER_PORT set. When a child fails (non-zero exit or a
// signal) the others are sent SIGTERM, then SIGKILL after a grace period; SIGINT and SIGTERM
// to the launcher are forwarded to the children.
#pragma once

#include <torch/arg.h>

#include <string>
#include <vector>

namespace mgd::distributed {

struct LaunchOptions {
  /// Processes to start.
  TORCH_ARG(int64_t, nproc_per_node) = 1;
  /// Rendezvous port; 0 picks a free one.
  TORCH_ARG(int, master_port) = 0;
  TORCH_ARG(std::string, master_addr) = "127.0.0.1";
  /// Seconds between SIGTERM and SIGKILL for the survivors of a failed child.
  TORCH_ARG(double, kill_grace_seconds) = 10;
};

/// Runs the job and returns its exit status: 0 when every child succeeded, else the first
/// failing child's status (128 + signal for a child killed by a signal). Throws c10::Error
/// when a child cannot be started.
int launch(const LaunchOptions& options, const std::vector<std::string>& command);

/// A TCP port on 127.0.0.1 that was free a moment ago (bound to port 0, then released).
int free_port();

}  // namespace mgd::distributed
