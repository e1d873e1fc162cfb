// The MGD training step and the matching update, against the plain step in the same process
// and against the same steps in PyTorch (bench/python/mgd_step.py), side by side in one run.
//
//   step_bench [--quick] [--reps N] [--warmup N] [--threads N] [--pairs r50_r18,fmnist]
//              [--tracking-images N] [--matching-reps N] [--no-matching] [--teacher-graph]
//              [--case PAIR:KIND] [--profile DIR] [--json PATH]
//
// Pairs (random inputs, random weights): r50_r18 = ResNet-50 -> ResNet-18, 3 x 112 x 112,
// batch 16, 1000 classes; fmnist = WRN-16-2 -> ResNet-20, 1 x 28 x 28, batch 64, 10 classes.
// Kinds of step, each timed from the batch to the updated weights:
//   plain  the teacher's forward (mgd: extract_frozen, as the MGD step) + the student's step
//          (forward, cross-entropy, backward, SGD step);
//   amp    the full MGD step with the AMP reducer: Distiller::forward (teacher included),
//   sm     margin loss + cross-entropy (d_loss / batch / 1e4, as the engine), backward, SGD
//          step; and the same with the SM reducer. The matching is set beforehand (two
//          tracked batches and update_matching, not timed).
// The Python server (one persistent /usr/bin/python3 process, same thread count) runs the
// same cases; every repetition times each C++ case and its Python twin one after the other
// (the order flips every repetition), after `warmup` untimed rounds. The tables show medians.
// The distiller's overhead (plain vs amp/sm, both C++) comes from a second round of 4 x reps
// C++ steps alone, the three kinds in rotating order, the Python process idle: its steps,
// run in between, evict the caches the C++ steps start from and add noise to a 5% figure.
// The matching update is one tracking pass over `tracking-images` images (batch of the
// pair) plus the solve (AMP: tiled), in images/s, timed the same way after one warm-up pass;
// the C++ side's two forward passes are also timed alone, per batch, to show the floor.
// Defaults: 5 repetitions after 2 warm-up rounds, 320 tracking images, 3 matching
// repetitions, 2 threads; --quick: 3 after 1, 64 images, 2 (explicit flags override both).
//
// --profile DIR: after the timing, one more C++ step of each case under LibTorch's profiler,
// written as a Chrome trace (chrome://tracing, Perfetto) to DIR/PAIR_KIND.trace.json.
//
// --case PAIR:KIND runs that one case alone in this process (and alone in the Python
// process) and reports the peak resident memory (getrusage ru_maxrss) of both processes.
//
// JSON (--json): a list of {"name", "mgd", "baseline", "unit", "advantage", "target"}:
//   step_overhead_{amp,sm}_PAIR  mgd: MGD step, baseline: plain step (both C++, the C++-only
//                                round), ms;
//                                advantage plain/mgd, target 1/1.05 (overhead <= 5%)
//   step_{plain,amp,sm}_PAIR     mgd: C++ step, baseline: Python step, ms; advantage
//                                python/mgd, target 1/0.9 (amp, sm) or null (plain)
//   teacher_forward_PAIR         mgd: the teacher's extract_frozen, baseline: PyTorch's
//                                eval-mode forward (no_grad), ms; advantage python/mgd,
//                                target 1.3 (3 x reps repetitions)
//   matching_PAIR                images/s, advantage mgd/python, target 2
//   memory_KIND_PAIR (--case)    peak RSS MiB, advantage python/mgd, target 1
// Exit status 1 if a step fails or the Python side cannot run.

#include <signal.h>
#include <sys/wait.h>
#include <torch/csrc/autograd/profiler_legacy.h>
#include <torch/torch.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "bench_args.h"
#include "bench_json.h"
#include "bench_util.h"
#include "mgd/distiller/distiller.h"
#include "mgd/models/registry.h"
#include "mgd/training/sgd.h"
#include "mgd/util/memory.h"
#include "mgd/util/threads.h"
#include "python_twin.h"

