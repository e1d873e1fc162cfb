// mgd's detection against torchvision's, side by side in one run: non-maximum suppression
// (mgd::detection::nms / batched_nms vs torchvision.ops.nms / batched_nms) and the RetinaNet
// training step (mgd's RetinaNet vs torchvision's, same weights, same batch, same threads).
//
//   detection_bench [--quick | --smoke] [--reps N] [--warmup N] [--threads LIST]
//                   [--nets r18,r50] [--size PX] [--batch N] [--boxes LIST] [--no-nms]
//                   [--no-step] [--no-distill] [--tracking-images N] [--case NET]
//                   [--json PATH]
//
// The Python side is bench/python/detection.py, one persistent /usr/bin/python3 process.
// Every repetition times the C++ case and its Python twin one after the other, the order
// flipping every repetition, after `warmup` untimed rounds; the tables show medians.
//
// NMS: for each box count n (--boxes, default 2000,10000), two sets of n boxes on a
// 1024 x 1024 canvas with uniform random scores: "spread" (centres uniform over the canvas,
// sides 16-128 px: few overlaps, most boxes kept) and "dense" (every box a jittered copy of
// one of 40 objects, as a detector's pre-NMS output: most boxes suppressed); IoU threshold
// 0.5; batched_nms on the same boxes with 80 random categories. One thread on both sides
// (torchvision's CPU kernel has one). The boxes are written once to a file Python loads; the
// kept indices of both sides must be equal (exit 1 otherwise) before anything is timed. A
// measurement is CALLS back-to-back calls (CALLS chosen so that Python's take ~0.1 s), per
// call.
//
// RetinaNet step: mgd's make_retinanet("retinanet_resnet{18,50}_fpn",
// RetinaNetOptions::torchvision().num_classes(80)) (torchvision's retinanet_resnet50_fpn
// with a pretrained backbone: FrozenBatchNorm2d, trainable layers 3, P6 from P5, its anchors,
// per-image loss normalization, L1 box loss) and torchvision's RetinaNet built the same way
// with mgd's initial state_dict (save_state_dict -> load_state_dict, strict), on one fixed
// batch (--batch 8 images of --size 128 px, normal noise as normalized images, 1-5 random
// boxes with random labels per image). A step is forward, loss_cls + loss_box_reg, zero_grad,
// backward, one-pass SGD (detection's default; lr 0.005, momentum 0.9, Nesterov, weight
// decay 1e-4) over the trainable parameters, and reading both losses; torchvision's runs RetinaNet.forward's training path
// without its GeneralizedRCNNTransform (see detection.py). Both sides' first-step losses must
// agree to 1e-4 relative (exit 1 otherwise); every loss must stay finite. Each net is timed at
// every thread count of --threads (default 2,1), both sides set to it.
//
// RetinaNet distillation (DistillCase): the reference's pair, R50-FPN teacher (frozen, eval
// mode) -> R18-FPN student, with mgd distill --task detection's MGD settings (AMP on C2-C5,
// GroupNorm(32, s) on the student side, divisors [1, 1, 0.1, 0.1], / images / 5e7), against
// the same in Python: torchvision's RetinaNets with the weights mgd saved and the authors'
// distiller as bench/python/mgd_step.py writes it, on mgd's matching. First steps (MGD and
// plain) and the matching updates' mean costs must agree (exit 1 otherwise). Per thread count:
// the MGD step vs Python's (alternating); the MGD step vs the plain step (the teacher's body
// without a graph + the student's step), C++ alone, 2 x reps each interleaved; the matching
// update (a tracking pass over --tracking-images images, default 64, + the solve) vs Python's.
// (The overhead's rounds start with --warmup untimed ones.)
//
// --case NET runs that net's step alone (the first thread count; no NMS) in this process and
// in the Python process and reports both processes' peak resident memory (ru_maxrss).
//
// Defaults: 7 repetitions after 2 warm-up rounds, nets r18,r50; --quick: 3 after 1, r18 only,
// boxes 2000; --smoke: 1 after 0, r18 at 64 px batch 2, boxes 300 (meaningless figures).
//
// JSON (--json): a list of {"name", "mgd", "baseline", "unit", "advantage", "target"}:
//   nms_{spread,dense}_N, batched_nms_{spread,dense}_N   ms per call, advantage
//                                                        torchvision/mgd, target 1
//   retinanet_step_NET_tT                                ms per step, advantage
//                                                        torchvision/mgd, target 1.1
//   distill_step_r50_r18_tT                              ms per MGD step, advantage
//                                                        python/mgd, target 1.1
//   distill_overhead_r50_r18_tT                          mgd: MGD step, baseline: plain
//                                                        step (both C++), ms; advantage
//                                                        plain/mgd, target 1/1.05
//   distill_matching_r50_r18_tT                          images/s, advantage mgd/python,
//                                                        target 2
//   memory_retinanet_NET (--case)                        peak RSS MiB, advantage
//                                                        python/mgd, target null
// Exit status 1 if a check fails or the Python side cannot run.

