// Stopping a run cleanly on SIGINT / SIGTERM (or on request from code).
//
// install_stop_handlers() makes the first SIGINT or SIGTERM only *request* a stop; the
// training engine polls stop_requested() after every optimizer step (and inside evaluation
// and tracking passes, which it abandons and redoes on resume), writes a checkpoint of the
// exact point reached and throws Interrupted. A second signal while the first is pending
// terminates the process at once, as the signal's default action would.
#pragma once

#include <stdexcept>
#include <string>

namespace mgd::training {

/// Installs the SIGINT/SIGTERM handlers described above (idempotent).
void install_stop_handlers();

/// Asks the engine to stop at the next safe point; `signal` is reported (0: not a signal).
/// Async-signal-safe.
void request_stop(int signal = 0) noexcept;
bool stop_requested() noexcept;
/// The signal behind the pending request (0: none, or a request from code).
int stop_signal() noexcept;
/// Forgets a pending request (the engine does not; tests and embedding code may).
void clear_stop() noexcept;

/// Marks this process as waiting on other ranks for a rendezvous (connecting to the store,
/// agreeing on the world, building the process group): while a scope is alive, a SIGINT or
/// SIGTERM ends the process at once with status 128 + signal after printing
/// "mgd: error: stopped by SIG... while <what>" -- there is nothing to save yet, and the
/// library calls inside would otherwise keep retrying until their timeout.
class RendezvousScope {
 public:
  explicit RendezvousScope(const std::string& what);
  ~RendezvousScope();
  RendezvousScope(const RendezvousScope&) = delete;
  RendezvousScope& operator=(const RendezvousScope&) = delete;
};

/// Grace given to a collective once a stop is pending: the other ranks, signalled alike,
/// normally arrive within it and the run stops together with a checkpoint.
constexpr double kCollectiveStopGraceSeconds = 1.0;

/// For code waiting on other ranks in a collective: true once a stop is pending and the wait
/// has lasted kCollectiveStopGraceSeconds past max(`wait_start`, the signal's arrival).
bool stop_grace_expired(double wait_start_seconds) noexcept;
/// Seconds on the clock stop_grace_expired() uses (monotonic).
double monotonic_seconds() noexcept;
/// Prints "mgd: error: stopped by SIG... while <what>; ..." and ends the process at once with
/// 128 + signal (a collective the other ranks never joined cannot be left cleanly).
[[noreturn]] void exit_for_stop(const std::string& what) noexcept;

/// Thrown by run_training once a requested stop has been honoured: `checkpoint` holds the
/// state reached (empty on ranks other than 0). The process should exit non-zero.
class Interrupted : public std::runtime_error {
 public:
  Interrupted(const std::string& what, int signal, std::string checkpoint)
      : std::runtime_error(what), signal_(signal), checkpoint_(std::move(checkpoint)) {}
  int signal() const { return signal_; }
  const std::string& checkpoint() const { return checkpoint_; }
  /// The conventional exit status: 128 + signal, or 1 for a request from code.
  int exit_code() const { return signal_ > 0 ? 128 + signal_ : 1; }

 private:
  int signal_;
  std::string checkpoint_;
};

}  // namespace mgd::training
