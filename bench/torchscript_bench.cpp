// A model written in Python and scripted by tools/mgd_script.py against the zoo's native
// network of the same architecture and weights, in mgd (reported, no target):
//   torchscript_step_resnet18   a training step of ResNet-18 alone (forward, cross-entropy,
//                               backward, SGD), scripted vs native
//   torchscript_mgd_step        an MGD step, MobileNet-V2 teaching ResNet-18 (AMP), both
//                               networks scripted vs both native
// Usage: torchscript_bench [--quick | --smoke] [--reps N] [--warmup N] [--threads N]
//                          [--size PX] [--batch N] [--json PATH]
// The scripted files are made first by tools/mgd_script.py (Debian's /usr/bin/python3 with
// python3-torch and python3-torchvision) in a temporary folder. "mgd" is the scripted
// network's median seconds per step, "baseline" the native one's; advantage = native /
// scripted (> 1: the scripted network is faster).
#include <stdlib.h>
#include <torch/torch.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "bench_args.h"
#include "bench_json.h"
#include "bench_util.h"
#include "mgd/distiller/distiller.h"
#include "mgd/models/registry.h"
#include "mgd/models/torchscript.h"
#include "mgd/serialize/state_dict.h"
#include "mgd/training/sgd.h"
#include "mgd/util/memory.h"
#include "mgd/util/threads.h"

namespace {

namespace fs = std::filesystem;
using mgd::bench::Clock;

struct Settings {
  int reps = 7, warmup = 2, threads = 2;
  int64_t size = 112, batch = 16;
  std::string json;
};

bool script(const std::string& dir, const std::string& name, const std::string& taps,
            int64_t size) {
  const std::string cmd = std::string(MGD_PYTHON) + " " + MGD_SOURCE_DIR +
                          "/tools/mgd_script.py --model torchvision.models." + name +
                          " --kwargs '{\"num_classes\": 100}' --taps " + taps +
                          " --input-shape 3," + std::to_string(size) + "," +
                          std::to_string(size) + " -o " + dir + "/" + name + ".pt > /dev/null";
  return std::system(cmd.c_str()) == 0;
}

// The scripted network and a native one with its weights.
std::pair<mgd::FeatureNet, mgd::FeatureNet> pair(const std::string& dir, const std::string& name) {
  auto scripted = mgd::models::make_model("torchscript:" + dir + "/" + name + ".pt",
                                          mgd::models::ModelOptions().classes(100));
  auto native = mgd::models::make_model(name, mgd::models::ModelOptions().classes(100));
  mgd::serialize::load_state_dict_into(*native, mgd::serialize::module_state_dict(*scripted));
  return {scripted, native};
}

// Median seconds of `a` and of `b`, alternating which runs first.
std::pair<double, double> time_pair(const Settings& s, const std::function<void()>& a,
                                    const std::function<void()>& b) {
  std::vector<double> ta, tb;
  for (int rep = -s.warmup; rep < s.reps; ++rep) {
    auto run_a = [&] {
      const auto t0 = Clock::now();
      a();
      if (rep >= 0) ta.push_back(mgd::bench::seconds_since(t0));
    };
    auto run_b = [&] {
      const auto t0 = Clock::now();
      b();
      if (rep >= 0) tb.push_back(mgd::bench::seconds_since(t0));
    };
    mgd::bench::run_alternately(rep, run_a, run_b);
  }
  return {mgd::bench::median(ta), mgd::bench::median(tb)};
}

int usage(const char* argv0) {
  std::fprintf(stderr,
               "usage: %s [--quick | --smoke] [--reps N] [--warmup N] [--threads N] "
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
    s.threads = std::atoi(v.c_str());
    return s.threads >= 1;
  });
  args.option("--size", [&](const std::string& v) {
    size = std::atoll(v.c_str());
    return size >= 32;
  });
  args.option("--batch", [&](const std::string& v) {
    batch = std::atoll(v.c_str());
    return batch >= 2;
  });
  if (!args.parse(argc, argv)) return usage(argv[0]);
  s.json = args.json;
  if (args.mode == mgd::bench::Args::kQuick) {
    s.reps = 3;
    s.warmup = 1;
    s.size = 64;
  } else if (args.mode == mgd::bench::Args::kSmoke) {
    s.reps = 1;
    s.warmup = 0;
    s.size = 32;
    s.batch = 4;
  }
  if (args.reps > 0) s.reps = args.reps;
  if (args.warmup >= 0) s.warmup = args.warmup;
  if (size > 0) s.size = size;
  if (batch > 0) s.batch = batch;