namespace {

using mgd::bench::Clock;
using mgd::bench::kNoTarget;
using mgd::bench::median;
using mgd::bench::peak_rss_mib;
using mgd::bench::run_alternately;
using mgd::bench::seconds_since;
constexpr double kLossFactor = 1e4;  // the engine's default (spec 6)
// Small: random networks give large losses; the cost of a step does not depend on it.
constexpr double kLearningRate = 1e-4;
constexpr int kSetupTrackBatches = 2;

struct Pair {
  std::string name, teacher, student;
  int64_t channels, size, batch, classes;
};

const std::vector<Pair>& all_pairs() {
  static const std::vector<Pair> pairs = {
      {"r50_r18", "resnet50", "resnet18", 3, 112, 16, 1000},
      {"fmnist", "wrn_16_2", "resnet20", 1, 28, 64, 10},
  };
  return pairs;
}

const Pair* find_pair(const std::string& name) {
  for (const Pair& p : all_pairs()) {
    if (p.name == name) return &p;
  }
  return nullptr;
}

int64_t parameter_count(torch::nn::Module& m) {
  int64_t n = 0;
  for (const auto& p : m.parameters()) n += p.numel();
  return n;
}

mgd::FeatureNet make_net(const std::string& arch, const Pair& p) {
  return mgd::models::make_model(
      arch, mgd::models::ModelOptions().classes(p.classes).in_channels(p.channels));
}

torch::Tensor random_images(const Pair& p, int64_t batch) {
  return torch::randn({batch, p.channels, p.size, p.size});
}

// One pair and kind on the C++ side: networks, optimizer, a fixed batch.
class Case {
 public:
  Case(const Pair& pair, const std::string& kind, mgd::FeatureNet teacher)
      : kind_(kind), teacher_(std::move(teacher)) {
    torch::manual_seed(1);
    student_ = make_net(pair.student, pair);
    x_ = random_images(pair, pair.batch);
    y_ = torch::randint(0, pair.classes, {pair.batch}, torch::kLong);
    const mgd::training::SGDOptions sgd = mgd::training::SGDOptions(kLearningRate);
    if (kind == "plain") {
      student_->train();
      sgd_ = std::make_unique<mgd::training::SGD>(student_->parameters(), sgd);
      return;
    }
    distiller_ = mgd::Distiller(teacher_, student_, mgd::DistillerOptions().reducer(kind));
    distiller_->reset_tracking();
    for (int b = 0; b < kSetupTrackBatches; ++b) distiller_->track(torch::randn_like(x_));
    distiller_->update_matching();
    distiller_->train();
    sgd_ = std::make_unique<mgd::training::SGD>(distiller_->trainable_parameters(), sgd);
  }

  /// One training step; returns its loss.
  double step() {
    torch::Tensor loss;
    if (!distiller_) {
      // mgd's own teacher forward, as in the MGD step: the overhead is the distiller's alone.
      teacher_->extract_frozen(x_);
      loss = torch::nn::functional::cross_entropy(student_->forward(x_), y_);
    } else {
      auto out = distiller_->forward(x_);
      loss = torch::nn::functional::cross_entropy(out.logits, y_) +
             out.loss / static_cast<double>(x_.size(0)) / kLossFactor;
    }
    sgd_->zero_grad();
    loss.backward();
    sgd_->step();
    return loss.item<double>();
  }

  mgd::FeatureNet teacher() const { return teacher_; }
  mgd::FeatureNet student() const { return student_; }

 private:
  std::string kind_;
  mgd::FeatureNet teacher_, student_;
  mgd::Distiller distiller_{nullptr};
  std::unique_ptr<mgd::training::SGD> sgd_;
  torch::Tensor x_, y_;
};

using Entry = mgd::bench::Figure;

struct Settings {
  int reps = 5, warmup = 2, threads = 2, matching_reps = 3;
  int64_t tracking_images = 320;
  bool matching = true, teacher_graph = false;
  std::vector<std::string> pairs = {"r50_r18", "fmnist"};
  std::string only_case, json, profile;
};

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> parts;
  std::string part;
  std::istringstream in(s);
  while (std::getline(in, part, sep)) {
    if (!part.empty()) parts.push_back(part);
  }
  return parts;
}

