// Shared by the solver tests and bench/solver_bench.cpp: seeded cost matrices, a feasibility
// check, and the scipy oracle (tests/oracle/lsa_oracle.py) run as a persistent subprocess.
// Torch-free, POSIX only.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "../support/python_server.h"
#include "mgd/solver/assignment.h"

namespace mgd::solver::testing {

/// rows x cols costs, uniform in [lo, hi).
inline std::vector<double> uniform_costs(int64_t rows, int64_t cols, double lo, double hi,
                                         uint64_t seed) {
  std::mt19937_64 gen(seed);
  std::uniform_real_distribution<double> dist(lo, hi);
  std::vector<double> c(static_cast<size_t>(rows * cols));
  for (double& x : c) x = dist(gen);
  return c;
}

/// rows x cols integer costs in [lo, hi]: many ties.
inline std::vector<double> integer_costs(int64_t rows, int64_t cols, int lo, int hi,
                                         uint64_t seed) {
  std::mt19937_64 gen(seed);
  std::uniform_int_distribution<int> dist(lo, hi);
  std::vector<double> c(static_cast<size_t>(rows * cols));
  for (double& x : c) x = dist(gen);
  return c;
}

/// MGD's tracked cost (spec 3) on synthetic features: the mean over `images` of
/// 2 - 2 <s_j, t_c> between L2-normalised ReLU(N(0, 1)) vectors of `hw` values, for s student
/// and t teacher channels. Costs cluster near 0.7 with a small spread: many near-ties.
inline std::vector<double> feature_costs(int64_t s, int64_t t, uint64_t seed, int hw = 49,
                                         int images = 8) {
  std::mt19937_64 gen(seed);
  std::normal_distribution<double> normal(0.0, 1.0);
  auto features = [&](int64_t channels) {
    std::vector<double> f(static_cast<size_t>(channels * hw));
    for (int64_t c = 0; c < channels; ++c) {
      double* x = f.data() + c * hw;
      double norm = 0.0;
      for (int e = 0; e < hw; ++e) {
        x[e] = std::max(0.0, normal(gen));
        norm += x[e] * x[e];
      }
      norm = std::sqrt(norm);
      if (norm > 0.0) {
        for (int e = 0; e < hw; ++e) x[e] /= norm;
      }
    }
    return f;
  };
  std::vector<double> cost(static_cast<size_t>(s * t), 0.0);
  for (int image = 0; image < images; ++image) {
    const std::vector<double> fs = features(s), ft = features(t);
    for (int64_t j = 0; j < s; ++j) {
      const double* a = fs.data() + j * hw;
      double* out = cost.data() + j * t;
      for (int64_t c = 0; c < t; ++c) {
        const double* b = ft.data() + c * hw;
        double dot = 0.0;
        for (int e = 0; e < hw; ++e) dot += a[e] * b[e];
        out[c] += 2.0 - 2.0 * dot;
      }
    }
  }
  for (double& x : cost) x /= images;
  return cost;
}

/// "" if `r` is a feasible tiled assignment of the rows x cols problem with k columns per row
/// whose recomputed cost matches r.cost (relative `tolerance`); else what is wrong.
inline std::string check_assignment(const AssignmentResult& r, const std::vector<double>& cost,
                                    int64_t rows, int64_t cols, int64_t k,
                                    double tolerance = 1e-12) {
  std::ostringstream why;
  if (r.status != Status::kOptimal) return std::string("status ") + status_name(r.status);
  if (static_cast<int64_t>(r.row_to_col.size()) != rows * k) return "row_to_col has a bad size";
  if (static_cast<int64_t>(r.col_to_row.size()) != cols) return "col_to_row has a bad size";
  std::vector<int64_t> seen(static_cast<size_t>(cols), -1);
  double total = 0.0;
  for (int64_t i = 0; i < rows; ++i) {
    for (int64_t g = 0; g < k; ++g) {
      const int64_t j = r.row_to_col[i * k + g];
      if (j < 0 || j >= cols) {
        why << "row " << i << " has column " << j << " out of range";
        return why.str();
      }
      if (g > 0 && j <= r.row_to_col[i * k + g - 1]) {
        why << "row " << i << "'s columns are not strictly ascending";
        return why.str();
      }
      if (seen[j] >= 0) {
        why << "column " << j << " given to rows " << seen[j] << " and " << i;
        return why.str();
      }
      seen[j] = i;
      if (r.col_to_row[j] != i) {
        why << "col_to_row[" << j << "] = " << r.col_to_row[j] << ", expected " << i;
        return why.str();
      }
      total += cost[i * cols + j];
    }
  }
  for (int64_t j = 0; j < cols; ++j) {
    if (seen[j] < 0 && r.col_to_row[j] != -1) {
      why << "unassigned column " << j << " has col_to_row " << r.col_to_row[j];
      return why.str();
    }
  }
  if (std::fabs(total - r.cost) > tolerance * std::max(1.0, std::fabs(total))) {
    why.precision(17);
    why << "reported cost " << r.cost << " but the assignment costs " << total;
    return why.str();
  }
  return "";
}

/// A matrix written to a temporary file (native float64, as numpy.fromfile reads it), removed
/// on destruction.
class TempMatrixFile {
 public:
  explicit TempMatrixFile(const std::vector<double>& values) {
    const char* dir = std::getenv("TMPDIR");
    path_ = std::string(dir != nullptr && *dir != '\0' ? dir : "/tmp") + "/mgd_lsa_XXXXXX";
    const int fd = mkstemp(path_.data());
    if (fd < 0) {
      error_ = "mkstemp(" + path_ + ") failed";
      path_.clear();
      return;
    }
    const char* p = reinterpret_cast<const char*>(values.data());
    size_t left = values.size() * sizeof(double);
    while (left > 0) {
      const ssize_t n = write(fd, p, left);
      if (n <= 0) {
        error_ = "writing " + path_ + " failed";
        break;
      }
      p += n;
      left -= static_cast<size_t>(n);
    }
    close(fd);
  }
  ~TempMatrixFile() {
    if (!path_.empty()) unlink(path_.c_str());
  }
  TempMatrixFile(const TempMatrixFile&) = delete;
  TempMatrixFile& operator=(const TempMatrixFile&) = delete;

