#include "mgd/distributed/launch.h"

#include <arpa/inet.h>
#include <c10/util/Exception.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <thread>

namespace mgd::distributed {
namespace {

std::atomic<int> g_forward_signal{0};

extern "C" void on_signal(int sig) {
  g_forward_signal.store(sig);
}

int status_code(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 1;
}

}  // namespace

int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  TORCH_CHECK(fd >= 0, "free_port: socket() failed: ", std::strerror(errno));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof addr;
  const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
                  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0;
  const int err = errno;
  ::close(fd);
  TORCH_CHECK(ok, "free_port: cannot bind a port on 127.0.0.1: ", std::strerror(err));
  return ntohs(addr.sin_port);
}

int launch(const LaunchOptions& options, const std::vector<std::string>& command) {
  TORCH_CHECK(options.nproc_per_node() >= 1, "Invalid --nproc-per-node: ", options.nproc_per_node(),
              " (expected >= 1)");
  TORCH_CHECK(!command.empty(), "mgd launch: no command to run (give it after --)");
  TORCH_CHECK(options.master_port() >= 0 && options.master_port() <= 65535,
              "Invalid --master-port: ", options.master_port());
  const int port = options.master_port() > 0 ? options.master_port() : free_port();
  const int64_t n = options.nproc_per_node();

  std::vector<char*> argv;
  for (const auto& a : command) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);

  struct sigaction sa {
  }, old_int{}, old_term{};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, &old_int);
  sigaction(SIGTERM, &sa, &old_term);
  std::cout.flush();
  std::cerr.flush();

  std::vector<pid_t> pids;
  std::vector<bool> running;
  for (int64_t r = 0; r < n; ++r) {
    const pid_t pid = ::fork();
    if (pid == 0) {
      sigaction(SIGINT, &old_int, nullptr);
      sigaction(SIGTERM, &old_term, nullptr);
      ::setenv("RANK", std::to_string(r).c_str(), 1);
      ::setenv("LOCAL_RANK", std::to_string(r).c_str(), 1);
      ::setenv("WORLD_SIZE", std::to_string(n).c_str(), 1);
      ::setenv("LOCAL_WORLD_SIZE", std::to_string(n).c_str(), 1);
      ::setenv("MASTER_ADDR", options.master_addr().c_str(), 1);
      ::setenv("MASTER_PORT", std::to_string(port).c_str(), 1);
      ::execvp(argv[0], argv.data());
      std::fprintf(stderr, "mgd launch: cannot run '%s': %s\n", argv[0], std::strerror(errno));
      ::_exit(127);
    }
    if (pid < 0) {
      for (pid_t p : pids) ::kill(p, SIGKILL);
      for (pid_t p : pids) ::waitpid(p, nullptr, 0);
      TORCH_CHECK(false, "mgd launch: fork failed: ", std::strerror(errno));
    }
    pids.push_back(pid);
    running.push_back(true);
  }

  int result = 0;
  int64_t alive = n;
  bool terminating = false;
  std::chrono::steady_clock::time_point term_time;
  auto terminate_all = [&](int sig) {
    for (size_t i = 0; i < pids.size(); ++i) {
      if (running[i]) ::kill(pids[i], sig);
    }
  };
  while (alive > 0) {
    int status = 0;
    const pid_t pid = ::waitpid(-1, &status, WNOHANG);
    if (pid > 0) {
      for (size_t i = 0; i < pids.size(); ++i) {
        if (pids[i] != pid || !running[i]) continue;
        running[i] = false;
        --alive;
        const int code = status_code(status);
        if (code != 0 && result == 0) {
          result = code;
          if (alive > 0) {
            std::cerr << "mgd launch: rank " << i << " (pid " << pid << ") failed with status "
                      << code << "; stopping the other ranks\n";
            terminating = true;
            term_time = std::chrono::steady_clock::now();
            terminate_all(SIGTERM);
          }
        }
      }
      continue;
    }
    if (const int sig = g_forward_signal.exchange(0); sig != 0) {
      terminate_all(sig);
      if (!terminating) {
        terminating = true;
        term_time = std::chrono::steady_clock::now();
      }
      if (result == 0) result = 128 + sig;
    }
    if (terminating && std::chrono::steady_clock::now() - term_time >
                           std::chrono::duration<double>(options.kill_grace_seconds())) {
      terminate_all(SIGKILL);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  sigaction(SIGINT, &old_int, nullptr);
  sigaction(SIGTERM, &old_term, nullptr);
  return result;
}

}  // namespace mgd::distributed