#include <stdlib.h>
#include <torch/torch.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "bench_args.h"
#include "bench_json.h"
#include "bench_util.h"
#include "mgd/distiller/distiller.h"
#include "mgd/distiller/padding.h"
#include "mgd/models/detection/nms.h"
#include "mgd/models/detection/retinanet.h"
#include "mgd/serialize/checkpoint.h"
#include "mgd/serialize/state_dict.h"
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
using Entry = mgd::bench::Figure;
namespace det = mgd::detection;
namespace ser = mgd::serialize;

constexpr double kNmsTarget = 1.0, kStepTarget = 1.1;
constexpr double kIou = 0.5;
constexpr double kCanvas = 1024.0;
constexpr int64_t kNmsCategories = 80, kDenseObjects = 40;
constexpr double kPythonSecondsPerMeasurement = 0.1;
constexpr int64_t kClasses = 80;
constexpr double kLearningRate = 0.005;
constexpr double kLossTolerance = 1e-4;

struct Settings {
  int reps = 7, warmup = 2;
  std::vector<int> threads = {2, 1};
  std::vector<std::string> nets = {"r18", "r50"};
  std::vector<int64_t> boxes = {2000, 10000};
  int64_t size = 128, batch = 8, tracking_images = 64;
  bool nms = true, step = true, distill = true;
  std::string only_case, json;
};

std::string arch_of(const std::string& net) {
  return net == "r18" ? "resnet18" : net == "r50" ? "resnet50" : "";
}

// bench/python/detection.py served over a pipe.
class TorchvisionTwin : public mgd::bench::PythonTwin {
 public:
  explicit TorchvisionTwin(int threads)
      : PythonTwin("detection.py", threads,
                   "the baseline needs it, with torch, torchvision, numpy and scipy") {}
};

using mgd::bench::relative_difference;
using TempDir = mgd::bench::TempDir;

void print_header() {
  std::printf("%-28s %10s %10s %-9s %9s %8s\n", "name", "mgd", "baseline", "unit", "advantage",
              "target");
}

void print_line(const Entry& e) {
  const bool met = std::isnan(e.target) || e.advantage >= e.target;
  char target[32] = "-";
  if (!std::isnan(e.target)) std::snprintf(target, sizeof(target), "%.3gx", e.target);
  std::printf("%-28s %10.3f %10.3f %-9s %8.3fx %8s%s\n", e.name.c_str(), e.mgd, e.baseline,
              e.unit.c_str(), e.advantage, target, met ? "" : "  below target");
  std::fflush(stdout);
}

// ---------------------------------------------------------------- NMS

struct NmsCase {
  std::string name;
  torch::Tensor boxes, scores, idxs;
};

// n boxes; "spread": independent boxes over the canvas; "dense": jittered copies of a few
// objects (a detector's raw output before NMS).
NmsCase make_nms_case(const std::string& kind, int64_t n) {
  torch::manual_seed(n + (kind == "dense" ? 1 : 0));
  torch::Tensor cx, cy, w, h;
  if (kind == "spread") {
    cx = torch::rand({n}) * kCanvas;
    cy = torch::rand({n}) * kCanvas;
    w = 16 + torch::rand({n}) * 112;
    h = 16 + torch::rand({n}) * 112;
  } else {
    const auto ocx = 64 + torch::rand({kDenseObjects}) * (kCanvas - 128);
    const auto ocy = 64 + torch::rand({kDenseObjects}) * (kCanvas - 128);
    const auto ow = 24 + torch::rand({kDenseObjects}) * 200;
    const auto oh = 24 + torch::rand({kDenseObjects}) * 200;
    const auto which = torch::randint(0, kDenseObjects, {n}, torch::kLong);
    w = ow.index_select(0, which) * (1 + 0.15 * torch::randn({n}));
    h = oh.index_select(0, which) * (1 + 0.15 * torch::randn({n}));
    cx = ocx.index_select(0, which) + 0.1 * w * torch::randn({n});
    cy = ocy.index_select(0, which) + 0.1 * h * torch::randn({n});
    w = w.clamp_min(4);
    h = h.clamp_min(4);
  }
  NmsCase c;
  c.name = kind + "_" + std::to_string(n);
  c.boxes = torch::stack({cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2}, 1).contiguous();
  c.scores = torch::rand({n});
  c.idxs = torch::randint(0, kNmsCategories, {n}, torch::kLong);
  return c;
}

torch::Tensor run_nms(const std::string& kind, const NmsCase& c) {
  return kind == "nms" ? det::nms(c.boxes, c.scores, kIou)
                       : det::batched_nms(c.boxes, c.scores, c.idxs, kIou);
}

