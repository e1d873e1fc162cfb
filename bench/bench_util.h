// Timing helpers every side-by-side benchmark uses (step_bench, detection_bench): medians,
// wall-clock seconds, peak resident memory, and the C++/Python alternation that keeps a noisy,
// shared machine's drift out of the ratios. Torch-free, header-only.
#pragma once

#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <limits>
#include <vector>

namespace mgd::bench {

using Clock = std::chrono::steady_clock;

/// A figure's target when it has none (written as null).
inline const double kNoTarget = std::numeric_limits<double>::quiet_NaN();

/// The median of `x` (the mean of the middle two for an even count); 0 for none.
inline double median(std::vector<double> x) {
  std::sort(x.begin(), x.end());
  const size_t n = x.size();
  return n == 0 ? 0.0 : n % 2 == 1 ? x[n / 2] : 0.5 * (x[n / 2 - 1] + x[n / 2]);
}

inline double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

/// This process's peak resident set size so far, MiB.
inline double peak_rss_mib() {
  struct rusage usage {};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_maxrss) / 1024.0;  // Linux: kilobytes
}

/// Repetition `rep` (negative: warm-up) runs C++ then Python, the next Python then C++, so
/// neither side always runs first (warm caches, the other process's leftovers).
template <class Cpp, class Py>
void run_alternately(int rep, Cpp&& run_cpp, Py&& run_py) {
  if (((rep % 2) + 2) % 2 == 0) {
    run_cpp();
    run_py();
  } else {
    run_py();
    run_cpp();
  }
}

}  // namespace mgd::bench
