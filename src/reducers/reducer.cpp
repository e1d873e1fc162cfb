#include "mgd/reducers/reducer.h"

#include <torch/torch.h>

#include <functional>
#include <map>
#include <sstream>

#include "mgd/reducers/amp.h"
#include "mgd/reducers/rd.h"
#include "mgd/reducers/sm.h"
#include "mgd/reducers/sp.h"

namespace mgd {
namespace functional {
namespace {

void check_index(const torch::Tensor& index, int64_t teacher_channels) {
  TORCH_CHECK(index.defined() && index.dim() == 2 && index.scalar_type() == torch::kLong,
              "reducer: expected a k x s int64 matching index, got ",
              index.defined() ? index.sizes() : c10::IntArrayRef{});
  TORCH_CHECK(index.size(0) >= 1 && index.size(1) >= 1, "reducer: empty matching index ",
              index.sizes());
  TORCH_CHECK(index.size(0) * index.size(1) <= teacher_channels, "reducer: a ", index.size(0),
              " x ", index.size(1), " matching needs at least ", index.size(0) * index.size(1),
              " teacher channels, the teacher has ", teacher_channels);
}

}  // namespace

void check_grouping(const torch::Tensor& teacher, const torch::Tensor& index) {
  TORCH_CHECK(teacher.dim() == 4, "reducer: expected a B x t x H x W teacher map, got ",
              teacher.sizes());
  check_index(index, teacher.size(1));
}

std::vector<torch::Tensor> group_channels(const torch::Tensor& teacher, const torch::Tensor& index) {
  check_grouping(teacher, index);
  auto on_device = index.to(teacher.device());
  std::vector<torch::Tensor> groups;
  for (int64_t g = 0; g < index.size(0); ++g) groups.push_back(teacher.index_select(1, on_device[g]));
  return groups;
}

torch::Tensor group_margins(const torch::Tensor& margins, const torch::Tensor& index) {
  TORCH_CHECK(margins.dim() == 1, "reducer: expected 1-D margins, got ", margins.sizes());
  check_index(index, margins.size(0));
  return margins.index_select(0, index.reshape({-1}).to(margins.device()))
      .view({index.size(0), index.size(1)});
}

}  // namespace functional

namespace {

using Factory = std::function<std::shared_ptr<Reducer>()>;

const std::map<std::string, Factory>& registry() {
  static const std::map<std::string, Factory> kRegistry = {
      {"amp", [] { return std::make_shared<AmpReducer>(); }},
      {"rd", [] { return std::make_shared<RdReducer>(); }},
      {"sp", [] { return std::make_shared<SpReducer>(Pooling::kMax); }},
      {"sp_avg", [] { return std::make_shared<SpReducer>(Pooling::kAverage); }},
      {"sm", [] { return std::make_shared<SmReducer>(); }},
  };
  return kRegistry;
}

}  // namespace

std::vector<std::string> reducer_names() {
  std::vector<std::string> names;
  for (const auto& entry : registry()) names.push_back(entry.first);
  return names;
}

std::shared_ptr<Reducer> make_reducer(const std::string& name) {
  auto it = registry().find(name);
  if (it == registry().end()) {
    std::ostringstream known;
    for (const auto& n : reducer_names()) known << (known.tellp() > 0 ? ", " : "") << n;
    TORCH_CHECK(false, "Unknown reducer '", name, "' (expected one of: ", known.str(), ")");
  }
  return it->second();
}

ChannelReducerImpl::ChannelReducerImpl(std::shared_ptr<Reducer> reducer, torch::Tensor margins,
                                       int64_t student_channels, int64_t groups)
    : reducer_(std::move(reducer)) {
  TORCH_CHECK(reducer_, "ChannelReducer: no reducer given");
  TORCH_CHECK(margins.dim() == 1, "ChannelReducer: expected 1-D margins, got ", margins.sizes());
  TORCH_CHECK(student_channels >= 1 && groups >= 1 && groups * student_channels <= margins.size(0),
              "ChannelReducer: cannot match ", groups, " groups of ", student_channels,
              " student channels to ", margins.size(0), " teacher channels");
  margins_ = register_buffer("margins", margins.detach().clone());
  index_ = register_buffer("index", torch::zeros({groups, student_channels}, torch::kLong));
}

Reduced ChannelReducerImpl::forward(const torch::Tensor& teacher) {
  return reducer_->reduce(teacher, margins_, index_);
}

void ChannelReducerImpl::set_index(const torch::Tensor& index) {
  TORCH_CHECK(index.sizes() == index_.sizes(), "ChannelReducer: expected a matching of shape ",
              index_.sizes(), ", got ", index.sizes());
  auto cpu = index.to(torch::kCPU, torch::kLong).contiguous();
  const int64_t t = margins_.size(0);
  std::vector<char> used(static_cast<size_t>(t), 0);
  const int64_t* p = cpu.data_ptr<int64_t>();
  for (int64_t i = 0; i < cpu.numel(); ++i) {
    TORCH_CHECK(p[i] >= 0 && p[i] < t, "ChannelReducer: teacher channel ", p[i],
                " out of range [0, ", t, ")");
    TORCH_CHECK(!used[p[i]], "ChannelReducer: teacher channel ", p[i], " matched twice");
    used[p[i]] = 1;
  }
  torch::NoGradGuard no_grad;
  index_.copy_(cpu);
}

}  // namespace mgd