void bench_nms(const Settings& s, TorchvisionTwin& py, const TempDir& dir,
               std::vector<Entry>* entries) {
  mgd::set_num_threads(1);
  py.ask("threads 1");
  std::vector<NmsCase> cases;
  for (const int64_t n : s.boxes) {
    for (const std::string kind : {"spread", "dense"}) cases.push_back(make_nms_case(kind, n));
  }
  ser::Dict file;
  for (const auto& c : cases) {
    ser::Dict entry;
    entry.insert_or_assign("boxes", c.boxes);
    entry.insert_or_assign("scores", c.scores);
    entry.insert_or_assign("idxs", c.idxs);
    file.insert_or_assign(c.name, ser::Value(std::move(entry)));
  }
  const std::string path = dir / "nms_cases.pth";
  ser::save_file(path, ser::Value(std::move(file)));
  py.ask("nms_load " + path);

  std::printf("NMS, one thread each side, IoU %.1f (%lld categories for batched_nms):\n", kIou,
              static_cast<long long>(kNmsCategories));
  print_header();
  for (const auto& c : cases) {
    for (const std::string kind : {"nms", "batched"}) {
      const std::string args = kind + " " + c.name + " " + std::to_string(kIou);
      // The same indices, in the same order, before anything is timed.
      const auto ours = run_nms(kind, c);
      const std::string keep_path = dir / "keep.pth";
      py.ask("nms_keep " + args + " " + keep_path);
      const auto theirs = ser::load_file(keep_path).to_tensor();
      TORCH_CHECK(ours.sizes() == theirs.sizes() && torch::equal(ours, theirs), kind, " ", c.name,
                  ": mgd keeps ", ours.numel(), " boxes, torchvision ", theirs.numel(),
                  ours.sizes() == theirs.sizes() ? " (different indices or order)" : "");
      // Calls per measurement: Python's take about kPythonSecondsPerMeasurement.
      const double one = py.ask("nms " + args + " 1").at(0);
      const int64_t calls = std::clamp<int64_t>(
          static_cast<int64_t>(std::llround(kPythonSecondsPerMeasurement / one)), 1, 1000);
      std::vector<double> cpp_t, py_t;
      for (int rep = -s.warmup; rep < s.reps; ++rep) {
        double cpp_s = 0, py_s = 0;
        auto run_cpp = [&] {
          int64_t kept = 0;
          const auto t0 = Clock::now();
          for (int64_t i = 0; i < calls; ++i) kept += run_nms(kind, c).numel();
          cpp_s = seconds_since(t0) / static_cast<double>(calls);
          TORCH_CHECK(kept == calls * ours.numel(), "mgd's NMS is not deterministic");
        };
        auto run_py = [&] {
          const auto answer = py.ask("nms " + args + " " + std::to_string(calls));
          TORCH_CHECK(answer.size() == 2 && answer[1] == static_cast<double>(ours.numel()),
                      "torchvision's NMS changed its answer");
          py_s = answer[0];
        };
        run_alternately(rep, run_cpp, run_py);
        if (rep >= 0) {
          cpp_t.push_back(cpp_s);
          py_t.push_back(py_s);
        }
      }
      const double cpp_ms = 1e3 * median(cpp_t), py_ms = 1e3 * median(py_t);
      entries->push_back({(kind == "nms" ? "nms_" : "batched_nms_") + c.name, cpp_ms, py_ms, "ms",
                          py_ms / cpp_ms, kNmsTarget});
      print_line(entries->back());
      std::printf("  (%lld of %lld kept, %lld calls per measurement)\n",
                  static_cast<long long>(ours.numel()), static_cast<long long>(c.boxes.size(0)),
                  static_cast<long long>(calls));
    }
  }
}

// ---------------------------------------------------------------- RetinaNet step

// Both sides to `t` intra-op threads.
void set_threads(TorchvisionTwin& py, int t) {
  const int used = mgd::set_num_threads(t);
  const auto py_threads = py.ask("threads " + std::to_string(t));
  TORCH_CHECK(py_threads.size() == 1 && py_threads[0] == used,
              "the two sides run different thread counts");
}

// 1-5 random boxes with random labels for each of a batch's images.
std::vector<det::Target> random_targets(const Settings& s) {
  std::vector<det::Target> targets;
  for (int64_t b = 0; b < s.batch; ++b) {
    const int64_t n = torch::randint(1, 6, {1}, torch::kLong).item<int64_t>();
    const auto size = static_cast<double>(s.size);
    const auto w = (0.12 + 0.66 * torch::rand({n})) * size;
    const auto h = (0.12 + 0.66 * torch::rand({n})) * size;
    const auto x1 = torch::rand({n}) * (size - w), y1 = torch::rand({n}) * (size - h);
    targets.push_back({torch::stack({x1, y1, x1 + w, y1 + h}, 1),
                       torch::randint(0, kClasses, {n}, torch::kLong)});
  }
  return targets;
}

// The batch as bench/python/detection.py loads it: {"images", "boxes", "labels"}.
void save_batch(const std::string& path, const torch::Tensor& images,
                const std::vector<det::Target>& targets) {
  std::vector<ser::Value> boxes, labels;
  for (const auto& t : targets) {
    boxes.emplace_back(t.boxes);
    labels.emplace_back(t.labels);
  }
  ser::Dict batch;
  batch.insert_or_assign("images", images);
  batch.insert_or_assign("boxes", ser::Value::list(std::move(boxes)));
  batch.insert_or_assign("labels", ser::Value::list(std::move(labels)));
  ser::save_file(path, ser::Value(std::move(batch)));
}

