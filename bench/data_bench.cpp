// Data-pipeline throughput: JPEG decoding variants and the Loader on an ImageFolder of JPEGs,
// against torchvision + PIL (bench/data_bench.py) on the same folder in the same run.
//
//   data_bench [--root DIR] [--images 500] [--workers 2] [--batch 32] [--epochs 3]
//              [--rounds 1] [--quick] [--json PATH] [--no-python]
//
// Without --root (or when DIR/train is missing) it writes DIR (default: a temp directory)
// with `images` JPEGs of 500 x 375 in two classes, quality 90, textured like photographs
// (about 100 KB each, ImageNet's typical size). Every timing is the best of `epochs` passes
// after a warm-up pass; the batches are checked (shape, finite values) while timed.
// The headline comparisons (the training pipeline with `workers` workers and in the calling
// thread, the eval pipeline) run `rounds` times, mgd and torchvision alternately; the median
// of the rounds is reported. --quick skips the decoder and large-JPEG studies. --json writes
// {"name", "mgd", "baseline", "unit": "images/s per thread", "advantage": mgd / torchvision,
// "target"} for data_train_1thread and data_train_<W>workers (target 2) and
// data_eval_<W>workers (no target); per thread = images/s divided by the workers (1 for the
// calling thread).
#include "bench_json.h"

#include <mgd/data/dataset.h>
#include <mgd/data/image_folder.h>
#include <mgd/data/loader.h>
#include <mgd/util/memory.h>
#include <torch/torch.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <algorithm>
#include <iostream>
#include <random>
#include <string>
#include <vector>

namespace fs = std::filesystem;
using namespace mgd::data;
using Clock = std::chrono::steady_clock;

