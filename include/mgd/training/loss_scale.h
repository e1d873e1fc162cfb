// How large the distillation loss starts, next to the task's loss.
//
// MGD's loss is d_loss / images / loss_factor, and the right loss_factor depends on the task,
// the input size and the networks: the reference uses 1e4 for 224 px classification and 5e7
// for 800 px detection. Users of feature distillation for detection report it hurting when the
// scale is off by 10x, so the engine prints this table at the first step of a distillation:
// each position's loss, its ratio to the task loss, and the loss factor that would make it
// equal to the task loss.
#pragma once

#include <string>
#include <vector>

#include "mgd/training/task.h"

namespace mgd::training {

struct LossScale {
  double task_loss = 0;                               ///< the step's task loss
  double loss_factor = 0;                             ///< the run's loss factor
  std::vector<std::pair<int64_t, double>> positions;  ///< (position, its distillation loss)
  double distill_loss = 0;                            ///< their sum

  /// The loss factor that makes `loss` (computed with loss_factor) equal to the task loss.
  double factor_for(double loss) const;
  /// The table, several lines ending in '\n'.
  std::string describe() const;
};

/// The scale of a step's parts ("task_loss", "distill_loss_<i>"); empty positions when the
/// parts hold no distillation loss per position.
LossScale loss_scale_of(const NamedValues& parts, double loss_factor);

}  // namespace mgd::training
