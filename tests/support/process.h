// Child processes for tests that must kill, signal or limit the program under test (the
// `mgd` binary): fork + exec with the output in a file, optional file-size limit.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <string>
#include <vector>

namespace mgd::testing {

struct SpawnOptions {
  std::string output;        ///< file receiving stdout and stderr (appended); empty: /dev/null
  long file_size_limit = 0;  ///< > 0: RLIMIT_FSIZE in bytes (writes beyond fail with EFBIG)
};

/// Starts `argv` (argv[0]: the executable's path); returns the child's pid or -1.
inline pid_t spawn(const std::vector<std::string>& argv, const SpawnOptions& options = {}) {
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  const char* out = options.output.empty() ? "/dev/null" : options.output.c_str();
  const pid_t pid = ::fork();
  if (pid != 0) return pid;
  // Child: async-signal-safe calls only until exec.
  const int fd = ::open(out, O_WRONLY | O_CREAT | O_APPEND, 0644);
  if (fd >= 0) {
    ::dup2(fd, 1);
    ::dup2(fd, 2);
    ::close(fd);
  }
  if (options.file_size_limit > 0) {
    struct rlimit limit = {static_cast<rlim_t>(options.file_size_limit),
                           static_cast<rlim_t>(options.file_size_limit)};
    ::setrlimit(RLIMIT_FSIZE, &limit);
    ::signal(SIGXFSZ, SIG_IGN);  // a write past the limit then fails with EFBIG instead
  }
  ::execv(args[0], args.data());
  ::_exit(127);
}

/// Waits for `pid`; returns its exit status, or 128 + the signal that ended it.
inline int wait_exit(pid_t pid) {
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return -1;
  }
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

/// Non-blocking wait: true (and `*status` as wait_exit() gives it) once `pid` has ended.
inline bool try_wait(pid_t pid, int* status) {
  int raw = 0;
  pid_t r;
  do {
    r = ::waitpid(pid, &raw, WNOHANG);
  } while (r < 0 && errno == EINTR);
  if (r != pid) return false;
  *status = WIFEXITED(raw) ? WEXITSTATUS(raw) : WIFSIGNALED(raw) ? 128 + WTERMSIG(raw) : -1;
  return true;
}

/// Runs `argv` to completion.
inline int run(const std::vector<std::string>& argv, const SpawnOptions& options = {}) {
  const pid_t pid = spawn(argv, options);
  return pid < 0 ? -1 : wait_exit(pid);
}

}  // namespace mgd::testing
