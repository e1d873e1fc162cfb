// Shared by the logging tests: a scratch directory, files read whole, and subprocesses
// (the Python readers in tests/oracle/ run through MGD_PYTHON). POSIX only.
#pragma once

#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>
#include "support/temp_dir.h"

namespace mgd::logging::testing {

/// A fresh temporary directory (tests/support/temp_dir.h).
class TempDir : public mgd::testing::TempDir {
 public:
  TempDir() : mgd::testing::TempDir("mgd-logging") {}
};

inline std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

inline void write_file(const std::string& path, const std::string& data) {
  std::ofstream(path, std::ios::binary) << data;
}

/// What a command printed on stdout, and its exit status (-1 if it did not exit normally).
struct CommandResult {
  std::string out;
  int status = -1;
};

inline CommandResult run_command(const std::string& cmd) {
  CommandResult r;
  FILE* pipe = popen(cmd.c_str(), "r");
  if (pipe == nullptr) return r;
  char buf[4096];
  while (size_t n = fread(buf, 1, sizeof buf, pipe)) r.out.append(buf, n);
  const int status = pclose(pipe);
  r.status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

/// `path` quoted for /bin/sh.
inline std::string shell_quote(const std::string& path) {
  std::string q = "'";
  for (char c : path) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

/// Runs tests/oracle/<script> with `args` (already quoted) through MGD_PYTHON.
inline CommandResult run_oracle(const std::string& script, const std::string& args) {
  return run_command(std::string(MGD_PYTHON) + " " +
                     shell_quote(std::string(MGD_SOURCE_DIR) + "/tests/oracle/" + script) + " " +
                     args + " 2>&1");
}

/// The event files (names containing "tfevents") in `dir`, sorted.
inline std::vector<std::string> event_files(const std::string& dir) {
  std::vector<std::string> files;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    if (e.path().filename().string().find("tfevents") != std::string::npos) {
      files.push_back(e.path().string());
    }
  }
  std::sort(files.begin(), files.end());
  return files;
}

/// True for a non-empty string of ASCII digits.
inline bool all_digits(const std::string& s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

inline std::vector<std::string> split_lines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

}  // namespace mgd::logging::testing
