// The MGD distiller (spec sections 1-6): a teacher, a student, one norm layer and one
// channel reducer per distilled position, and the matching state that ties them together.
//
// Life cycle:
//   Distiller d(teacher, student, DistillerOptions().reducer("amp"));
//   d->reset_tracking();
//   for (images : tracking_batches) d->track(images);   // spec 3: cost statistics
//   d->update_matching();                                // spec 4: solve, install pi
//   auto out = d->forward(images);                       // spec 5-6: losses
//   loss = task_loss + out.loss / batch_size / loss_factor;
// Tracking and matching are repeated on the training schedule (spec 7). The accumulators,
// margins and matchings are registered buffers: a checkpoint of the distiller restores them.
#pragma once

#include <torch/arg.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/normalization.h>
#include <torch/nn/pimpl.h>
#include <torch/types.h>

#include <string>
#include <vector>

#include "mgd/distiller/feature_net.h"
#include "mgd/reducers/reducer.h"

namespace mgd {

/// Which teacher channels the tiled matching may use when t is not a multiple of s (spec 4a).
enum class ShaveRule {
  kFirst,  ///< the reference: only the first k*s teacher channels are candidates
  kBest,   ///< rectangular assignment: the solver picks the best k*s of all t channels
};

struct DistillerOptions {
  /// Reducer name: "amp", "rd", "sp", "sp_avg" or "sm" (see reducers/).
  TORCH_ARG(std::string, reducer) = "amp";
  /// Positions that are not distilled; they still count in n for the default divisors.
  TORCH_ARG(std::vector<int64_t>, ignore_positions) = {};
  /// Loss divisor of each position (n values); empty means 2^(n-i-1) (deepest weighs most).
  TORCH_ARG(std::vector<double>, loss_divisors) = {};
  /// Distill the maps before the final ReLU of each position (the reference default).
  TORCH_ARG(bool, pre_relu) = true;
  /// Detection mode: GroupNorm(32, s) instead of BatchNorm2d(s) on the student side.
  TORCH_ARG(bool, group_norm) = false;
  /// Tiled-matching column rule when t % s != 0 (the reference's by default).
  TORCH_ARG(ShaveRule, shave) = ShaveRule::kFirst;
  /// Also compute Hinton's KD loss on the logits.
  TORCH_ARG(bool, with_kd) = false;
  /// KD temperature.
  TORCH_ARG(double, kd_temperature) = 1.5;
};

/// What one distillation forward pass returns.
struct DistillOutput {
  torch::Tensor logits;                        ///< student logits (with autograd graph), if any
  torch::Tensor teacher_logits;                ///< teacher logits (no graph), if any
  std::vector<torch::Tensor> position_losses;  ///< per position, divided by its divisor;
                                               ///< undefined for ignored positions
  torch::Tensor loss;                          ///< sum of position_losses (the d_loss)
  torch::Tensor kd_loss;                       ///< defined only with with_kd
};

class DistillerImpl : public torch::nn::Module {
 public:
  DistillerImpl(FeatureNet teacher, FeatureNet student, DistillerOptions options = {});
  /// Accepts the TORCH_MODULE holders of concrete networks (e.g. ResNet, MobileNetV2).
  template <typename T, typename S>
  DistillerImpl(torch::nn::ModuleHolder<T> teacher, torch::nn::ModuleHolder<S> student,
                DistillerOptions options = {})
      : DistillerImpl(FeatureNet(teacher.ptr()), FeatureNet(student.ptr()), std::move(options)) {}

  /// Teacher (no autograd graph, eval mode) and student forward, and the losses.
  /// Throws if no matching has been computed yet.
  DistillOutput forward(const torch::Tensor& images);
  /// The losses from features the caller computed (the teacher's without a graph): for tasks
  /// whose networks do more than extract() in their pass (a detector's heads, MoCo's views).
  DistillOutput forward_features(const Features& teacher, const Features& student);

  // --- cost tracking (spec 3) ---
  /// Zeroes the cost accumulators and the image count.
  void reset_tracking();
  /// Runs both networks in eval mode without gradients on `images` and accumulates costs.
  void track(const torch::Tensor& images);
  /// Accumulates costs from features already computed (e.g. by a caller's own forward).
  void track_features(const Features& teacher, const Features& student);
  /// Images accumulated since the last reset.
  int64_t tracked_images() const;
  /// Accumulated cost sums of position i (s x t, double) — exposed for all-reduce.
  torch::Tensor& cost_sum(int64_t position);
  /// Image counter buffer (0-dim int64) — exposed for all-reduce.
  torch::Tensor& tracked_count() { return tracked_images_; }
  /// Mean cost matrix of position i: cost_sum / tracked images (s x t, double).
  torch::Tensor cost_matrix(int64_t position) const;

  // --- matching (spec 4) ---
  /// Solves every guided position from the accumulated costs and installs the matchings.
  /// Returns the mean cost per matched pair of each position (NaN for ignored positions).
  std::vector<double> update_matching();
  /// Installs a matching computed elsewhere (e.g. broadcast from rank 0): groups x s.
  /// Call it for every guided position; the distiller counts as matched afterwards.
  void set_matching(int64_t position, const torch::Tensor& index);
  /// The current matching of position i (groups x s, int64).
  const torch::Tensor& matching(int64_t position) const;
  bool matched() const;

  // --- structure ---
  int64_t num_positions() const { return static_cast<int64_t>(teacher_channels_.size()); }
  const std::vector<int64_t>& guided_positions() const { return guided_; }
  bool is_guided(int64_t position) const;
  const std::vector<int64_t>& teacher_channels() const { return teacher_channels_; }
  const std::vector<int64_t>& student_channels() const { return student_channels_; }
  /// k of position i: t / s for tiled reducers, 1 for SM.
  int64_t groups(int64_t position) const;
  double loss_divisor(int64_t position) const { return divisors_.at(position); }
  /// Teacher margins of position i (t values).
  const torch::Tensor& margins(int64_t position) const;
  const DistillerOptions& options() const { return options_; }
  FeatureNet teacher() const { return teacher_; }
  FeatureNet student() const { return student_; }

  /// Parameters to optimize: the student's and the distiller's norm layers'.
  std::vector<torch::Tensor> trainable_parameters();
  /// Sets the student and norm layers' mode; the teacher always stays in eval mode.
  void train(bool on = true) override;

 private:
  torch::Tensor student_norm(int64_t position, const torch::Tensor& x);
  const torch::Tensor& feature_at(const Features& f, int64_t position) const;
  void check_features(const Features& teacher, const Features& student) const;
  int64_t guided_slot(int64_t position) const;

  DistillerOptions options_;
  FeatureNet teacher_;
  FeatureNet student_;
  std::shared_ptr<Reducer> reducer_;
  std::vector<int64_t> teacher_channels_, student_channels_;
  std::vector<int64_t> guided_;
  std::vector<double> divisors_;
  // One entry per guided position, in guided_ order.
  std::vector<torch::nn::BatchNorm2d> batch_norms_;
  std::vector<torch::nn::GroupNorm> group_norms_;
  std::vector<ChannelReducer> reducers_;
  std::vector<torch::Tensor> cost_sums_;
  torch::Tensor tracked_images_;
  torch::Tensor matched_;
};
TORCH_MODULE(Distiller);

}  // namespace mgd
