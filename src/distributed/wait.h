// Waiting for collectives while honouring SIGINT/SIGTERM (communicator.cpp); declared here so
// that tests can drive it with their own c10d::Work.
#pragma once

#include <torch/csrc/distributed/c10d/Work.hpp>

#include <vector>

#include "mgd/distributed/environment.h"

namespace mgd::distributed::detail {

/// Waits for every work like Work::wait(), in slices of 100 ms so that a pending stop is
/// honoured within training::kCollectiveStopGraceSeconds even when another rank never
/// arrives. A work that completes as its slice runs out counts as completed (its own
/// outcome, success or exception, is what this returns or throws).
void wait_all(std::vector<c10::intrusive_ptr<c10d::Work>>& works, const WorldInfo& world,
              const char* what);

}  // namespace mgd::distributed::detail