// mgd's side of one net: the detector, its optimizer and the fixed batch.
class RetinaCase {
 public:
  RetinaCase(const std::string& net, const Settings& s, const TempDir& dir, TorchvisionTwin& py)
      : net_name_(net) {
    const std::string arch = arch_of(net);
    torch::manual_seed(0);
    net_ = det::make_retinanet("retinanet_" + arch + "_fpn",
                               det::RetinaNetOptions::torchvision().num_classes(kClasses));
    net_->train();
    images_ = torch::randn({s.batch, 3, s.size, s.size});
    targets_ = random_targets(s);
    int64_t params = 0, trainable = 0;
    std::vector<torch::Tensor> train_params;
    for (const auto& p : net_->parameters()) {
      params += p.numel();
      if (p.requires_grad()) {
        trainable += p.numel();
        train_params.push_back(p);
      }
    }
    sgd_ = std::make_unique<mgd::training::SGD>(train_params,
                                                mgd::training::SGDOptions(kLearningRate).one_pass(true));

    const std::string sub = dir / net;
    std::filesystem::create_directories(sub);
    ser::save_state_dict(sub + "/weights.pth", *net_);
    save_batch(sub + "/batch.pth", images_, targets_);
    const auto counts = py.ask("retina_setup " + net + " " + arch + " " + std::to_string(kClasses) +
                               " " + sub + " " + std::to_string(kLearningRate));
    TORCH_CHECK(counts.size() == 2 && counts[0] == static_cast<double>(params) &&
                    counts[1] == static_cast<double>(trainable),
                net, ": torchvision's RetinaNet differs from mgd's (parameters ", params, ", ",
                trainable, " trainable; torchvision ", counts.size() == 2 ? counts[0] : -1, ", ",
                counts.size() == 2 ? counts[1] : -1, ")");
    params_ = params;
  }

  /// One training step; returns (loss_cls, loss_box_reg).
  std::pair<double, double> step() {
    const auto out = net_->forward(images_);
    const auto losses = net_->losses(out, targets_, normalizer_);
    const auto loss = losses.loss_cls + losses.loss_box_reg;
    sgd_->zero_grad();
    loss.backward();
    sgd_->step();
    return {losses.loss_cls.item<double>(), losses.loss_box_reg.item<double>()};
  }

  int64_t parameters() const { return params_; }

 private:
  std::string net_name_;
  det::RetinaNet net_{nullptr};
  std::unique_ptr<mgd::training::SGD> sgd_;
  torch::Tensor images_;
  std::vector<det::Target> targets_;
  double normalizer_ = det::kInitialLossNormalizer;  // unused by the torchvision style
  int64_t params_ = 0;
};

struct StepTimes {
  double cpp_s, py_s;
};

// The first step of both sides, compared; the untimed warm-up steps then follow.
void check_first_step(const std::string& net, RetinaCase& c, TorchvisionTwin& py) {
  const auto [cls, box] = c.step();
  const auto theirs = py.ask("retina_step " + net);
  TORCH_CHECK(theirs.size() == 3, "bad Python answer");
  const double d_cls = relative_difference(cls, theirs[1]);
  const double d_box = relative_difference(box, theirs[2]);
  std::printf(
      "  (%s, first step: loss_cls mgd %.7g torchvision %.7g, loss_box_reg mgd %.7g "
      "torchvision %.7g; relative differences %.2g, %.2g)\n",
      net.c_str(), cls, theirs[1], box, theirs[2], d_cls, d_box);
  TORCH_CHECK(std::isfinite(cls) && std::isfinite(box) && d_cls <= kLossTolerance &&
                  d_box <= kLossTolerance,
              net, ": the first step's losses differ by more than ", kLossTolerance,
              " relative: mgd and torchvision do not compute the same thing");
  // The second step starts from weights each side updated itself: its losses show that the
  // backward passes and SGD updates agree too (looser: the updates' rounding compounds).
  const auto [cls2, box2] = c.step();
  const auto theirs2 = py.ask("retina_step " + net);
  TORCH_CHECK(theirs2.size() == 3, "bad Python answer");
  const double d2 =
      std::max(relative_difference(cls2, theirs2[1]), relative_difference(box2, theirs2[2]));
  std::printf(
      "  (%s, second step: loss_cls %.7g vs %.7g, loss_box_reg %.7g vs %.7g; largest "
      "relative difference %.2g)\n",
      net.c_str(), cls2, theirs2[1], box2, theirs2[2], d2);
  TORCH_CHECK(d2 <= 100 * kLossTolerance, net, ": the second step's losses differ by more than ",
              100 * kLossTolerance, " relative: the backward passes or updates differ");
}

