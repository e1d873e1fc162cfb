// Shared by the detection tests: the torchvision oracle's cases (tests/oracle/
// detection_oracle.py, run once per test process through MGD_PYTHON) and tensor comparisons.
#pragma once

#include <gtest/gtest.h>
#include <torch/serialize.h>
#include <torch/torch.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <iterator>
#include <map>
#include <string>
#include <vector>

#include "support/temp_dir.h"

namespace mgd::testing {

class DetectionOracle {
 public:
  /// The cases, computed on first use.
  static const DetectionOracle& get() {
    static const DetectionOracle oracle;
    return oracle;
  }

  /// False when MGD_PYTHON has no torchvision (the tests skip); the script failing otherwise
  /// is an error (failed()).
  bool available() const { return available_; }
  bool failed() const { return !error_.empty(); }
  const std::string& error() const { return error_; }

  const torch::Tensor& at(const std::string& name) const {
    const auto it = cases_.find(name);
    if (it == cases_.end()) throw std::out_of_range("no oracle case " + name);
    return it->second;
  }
  /// The tensors name.0, name.1, ... .
  std::vector<torch::Tensor> list(const std::string& name) const {
    std::vector<torch::Tensor> items;
    for (size_t i = 0; cases_.count(name + "." + std::to_string(i)); ++i) {
      items.push_back(cases_.at(name + "." + std::to_string(i)));
    }
    return items;
  }

 private:
  DetectionOracle() {
    // ctest runs every test in its own process: the cases are cached under the temporary
    // directory, keyed by the script's text, and written by rename so runs in parallel agree.
    const std::string python = MGD_PYTHON;
    const std::string script = std::string(MGD_SOURCE_DIR) + "/tests/oracle/detection_oracle.py";
    std::ifstream source(script, std::ios::binary);
    const std::string text((std::istreambuf_iterator<char>(source)),
                           std::istreambuf_iterator<char>());
    const std::string file = ::testing::TempDir() + "/mgd-detection-oracle-" +
                             std::to_string(std::hash<std::string>()(text)) + ".pt";
    const std::string command = python + " " + script + " " + file;
    if (!std::ifstream(file).good()) {
      if (std::system((python + " -c 'import torchvision' > /dev/null 2>&1").c_str()) != 0) {
        return;  // not available: the tests skip
      }
      TempDir dir("mgd-detection-oracle");
      const std::string fresh = dir / "cases.pt";
      if (text.empty() || std::system((python + " " + script + " " + fresh).c_str()) != 0) {
        available_ = true;
        error_ = "the oracle failed: " + command;
        return;
      }
      std::rename(fresh.c_str(), file.c_str());
      if (!std::ifstream(file).good()) {  // another file system: copy instead
        std::ifstream from(fresh, std::ios::binary);
        std::ofstream(file + ".part", std::ios::binary) << from.rdbuf();
        std::rename((file + ".part").c_str(), file.c_str());
      }
    }
    available_ = true;
    std::ifstream in(file, std::ios::binary);
    const std::vector<char> bytes((std::istreambuf_iterator<char>(in)),
                                  std::istreambuf_iterator<char>());
    const auto dict = torch::pickle_load(bytes).toGenericDict();
    for (const auto& entry : dict) {
      cases_[entry.key().toStringRef()] = entry.value().toTensor();
    }
    if (cases_.empty()) error_ = "the oracle wrote no case: " + command;
  }

  bool available_ = false;
  std::string error_;
  std::map<std::string, torch::Tensor> cases_;
};

/// Skips the test without torchvision; fails it when the oracle script broke.
#define MGD_DETECTION_ORACLE(oracle)                                                     \
  const auto& oracle = ::mgd::testing::DetectionOracle::get();                           \
  if (!oracle.available()) {                                                             \
    GTEST_SKIP() << MGD_PYTHON << " lacks torchvision (python3-torchvision): no oracle"; \
  }                                                                                      \
  ASSERT_FALSE(oracle.failed()) << oracle.error()

/// Elementwise |a - b| <= atol + rtol |b|, same shape, with the largest difference reported.
inline ::testing::AssertionResult tensors_close(const torch::Tensor& actual,
                                                const torch::Tensor& expected, double rtol = 1e-5,
                                                double atol = 1e-6) {
  if (actual.sizes() != expected.sizes()) {
    return ::testing::AssertionFailure()
           << "shape " << actual.sizes() << ", expected " << expected.sizes();
  }
  if (actual.numel() == 0) return ::testing::AssertionSuccess();
  const auto a = actual.detach().to(torch::kDouble), e = expected.detach().to(torch::kDouble);
  if (torch::allclose(a, e, rtol, atol, /*equal_nan=*/true)) return ::testing::AssertionSuccess();
  const auto diff = (a - e).abs().nan_to_num(0.0);
  const int64_t worst = diff.flatten().argmax().item<int64_t>();
  return ::testing::AssertionFailure()
         << "max |difference| " << diff.max().item<double>() << " at flat index " << worst << ": "
         << a.flatten()[worst].item<double>() << " vs expected "
         << e.flatten()[worst].item<double>();
}

/// Same shape, same integer values.
inline ::testing::AssertionResult indices_equal(const torch::Tensor& actual,
                                                const torch::Tensor& expected) {
  if (actual.scalar_type() != torch::kLong) {
    return ::testing::AssertionFailure() << "dtype " << actual.scalar_type() << ", expected Long";
  }
  if (actual.sizes() != expected.sizes()) {
    return ::testing::AssertionFailure()
           << "shape " << actual.sizes() << ", expected " << expected.sizes();
  }
  if (actual.numel() == 0 || torch::equal(actual, expected.to(torch::kLong))) {
    return ::testing::AssertionSuccess();
  }
  const auto differ = torch::where(actual != expected)[0];
  const int64_t first = differ[0].item<int64_t>();
  return ::testing::AssertionFailure()
         << differ.size(0) << " of " << actual.numel() << " differ; first at " << first << ": "
         << actual[first].item<int64_t>() << " vs expected " << expected[first].item<int64_t>();
}

}  // namespace mgd::testing
