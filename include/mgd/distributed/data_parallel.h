// Data-parallel training pieces (spec 8) on top of a Communicator: identical starting
// weights, gradient averaging, and one matching shared by every rank.
#pragma once

#include <torch/nn/module.h>
#include <torch/types.h>

#include <memory>
#include <vector>

#include "mgd/distiller/distiller.h"
#include "mgd/distributed/communicator.h"

namespace mgd::distributed {

/// Copies rank 0's parameters and buffers into every rank's `module`.
void broadcast_module(torch::nn::Module& module, Communicator& comm);

/// Copies rank 0's buffers (e.g. BatchNorm's running statistics) into every rank's `module`.
/// Each rank's statistics follow its own batches; before anything that uses them (an
/// evaluation, a tracking pass) every rank takes rank 0's -- those its checkpoint holds -- as
/// DistributedDataParallel's broadcast_buffers does before each forward pass.
void broadcast_buffers(torch::nn::Module& module, Communicator& comm);

/// Averages gradients over the ranks after backward(): the defined gradients of `params`
/// (which are the same on every rank) are flattened into buckets of about `bucket_bytes`,
/// each bucket is all-reduced (all launched before any is awaited) and divided by the world
/// size. Overlap with backward through autograd hooks is not done: on CPU the all-reduce of
/// a small model costs far less than its backward pass.
class GradientAverager {
 public:
  GradientAverager(std::vector<torch::Tensor> params, std::shared_ptr<Communicator> comm,
                   int64_t bucket_bytes = int64_t{25} << 20);
  void average();

 private:
  std::vector<torch::Tensor> params_;
  std::shared_ptr<Communicator> comm_;
  int64_t bucket_bytes_;
};

/// The better-than-reference matching across ranks (spec 8): every rank has tracked its own
/// shard of the tracking images; the s x t cost sums and the image counts are summed over the
/// ranks, rank 0 solves (Distiller::update_matching) and broadcasts the assignment, and every
/// rank installs it, so all hold the identical matching and the summed statistics. Returns
/// update_matching's mean costs on rank 0 and an empty vector elsewhere.
std::vector<double> synchronize_matching(Distiller& distiller, Communicator& comm);

}  // namespace mgd::distributed