  char pattern[] = "/tmp/mgd-torchscript-bench.XXXXXX";
  if (::mkdtemp(pattern) == nullptr) {
    std::fprintf(stderr, "torchscript_bench: cannot make a temporary folder\n");
    return 1;
  }
  const std::string dir = pattern;
  struct Cleanup {
    std::string dir;
    ~Cleanup() {
      std::error_code ec;
      fs::remove_all(dir, ec);
    }
  } cleanup{dir};
  if (!script(dir, "resnet18", "layer1,layer2,layer3,layer4", s.size) ||
      !script(dir, "mobilenet_v2",
                  "features.4.conv.0,features.7.conv.0,features.11.conv.0,features.17.conv.0",
                  s.size)) {
    std::fprintf(stderr, "torchscript_bench: tools/mgd_script.py failed (python3-torchvision?)\n");
    return 1;
  }
  mgd::set_num_threads(s.threads);
  mgd::keep_freed_memory();
  std::printf("scripted (tools/mgd_script.py) vs native networks in mgd, median of %d after %d "
              "warm-up round(s), %d thread(s), batch %lld x 3 x %lld x %lld:\n",
              s.reps, s.warmup, s.threads, static_cast<long long>(s.batch),
              static_cast<long long>(s.size), static_cast<long long>(s.size));
  std::vector<mgd::bench::Figure> figures;
  auto report = [&](const std::string& name, std::pair<double, double> t) {
    const double adv = t.second / t.first;
    std::printf("  %-26s scripted %8.1f ms   native %8.1f ms   native/scripted %.3fx\n",
                name.c_str(), 1e3 * t.first, 1e3 * t.second, adv);
    std::fflush(stdout);
    figures.push_back({name, t.first, t.second, "s", adv, mgd::bench::kNoTarget});
  };
  try {
    torch::manual_seed(0);
    const auto x = torch::randn({s.batch, 3, s.size, s.size});
    const auto y = torch::randint(0, 100, {s.batch});
    {
      auto [scripted, native] = pair(dir, "resnet18");
      auto step = [&](mgd::FeatureNet net, mgd::training::SGD& sgd) {
        return [&, net] {
          auto loss = torch::nn::functional::cross_entropy(net->extract(x).logits, y);
          sgd.zero_grad();
          loss.backward();
          sgd.step();
        };
      };
      scripted->train();
      native->train();
      mgd::training::SGD sgd_a(scripted->parameters(), mgd::training::SGDOptions(0.01));
      mgd::training::SGD sgd_b(native->parameters(), mgd::training::SGDOptions(0.01));
      report("torchscript_step_resnet18", time_pair(s, step(scripted, sgd_a), step(native, sgd_b)));
    }
    {
      auto [ts_t, nat_t] = pair(dir, "mobilenet_v2");
      auto [ts_s, nat_s] = pair(dir, "resnet18");
      for (auto& t : {ts_t, nat_t}) {
        t->eval();
        for (auto& p : t->parameters()) p.requires_grad_(false);
      }
      const auto opts = mgd::DistillerOptions().reducer("amp");
      mgd::Distiller d_a(ts_t, ts_s, opts), d_b(nat_t, nat_s, opts);
      for (auto* d : {&d_a, &d_b}) {
        (*d)->train();
        (*d)->track(x);
        (*d)->update_matching();
      }
      mgd::training::SGD sgd_a(d_a->trainable_parameters(), mgd::training::SGDOptions(0.01));
      mgd::training::SGD sgd_b(d_b->trainable_parameters(), mgd::training::SGDOptions(0.01));
      auto step = [&](mgd::Distiller& d, mgd::training::SGD& sgd) {
        return [&] {
          auto out = d->forward(x);
          auto loss = torch::nn::functional::cross_entropy(out.logits, y) +
                      out.loss / static_cast<double>(s.batch) / 1e4;
          sgd.zero_grad();
          loss.backward();
          sgd.step();
        };
      };
      report("torchscript_mgd_step", time_pair(s, step(d_a, sgd_a), step(d_b, sgd_b)));
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "torchscript_bench: %s\n", e.what());
    return 1;
  }
  if (!s.json.empty() && !mgd::bench::write_figures(s.json, figures)) {
    std::fprintf(stderr, "torchscript_bench: cannot write %s\n", s.json.c_str());
    return 1;
  }
  return 0;
}
