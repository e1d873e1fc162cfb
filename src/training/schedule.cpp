#include "mgd/training/schedule.h"

#include <c10/util/Exception.h>

#include <algorithm>
#include <cmath>

namespace mgd::training {

double LrSchedule::at(int64_t epoch, int64_t iter, int64_t iters_per_epoch) const {
  TORCH_CHECK(iters_per_epoch > 0, "LrSchedule: iterations per epoch must be > 0");
  const double progress = static_cast<double>(epoch) +
                          static_cast<double>(iter) / static_cast<double>(iters_per_epoch);
  if (warmup_epochs > 0 && progress < static_cast<double>(warmup_epochs)) {
    // Linear from base/(warm-up iterations) at the first iteration to base at the end.
    const double total = static_cast<double>(warmup_epochs * iters_per_epoch);
    const double done = static_cast<double>(epoch * iters_per_epoch + iter + 1);
    return base_lr * done / total;
  }
  // Detectron2's WarmupMultiStepLR / WarmupCosineLR: the schedule's rate times a factor rising
  // linearly from warmup_factor at iteration 0 to 1 at warmup_iters.
  const double global = static_cast<double>(epoch * iters_per_epoch + iter);
  const double warm =
      warmup_iters > 0 && global < static_cast<double>(warmup_iters)
          ? warmup_factor * (1.0 - global / static_cast<double>(warmup_iters)) +
                global / static_cast<double>(warmup_iters)
          : 1.0;
  if (kind == Kind::kCosine) {
    const double span = static_cast<double>(std::max<int64_t>(1, epochs - warmup_epochs));
    const double t = std::min(1.0, (progress - static_cast<double>(warmup_epochs)) / span);
    return warm * 0.5 * base_lr * (1.0 + std::cos(M_PI * t));
  }
  double lr = base_lr;
  for (int64_t e : drop_epochs) {
    if (epoch >= e) lr *= drop_ratio;
  }
  return warm * lr;
}

bool MatchingSchedule::due_before_epoch(int64_t epoch) const {
  if (epoch == 0) return true;
  if (!epochs.empty()) return std::find(epochs.begin(), epochs.end(), epoch) != epochs.end();
  return every_epochs > 0 && epoch % every_epochs == 0;
}

bool MatchingSchedule::due_after_step(int64_t step) const {
  if (step <= 0) return false;  // step 0: the pass before the first epoch
  if (every_iters > 0 && step % every_iters == 0) return true;
  return std::find(steps.begin(), steps.end(), step) != steps.end();
}

void MatchingSchedule::add_fractions(const std::vector<double>& fractions, int64_t total_steps) {
  for (double f : fractions) {
    steps.push_back(std::llround(f * static_cast<double>(total_steps)));
  }
}

}  // namespace mgd::training
