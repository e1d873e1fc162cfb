// mgd::solver against scipy.optimize.linear_sum_assignment, measured side by side in one run.
//
//   solver_bench [--quick] [--reps N] [--json PATH]
//
// Every case is generated with a fixed seed and written once to a temporary file; scipy
// (tests/oracle/lsa_oracle.py, one persistent process) reads it and builds the explicitly
// tiled (k*s) x t matrix before any timing. Then mgd and scipy are timed alternately, N times
// each (default 5); scipy's time covers the linear_sum_assignment call only, mgd's the whole
// tiled_assignment call. The table shows the medians; the JSON is a list of
// {"name", "mgd", "baseline", "unit": "ms", "advantage": baseline / mgd, "target"}, with target
// 10 for t = 2048, k = 4, 3 for t = 2048, k = 2, and 1 elsewhere. The optimal costs must agree
// to 1e-9 relative: the exit status is 1 if any does not (or if scipy cannot run).

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "bench_json.h"
#include "mgd/solver/assignment.h"
#include "solver/solver_testing.h"

namespace {

using mgd::solver::testing::ScipyOracle;
using mgd::solver::testing::TempMatrixFile;

constexpr double kCostTolerance = 1e-9;

enum class Costs { kUniform, kFeatures };

struct Case {
  std::string name;
  int64_t s, t, k;
  Costs costs;
  double target;  // 0: none
};

struct Outcome {
  Case c;
  double mgd_ms, scipy_ms, mgd_cost, scipy_cost;
  bool agree;
};

std::vector<Case> all_cases(bool quick) {
  std::vector<Case> cases;
  auto add = [&](int64_t s, int64_t t, int64_t k, Costs costs) {
    const char* kind = costs == Costs::kUniform ? "uniform" : "features";
    char name[96];
    if (s * k == t && k == 1) {
      std::snprintf(name, sizeof(name), "plain_t%lld_%s", static_cast<long long>(t), kind);
    } else if (s * k == t) {
      std::snprintf(name, sizeof(name), "tiled_t%lld_k%lld_%s", static_cast<long long>(t),
                    static_cast<long long>(k), kind);
    } else {
      std::snprintf(name, sizeof(name), "rect_s%lld_t%lld_%s", static_cast<long long>(s),
                    static_cast<long long>(t), kind);
    }
    double target = 1.0;
    if (t == 2048 && s * k == t && k == 4) target = 10.0;
    if (t == 2048 && s * k == t && k == 2) target = 3.0;
    cases.push_back({name, s, t, k, costs, target});
  };
  if (quick) {
    add(512, 2048, 4, Costs::kUniform);
    add(512, 2048, 4, Costs::kFeatures);
    add(1024, 2048, 2, Costs::kFeatures);
    add(512, 512, 1, Costs::kUniform);
    add(512, 2048, 1, Costs::kFeatures);
    add(1024, 4096, 4, Costs::kFeatures);
    return cases;
  }
  for (Costs costs : {Costs::kUniform, Costs::kFeatures}) {
    for (int64_t t : {256, 512, 1024, 2048, 4096}) {
      for (int64_t k : {1, 2, 4}) add(t / k, t, k, costs);
      add(t / 4, t, 1, costs);
    }
  }
  return cases;
}

double median(std::vector<double> x) {
  std::sort(x.begin(), x.end());
  const size_t n = x.size();
  return n % 2 == 1 ? x[n / 2] : 0.5 * (x[n / 2 - 1] + x[n / 2]);
}

bool run_case(const Case& c, int reps, ScipyOracle* scipy, Outcome* out) {
  const uint64_t seed = 7919u * static_cast<uint64_t>(c.t) + 131u * static_cast<uint64_t>(c.s) +
                        static_cast<uint64_t>(c.costs);
  const std::vector<double> cost =
      c.costs == Costs::kUniform ? mgd::solver::testing::uniform_costs(c.s, c.t, 0.0, 4.0, seed)
                                 : mgd::solver::testing::feature_costs(c.s, c.t, seed);
  TempMatrixFile file(cost);
  if (!file.error().empty()) {
    std::fprintf(stderr, "%s: %s\n", c.name.c_str(), file.error().c_str());
    return false;
  }
  if (!scipy->load(file.path(), c.s, c.t, c.k)) {
    std::fprintf(stderr, "%s: scipy: %s\n", c.name.c_str(), scipy->error().c_str());
    return false;
  }
  std::vector<double> mgd_ms, scipy_ms;
  double mgd_cost = 0.0, scipy_cost = 0.0;
  for (int rep = 0; rep < reps; ++rep) {
    const auto start = std::chrono::steady_clock::now();
    const mgd::solver::AssignmentResult r = mgd::solver::tiled_assignment(cost, c.s, c.t, c.k);
    const auto stop = std::chrono::steady_clock::now();
    mgd_ms.push_back(std::chrono::duration<double, std::milli>(stop - start).count());
    if (!r.ok()) {
      std::fprintf(stderr, "%s: mgd: %s\n", c.name.c_str(), mgd::solver::status_name(r.status));
      return false;
    }
    mgd_cost = r.cost;
    double seconds = 0.0;
    if (!scipy->solve(&scipy_cost, &seconds)) {
      std::fprintf(stderr, "%s: scipy: %s\n", c.name.c_str(), scipy->error().c_str());
      return false;
    }
    scipy_ms.push_back(1e3 * seconds);
  }
  const bool agree =
      std::fabs(mgd_cost - scipy_cost) <= kCostTolerance * std::max(1.0, std::fabs(scipy_cost));
  *out = {c, median(mgd_ms), median(scipy_ms), mgd_cost, scipy_cost, agree};
  return true;
}

bool write_json(const std::string& path, const std::vector<Outcome>& outcomes) {
  std::vector<mgd::bench::Figure> figures;
  for (const Outcome& o : outcomes) {
    figures.push_back({o.c.name, o.mgd_ms, o.scipy_ms, "ms", o.scipy_ms / o.mgd_ms, o.c.target});
  }
  return mgd::bench::write_figures(path, figures);
}

int usage(const char* argv0) {
  std::fprintf(stderr, "usage: %s [--quick] [--reps N] [--json PATH]\n", argv0);
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  bool quick = false;
  int reps = 5;
  std::string json;
  for (int a = 1; a < argc; ++a) {
    if (std::strcmp(argv[a], "--quick") == 0) {
      quick = true;
    } else if (std::strcmp(argv[a], "--reps") == 0 && a + 1 < argc) {
      reps = std::atoi(argv[++a]);
      if (reps < 1) return usage(argv[0]);
    } else if (std::strcmp(argv[a], "--json") == 0 && a + 1 < argc) {
      json = argv[++a];
    } else {
      return usage(argv[0]);
    }
  }

  ScipyOracle scipy(MGD_PYTHON, mgd::solver::testing::oracle_script());
  if (!scipy.ok()) {
    std::fprintf(stderr, "solver_bench: %s\n", scipy.error().c_str());
    return 1;
  }
  std::printf(
      "mgd::solver::tiled_assignment vs %s linear_sum_assignment on the tiled "
      "matrix; median of %d, ms\n",
      scipy.version().c_str(), reps);
  std::printf("%-30s %10s %10s %9s %7s  %s\n", "case", "mgd", "scipy", "advantage", "target",
              "costs agree");
  std::vector<Outcome> outcomes;
  bool all_agree = true;
  for (const Case& c : all_cases(quick)) {
    Outcome o;
    if (!run_case(c, reps, &scipy, &o)) return 1;
    outcomes.push_back(o);
    all_agree = all_agree && o.agree;
    std::printf("%-30s %10.3f %10.3f %8.1fx %6gx  %s", c.name.c_str(), o.mgd_ms, o.scipy_ms,
                o.scipy_ms / o.mgd_ms, c.target, o.agree ? "yes" : "NO");
    if (!o.agree) std::printf(" (mgd %.17g, scipy %.17g)", o.mgd_cost, o.scipy_cost);
    std::printf("%s\n", o.scipy_ms / o.mgd_ms < c.target ? "  below target" : "");
    std::fflush(stdout);
  }
  if (!json.empty() && !write_json(json, outcomes)) {
    std::fprintf(stderr, "solver_bench: cannot write %s\n", json.c_str());
    return 1;
  }
  if (!all_agree) {
    std::fprintf(stderr, "solver_bench: optimal costs disagree with scipy\n");
    return 1;
  }
  return 0;
}
