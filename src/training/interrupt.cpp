#include "mgd/training/interrupt.h"

#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <algorithm>
#include <cstring>
#include <ctime>
#include <iostream>
#include <string>

namespace mgd::training {
namespace {

// -1: no request; otherwise the signal number (0 for a request from code).
std::atomic<int> g_stop{-1};
static_assert(std::atomic<int>::is_always_lock_free, "the signal handler needs a lock-free flag");
// When the pending stop was requested (monotonic nanoseconds).
std::atomic<int64_t> g_stop_time_ns{0};
// > 0 while a RendezvousScope is alive; its message, written by the scope before it starts.
std::atomic<int> g_rendezvous{0};
char g_rendezvous_what[512];

int64_t now_ns() noexcept {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);  // async-signal-safe
  return static_cast<int64_t>(ts.tv_sec) * 1000000000LL + ts.tv_nsec;
}

const char* signal_name(int signal) noexcept {
  switch (signal) {
    case SIGINT: return "SIGINT";
    case SIGTERM: return "SIGTERM";
    case 0: return "a stop request";
    default: return "a signal";
  }
}

void write_all(const char* text) noexcept {
  size_t left = std::strlen(text);
  while (left > 0) {
    const ssize_t n = ::write(2, text, left);
    if (n <= 0) return;
    text += n;
    left -= static_cast<size_t>(n);
  }
}

extern "C" void on_stop_signal(int signal) {
  if (g_rendezvous.load() > 0) {  // nothing to save: leave now (write and _exit are safe here)
    write_all("mgd: error: stopped by ");
    write_all(signal_name(signal));
    write_all(" while ");
    write_all(g_rendezvous_what);
    write_all("\n");
    ::_exit(128 + signal);
  }
  if (g_stop.load() >= 0) {  // second signal: the default action, now
    std::signal(signal, SIG_DFL);
    std::raise(signal);
    return;
  }
  g_stop_time_ns.store(now_ns());
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
  g_stop_time_ns.store(now_ns());
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

RendezvousScope::RendezvousScope(const std::string& what) {
  if (g_rendezvous.load() == 0) {
    std::snprintf(g_rendezvous_what, sizeof g_rendezvous_what, "%s", what.c_str());
  }
  g_rendezvous.fetch_add(1);
  // A stop requested before the scope began ends the process now, as one during it would.
  if (stop_requested()) exit_for_stop(what);
}

RendezvousScope::~RendezvousScope() { g_rendezvous.fetch_sub(1); }

double monotonic_seconds() noexcept { return static_cast<double>(now_ns()) * 1e-9; }

bool stop_grace_expired(double wait_start_seconds) noexcept {
  if (!stop_requested()) return false;
  const double since = std::max(wait_start_seconds, static_cast<double>(g_stop_time_ns.load()) * 1e-9);
  return monotonic_seconds() - since >= kCollectiveStopGraceSeconds;
}

void exit_for_stop(const std::string& what) noexcept {
  const int signal = stop_signal();
  std::cerr << "mgd: error: stopped by " << signal_name(signal) << " while " << what << std::endl;
  ::_exit(signal > 0 ? 128 + signal : 1);
}

}  // namespace mgd::training