StepTimes time_steps(const std::string& net, RetinaCase& c, TorchvisionTwin& py,
                     const Settings& s) {
  std::vector<double> cpp_t, py_t;
  for (int rep = -s.warmup; rep < s.reps; ++rep) {
    double cpp_s = 0, py_s = 0;
    auto run_cpp = [&] {
      const auto t0 = Clock::now();
      const auto [cls, box] = c.step();
      cpp_s = seconds_since(t0);
      TORCH_CHECK(std::isfinite(cls) && std::isfinite(box), net, ": non-finite mgd loss");
    };
    auto run_py = [&] {
      const auto answer = py.ask("retina_step " + net);
      TORCH_CHECK(answer.size() == 3 && std::isfinite(answer[1]) && std::isfinite(answer[2]), net,
                  ": non-finite torchvision loss");
      py_s = answer[0];
    };
    run_alternately(rep, run_cpp, run_py);
    if (rep >= 0) {
      cpp_t.push_back(cpp_s);
      py_t.push_back(py_s);
    }
  }
  return {median(cpp_t), median(py_t)};
}

void bench_steps(const Settings& s, TorchvisionTwin& py, const TempDir& dir,
                 std::vector<Entry>* entries) {
  std::printf(
      "RetinaNet training step (torchvision preset, %lld classes), batch %lld x 3 x "
      "%lld x %lld:\n",
      static_cast<long long>(kClasses), static_cast<long long>(s.batch),
      static_cast<long long>(s.size), static_cast<long long>(s.size));
  for (const auto& net : s.nets) {
    mgd::set_num_threads(s.threads.front());
    py.ask("threads " + std::to_string(s.threads.front()));
    RetinaCase c(net, s, dir, py);
    std::printf("  (%s: %.1f M parameters)\n", net.c_str(),
                static_cast<double>(c.parameters()) / 1e6);
    check_first_step(net, c, py);
    print_header();
    for (const int t : s.threads) {
      set_threads(py, t);
      const auto times = time_steps(net, c, py, s);
      entries->push_back({"retinanet_step_" + net + "_t" + std::to_string(t), 1e3 * times.cpp_s,
                          1e3 * times.py_s, "ms", times.py_s / times.cpp_s, kStepTarget});
      print_line(entries->back());
    }
  }
}

// One net's steps alone in both processes, then both processes' peak resident memory.
void bench_memory(const Settings& s, TorchvisionTwin& py, const TempDir& dir,
                  std::vector<Entry>* entries) {
  const std::string& net = s.only_case;
  mgd::set_num_threads(s.threads.front());
  py.ask("threads " + std::to_string(s.threads.front()));
  RetinaCase c(net, s, dir, py);
  check_first_step(net, c, py);
  const auto times = time_steps(net, c, py, s);
  const double py_mib = py.ask("rss").at(0) / 1024.0, cpp_mib = peak_rss_mib();
  std::printf("(%s step, %d threads: mgd %.1f ms, torchvision %.1f ms)\n", net.c_str(),
              s.threads.front(), 1e3 * times.cpp_s, 1e3 * times.py_s);
  print_header();
  entries->push_back(
      {"memory_retinanet_" + net, cpp_mib, py_mib, "MiB", py_mib / cpp_mib, kNoTarget});
  print_line(entries->back());
}

// ---------------------------------------------------------------- RetinaNet distillation

constexpr double kDistillLossFactor = 5e7;  // the reference's, per image (tasks-spec A2)
constexpr double kOverheadTarget = 1 / 1.05, kMatchingTarget = 2.0;

