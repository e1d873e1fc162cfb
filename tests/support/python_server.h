// A persistent Python helper process speaking a line protocol over pipes, for oracles and
// baselines that must not pay Python's start-up per call: started as
// `PYTHON SCRIPT --serve ARGS...`, it first answers "ready VERSION", then one line per command,
// and exits on "quit". Used by the scipy oracle (tests/solver/solver_testing.h) and by
// bench/step_bench.cpp's PyTorch twin. Torch-free.
#pragma once

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <string>
#include <vector>

namespace mgd::testing {

class PythonServer {
 public:
  /// `needs` completes the message when `python` is missing (what it must have installed).
  PythonServer(const std::string& python, const std::string& script,
               const std::vector<std::string>& args, const std::string& needs) {
    if (access(python.c_str(), X_OK) != 0) {
      error_ = python + " not found (" + needs + ")";
      return;
    }
    if (access(script.c_str(), R_OK) != 0) {
      error_ = "script " + script + " not found";
      return;
    }
    std::vector<std::string> argv = {python, script, "--serve"};
    argv.insert(argv.end(), args.begin(), args.end());
    std::vector<char*> c_argv;
    for (auto& a : argv) c_argv.push_back(a.data());
    c_argv.push_back(nullptr);
    int to_child[2], from_child[2];
    if (pipe(to_child) != 0 || pipe(from_child) != 0) {
      error_ = "pipe() failed";
      return;
    }
    signal(SIGPIPE, SIG_IGN);  // a dead helper must surface as an error, not kill us
    pid_ = fork();
    if (pid_ == 0) {
      dup2(to_child[0], 0);
      dup2(from_child[1], 1);
      for (int fd : {to_child[0], to_child[1], from_child[0], from_child[1]}) close(fd);
      execv(c_argv[0], c_argv.data());
      _exit(127);
    }
    close(to_child[0]);
    close(from_child[1]);
    if (pid_ < 0) {
      close(to_child[1]);
      close(from_child[0]);
      error_ = "fork() failed";
      return;
    }
    in_ = fdopen(to_child[1], "w");
    out_ = fdopen(from_child[0], "r");
    const std::string hello = read_line();
    if (hello.rfind("ready", 0) != 0) {
      error_ = python + " " + script + " did not start: " + (hello.empty() ? "no answer" : hello);
      return;
    }
    version_ = hello.size() > 6 ? hello.substr(6) : "";
    ok_ = true;
  }

  ~PythonServer() {
    if (in_ != nullptr) {
      std::fputs("quit\n", in_);
      std::fclose(in_);
    }
    if (out_ != nullptr) std::fclose(out_);
    if (pid_ > 0) waitpid(pid_, nullptr, 0);
  }
  PythonServer(const PythonServer&) = delete;
  PythonServer& operator=(const PythonServer&) = delete;

  bool ok() const { return ok_; }
  const std::string& error() const { return error_; }
  /// What the helper said after "ready" (e.g. the library versions).
  const std::string& version() const { return version_; }

  /// Sends one command line; returns the answer line ("" when the helper is not running).
  std::string ask(const std::string& command) {
    if (!ok_) return "";
    std::fputs((command + "\n").c_str(), in_);
    std::fflush(in_);
    return read_line();
  }

 private:
  std::string read_line() {
    if (out_ == nullptr) return "";
    std::string line;
    int ch;
    while ((ch = std::fgetc(out_)) != EOF && ch != '\n') line.push_back(static_cast<char>(ch));
    return line;
  }

  pid_t pid_ = -1;
  FILE* in_ = nullptr;
  FILE* out_ = nullptr;
  bool ok_ = false;
  std::string error_, version_;
};

}  // namespace mgd::testing