  const std::string& path() const { return path_; }
  const std::string& error() const { return error_; }

 private:
  std::string path_;
  std::string error_;
};

/// tests/oracle/lsa_oracle.py --serve, run once by `python` and fed commands over a pipe, so
/// that each solve costs no interpreter start-up. Every failure (no interpreter, no scipy,
/// a crash) leaves ok() false and says why in error(): callers must fail, not skip.
class ScipyOracle {
 public:
  ScipyOracle(const std::string& python, const std::string& script)
      : server_(python, script, {}, "the scipy oracle needs it, with numpy and scipy") {}

  bool ok() const { return server_.ok(); }
  const std::string& error() const { return error_.empty() ? server_.error() : error_; }
  const std::string& version() const { return server_.version(); }

  /// Reads the rows x cols matrix at `path` and tiles it k times (not timed).
  bool load(const std::string& path, int64_t rows, int64_t cols, int64_t k) {
    std::ostringstream command;
    command << "load " << path << ' ' << rows << ' ' << cols << ' ' << k;
    return ask(command.str()) == "ok" || fail();
  }

  /// Solves the loaded matrix with scipy: the optimal cost and the seconds of the call.
  bool solve(double* cost, double* seconds) {
    const std::string answer = ask("solve");
    std::istringstream in(answer);
    if (!(in >> *cost >> *seconds)) return fail();
    return true;
  }

 private:
  std::string ask(const std::string& command) {
    last_ = server_.ask(command);
    return last_;
  }

  bool fail() {
    error_ = "oracle answered '" + last_ + "'";
    return false;
  }

  mgd::testing::PythonServer server_;
  std::string error_;
  std::string last_;
};

inline std::string oracle_script() {
  return std::string(MGD_SOURCE_DIR) + "/tests/oracle/lsa_oracle.py";
}

}  // namespace mgd::solver::testing