// Steps of `kinds` for one pair, C++ and Python alternating. Returns medians in seconds; with
// `own_med`, also the medians of a second round of C++ steps alone (the kinds alternating with
// each other, the Python process idle): the distiller's overhead compares steps of one process,
// without the other process's steps evicting caches in between.
void bench_steps(const Pair& pair, const std::vector<std::string>& kinds, const Settings& s,
                 mgd::bench::PythonTwin& py, std::map<std::string, double>* cpp_med,
                 std::map<std::string, double>* py_med,
                 std::map<std::string, double>* own_med = nullptr) {
  torch::manual_seed(0);
  mgd::FeatureNet teacher = make_net(pair.teacher, pair);
  teacher->eval();
  std::map<std::string, std::unique_ptr<Case>> cases;
  for (const auto& kind : kinds) {
    cases[kind] = std::make_unique<Case>(pair, kind, teacher);
    const auto counts = py.ask("setup " + pair.name + " " + kind);
    const int64_t tc = parameter_count(*teacher), sc = parameter_count(*cases[kind]->student());
    TORCH_CHECK(counts.size() == 2 && counts[0] == tc && counts[1] == sc, pair.name,
                ": the Python networks differ from mgd's (parameters: teacher ", tc, " vs ",
                counts.size() == 2 ? counts[0] : -1, ", student ", sc, " vs ",
                counts.size() == 2 ? counts[1] : -1, ")");
  }
  std::map<std::string, std::vector<double>> cpp_t, py_t;
  for (int rep = -s.warmup; rep < s.reps; ++rep) {
    for (const auto& kind : kinds) {
      double cpp_s = 0.0, py_s = 0.0;
      auto run_cpp = [&] {
        const auto t0 = Clock::now();
        const double loss = cases[kind]->step();
        cpp_s = seconds_since(t0);
        TORCH_CHECK(std::isfinite(loss), pair.name, ":", kind, ": non-finite loss");
      };
      auto run_py = [&] {
        const auto answer = py.ask("step " + pair.name + " " + kind);
        TORCH_CHECK(answer.size() == 2 && std::isfinite(answer[1]), pair.name, ":", kind,
                    ": bad Python answer");
        py_s = answer[0];
      };
      run_alternately(rep, run_cpp, run_py);
      if (rep >= 0) {
        cpp_t[kind].push_back(cpp_s);
        py_t[kind].push_back(py_s);
      }
    }
  }
  for (const auto& kind : kinds) {
    (*cpp_med)[kind] = median(cpp_t[kind]);
    (*py_med)[kind] = median(py_t[kind]);
  }
  if (own_med != nullptr) {
    std::map<std::string, std::vector<double>> own_t;
    for (int rep = -1; rep < 4 * s.reps; ++rep) {
      for (size_t i = 0; i < kinds.size(); ++i) {  // the order rotates every repetition
        const auto& kind = kinds[(i + static_cast<size_t>(rep + 1)) % kinds.size()];
        const auto t0 = Clock::now();
        const double loss = cases[kind]->step();
        if (rep >= 0) own_t[kind].push_back(seconds_since(t0));
        TORCH_CHECK(std::isfinite(loss), pair.name, ":", kind, ": non-finite loss");
      }
    }
    for (const auto& kind : kinds) (*own_med)[kind] = median(own_t[kind]);
  }
  if (!s.profile.empty()) {
    for (const auto& kind : kinds) {
      const std::string path = s.profile + "/" + pair.name + "_" + kind + ".trace.json";
      {
        torch::autograd::profiler::RecordProfile guard(path);
        cases[kind]->step();
      }
      std::printf("  (profile of one %s:%s step: %s)\n", pair.name.c_str(), kind.c_str(),
                  path.c_str());
    }
  }
}

