// Helpers shared by the data-pipeline tests: temporary directories, synthetic images, the
// Python oracle (tests/oracle/data_oracle.py, run with PIL and torchvision), and a mutation
// fuzzer for the file readers.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "mgd/data/image.h"
#include "support/temp_dir.h"

namespace mgd {
namespace data_testing {

using data::Image;

/// A fresh temporary directory (tests/support/temp_dir.h).
class TempDir : public mgd::testing::TempDir {
 public:
  TempDir() : mgd::testing::TempDir("mgd-data") {}
};

/// Runs `f`, which must throw a c10::Error whose message contains every one of `needles`.
inline void expect_error(const std::function<void()>& f, const std::vector<std::string>& needles) {
  try {
    f();
    FAIL() << "expected an error";
  } catch (const c10::Error& e) {
    for (const auto& n : needles)
      EXPECT_NE(std::string(e.what()).find(n), std::string::npos) << e.what();
  }
}

/// A smooth random RGB (or gray) image: blobs of colour plus mild noise, so JPEG behaves as on
/// a photograph rather than on white noise. A fourth channel repeats the first one's pattern.
inline Image synthetic_image(int64_t height, int64_t width, int64_t channels, uint64_t seed) {
  std::mt19937_64 gen(seed);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  Image image(height, width, channels);
  double fx[3], fy[3], ph[3];
  for (int c = 0; c < 3; ++c) {
    fx[c] = 1 + 5 * u(gen);
    fy[c] = 1 + 5 * u(gen);
    ph[c] = 6.28 * u(gen);
  }
  for (int64_t y = 0; y < height; ++y) {
    for (int64_t x = 0; x < width; ++x) {
      for (int64_t c = 0; c < channels; ++c) {
        const double v =
            127.5 +
            100 * std::sin(fx[c % 3] * x / width * 3.14 + ph[c % 3]) *
                std::cos(fy[c % 3] * y / height * 3.14) +
            20 * (u(gen) - 0.5);
        image.data[(y * width + x) * channels + c] =
            static_cast<uint8_t>(std::min(255.0, std::max(0.0, v)));
      }
    }
  }
  return image;
}

inline std::string python() {
  return MGD_PYTHON;
}

/// Runs /usr/bin/python3 with the given arguments (shell-quoted by the caller); returns its
/// exit status.
inline int run_python(const std::string& args) {
  const std::string cmd = python() + " " + args;
  return std::system(cmd.c_str());
}

/// Whether the oracle's interpreter has PIL and torchvision (checked once).
inline bool oracle_available() {
  // find_spec, not import: importing torchvision takes seconds, and ctest runs every test in
  // its own process.
  static const bool ok =
      run_python(
          "-c 'import PIL, importlib.util as u; assert u.find_spec(\"torchvision\")' "
          "> /dev/null 2>&1") == 0;
  return ok;
}

inline std::string oracle_script() {
  return std::string(MGD_SOURCE_DIR) + "/tests/oracle/data_oracle.py";
}

#define MGD_REQUIRE_ORACLE()                                                           \
  do {                                                                                 \
    if (!::mgd::data_testing::oracle_available())                                      \
      GTEST_SKIP() << MGD_PYTHON << " lacks PIL or torchvision (python3-torchvision)"; \
  } while (0)

/// Largest absolute difference between two images of the same shape (-1 on a shape mismatch).
inline int max_abs_diff(const Image& a, const Image& b) {
  if (a.height != b.height || a.width != b.width || a.channels != b.channels) return -1;
  int m = 0;
  for (size_t i = 0; i < a.data.size(); ++i)
    m = std::max(m, std::abs(int{a.data[i]} - int{b.data[i]}));
  return m;
}

inline double mean_abs_diff(const Image& a, const Image& b) {
  double s = 0;
  for (size_t i = 0; i < a.data.size(); ++i) s += std::abs(int{a.data[i]} - int{b.data[i]});
  return a.data.empty() ? 0 : s / static_cast<double>(a.data.size());
}

/// n float32 values from a raw file (the oracle's tensors).
inline std::vector<float> read_floats(const std::string& path, size_t n) {
  std::vector<float> v(n);
  std::ifstream in(path, std::ios::binary);
  in.read(reinterpret_cast<char*>(v.data()), static_cast<std::streamsize>(n * sizeof(float)));
  EXPECT_TRUE(in) << "short read of " << path;
  return v;
}

/// Mutation fuzzing: `rounds` variants of each seed input (bit flips, byte overwrites with
/// random or boundary values, truncations, inserted and deleted runs, spliced copies), each
/// handed to `parse`. A variant must either parse or throw std::exception (c10::Error is one);
/// anything else (a crash, a hang) fails the test by not returning. Returns {ok, threw}.
inline std::pair<int, int> mutation_fuzz(
    const std::vector<std::vector<uint8_t>>& seeds, int rounds, uint64_t seed,
    const std::function<void(const std::vector<uint8_t>&)>& parse) {
  std::mt19937_64 gen(seed);
  int ok = 0, threw = 0;
  for (int r = 0; r < rounds; ++r) {
    std::vector<uint8_t> v = seeds[gen() % seeds.size()];
    const int edits = 1 + static_cast<int>(gen() % 4);
    for (int e = 0; e < edits && !v.empty(); ++e) {
      const size_t at = gen() % v.size();
      switch (gen() % 7) {
        case 0:  // bit flip
          v[at] ^= static_cast<uint8_t>(1u << (gen() % 8));
          break;
        case 1:  // random byte
          v[at] = static_cast<uint8_t>(gen());
          break;
        case 2: {  // boundary value (0, 0xff, 0x7f, 0x80)
          static const uint8_t kValues[] = {0x00, 0xff, 0x7f, 0x80, 0x01};
          v[at] = kValues[gen() % 5];
          break;
        }
        case 3:  // truncate
          v.resize(at);
          break;
        case 4: {  // insert a random run
          std::vector<uint8_t> run(1 + gen() % 16);
          for (auto& b : run) b = static_cast<uint8_t>(gen());
          v.insert(v.begin() + static_cast<std::ptrdiff_t>(at), run.begin(), run.end());
          break;
        }
        case 5: {  // delete a run
          const size_t n = std::min<size_t>(1 + gen() % 64, v.size() - at);
          v.erase(v.begin() + static_cast<std::ptrdiff_t>(at),
                  v.begin() + static_cast<std::ptrdiff_t>(at + n));
          break;
        }
        default: {  // duplicate a chunk of the file elsewhere
          const size_t from = gen() % v.size();
          const size_t n = std::min<size_t>(1 + gen() % 128, v.size() - from);
          std::vector<uint8_t> chunk(v.begin() + static_cast<std::ptrdiff_t>(from),
                                     v.begin() + static_cast<std::ptrdiff_t>(from + n));
          v.insert(v.begin() + static_cast<std::ptrdiff_t>(at), chunk.begin(), chunk.end());
        }
      }
    }
    try {
      parse(v);
      ++ok;
    } catch (const std::exception&) {
      ++threw;
    }
  }
  return {ok, threw};
}

}  // namespace data_testing
}  // namespace mgd