namespace {

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// A photograph-like texture: smooth colour fields, edges, and fine grain, so the JPEG has a
// realistic amount of entropy-coded data.
Image textured(int64_t h, int64_t w, uint64_t seed, double grain_sigma = 14.0) {
  std::mt19937_64 gen(seed);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  std::normal_distribution<double> grain(0.0, grain_sigma);
  Image img(h, w, 3);
  double f[3][4];
  for (auto& row : f) {
    for (double& v : row) v = u(gen);
  }
  for (int64_t y = 0; y < h; ++y) {
    for (int64_t x = 0; x < w; ++x) {
      const double edge = ((x / 37 + y / 29) % 3) * 25.0;
      for (int c = 0; c < 3; ++c) {
        const double v = 110 +
                         70 * std::sin(x * (0.01 + 0.05 * f[c][0]) + 6 * f[c][1]) *
                             std::cos(y * (0.01 + 0.04 * f[c][2]) + 6 * f[c][3]) +
                         edge + grain(gen);
        img.row(y)[x * 3 + c] = static_cast<uint8_t>(std::clamp(v, 0.0, 255.0));
      }
    }
  }
  return img;
}

void make_folder(const std::string& root, int64_t n) {
  size_t bytes = 0;
  for (int64_t i = 0; i < n; ++i) {
    const std::string dir = root + "/train/class" + std::to_string(i % 2);
    fs::create_directories(dir);
    const auto jpeg =
        encode_jpeg(textured(375, 500, static_cast<uint64_t>(i)), JpegEncodeOptions().quality(90));
    bytes += jpeg.size();
    write_file(dir + "/" + std::to_string(i) + ".jpg", jpeg);
  }
  std::printf("wrote %lld JPEGs of 500x375 to %s/train (mean %.0f KB)\n", static_cast<long long>(n),
              root.c_str(), static_cast<double>(bytes) / static_cast<double>(n) / 1024.0);
}

// Single-thread decode cost per image, in ms, of each decoder variant.
void decode_bench(const ImageFolderDataset& ds) {
  std::vector<std::vector<uint8_t>> files;
  for (const auto& s : ds.index().samples) files.push_back(read_file(s.first));
  RandomResizedCrop rrc(RandomResizedCropOptions(224));
  struct Variant {
    const char* name;
    std::function<void(const std::vector<uint8_t>&, Rng&)> run;
  };
  const std::vector<Variant> variants = {
      {"full decode (accurate IDCT, PIL's)",
       [](const std::vector<uint8_t>& b, Rng&) { decode_image(b.data(), b.size()); }},
      {"full decode, fast IDCT",
       [](const std::vector<uint8_t>& b, Rng&) {
         decode_image(b.data(), b.size(), DecodeOptions().fast_idct(true));
       }},
      {"region of a RandomResizedCrop box (exact)",
       [&](const std::vector<uint8_t>& b, Rng& rng) {
         const ImageInfo info = read_image_info(b.data(), b.size());
         decode_image(b.data(), b.size(),
                      DecodeOptions().region(rrc.get_params(info.height, info.width, rng)));
       }},
      {"DCT-domain 1/2 scale",
       [](const std::vector<uint8_t>& b, Rng&) {
         decode_jpeg(b.data(), b.size(), DecodeOptions().scale_eighths(4));
       }},
      {"DCT-domain 1/4 scale",
       [](const std::vector<uint8_t>& b, Rng&) {
         decode_jpeg(b.data(), b.size(), DecodeOptions().scale_eighths(2));
       }},
  };
  std::printf("\nJPEG decode, one thread, %zu files of 500x375:\n", files.size());
  for (const auto& v : variants) {
    double best = 1e9;
    for (int rep = 0; rep < 3; ++rep) {
      Rng rng(1);
      const auto t0 = Clock::now();
      for (const auto& f : files) v.run(f, rng);
      best = std::min(best, seconds_since(t0));
    }
    std::printf("  %-44s %6.2f ms/image  (%6.0f images/s)\n", v.name, 1e3 * best / files.size(),
                files.size() / best);
  }
}

// A large photograph (2048 x 1536, 4:2:0): where DCT-domain scaling pays. The pipeline cost
// per image of the eval and train transforms, exact and with reducing_gap 2, and how far the
// approximate result is from the exact one.
void large_jpeg_bench(double grain) {
  const auto jpeg = encode_jpeg(textured(1536, 2048, 99, grain), JpegEncodeOptions().quality(90));
  const std::string root =
      (fs::temp_directory_path() / ("mgd-data-bench-large-" + std::to_string(int(grain)))).string();
  fs::create_directories(root + "/train/a");
  write_file(root + "/train/a/photo.jpg", jpeg);
  std::printf("\nOne 2048x1536 JPEG (grain sigma %.0f, %.0f KB), one thread, ms/image:\n", grain,
              jpeg.size() / 1024.0);
  auto time_ms = [](const std::function<void()>& f) {
    double best = 1e9;
    for (int rep = 0; rep < 5; ++rep) {
      const auto t0 = Clock::now();
      for (int i = 0; i < 4; ++i) f();
      best = std::min(best, seconds_since(t0) / 4);
    }
    return 1e3 * best;
  };
  std::printf("  %-44s %6.2f\n", "full decode",
              time_ms([&] { decode_image(jpeg.data(), jpeg.size()); }));
  std::printf("  %-44s %6.2f\n", "DCT-domain 1/4 scale", time_ms([&] {
                decode_jpeg(jpeg.data(), jpeg.size(), DecodeOptions().scale_eighths(2));
              }));
  for (const auto& [name, transform] : std::vector<std::pair<std::string, Compose>>{
           {"eval", imagenet_eval_transform()}, {"train", imagenet_train_transform()}}) {
    ImageFolderDataset exact(ImageFolderOptions(root), transform);
    ImageFolderDataset gap(ImageFolderOptions(root).reducing_gap(2.0), transform);
    int64_t seed = 0;
    const double te = time_ms([&] {
      Rng rng = Rng::for_sample(0, 0, seed++);
      exact.get(0, rng);
    });
    seed = 0;
    const double tg = time_ms([&] {
      Rng rng = Rng::for_sample(0, 0, seed++);
      gap.get(0, rng);
    });
    double diff = 0;
    for (int64_t s = 0; s < 8; ++s) {
      Rng a = Rng::for_sample(1, 0, s), b = a;
      diff += (exact.get(0, a).image - gap.get(0, b).image).abs().mean().item<double>() / 8;
    }
    std::printf("  %-44s %6.2f exact, %6.2f with reducing_gap 2 (mean |diff| %.4f, %.2f levels)\n",
                (name + " pipeline").c_str(), te, tg, diff, diff * 255 * 0.226);
  }
}

double loader_bench(std::shared_ptr<const Dataset> ds, int64_t workers, int64_t batch,
                    int64_t epochs, const std::string& label) {
  Loader loader(ds, LoaderOptions().batch_size(batch).workers(workers).seed(0));
  double best = 0, cpu_per_image = 0;
  for (int64_t epoch = 0; epoch <= epochs; ++epoch) {
    loader.set_epoch(epoch);
    const auto t0 = Clock::now();
    const std::clock_t c0 = std::clock();
    int64_t n = 0;
    for (Batch& b : loader) {
      TORCH_CHECK(b.images.size(1) == 3 && b.images.size(2) == 224 && b.images.size(3) == 224,
                  "unexpected batch shape ", b.images.sizes());
      TORCH_CHECK(torch::isfinite(b.images[0]).all().item<bool>(), "non-finite pixels");
      n += b.images.size(0);
    }
    const double rate = static_cast<double>(n) / seconds_since(t0);
    const double cpu =
        static_cast<double>(std::clock() - c0) / CLOCKS_PER_SEC / static_cast<double>(n);
    if (epoch > 0 && rate > best) {
      best = rate;
      cpu_per_image = cpu;
    }
  }
  // CPU time per image (all threads) separates the pipeline's cost from the machine's load.
  std::printf("  %-58s %7.1f images/s  (%.2f ms CPU/image)\n", label.c_str(), best,
              1e3 * cpu_per_image);
  return best;
}

double python_baseline(const std::string& root, int64_t workers, int64_t batch, int64_t epochs,
                       bool eval) {
  const std::string cmd = std::string(MGD_PYTHON) + " " + MGD_SOURCE_DIR + "/bench/data_bench.py " +
                          root + " --workers " + std::to_string(workers) + " --batch " +
                          std::to_string(batch) + " --epochs " + std::to_string(epochs) +
                          (eval ? " --eval" : "") + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return 0;
  char line[512];
  double rate = 0;
  while (std::fgets(line, sizeof(line), p)) {
    if (std::sscanf(line, "images/s: %lf", &rate) == 1) continue;
  }
  if (pclose(p) != 0) {
    std::printf("  (torchvision baseline failed: %s)\n", cmd.c_str());
    return 0;
  }
  return rate;
}

double median(std::vector<double> x) {
  std::sort(x.begin(), x.end());
  const size_t n = x.size();
  return n == 0 ? 0.0 : n % 2 == 1 ? x[n / 2] : 0.5 * (x[n / 2 - 1] + x[n / 2]);
}

struct Comparison {
  std::string name;
  double mgd, torchvision;  // images/s per thread (medians of the rounds)
  double target;            // <= 0: none
};

// `rounds` alternating runs of an mgd loader and torchvision on the same folder; medians.
Comparison compare(const std::string& name, std::shared_ptr<const Dataset> ds,
                   const std::string& root, int64_t workers, int64_t batch, int64_t epochs,
                   int64_t rounds, bool eval, bool python, double target) {
  std::vector<double> m, t;
  for (int64_t r = 0; r < rounds; ++r) {
    const std::string label = "mgd" + std::string(workers == 0 ? ", calling thread" : "") +
                              " (round " + std::to_string(r + 1) + ")";
    auto run_mgd = [&] { m.push_back(loader_bench(ds, workers, batch, epochs, label)); };
    auto run_tv = [&] {
      const double rate = python_baseline(root, workers, batch, epochs, eval);
      std::printf("  %-58s %7.1f images/s\n",
                  ("torchvision + PIL" + std::string(workers == 0 ? ", calling process" : "") +
                   " (round " + std::to_string(r + 1) + ")")
                      .c_str(),
                  rate);
      t.push_back(rate);
    };
    if (!python) {
      run_mgd();
    } else if (r % 2 == 0) {
      run_mgd();
      run_tv();
    } else {
      run_tv();
      run_mgd();
    }
  }
  const double per = static_cast<double>(std::max<int64_t>(1, workers));
  Comparison c{name, median(m) / per, python ? median(t) / per : 0.0, target};
  if (python && c.torchvision > 0) {
    std::printf("  %s: mgd %.1f, torchvision %.1f images/s per thread: %.2fx\n", name.c_str(),
                c.mgd, c.torchvision, c.mgd / c.torchvision);
  }
  return c;
}

bool write_json(const std::string& path, const std::vector<Comparison>& cs) {
  std::vector<mgd::bench::Figure> figures;
  for (const Comparison& c : cs) {
    figures.push_back({c.name, c.mgd, c.torchvision, "images/s per thread",
                       c.torchvision > 0 ? c.mgd / c.torchvision : 0.0, c.target});
  }
  return mgd::bench::write_figures(path, figures);
}

}  // namespace

