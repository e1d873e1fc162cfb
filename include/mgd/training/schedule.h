// Learning-rate and matching schedules (spec 7).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace mgd::training {

struct LrSchedule {
  enum class Kind { kMultiStep, kCosine };
  Kind kind = Kind::kMultiStep;
  double base_lr = 0.1;
  /// Multi-step: epochs at which the rate is multiplied by `drop_ratio`.
  std::vector<int64_t> drop_epochs;
  double drop_ratio = 0.1;
  /// Linear warm-up from ~0 to base_lr over this many epochs (per iteration).
  int64_t warmup_epochs = 0;
  /// Or Detectron2's warm-up: over the first `warmup_iters` iterations the rate rises linearly
  /// from warmup_factor x its value to its value (0: off).
  int64_t warmup_iters = 0;
  double warmup_factor = 0.001;
  int64_t epochs = 1;

  /// The rate at iteration `iter` (0-based) of epoch `epoch` (0-based), with
  /// `iters_per_epoch` iterations per epoch.
  double at(int64_t epoch, int64_t iter, int64_t iters_per_epoch) const;
};

/// When the distiller re-runs the tracking pass and the matching.
struct MatchingSchedule {
  /// Every this many epochs (epoch 0 included: the matching before the first epoch).
  int64_t every_epochs = 2;
  /// If non-empty, instead: before each listed epoch (0-based; epoch 0 is always included).
  std::vector<int64_t> epochs;
  /// If > 0: also every this many iterations (global step).
  int64_t every_iters = 0;
  /// Also after each of these global steps (step counts; 0 is the pass before training), as
  /// the reference's detection project does.
  std::vector<int64_t> steps;

  /// Adds the steps at `fractions` of a run of `total_steps` (rounded to the nearest step).
  void add_fractions(const std::vector<double>& fractions, int64_t total_steps);

  /// True if a matching is due before epoch `epoch` starts.
  bool due_before_epoch(int64_t epoch) const;
  /// True if a matching is due after global step `step` (1-based count of steps done).
  bool due_after_step(int64_t step) const;
};

}  // namespace mgd::training
