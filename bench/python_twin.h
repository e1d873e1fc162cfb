// What the benchmarks with a persistent Python twin share (step_bench, detection_bench,
// moco_bench): the twin over a pipe (bench/python/SCRIPT --serve --threads N, serving with
// bench/python/twin_server.py: every answer "ok NUMBERS..." or an error), a temporary directory for
// the files both sides read, relative differences.
#pragma once

#include <stdlib.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <sstream>
#include <string>
#include <vector>

#include "support/python_server.h"

namespace mgd::bench {

inline double relative_difference(double a, double b) {
  return std::abs(a - b) / std::max(std::abs(b), 1e-12);
}

class PythonTwin {
 public:
  /// Starts /usr/bin/python3 bench/python/`script` --serve --threads `threads` `flags`...
  /// (`needs`: what the message of a failed start says the script needs).
  PythonTwin(const std::string& script, int threads, const std::string& needs,
             const std::vector<std::string>& flags = {})
      : server_(MGD_PYTHON, std::string(MGD_SOURCE_DIR) + "/bench/python/" + script,
                args(threads, flags), needs) {}

  bool ok() const { return server_.ok(); }
  const std::string& error() const { return server_.error(); }
  const std::string& version() const { return server_.version(); }

  /// The numbers of the answer to `command`; throws on an error or a malformed answer.
  std::vector<double> ask(const std::string& command) {
    TORCH_CHECK(server_.ok(), "the Python server is not running: ", server_.error());
    const std::string answer = server_.ask(command);
    TORCH_CHECK(answer.rfind("ok", 0) == 0, "Python server, '", command,
                "': ", answer.empty() ? "no answer" : answer);
    std::istringstream in(answer.substr(2));
    std::vector<double> numbers;
    double v;
    while (in >> v) numbers.push_back(v);
    TORCH_CHECK(in.eof(), "Python server, '", command, "': ", answer);
    return numbers;
  }

 private:
  static std::vector<std::string> args(int threads, const std::vector<std::string>& flags) {
    std::vector<std::string> all = {"--threads", std::to_string(threads)};
    all.insert(all.end(), flags.begin(), flags.end());
    return all;
  }

  mgd::testing::PythonServer server_;
};

/// A temporary directory, removed with everything in it at destruction.
class TempDir {
 public:
  TempDir() {
    std::string pattern =
        (std::filesystem::temp_directory_path() / "mgd-bench.XXXXXX").string();
    TORCH_CHECK(mkdtemp(pattern.data()) != nullptr, "cannot create a temporary directory");
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

}  // namespace mgd::bench
