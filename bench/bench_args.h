// The command line of the side-by-side benchmarks (step_bench, detection_bench, moco_bench):
// the flags they share (--quick, --smoke, --reps N, --warmup N, --json PATH) parsed once, and
// each benchmark's own flags registered beside them. Torch-free, header-only.
//
//   mgd::bench::Args args(/*smoke=*/true);
//   args.flag("--no-nms", [&] { s.nms = false; });
//   args.option("--size", [&](const std::string& v) { return std::atoll(v.c_str()) >= 32; });
//   if (!args.parse(argc, argv)) return usage(argv[0]);
//   if (args.reps > 0) s.reps = args.reps;  // args.mode: kFull, kQuick or kSmoke
#pragma once

#include <cstdlib>
#include <functional>
#include <map>
#include <sstream>
#include <string>
#include <vector>

namespace mgd::bench {

/// The comma-separated parts of `s`, each through `parse` (empty parts skipped).
template <class T, class Parse>
std::vector<T> split_list(const std::string& s, Parse parse) {
  std::vector<T> parts;
  std::string part;
  std::istringstream in(s);
  while (std::getline(in, part, ',')) {
    if (!part.empty()) parts.push_back(parse(part));
  }
  return parts;
}

/// A list of thread counts ("2,1"); empty when any is not a positive number.
inline std::vector<int> thread_list(const std::string& s) {
  auto threads = split_list<int>(s, [](const std::string& p) { return std::atoi(p.c_str()); });
  for (const int t : threads)
    if (t < 1) return {};
  return threads;
}

class Args {
 public:
  enum Mode { kFull, kQuick, kSmoke };

  /// `smoke`: whether --smoke is a flag of this benchmark.
  explicit Args(bool smoke) : smoke_(smoke) {}

  /// A flag with a value; `set` returns false when the value is not valid.
  void option(const std::string& name, std::function<bool(const std::string&)> set) {
    options_[name] = std::move(set);
  }
  /// A flag without a value.
  void flag(const std::string& name, std::function<void()> set) { flags_[name] = std::move(set); }

  /// False on an unknown flag, or a missing or invalid value.
  bool parse(int argc, char** argv) {
    for (int a = 1; a < argc; ++a) {
      const std::string arg = argv[a];
      if (arg == "--quick") {
        mode = kQuick;
      } else if (arg == "--smoke" && smoke_) {
        mode = kSmoke;
      } else if (arg == "--reps" || arg == "--warmup" || arg == "--json" || options_.count(arg)) {
        if (a + 1 >= argc) return false;
        const std::string value = argv[++a];
        if (arg == "--reps") {
          reps = std::atoi(value.c_str());
          if (reps < 1) return false;
        } else if (arg == "--warmup") {
          warmup = std::atoi(value.c_str());
          if (warmup < 0) return false;
        } else if (arg == "--json") {
          json = value;
        } else if (!options_[arg](value)) {
          return false;
        }
      } else if (flags_.count(arg)) {
        flags_[arg]();
      } else {
        return false;
      }
    }
    return true;
  }

  Mode mode = kFull;
  int reps = -1;    // -1: not given
  int warmup = -1;  // -1: not given
  std::string json;

 private:
  bool smoke_;
  std::map<std::string, std::function<bool(const std::string&)>> options_;
  std::map<std::string, std::function<void()>> flags_;
};

}  // namespace mgd::bench