// The reference's detection pair and MGD settings (mgd distill --task detection's defaults):
// a frozen RetinaNet-R50-FPN teacher in eval mode, a RetinaNet-R18-FPN student (torchvision
// preset, as RetinaCase), C2-C5 distilled with AMP, GroupNorm(32, s) on the student side,
// divisors [1, 1, 0.1, 0.1], P3-P7 ignored (so the teacher's FPN never runs), the distillation
// loss / images / 5e7 added to the detection loss; a matching from two tracked batches. Steps:
// "plain" = the teacher's body without a graph + the student's step (what MGD adds to);
// "mgd" = DetectionTask::step's computation. The matching update = one tracking pass (both
// bodies in eval mode, padding masked as the task's default does) + the solve.
class DistillCase {
 public:
  DistillCase(const Settings& s, const TempDir& dir, TorchvisionTwin& py) {
    const auto options = det::RetinaNetOptions::torchvision().num_classes(kClasses);
    torch::manual_seed(0);
    student_ = det::make_retinanet("retinanet_resnet18_fpn", options);
    student_->train();
    images_ = torch::randn({s.batch, 3, s.size, s.size});
    targets_ = random_targets(s);
    torch::manual_seed(1);
    teacher_ = det::make_retinanet("retinanet_resnet50_fpn", options);
    teacher_->eval();
    for (auto& p : teacher_->parameters()) p.requires_grad_(false);
    const int64_t stages = student_->num_stage_taps();
    std::vector<int64_t> ignore;
    std::vector<double> divisors(static_cast<size_t>(stages + student_->num_levels()), 1.0);
    for (int64_t i = stages; i < stages + student_->num_levels(); ++i) ignore.push_back(i);
    for (int64_t i = 2; i < stages; ++i) divisors[static_cast<size_t>(i)] = 0.1;
    distiller_ = mgd::Distiller(teacher_, student_,
                                mgd::DistillerOptions()
                                    .reducer("amp")
                                    .ignore_positions(ignore)
                                    .loss_divisors(divisors)
                                    .group_norm(true));
    for (int64_t i = 0; i < s.tracking_images; i += s.batch) {
      tracking_.push_back(torch::randn({std::min(s.batch, s.tracking_images - i), 3, s.size, s.size}));
    }
    track({tracking_.begin(), tracking_.begin() + std::min<size_t>(2, tracking_.size())});
    distiller_->update_matching();
    std::vector<ser::Value> matching, tracking;
    for (int64_t i : distiller_->guided_positions()) {
      matchings_.push_back(distiller_->matching(i).clone());
      matching.emplace_back(matchings_.back());
    }
    for (const auto& t : tracking_) tracking.emplace_back(t);
    distiller_->train();
    const mgd::training::SGDOptions sgd = mgd::training::SGDOptions(kLearningRate).one_pass(true);
    std::vector<torch::Tensor> plain_params, mgd_params;
    for (const auto& p : student_->parameters()) {
      if (p.requires_grad()) plain_params.push_back(p);
    }
    for (const auto& p : distiller_->trainable_parameters()) {
      if (p.requires_grad()) mgd_params.push_back(p);
    }
    plain_sgd_ = std::make_unique<mgd::training::SGD>(plain_params, sgd);
    mgd_sgd_ = std::make_unique<mgd::training::SGD>(mgd_params, sgd);

    const std::string sub = dir / "distill";
    std::filesystem::create_directories(sub);
    ser::save_state_dict(sub + "/weights.pth", *student_);
    ser::save_state_dict(sub + "/teacher.pth", *teacher_);
    save_batch(sub + "/batch.pth", images_, targets_);
    ser::save_file(sub + "/matching.pth", ser::Value::list(std::move(matching)));
    ser::save_file(sub + "/tracking.pth", ser::Value::list(std::move(tracking)));
    const auto counts = py.ask("distill_setup " + sub + " " + std::to_string(kLearningRate));
    int64_t teacher_params = 0;
    for (const auto& p : teacher_->parameters()) teacher_params += p.numel();
    TORCH_CHECK(counts.size() == 2 && counts[0] == static_cast<double>(teacher_params) &&
                    counts[1] == static_cast<double>(count(plain_params)),
                "the Python distillation case differs from mgd's (teacher parameters ",
                teacher_params, ", student trainable ", count(plain_params), ")");
  }

  struct Losses {
    double cls, box, distill;
  };

  Losses step(bool mgd) {
    const auto out = student_->forward(images_);
    const auto losses = student_->losses(out, targets_, normalizer_);
    auto loss = losses.loss_cls + losses.loss_box_reg;
    mgd::Features teacher;
    {
      torch::NoGradGuard no_grad;
      teacher = teacher_->extract(images_, /*levels=*/false);
    }
    double distill = 0;
    if (mgd) {
      mgd::Features student;
      student.pre_relu = out.taps;
      for (size_t i = 0; i < out.taps.size(); ++i) {
        student.post_relu.push_back(static_cast<int64_t>(i) < student_->num_stage_taps()
                                        ? torch::relu(out.taps[i])
                                        : out.taps[i]);
      }
      const auto d = distiller_->forward_features(teacher, student);
      loss = loss + d.loss / static_cast<double>(images_.size(0)) / kDistillLossFactor;
      distill = d.loss.item<double>();
    }
    auto& sgd = mgd ? *mgd_sgd_ : *plain_sgd_;
    sgd.zero_grad();
    loss.backward();
    sgd.step();
    return {losses.loss_cls.item<double>(), losses.loss_box_reg.item<double>(), distill};
  }

  /// One tracking pass over the tracking batches and the solve; returns the mean matched cost
  /// of the distilled positions. The steps keep the setup's matching.
  double matching_update() {
    track(tracking_);
    const auto costs = distiller_->update_matching();
    double sum = 0;
    for (int64_t i : distiller_->guided_positions()) sum += costs[static_cast<size_t>(i)];
    const auto& guided = distiller_->guided_positions();
    for (size_t g = 0; g < guided.size(); ++g) distiller_->set_matching(guided[g], matchings_[g]);
    return sum / static_cast<double>(guided.size());
  }

  int64_t tracking_images() const {
    int64_t n = 0;
    for (const auto& t : tracking_) n += t.size(0);
    return n;
  }

 private:
  static int64_t count(const std::vector<torch::Tensor>& params) {
    int64_t n = 0;
    for (const auto& p : params) n += p.numel();
    return n;
  }