int main(int argc, char** argv) {
  std::string root, json;
  int64_t images = 500, workers = 2, batch = 32, epochs = 3, rounds = 1;
  bool python = true, quick = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&] { return i + 1 < argc ? std::string(argv[++i]) : std::string(); };
    if (a == "--root")
      root = value();
    else if (a == "--images")
      images = std::stoll(value());
    else if (a == "--workers")
      workers = std::stoll(value());
    else if (a == "--batch")
      batch = std::stoll(value());
    else if (a == "--epochs")
      epochs = std::stoll(value());
    else if (a == "--rounds")
      rounds = std::max<int64_t>(1, std::stoll(value()));
    else if (a == "--json")
      json = value();
    else if (a == "--quick")
      quick = true;
    else if (a == "--no-python")
      python = false;
    else {
      std::fprintf(stderr,
                   "usage: data_bench [--root DIR] [--images N] [--workers W] [--batch B] "
                   "[--epochs E] [--rounds R] [--quick] [--json PATH] [--no-python]\n");
      return 2;
    }
  }
  bool temporary = false;
  if (root.empty()) {
    root = (fs::temp_directory_path() / "mgd-data-bench").string();
    temporary = true;
  }
  if (!fs::exists(root + "/train")) make_folder(root, images);
  torch::set_num_threads(1);  // the loader's threads are the parallelism measured here
  mgd::keep_freed_memory();   // as in `mgd train/distill`; MGD_KEEP_FREED_MEMORY=0 to compare

  const Compose train = imagenet_train_transform(224);
  const Compose eval = imagenet_eval_transform(256, 224);
  auto exact = std::make_shared<ImageFolderDataset>(ImageFolderOptions(root), train);
  if (!quick) {
    decode_bench(*exact);
    large_jpeg_bench(14.0);  // as dense as the 500 x 375 set (~0.45 bytes/pixel)
    large_jpeg_bench(3.0);   // closer to a camera photograph (~0.15 bytes/pixel)
  }

  // Results checked: the decoding shortcut gives the plain path's tensors.
  auto plain =
      std::make_shared<ImageFolderDataset>(ImageFolderOptions(root).decode_region(false), train);
  for (int64_t i = 0; i < std::min<int64_t>(10, exact->size()); ++i) {
    Rng a = Rng::for_sample(0, 0, i), b = a;
    TORCH_CHECK(torch::equal(exact->get(i, a).image, plain->get(i, b).image),
                "decode_region changed sample ", i);
  }

  std::printf("\nLoader, batch %lld, %lld workers, RandomResizedCrop 224 + flip + normalize:\n",
              static_cast<long long>(batch), static_cast<long long>(workers));
  if (!quick) {
    auto gap =
        std::make_shared<ImageFolderDataset>(ImageFolderOptions(root).reducing_gap(2.0), train);
    loader_bench(plain, workers, batch, epochs, "mgd (full decode)");
    loader_bench(gap, workers, batch, epochs, "mgd (region + DCT scaling, reducing_gap 2)");
  }
  std::vector<Comparison> results;
  const std::string w = std::to_string(workers) + "workers";
  results.push_back(compare("data_train_" + w, exact, root, workers, batch, epochs, rounds,
                            false, python, 2.0));
  results.push_back(
      compare("data_train_1thread", exact, root, 0, batch, epochs, rounds, false, python, 2.0));

  std::printf("\nLoader, eval transform (Resize 256 + CenterCrop 224 + normalize):\n");
  auto exact_eval = std::make_shared<ImageFolderDataset>(ImageFolderOptions(root), eval);
  results.push_back(compare("data_eval_" + w, exact_eval, root, workers, batch, epochs, rounds,
                            true, python, 0.0));
  if (temporary) std::printf("\n(folder kept at %s for reruns)\n", root.c_str());
  if (!json.empty()) {
    if (!python) {
      std::fprintf(stderr, "data_bench: --json needs the torchvision baseline (no --no-python)\n");
      return 2;
    }
    for (const auto& c : results) {
      if (c.torchvision <= 0) {
        std::fprintf(stderr, "data_bench: the torchvision baseline failed\n");
        return 1;
      }
    }
    if (!write_json(json, results)) {
      std::fprintf(stderr, "data_bench: cannot write %s\n", json.c_str());
      return 1;
    }
  }
  return 0;
}
