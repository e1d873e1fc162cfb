#include "mgd/training/interrupt.h"

#include <atomic>
#include <csignal>

namespace mgd::training {
namespace {

// -1: no request; otherwise the signal number (0 for a request from code).
std::atomic<int> g_stop{-1};
static_assert(std::atomic<int>::is_always_lock_free, "the signal handler needs a lock-free flag");

extern "C" void on_stop_signal(int signal) {
  if (g_stop.load() >= 0) {  // second signal: the default action, now
    std::signal(signal, SIG_DFL);
    std::raise(signal);
    return;
  }
  g_stop.store(signal);
}

}  // namespace

void install_stop_handlers() {
  struct sigaction action = {};
  action.sa_handler = on_stop_signal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);
}

void request_stop(int signal) noexcept {
  g_stop.store(signal < 0 ? 0 : signal);
}
bool stop_requested() noexcept {
  return g_stop.load() >= 0;
}
int stop_signal() noexcept {
  return g_stop.load() > 0 ? g_stop.load() : 0;
}
void clear_stop() noexcept {
  g_stop.store(-1);
}

}  // namespace mgd::training