  // DetectionTask's tracking pass: bodies only, the student in eval mode, padding masked.
  void track(const std::vector<torch::Tensor>& batches) {
    torch::NoGradGuard no_grad;
    distiller_->reset_tracking();
    const bool training = student_->is_training();
    student_->eval();
    for (const auto& images : batches) {
      const int64_t h = images.size(2), w = images.size(3);
      const std::vector<std::array<int64_t, 2>> sizes(static_cast<size_t>(images.size(0)), {h, w});
      distiller_->track_features(
          mgd::without_padding(teacher_->extract(images, false), sizes, h, w),
          mgd::without_padding(student_->extract(images, false), sizes, h, w));
    }
    student_->train(training);
  }

  det::RetinaNet student_{nullptr}, teacher_{nullptr};
  mgd::Distiller distiller_{nullptr};
  std::unique_ptr<mgd::training::SGD> plain_sgd_, mgd_sgd_;
  torch::Tensor images_;
  std::vector<det::Target> targets_;
  std::vector<torch::Tensor> tracking_, matchings_;
  double normalizer_ = det::kInitialLossNormalizer;
};

void bench_distill(const Settings& s, TorchvisionTwin& py, const TempDir& dir,
                   std::vector<Entry>* entries) {
  std::printf(
      "RetinaNet distillation, R50-FPN teacher -> R18-FPN student (MGD-AMP, C2-C5), batch "
      "%lld x 3 x %lld x %lld, %lld tracking images:\n",
      static_cast<long long>(s.batch), static_cast<long long>(s.size),
      static_cast<long long>(s.size), static_cast<long long>(s.tracking_images));
  mgd::set_num_threads(s.threads.front());
  py.ask("threads " + std::to_string(s.threads.front()));
  DistillCase c(s, dir, py);
  // Both sides' first steps, then their matching updates, must agree.
  for (const char* kind : {"mgd", "plain"}) {
    const auto ours = c.step(std::string(kind) == "mgd");
    const auto theirs = py.ask(std::string("distill_step ") + kind);
    TORCH_CHECK(theirs.size() == 4, "bad Python answer");
    const double d = std::max({relative_difference(ours.cls, theirs[1]),
                               relative_difference(ours.box, theirs[2]),
                               relative_difference(ours.distill, theirs[3])});
    std::printf("  (first %s step: loss_cls %.7g / %.7g, loss_box_reg %.7g / %.7g, distillation "
                "%.7g / %.7g (mgd / Python); largest relative difference %.2g)\n",
                kind, ours.cls, theirs[1], ours.box, theirs[2], ours.distill, theirs[3], d);
    TORCH_CHECK(std::isfinite(ours.cls + ours.box + ours.distill) && d <= kLossTolerance,
                "the first ", kind, " step's losses differ by more than ", kLossTolerance,
                " relative: mgd and the Python distiller do not compute the same thing");
  }
  {
    const double ours = c.matching_update();
    const auto theirs = py.ask("distill_matching");
    TORCH_CHECK(theirs.size() == 2, "bad Python answer");
    std::printf("  (matching update: mean matched cost mgd %.7g, Python %.7g)\n", ours, theirs[1]);
    TORCH_CHECK(relative_difference(ours, theirs[1]) <= 1e-3,
                "the matching updates' mean costs differ by more than 1e-3 relative");
  }
  print_header();
  for (const int t : s.threads) {
    set_threads(py, t);
    const std::string tag = "_r50_r18_t" + std::to_string(t);
    // MGD step against Python's, alternating.
    std::vector<double> cpp_t, py_t;
    for (int rep = -s.warmup; rep < s.reps; ++rep) {
      double cpp_s = 0, py_s = 0;
      run_alternately(
          rep,
          [&] {
            const auto t0 = Clock::now();
            const auto l = c.step(true);
            cpp_s = seconds_since(t0);
            TORCH_CHECK(std::isfinite(l.cls + l.box + l.distill), "non-finite mgd loss");
          },
          [&] {
            const auto a = py.ask("distill_step mgd");
            TORCH_CHECK(a.size() == 4 && std::isfinite(a[1] + a[2] + a[3]),
                        "non-finite Python loss");
            py_s = a[0];
          });
      if (rep >= 0) cpp_t.push_back(cpp_s), py_t.push_back(py_s);
    }
    entries->push_back({"distill_step" + tag, 1e3 * median(cpp_t), 1e3 * median(py_t), "ms",
                        median(py_t) / median(cpp_t), kStepTarget});
    print_line(entries->back());
    // The distiller's overhead: C++ alone (the Python process idle), plain and MGD steps
    // interleaved, 2 x reps each.
    std::vector<double> plain_t, mgd_t;
    for (int rep = -s.warmup; rep < 2 * s.reps; ++rep) {
      for (const bool mgd : rep % 2 == 0 ? std::vector<bool>{false, true}
                                         : std::vector<bool>{true, false}) {
        const auto t0 = Clock::now();
        const auto l = c.step(mgd);
        const double sec = seconds_since(t0);
        TORCH_CHECK(std::isfinite(l.cls + l.box + l.distill), "non-finite mgd loss");
        if (rep >= 0) (mgd ? mgd_t : plain_t).push_back(sec);
      }
    }
    entries->push_back({"distill_overhead" + tag, 1e3 * median(mgd_t), 1e3 * median(plain_t),
                        "ms", median(plain_t) / median(mgd_t), kOverheadTarget});
    print_line(entries->back());
    // The matching update, images/s.
    std::vector<double> cpp_m, py_m;
    for (int rep = 0; rep < std::max(1, s.reps / 2); ++rep) {
      double cpp_s = 0, py_s = 0;
      run_alternately(
          rep,
          [&] {
            const auto t0 = Clock::now();
            c.matching_update();
            cpp_s = seconds_since(t0);
          },
          [&] { py_s = py.ask("distill_matching").at(0); });
      cpp_m.push_back(cpp_s), py_m.push_back(py_s);
    }
    const auto images = static_cast<double>(c.tracking_images());
    entries->push_back({"distill_matching" + tag, images / median(cpp_m), images / median(py_m),
                        "images/s", median(py_m) / median(cpp_m), kMatchingTarget});
    print_line(entries->back());
  }
}

