// A tiny, learnable Fashion-MNIST-format dataset written to disk for engine tests: each
// class is a bright square at its own place on a noisy background.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace mgd::testing {

inline void write_idx(const std::string& path, const std::vector<int32_t>& dims,
                      const std::vector<uint8_t>& bytes) {
  std::ofstream out(path, std::ios::binary);
  const uint8_t magic[4] = {0, 0, 0x08, static_cast<uint8_t>(dims.size())};
  out.write(reinterpret_cast<const char*>(magic), 4);
  for (int32_t d : dims) {
    const uint8_t be[4] = {static_cast<uint8_t>(d >> 24), static_cast<uint8_t>(d >> 16),
                           static_cast<uint8_t>(d >> 8), static_cast<uint8_t>(d)};
    out.write(reinterpret_cast<const char*>(be), 4);
  }
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

/// Writes train (n_train) and t10k (n_test) IDX files of 28x28 images, 10 classes, into dir.
inline std::string make_synthetic_fashion_mnist(const std::string& dir, int n_train = 256,
                                                int n_test = 64, uint64_t seed = 0) {
  std::filesystem::create_directories(dir);
  auto gen = at::detail::createCPUGenerator(seed);
  for (const auto& [prefix, n] : {std::pair<std::string, int>{"train", n_train}, {"t10k", n_test}}) {
    std::vector<uint8_t> images(static_cast<size_t>(n) * 28 * 28), labels(static_cast<size_t>(n));
    auto noise = torch::randint(0, 60, {n, 28, 28}, gen, torch::kLong);
    auto acc = noise.accessor<int64_t, 3>();
    for (int i = 0; i < n; ++i) {
      const int label = i % 10;
      labels[i] = static_cast<uint8_t>(label);
      const int top = 2 + (label / 5) * 12, left = 2 + (label % 5) * 5;
      for (int y = 0; y < 28; ++y) {
        for (int x = 0; x < 28; ++x) {
          const bool on = y >= top && y < top + 10 && x >= left && x < left + 5;
          images[(static_cast<size_t>(i) * 28 + y) * 28 + x] =
              static_cast<uint8_t>(on ? 255 - acc[i][y][x] : acc[i][y][x]);
        }
      }
    }
    write_idx(dir + "/" + prefix + "-images-idx3-ubyte", {n, 28, 28}, images);
    write_idx(dir + "/" + prefix + "-labels-idx1-ubyte", {n}, labels);
  }
  return dir;
}

}  // namespace mgd::testing
