// Reducers: teacher channels -> student channels, given a matching (MGD spec section 5).
//
// A matching for one position is an index tensor of shape k x s (int64): index[g][j] is
// the teacher channel that group g contributes to student channel j (spec 4a). Sparse
// matching (SM, spec 4b) uses k = 1. Every reducer maps the teacher map T (B x t x H x W)
// and its per-channel margins M (t values) to a map of B x s x H x W and s margins.
//
// One file per strategy (amp.h, rd.h, sp.h, sm.h), each with its contract at the top and a
// free function in mgd::functional; this header holds the strategy interface, the registry
// that picks one by name at run time, and the module that owns a position's matching.
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>
#include <torch/types.h>

#include <memory>
#include <string>
#include <vector>

namespace mgd {

/// A teacher map and its margins after reduction to the student's channel count.
struct Reduced {
  torch::Tensor feature;  ///< B x s x H x W
  torch::Tensor margin;   ///< s values
};

namespace functional {
/// T[:, index[g]] for every group g: k maps of B x s x H x W (validates shapes and indices).
/// Reducers combine them element-wise, group by group: k is small (t / s), and k passes over
/// B x s x H x W beat a reduction over a strided group axis by several times on CPU.
std::vector<torch::Tensor> group_channels(const torch::Tensor& teacher, const torch::Tensor& index);
/// Throws unless teacher is B x t x H x W and index a valid k x s matching into its t channels.
void check_grouping(const torch::Tensor& teacher, const torch::Tensor& index);
/// M[index[g]] for every group g, as k x s.
torch::Tensor group_margins(const torch::Tensor& margins, const torch::Tensor& index);
}  // namespace functional

/// A reduction strategy. Stateless; chosen by name through make_reducer().
class Reducer {
 public:
  virtual ~Reducer() = default;
  /// Registry name ("amp", "rd", "sp", "sp_avg", "sm").
  virtual std::string name() const = 0;
  /// True for sparse matching: each student channel gets one teacher channel (k = 1).
  virtual bool sparse() const { return false; }
  /// True when reduce() gives amp_reduce's result (SM: the selection over one group): the
  /// distiller then reduces inside its fused loss (normalized_margin_loss_amp).
  virtual bool amp_selection() const { return false; }
  virtual Reduced reduce(const torch::Tensor& teacher, const torch::Tensor& margins,
                         const torch::Tensor& index) const = 0;
};

/// The reducer registered under `name`; throws c10::Error listing the known names otherwise.
std::shared_ptr<Reducer> make_reducer(const std::string& name);
/// Every registered reducer name.
std::vector<std::string> reducer_names();

/// Module form: owns one position's teacher margins (t) and matching (k x s) as buffers, so
/// `.to(device)` moves them and checkpoints restore them exactly.
class ChannelReducerImpl : public torch::nn::Module {
 public:
  /// `groups` is k (1 for a sparse reducer); the index starts as all zeros, unmatched.
  ChannelReducerImpl(std::shared_ptr<Reducer> reducer, torch::Tensor margins,
                     int64_t student_channels, int64_t groups);
  Reduced forward(const torch::Tensor& teacher);
  /// Installs a new k x s matching (validated: distinct teacher channels in range).
  void set_index(const torch::Tensor& index);
  const torch::Tensor& index() const { return index_; }
  const torch::Tensor& margins() const { return margins_; }
  const Reducer& reducer() const { return *reducer_; }

 private:
  std::shared_ptr<Reducer> reducer_;
  torch::Tensor margins_;
  torch::Tensor index_;
};
TORCH_MODULE(ChannelReducer);

}  // namespace mgd
