// detail::wait_all (src/distributed/wait.h): collectives awaited in slices of 100 ms.
#include "src/distributed/wait.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <stdexcept>

namespace {

// A collective that completes exactly as the caller's time slice runs out: its wait with a
// timeout reports "Operation timed out!" although the work is then complete -- the race a
// loaded machine hits. `failure` makes its outcome an error instead.
class CompletesAtTheDeadline : public c10d::Work {
 public:
  explicit CompletesAtTheDeadline(bool failure = false) : failure_(failure) {}
  bool wait(std::chrono::milliseconds timeout) override {
    ++waits;
    if (timeout.count() != 0 && !done_) {
      done_ = true;
      TORCH_CHECK(false, "Operation timed out!");
    }
    if (failure_) throw std::runtime_error("Connection closed by peer");
    return true;
  }
  bool isCompleted() override { return done_; }
  int waits = 0;

 private:
  bool failure_;
  bool done_ = false;
};

// One still pending for a few slices, then done.
class SlowButFine : public c10d::Work {
 public:
  bool wait(std::chrono::milliseconds timeout) override {
    ++waits;
    if (timeout.count() != 0 && waits < 4) TORCH_CHECK(false, "Operation timed out!");
    return true;
  }
  bool isCompleted() override { return waits >= 4; }
  int waits = 0;
};

TEST(WaitAll, AWorkCompletingAsItsSliceRunsOutIsASuccessAndARealFailureStillThrows) {
  mgd::distributed::WorldInfo world;
  world.world_size = 2;
  auto racing = c10::make_intrusive<CompletesAtTheDeadline>();
  auto slow = c10::make_intrusive<SlowButFine>();
  std::vector<c10::intrusive_ptr<c10d::Work>> works = {racing, slow};
  EXPECT_NO_THROW(mgd::distributed::detail::wait_all(works, world, "test all-reduce"));
  EXPECT_EQ(racing->waits, 2);  // the slice that ran out, then its outcome
  EXPECT_EQ(slow->waits, 4);

  std::vector<c10::intrusive_ptr<c10d::Work>> failing = {
      c10::make_intrusive<CompletesAtTheDeadline>(/*failure=*/true)};
  try {
    mgd::distributed::detail::wait_all(failing, world, "test all-reduce");
    ADD_FAILURE() << "a failed collective must throw";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("Connection closed by peer"), std::string::npos)
        << e.what();
  }
}

}  // namespace
