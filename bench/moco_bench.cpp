// MoCo v2's training step against the official code's in PyTorch (bench/python/moco_step.py),
// and what MGD adds to it (MoCo + MGD vs the teacher's forward + the MoCo step), side by side
// in one run.
//
//   moco_bench [--quick | --smoke] [--reps N] [--warmup N] [--threads LIST] [--size PX]
//              [--batch N] [--json PATH]
//
// MoCo: mgd's MoCo(MoCoOptions("resnet18"): MoCo v2's MLP head, dim 128, K 4096, m 0.999,
// T 0.2) and the official builder's MoCo on torchvision's resnet18 with mgd's state_dict
// (encoders and queue; load_state_dict, strict), on one fixed pair of views (--batch 32 images
// of --size 64 px, normal noise). A step: query features, keys without a graph (after the
// key encoder's momentum update), logits against the queue, InfoNCE, zero_grad, backward,
// SGD (momentum 0.9, weight decay 1e-4, no Nesterov: MoCo's; mgd's one-pass update, the MoCo
// task's default), the keys enqueued. One BatchNorm group on both sides (the
// official code shuffles keys across GPUs; one process has nothing to shuffle). Both sides'
// first-step losses must agree to 1e-4 relative (exit 1 otherwise).
//
// MoCo + MGD: a frozen MoCo ResNet-50 encoder (eval mode) as the teacher, the distiller on
// the query view with the reference's settings (all four stages, AMP, BatchNorm on the
// student side, divisors [8, 4, 2, 1], / batch / 1e4), its matching from one tracked batch.
// "plain" = the teacher's forward without a graph + the MoCo step (what MGD adds to); "mgd"
// = the task's step (src/tasks/moco.cpp). C++ alone, 2 x reps of each, interleaved.
//
// Defaults: 7 repetitions after 2 warm-up rounds, threads 2,1; --quick: 3 after 1; --smoke:
// 1 after 0, 32 px, batch 8 (meaningless figures).
//
// JSON (--json): a list of {"name", "mgd", "baseline", "unit", "advantage", "target"}:
//   moco_step_r18_tT          ms per step, advantage python/mgd, target 1.1
//   moco_mgd_overhead_r50_r18_tT  mgd: MoCo + MGD step, baseline: plain (both C++), ms;
//                             advantage plain/mgd, target 1/1.05
// Exit status 1 if a check fails or the Python side cannot run.

#include <torch/torch.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "bench_args.h"
#include "bench_json.h"
#include "bench_util.h"
#include "mgd/distiller/distiller.h"
#include "mgd/models/moco.h"
#include "mgd/serialize/checkpoint.h"
#include "mgd/serialize/state_dict.h"
#include "mgd/training/sgd.h"
#include "mgd/util/memory.h"
#include "mgd/util/threads.h"
#include "python_twin.h"

namespace {

using mgd::bench::Clock;
using mgd::bench::median;
using mgd::bench::relative_difference;
using mgd::bench::run_alternately;
using mgd::bench::seconds_since;
using Entry = mgd::bench::Figure;
namespace ser = mgd::serialize;

constexpr double kStepTarget = 1.1, kOverheadTarget = 1 / 1.05;
constexpr double kLossTolerance = 1e-4, kLearningRate = 0.03, kLossFactor = 1e4;
constexpr int64_t kDim = 128, kQueue = 4096;
constexpr double kMomentum = 0.999, kTemperature = 0.2;

struct Settings {
  int reps = 7, warmup = 2;
  std::vector<int> threads = {2, 1};
  int64_t size = 64, batch = 32;
  std::string json;
};

torch::Tensor unit(const torch::Tensor& x) {
  return torch::nn::functional::normalize(x, torch::nn::functional::NormalizeFuncOptions().dim(1));
}

mgd::training::SGDOptions moco_sgd() {
  return mgd::training::SGDOptions(kLearningRate)
      .momentum(0.9)
      .weight_decay(1e-4)
      .nesterov(false)
      .one_pass(true);
}

class MoCoCase {
 public:
  MoCoCase(const Settings& s, const mgd::bench::TempDir& dir, mgd::bench::PythonTwin& py) {
    torch::manual_seed(0);
    moco_ = mgd::models::MoCo(mgd::models::MoCoOptions("resnet18")
                                  .dim(kDim)
                                  .queue_size(kQueue)
                                  .momentum(kMomentum)
                                  .temperature(kTemperature));
    moco_->train();
    im_q_ = torch::randn({s.batch, 3, s.size, s.size});
    im_k_ = torch::randn({s.batch, 3, s.size, s.size});
    torch::manual_seed(1);
    teacher_ = mgd::models::MoCoEncoder(mgd::models::MoCoEncoderOptions("resnet50").dim(kDim));
    teacher_->eval();
    for (auto& p : teacher_->parameters()) p.requires_grad_(false);
    distiller_ = mgd::Distiller(teacher_, moco_->encoder_q, mgd::DistillerOptions().reducer("amp"));
    distiller_->track(torch::randn({s.batch, 3, s.size, s.size}));
    distiller_->update_matching();
    distiller_->train();
    moco_sgd_ = std::make_unique<mgd::training::SGD>(moco_->encoder_q->parameters(), moco_sgd());
    mgd_sgd_ = std::make_unique<mgd::training::SGD>(distiller_->trainable_parameters(), moco_sgd());

    ser::save_state_dict(dir / "moco.pth", *moco_);
    ser::Dict batch;
    batch.insert_or_assign("im_q", im_q_);
    batch.insert_or_assign("im_k", im_k_);
    ser::save_file(dir / "batch.pth", ser::Value(std::move(batch)));
    int64_t params = 0;
    for (const auto& p : moco_->encoder_q->parameters()) params += p.numel();
    const auto answer = py.ask("setup resnet18 " + std::to_string(kDim) + " " +
                               std::to_string(kQueue) + " " + std::to_string(kMomentum) + " " +
                               std::to_string(kTemperature) + " " + (dir / "") + " " +
                               std::to_string(kLearningRate));
    TORCH_CHECK(answer.size() == 1 && answer[0] == static_cast<double>(params),
                "the Python MoCo differs from mgd's (query encoder parameters ", params, ")");
  }

