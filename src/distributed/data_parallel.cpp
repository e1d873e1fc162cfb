#include "mgd/distributed/data_parallel.h"

#include <torch/torch.h>

namespace mgd::distributed {

void broadcast_module(torch::nn::Module& module, Communicator& comm) {
  if (comm.world_size() == 1) return;
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> tensors;
  for (auto& p : module.parameters()) tensors.push_back(p);
  for (auto& b : module.buffers()) {
    if (b.defined() && b.numel() > 0) tensors.push_back(b);
  }
  comm.broadcast(tensors, 0, "broadcast of the initial weights");
}

void broadcast_buffers(torch::nn::Module& module, Communicator& comm) {
  if (comm.world_size() == 1) return;
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> tensors;
  for (auto& b : module.buffers()) {
    if (b.defined() && b.numel() > 0) tensors.push_back(b);
  }
  if (!tensors.empty()) comm.broadcast(tensors, 0, "broadcast of the running statistics");
}

GradientAverager::GradientAverager(std::vector<torch::Tensor> params,
                                   std::shared_ptr<Communicator> comm, int64_t bucket_bytes)
    : params_(std::move(params)), comm_(std::move(comm)), bucket_bytes_(bucket_bytes) {
  TORCH_CHECK(comm_, "GradientAverager needs a communicator");
  TORCH_CHECK(bucket_bytes_ > 0, "Invalid gradient bucket size: ", bucket_bytes_, " bytes");
}

void GradientAverager::average() {
  if (comm_->world_size() == 1) return;
  torch::NoGradGuard no_grad;
  // Buckets of consecutive gradients of one dtype and device. Which gradients are defined
  // depends on the model alone, so every rank builds the same buckets.
  std::vector<std::vector<torch::Tensor>> buckets;
  int64_t bytes = 0;
  for (auto& p : params_) {
    auto g = p.grad();
    if (!g.defined()) continue;
    const int64_t b = g.numel() * static_cast<int64_t>(g.element_size());
    if (buckets.empty() || bytes + b > bucket_bytes_ ||
        buckets.back().front().scalar_type() != g.scalar_type() ||
        buckets.back().front().device() != g.device()) {
      buckets.emplace_back();
      bytes = 0;
    }
    buckets.back().push_back(g);
    bytes += b;
  }
  std::vector<torch::Tensor> flats;
  flats.reserve(buckets.size());
  for (auto& bucket : buckets) {
    std::vector<torch::Tensor> views;
    for (auto& g : bucket) views.push_back(g.reshape({-1}));
    flats.push_back(torch::cat(views));
  }
  comm_->all_reduce_sum(flats, "gradient all-reduce");
  const double inv = 1.0 / static_cast<double>(comm_->world_size());
  for (size_t i = 0; i < buckets.size(); ++i) {
    flats[i].mul_(inv);
    int64_t offset = 0;
    for (auto& g : buckets[i]) {
      g.copy_(flats[i].narrow(0, offset, g.numel()).view_as(g));
      offset += g.numel();
    }
  }
}

std::vector<double> synchronize_matching(Distiller& distiller, Communicator& comm) {
  if (comm.world_size() == 1) return distiller->update_matching();
  std::vector<torch::Tensor> stats;
  for (int64_t i : distiller->guided_positions()) stats.push_back(distiller->cost_sum(i));
  stats.push_back(distiller->tracked_count());
  comm.all_reduce_sum(stats, "all-reduce of the matching costs");
  std::vector<double> costs;
  if (comm.is_main()) costs = distiller->update_matching();
  std::vector<torch::Tensor> matchings;
  for (int64_t i : distiller->guided_positions()) {
    matchings.push_back(distiller->matching(i).to(torch::kLong).contiguous().clone());
  }
  comm.broadcast(matchings, 0, "broadcast of the matching");
  if (!comm.is_main()) {
    const auto& guided = distiller->guided_positions();
    for (size_t k = 0; k < guided.size(); ++k) distiller->set_matching(guided[k], matchings[k]);
  }
  return costs;
}

}  // namespace mgd::distributed