// One tracking pass over `images` images + the AMP solve; medians of images/s.
// *cpp_forward_ms: the median over the same batches of the two forward passes alone, as a
// tracking pass runs them (extract_frozen, eval mode), per batch: what it cannot do without.
void bench_matching(const Pair& pair, const Settings& s, mgd::bench::PythonTwin& py,
                    double* cpp_rate, double* py_rate, double* cpp_solve_ms,
                    double* cpp_forward_ms) {
  torch::manual_seed(0);
  mgd::FeatureNet teacher = make_net(pair.teacher, pair);
  torch::manual_seed(2);
  mgd::FeatureNet student = make_net(pair.student, pair);
  mgd::Distiller distiller(teacher, student, mgd::DistillerOptions().reducer("amp"));
  std::vector<torch::Tensor> batches;
  for (int64_t i = 0; i < s.tracking_images; i += pair.batch)
    batches.push_back(random_images(pair, std::min(pair.batch, s.tracking_images - i)));
  const std::string command = "matching " + pair.name + " " + std::to_string(s.tracking_images);
  std::vector<double> cpp_t, py_t, solve_t;
  for (int rep = -1; rep < s.matching_reps; ++rep) {  // one warm-up pass each
    double cpp_s = 0.0, py_s = 0.0, solve_s = 0.0;
    auto run_cpp = [&] {
      const auto t0 = Clock::now();
      distiller->reset_tracking();
      for (const auto& b : batches) distiller->track(b);
      const auto t1 = Clock::now();
      distiller->update_matching();
      cpp_s = seconds_since(t0);
      solve_s = seconds_since(t1);
    };
    auto run_py = [&] { py_s = py.ask(command).at(0); };
    run_alternately(rep, run_cpp, run_py);
    if (rep >= 0) {
      cpp_t.push_back(cpp_s);
      py_t.push_back(py_s);
      solve_t.push_back(solve_s);
    }
  }
  std::vector<double> forward_t;
  {
    torch::NoGradGuard no_grad;
    teacher->eval();
    student->eval();
    for (int rep = 0; rep < s.matching_reps; ++rep) {
      for (const auto& b : batches) {
        const auto t0 = Clock::now();
        teacher->extract_frozen(b);
        student->extract_frozen(b);
        forward_t.push_back(seconds_since(t0));
      }
    }
  }
  *cpp_forward_ms = 1e3 * median(forward_t);
  *cpp_rate = static_cast<double>(s.tracking_images) / median(cpp_t);
  *py_rate = static_cast<double>(s.tracking_images) / median(py_t);
  *cpp_solve_ms = 1e3 * median(solve_t);
}

// The teacher's forward alone on a fixed batch: mgd's frozen program (extract_frozen) against
// PyTorch's eval-mode forward under no_grad, alternating; also mgd's unfolded forward
// (extract under a no-grad guard) in the same rounds, for the record. Medians in seconds.
void bench_teacher(const Pair& pair, const Settings& s, mgd::bench::PythonTwin& py,
                   double* frozen_s, double* py_s, double* unfolded_s) {
  torch::manual_seed(0);
  mgd::FeatureNet teacher = make_net(pair.teacher, pair);
  teacher->eval();
  torch::manual_seed(3);
  auto x = random_images(pair, pair.batch);
  std::vector<double> frozen_t, py_t, unfolded_t;
  const int reps = 3 * s.reps;
  for (int rep = -s.warmup; rep < reps; ++rep) {
    double a = 0, b = 0, c = 0;
    auto run_cpp = [&] {
      auto t0 = Clock::now();
      teacher->extract_frozen(x);
      a = seconds_since(t0);
      torch::NoGradGuard no_grad;
      t0 = Clock::now();
      teacher->extract(x);
      c = seconds_since(t0);
    };
    auto run_py = [&] {
      const auto answer = py.ask("teacher " + pair.name);
      TORCH_CHECK(answer.size() == 2 && std::isfinite(answer[1]), pair.name,
                  ": bad Python answer to the teacher forward");
      b = answer[0];
    };
    run_alternately(rep, run_cpp, run_py);
    if (rep >= 0) {
      frozen_t.push_back(a);
      py_t.push_back(b);
      unfolded_t.push_back(c);
    }
  }
  *frozen_s = median(frozen_t);
  *py_s = median(py_t);
  *unfolded_s = median(unfolded_t);
}