  /// kind: "moco" (the MoCo step), "plain" (the teacher's forward + the MoCo step) or "mgd"
  /// (MoCo + MGD). Returns (InfoNCE loss, distillation loss).
  std::pair<double, double> step(const std::string& kind) {
    auto fq = mgd::functional::grouped_extract(*moco_->encoder_q, im_q_, 1);
    auto q = unit(fq.logits);
    torch::Tensor k;
    {
      torch::NoGradGuard no_grad;
      k = unit(moco_->encoder_k->extract(im_k_).logits);
    }
    auto logits = moco_->logits(q, k);
    auto loss = torch::nn::functional::cross_entropy(logits, torch::zeros({q.size(0)}, torch::kLong));
    const double contrast = loss.item<double>();
    double distill = 0;
    if (kind != "moco") {
      mgd::Features ft;
      {
        torch::NoGradGuard no_grad;
        ft = teacher_->extract(im_q_);
      }
      if (kind == "mgd") {
        const auto d = distiller_->forward_features(ft, fq);
        loss = loss + d.loss / static_cast<double>(q.size(0)) / kLossFactor;
        distill = d.loss.item<double>();
      }
    }
    auto& sgd = kind == "mgd" ? *mgd_sgd_ : *moco_sgd_;
    sgd.zero_grad();
    loss.backward();
    sgd.step();
    moco_->momentum_update();
    moco_->enqueue(k);
    return {contrast, distill};
  }

