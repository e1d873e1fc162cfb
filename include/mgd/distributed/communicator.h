// Collectives between the ranks of a data-parallel job, on PyTorch's c10d: a TCPStore for the
// rendezvous (rank 0 serves it at MASTER_ADDR:MASTER_PORT) and ProcessGroupGloo for CPU
// tensors (ProcessGroupNCCL for CUDA tensors when mgd is built with MGD_WITH_NCCL against a
// CUDA LibTorch). A world of one needs no network: every collective is then a no-op.
//
//   auto comm = Communicator::create(detect_world(), CommunicatorOptions().timeout_seconds(60));
//   comm->all_reduce_sum(tensors);   // in place, on every rank
//   comm->broadcast(tensors, 0);
//
// Failures are one c10::Error naming what and where: a port already in use on rank 0, a
// master that cannot be reached, ranks disagreeing on the world size, or a collective that a
// dead or hung rank never joins within the timeout.
#pragma once

#include <torch/arg.h>
#include <torch/types.h>

#include <memory>
#include <string>
#include <vector>

#include "mgd/distributed/environment.h"

namespace mgd::distributed {

struct CommunicatorOptions {
  /// Seconds to wait for the rendezvous and for any collective before failing.
  TORCH_ARG(double, timeout_seconds) = 300;
  /// Device of the tensors exchanged (cuda selects NCCL where available).
  TORCH_ARG(torch::Device, device) = torch::kCPU;
};

class Communicator {
 public:
  /// Joins the job described by `world` (a world of one joins nothing).
  static std::shared_ptr<Communicator> create(const WorldInfo& world,
                                              const CommunicatorOptions& options = {});
  ~Communicator();
  Communicator(const Communicator&) = delete;
  Communicator& operator=(const Communicator&) = delete;

  int64_t rank() const { return world_.rank; }
  int64_t world_size() const { return world_.world_size; }
  bool is_main() const { return world_.rank == 0; }
  const WorldInfo& world() const { return world_; }

  /// Sums every tensor over the ranks, in place (all launched, then all awaited).
  void all_reduce_sum(std::vector<torch::Tensor> tensors, const char* what = "all-reduce");
  /// Copies `root`'s tensors into every rank's, in place (same shapes on every rank).
  void broadcast(std::vector<torch::Tensor> tensors, int64_t root = 0,
                 const char* what = "broadcast");
  /// Returns once every rank has called it.
  void barrier();

 private:
  struct Impl;
  Communicator(WorldInfo world, CommunicatorOptions options);
  WorldInfo world_;
  CommunicatorOptions options_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace mgd::distributed