int usage(const char* argv0) {
  std::fprintf(stderr,
               "usage: %s [--quick] [--reps N] [--warmup N] [--threads N] [--pairs A,B] "
               "[--tracking-images N] [--matching-reps N] [--no-matching] [--teacher-graph] "
               "[--case PAIR:KIND] [--profile DIR] [--json PATH]\n",
               argv0);
  return 2;
}

void print_line(const Entry& e) {
  const bool met = std::isnan(e.target) || e.advantage >= e.target;
  char target[32] = "-";
  if (!std::isnan(e.target)) std::snprintf(target, sizeof(target), "%.3gx", e.target);
  std::printf("%-28s %10.2f %10.2f %-9s %8.3fx %8s%s\n", e.name.c_str(), e.mgd, e.baseline,
              e.unit.c_str(), e.advantage, target, met ? "" : "  below target");
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  Settings s;
  int matching_reps = -1;
  int64_t tracking = -1;
  mgd::bench::Args args(/*smoke=*/false);
  args.option("--threads", [&](const std::string& v) {
    s.threads = std::atoi(v.c_str());
    return s.threads >= 1;
  });
  args.option("--pairs", [&](const std::string& v) {
    s.pairs = split(v, ',');
    return true;
  });
  args.option("--tracking-images", [&](const std::string& v) {
    tracking = std::atoll(v.c_str());
    return tracking >= 1;
  });
  args.option("--matching-reps", [&](const std::string& v) {
    matching_reps = std::atoi(v.c_str());
    return matching_reps >= 1;
  });
  args.flag("--no-matching", [&] { s.matching = false; });
  args.flag("--teacher-graph", [&] { s.teacher_graph = true; });
  args.option("--profile", [&](const std::string& v) {
    s.profile = v;
    return true;
  });
  args.option("--case", [&](const std::string& v) {
    s.only_case = v;
    return true;
  });
  if (!args.parse(argc, argv)) return usage(argv[0]);
  s.json = args.json;
  if (args.mode == mgd::bench::Args::kQuick) {
    s.reps = 3;
    s.warmup = 1;
    s.matching_reps = 2;
    s.tracking_images = 64;
  }
  if (args.reps > 0) s.reps = args.reps;
  if (args.warmup >= 0) s.warmup = args.warmup;
  if (matching_reps > 0) s.matching_reps = matching_reps;
  if (tracking > 0) s.tracking_images = tracking;

  std::string case_pair, case_kind;
  if (!s.only_case.empty()) {
    const auto colon = s.only_case.find(':');
    if (colon == std::string::npos) return usage(argv[0]);
    case_pair = s.only_case.substr(0, colon);
    case_kind = s.only_case.substr(colon + 1);
    if (find_pair(case_pair) == nullptr ||
        (case_kind != "plain" && case_kind != "amp" && case_kind != "sm")) {
      std::fprintf(stderr, "step_bench: unknown case '%s' (PAIR: r50_r18|fmnist, KIND: "
                   "plain|amp|sm)\n", s.only_case.c_str());
      return 2;
    }
    s.pairs = {case_pair};
  }
  for (const auto& name : s.pairs) {
    if (find_pair(name) == nullptr) {
      std::fprintf(stderr, "step_bench: unknown pair '%s' (r50_r18, fmnist)\n", name.c_str());
      return 2;
    }
  }

  // The Python process starts before any network exists here (fork copies nothing large).
  std::vector<std::string> twin_flags;
  if (s.teacher_graph) twin_flags.push_back("--teacher-graph");
  mgd::bench::PythonTwin py("mgd_step.py", s.threads,
                            "the baseline needs it, with torch, torchvision, scipy", twin_flags);
  if (!py.ok()) {
    std::fprintf(stderr, "step_bench: %s\n", py.error().c_str());
    return 1;
  }
  const int threads = mgd::set_num_threads(s.threads);
  // As `mgd train/distill` does (Engine); MGD_KEEP_FREED_MEMORY=0 measures glibc's defaults.
  const bool kept = mgd::keep_freed_memory();
  std::printf("mgd vs PyTorch (%s), %d threads, median of %d after %d warm-up round(s)%s%s\n",
              py.version().c_str(), threads, s.reps, s.warmup,
              s.teacher_graph ? ", Python teacher records its graph" : "",
              kept ? "" : ", mgd with glibc's default malloc settings");
  std::printf("%-28s %10s %10s %-9s %9s %8s\n", "name", "mgd", "baseline", "unit", "advantage",
              "target");

  std::vector<Entry> entries;
  try {
    if (!s.only_case.empty()) {
      const Pair& pair = *find_pair(case_pair);
      std::map<std::string, double> cpp, pyt;
      bench_steps(pair, {case_kind}, s, py, &cpp, &pyt);
      const double py_mib = py.ask("rss").at(0) / 1024.0, cpp_mib = peak_rss_mib();
      std::printf("(%s:%s step: mgd %.1f ms, Python %.1f ms)\n", pair.name.c_str(),
                  case_kind.c_str(), 1e3 * cpp[case_kind], 1e3 * pyt[case_kind]);
      entries.push_back({"memory_" + case_kind + "_" + pair.name, cpp_mib, py_mib, "MiB",
                         py_mib / cpp_mib, 1.0});
      print_line(entries.back());
    } else {
      const double overhead_target = 1.0 / 1.05, python_target = 1.0 / 0.9;
      for (const auto& name : s.pairs) {
        const Pair& pair = *find_pair(name);
        double frozen_s = 0, py_teacher_s = 0, unfolded_s = 0;
        bench_teacher(pair, s, py, &frozen_s, &py_teacher_s, &unfolded_s);
        entries.push_back({"teacher_forward_" + name, 1e3 * frozen_s, 1e3 * py_teacher_s, "ms",
                           py_teacher_s / frozen_s, 1.3});
        print_line(entries.back());
        std::printf("  (%s, batch %lld; mgd without the frozen program: %.1f ms)\n",
                    pair.teacher.c_str(), static_cast<long long>(pair.batch), 1e3 * unfolded_s);
        std::map<std::string, double> cpp, pyt, own;
        bench_steps(pair, {"plain", "amp", "sm"}, s, py, &cpp, &pyt, &own);
        for (const std::string kind : {"amp", "sm"}) {
          entries.push_back({"step_overhead_" + kind + "_" + name, 1e3 * own[kind],
                             1e3 * own["plain"], "ms", own["plain"] / own[kind],
                             overhead_target});
          print_line(entries.back());
        }
        for (const std::string kind : {"plain", "amp", "sm"}) {
          entries.push_back({"step_" + kind + "_" + name, 1e3 * cpp[kind], 1e3 * pyt[kind], "ms",
                             pyt[kind] / cpp[kind],
                             kind == "plain" ? kNoTarget : python_target});
          print_line(entries.back());
        }
        std::printf("  (Python's own MGD overhead: amp %+.1f%%, sm %+.1f%% over its plain step)\n",
                    100.0 * (pyt["amp"] / pyt["plain"] - 1.0),
                    100.0 * (pyt["sm"] / pyt["plain"] - 1.0));
        if (s.matching) {
          double cpp_rate = 0, py_rate = 0, solve_ms = 0, forward_ms = 0;
          bench_matching(pair, s, py, &cpp_rate, &py_rate, &solve_ms, &forward_ms);
          entries.push_back({"matching_" + name, cpp_rate, py_rate, "images/s",
                             cpp_rate / py_rate, 2.0});
          print_line(entries.back());
          std::printf("  (%lld images, batch %lld; mgd's solve, all positions: %.1f ms; per "
                      "batch, mgd %.1f ms, of which the two forward passes %.1f ms, Python "
                      "%.1f ms)\n",
                      static_cast<long long>(s.tracking_images),
                      static_cast<long long>(pair.batch), solve_ms,
                      1e3 * static_cast<double>(pair.batch) / cpp_rate, forward_ms,
                      1e3 * static_cast<double>(pair.batch) / py_rate);
        }
      }
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "step_bench: %s\n", e.what());
    return 1;
  }
  if (!s.json.empty() && !mgd::bench::write_figures(s.json, entries)) {
    std::fprintf(stderr, "step_bench: cannot write %s\n", s.json.c_str());
    return 1;
  }
  return 0;
}