 private:
  mgd::models::MoCo moco_{nullptr};
  mgd::models::MoCoEncoder teacher_{nullptr};
  mgd::Distiller distiller_{nullptr};
  std::unique_ptr<mgd::training::SGD> moco_sgd_, mgd_sgd_;
  torch::Tensor im_q_, im_k_;
};

void print_header() {
  std::printf("%-30s %10s %10s %-4s %9s %8s\n", "name", "mgd", "baseline", "unit", "advantage",
              "target");
}

void print_line(const Entry& e) {
  std::printf("%-30s %10.3f %10.3f %-4s %8.3fx %7.3gx%s\n", e.name.c_str(), e.mgd, e.baseline,
              e.unit.c_str(), e.advantage, e.target, e.advantage >= e.target ? "" : "  below target");
}

void run(const Settings& s, mgd::bench::PythonTwin& py, std::vector<Entry>* entries) {
  const mgd::bench::TempDir dir;
  mgd::set_num_threads(s.threads.front());
  py.ask("threads " + std::to_string(s.threads.front()));
  MoCoCase c(s, dir, py);
  const auto first = c.step("moco");
  const auto theirs = py.ask("step");
  TORCH_CHECK(theirs.size() == 2, "bad Python answer");
  const double d = relative_difference(first.first, theirs[1]);
  std::printf("  (first step: InfoNCE mgd %.7g, PyTorch %.7g; relative difference %.2g)\n",
              first.first, theirs[1], d);
  TORCH_CHECK(std::isfinite(first.first) && d <= kLossTolerance,
              "the first MoCo step's losses differ by more than ", kLossTolerance,
              " relative: mgd and the official MoCo do not compute the same thing");
  print_header();
  for (const int t : s.threads) {
    const int used = mgd::set_num_threads(t);
    const auto py_threads = py.ask("threads " + std::to_string(t));
    TORCH_CHECK(py_threads.size() == 1 && py_threads[0] == used,
                "the two sides run different thread counts");
    const std::string tag = "_t" + std::to_string(t);
    std::vector<double> cpp_t, py_t;
    for (int rep = -s.warmup; rep < s.reps; ++rep) {
      double cpp_s = 0, py_s = 0;
      run_alternately(
          rep,
          [&] {
            const auto t0 = Clock::now();
            const auto l = c.step("moco");
            cpp_s = seconds_since(t0);
            TORCH_CHECK(std::isfinite(l.first), "non-finite mgd loss");
          },
          [&] {
            const auto a = py.ask("step");
            TORCH_CHECK(a.size() == 2 && std::isfinite(a[1]), "non-finite Python loss");
            py_s = a[0];
          });
      if (rep >= 0) cpp_t.push_back(cpp_s), py_t.push_back(py_s);
    }
    entries->push_back({"moco_step_r18" + tag, 1e3 * median(cpp_t), 1e3 * median(py_t), "ms",
                        median(py_t) / median(cpp_t), kStepTarget});
    print_line(entries->back());
    std::vector<double> plain_t, mgd_t;
    for (int rep = -s.warmup; rep < 2 * s.reps; ++rep) {
      for (const char* kind : rep % 2 == 0 ? std::vector<const char*>{"plain", "mgd"}
                                           : std::vector<const char*>{"mgd", "plain"}) {
        const auto t0 = Clock::now();
        const auto l = c.step(kind);
        const double sec = seconds_since(t0);
        TORCH_CHECK(std::isfinite(l.first + l.second), "non-finite mgd loss");
        if (rep >= 0) (std::string(kind) == "mgd" ? mgd_t : plain_t).push_back(sec);
      }
    }
    entries->push_back({"moco_mgd_overhead_r50_r18" + tag, 1e3 * median(mgd_t),
                        1e3 * median(plain_t), "ms", median(plain_t) / median(mgd_t),
                        kOverheadTarget});
    print_line(entries->back());
  }
}

int usage(const char* argv0) {
  std::fprintf(stderr,
               "usage: %s [--quick | --smoke] [--reps N] [--warmup N] [--threads LIST] "
               "[--size PX] [--batch N] [--json PATH]\n",
               argv0);
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  Settings s;
  int64_t size = -1, batch = -1;
  mgd::bench::Args args(/*smoke=*/true);
  args.option("--threads", [&](const std::string& v) {
    s.threads = mgd::bench::thread_list(v);
    return !s.threads.empty();
  });
  args.option("--size", [&](const std::string& v) {
    size = std::atoll(v.c_str());
    return size >= 32;
  });
  args.option("--batch", [&](const std::string& v) {
    batch = std::atoll(v.c_str());
    return batch >= 2 && kQueue % batch == 0;
  });
  if (!args.parse(argc, argv)) return usage(argv[0]);
  s.json = args.json;
  if (args.mode == mgd::bench::Args::kQuick) {
    s.reps = 3;
    s.warmup = 1;
  } else if (args.mode == mgd::bench::Args::kSmoke) {
    s.reps = 1;
    s.warmup = 0;
    s.size = 32;
    s.batch = 8;
  }
  if (args.reps > 0) s.reps = args.reps;
  if (args.warmup >= 0) s.warmup = args.warmup;
  if (size > 0) s.size = size;
  if (batch > 0) s.batch = batch;

  mgd::bench::PythonTwin py("moco_step.py", s.threads.front(),
                            "the baseline needs it, with torch and torchvision");
  if (!py.ok()) {
    std::fprintf(stderr, "moco_bench: %s\n", py.error().c_str());
    return 1;
  }
  mgd::keep_freed_memory();  // as `mgd train` does (Engine)
  std::printf("mgd vs the official MoCo (%s), median of %d after %d warm-up round(s), "
              "ResNet-18 MoCo v2, batch %lld x 3 x %lld x %lld:\n",
              py.version().c_str(), s.reps, s.warmup, static_cast<long long>(s.batch),
              static_cast<long long>(s.size), static_cast<long long>(s.size));
  std::vector<Entry> entries;
  try {
    run(s, py, &entries);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "moco_bench: %s\n", e.what());
    return 1;
  }
  if (!s.json.empty() && !mgd::bench::write_figures(s.json, entries)) {
    std::fprintf(stderr, "moco_bench: cannot write %s\n", s.json.c_str());
    return 1;
  }
  return 0;
}