int usage(const char* argv0) {
  std::fprintf(stderr,
               "usage: %s [--quick | --smoke] [--reps N] [--warmup N] [--threads LIST] "
               "[--nets r18,r50] [--size PX] [--batch N] [--boxes LIST] [--no-nms] [--no-step] "
               "[--no-distill] [--tracking-images N] [--case NET] [--json PATH]\n",
               argv0);
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  Settings s;
  int64_t size = -1, batch = -1;
  std::vector<std::string> nets;
  std::vector<int64_t> boxes;
  mgd::bench::Args args(/*smoke=*/true);
  args.option("--threads", [&](const std::string& v) {
    s.threads = mgd::bench::thread_list(v);
    return !s.threads.empty();
  });
  args.option("--nets", [&](const std::string& v) {
    nets = mgd::bench::split_list<std::string>(v, [](const std::string& p) { return p; });
    return !nets.empty();
  });
  args.option("--size", [&](const std::string& v) {
    size = std::atoll(v.c_str());
    return size >= 32;
  });
  args.option("--batch", [&](const std::string& v) {
    batch = std::atoll(v.c_str());
    return batch >= 1;
  });
  args.option("--boxes", [&](const std::string& v) {
    boxes = mgd::bench::split_list<int64_t>(
        v, [](const std::string& p) { return static_cast<int64_t>(std::atoll(p.c_str())); });
    return !boxes.empty() &&
           std::none_of(boxes.begin(), boxes.end(), [](int64_t n) { return n < 1; });
  });
  args.flag("--no-nms", [&] { s.nms = false; });
  args.flag("--no-step", [&] { s.step = false; });
  args.flag("--no-distill", [&] { s.distill = false; });
  args.option("--tracking-images", [&](const std::string& v) {
    s.tracking_images = std::atoll(v.c_str());
    return s.tracking_images >= 1;
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
    s.nets = {"r18"};
    s.boxes = {2000};
  } else if (args.mode == mgd::bench::Args::kSmoke) {
    s.reps = 1;
    s.warmup = 0;
    s.nets = {"r18"};
    s.boxes = {300};
    s.size = 64;
    s.batch = 2;
    s.tracking_images = 4;
  }
  if (args.reps > 0) s.reps = args.reps;
  if (args.warmup >= 0) s.warmup = args.warmup;
  if (size > 0) s.size = size;
  if (batch > 0) s.batch = batch;
  if (!nets.empty()) s.nets = nets;
  if (!boxes.empty()) s.boxes = boxes;
  if (!s.only_case.empty()) s.nets = {s.only_case};
  for (const auto& net : s.nets) {
    if (arch_of(net).empty()) {
      std::fprintf(stderr, "detection_bench: unknown net '%s' (r18, r50)\n", net.c_str());
      return 2;
    }
  }

  // The Python process starts before any large tensor exists here (fork copies nothing large).
  TorchvisionTwin py(s.threads.front());
  if (!py.ok()) {
    std::fprintf(stderr, "detection_bench: %s\n", py.error().c_str());
    return 1;
  }
  mgd::keep_freed_memory();  // as `mgd train` does (Engine)
  std::printf("mgd vs torchvision (%s), median of %d after %d warm-up round(s), alternating\n",
              py.version().c_str(), s.reps, s.warmup);
  std::vector<Entry> entries;
  try {
    TempDir dir;
    if (!s.only_case.empty()) {
      bench_memory(s, py, dir, &entries);
    } else {
      if (s.nms) bench_nms(s, py, dir, &entries);
      if (s.step) bench_steps(s, py, dir, &entries);
      if (s.distill) bench_distill(s, py, dir, &entries);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "detection_bench: %s\n", e.what());
    return 1;
  }
  if (!s.json.empty() && !mgd::bench::write_figures(s.json, entries)) {
    std::fprintf(stderr, "detection_bench: cannot write %s\n", s.json.c_str());
    return 1;
  }
  return 0;
}
