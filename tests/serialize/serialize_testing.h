// Helpers for the serialize tests: temporary directories, running the Python side
// (tests/serialize/python/, always with MGD_PYTHON, the interpreter that has torch), and the
// C++ twins of the fixtures in tests/serialize/python/fixtures.py.
#pragma once

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <array>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "mgd/serialize/value.h"
#include "support/temp_dir.h"

namespace mgd::testing {

namespace ser = mgd::serialize;

struct CommandResult {
  int status = -1;  // the exit status, or -1 when the command did not exit normally
  std::string output;
};

/// Runs `command` through the shell, stderr merged into stdout.
inline CommandResult run_command(const std::string& command) {
  CommandResult result;
  FILE* pipe = ::popen((command + " 2>&1").c_str(), "r");
  if (pipe == nullptr) return result;
  std::array<char, 4096> buffer{};
  size_t n;
  while ((n = std::fread(buffer.data(), 1, buffer.size(), pipe)) > 0) {
    result.output.append(buffer.data(), n);
  }
  const int status = ::pclose(pipe);
  if (status != -1 && WIFEXITED(status)) result.status = WEXITSTATUS(status);
  return result;
}

/// Runs tests/serialize/python/<script> with MGD_PYTHON (the default `python3` may lack torch).
inline CommandResult run_python(const std::string& script, const std::string& args) {
  return run_command(std::string(MGD_PYTHON) + " " + MGD_SOURCE_DIR + "/tests/serialize/python/" +
                     script + " " + args);
}

inline std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

inline void write_bytes(const std::string& path, const std::string& data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(data.data(), static_cast<std::streamsize>(data.size()));
}

/// The message of a c10::Error thrown by `f`, or "" (and a test failure) when none is.
template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const c10::Error& e) {
    return e.what_without_backtrace();
  }
  ADD_FAILURE() << "expected a c10::Error";
  return "";
}

/// fixtures.tensors(): every dtype, a scalar, an empty tensor, four views of one storage, an
/// expanded tensor and a parameter (a tensor that requires grad).
inline ser::Dict expected_tensors() {
  using torch::indexing::Slice;
  ser::Dict d = ser::Dict::ordered_dict();
  auto base = torch::arange(20, torch::kFloat32).reshape({4, 5});
  d.insert_or_assign("f32", (torch::arange(24, torch::kFloat32) * 0.25 - 3).reshape({2, 3, 4}));
  d.insert_or_assign("f64", (torch::arange(6, torch::kFloat64) * 1.5 - 2).reshape({3, 2}));
  d.insert_or_assign("f16", torch::arange(8, torch::kFloat16) * 0.5);
  d.insert_or_assign("bf16", torch::arange(8, torch::kBFloat16) * 0.25);
  d.insert_or_assign("i64", torch::arange(-5, 5, torch::kInt64) * 1000000007);
  d.insert_or_assign("i32", torch::arange(-3, 3, torch::kInt32));
  d.insert_or_assign("i16", torch::arange(-3, 3, torch::kInt16));
  d.insert_or_assign("i8", torch::arange(-4, 4, torch::kInt8));
  d.insert_or_assign("u8", torch::arange(250, 256).to(torch::kUInt8));
  d.insert_or_assign("bool", torch::arange(6).remainder(3) == 0);
  d.insert_or_assign("c64",
                     torch::complex(torch::tensor({1.0f, -3.5f}), torch::tensor({2.0f, 0.0f})));
  d.insert_or_assign("scalar", torch::tensor(3.5f));
  d.insert_or_assign("empty", torch::zeros({0, 3}));
  d.insert_or_assign("base", base);
  d.insert_or_assign("transposed", base.t());
  d.insert_or_assign(
      "sliced", base.index({Slice(1, torch::indexing::None), Slice(0, torch::indexing::None, 2)}));
  d.insert_or_assign("row", base[2]);
  d.insert_or_assign("expanded", torch::tensor({1.0f, 2.0f}).expand({3, 2}));
  d.insert_or_assign("param", torch::arange(3, torch::kFloat32).requires_grad_());
  return d;
}

/// fixtures.values(): the non-tensor contents of a training checkpoint.
inline ser::Value expected_values() {
  using ser::Value;
  ser::Dict ids;
  ids.insert_or_assign(0, "a");
  ids.insert_or_assign(-7, "b");
  ser::Dict d;
  d.insert_or_assign("epoch", 7);
  d.insert_or_assign("lr", 0.125);
  d.insert_or_assign("name", "r\xc3\xa9sum\xc3\xa9 \xe2\x9c\x93");
  d.insert_or_assign("flags", Value::list({true, false, Value()}));
  d.insert_or_assign("pair", Value::tuple({1, Value::tuple({2.5, "x"})}));
  d.insert_or_assign("ids", std::move(ids));
  d.insert_or_assign("big", (int64_t{1} << 40) + 1);
  d.insert_or_assign("neg", int64_t{-123456789012});
  d.insert_or_assign("raw", Value::bytes(std::string("\x00\x01\xfe\xff", 4)));
  d.insert_or_assign("empty_list", Value::list());
  d.insert_or_assign("empty_dict", ser::Dict());
  d.insert_or_assign("floats",
                     Value::list({std::numeric_limits<double>::infinity(), -0.0, 1e-300}));
  return d;
}

/// Same dtype, shape, strides, storage offset, requires_grad and values.
inline ::testing::AssertionResult same_tensor(const torch::Tensor& got, const torch::Tensor& want) {
  std::ostringstream why;
  if (got.scalar_type() != want.scalar_type()) {
    why << "dtype " << got.scalar_type() << " != " << want.scalar_type();
  } else if (got.sizes() != want.sizes()) {
    why << "shape " << got.sizes() << " != " << want.sizes();
  } else if (got.strides() != want.strides()) {
    why << "strides " << got.strides() << " != " << want.strides();
  } else if (got.storage_offset() != want.storage_offset()) {
    why << "offset " << got.storage_offset() << " != " << want.storage_offset();
  } else if (got.requires_grad() != want.requires_grad()) {
    why << "requires_grad " << got.requires_grad();
  } else if (!torch::equal(got, want)) {
    why << "values differ:\n" << got << "\n" << want;
  } else {
    return ::testing::AssertionSuccess();
  }
  return ::testing::AssertionFailure() << why.str();
}

/// Deep equality: kinds, dict flavour, key order, doubles bit for bit, tensors by same_tensor.
inline void expect_same_value(const ser::Value& got, const ser::Value& want,
                              const std::string& where = "value") {
  ASSERT_EQ(got.type_name(), want.type_name()) << where;
  switch (want.kind()) {
    case ser::Value::Kind::None:
      return;
    case ser::Value::Kind::Bool:
      EXPECT_EQ(got.to_bool(), want.to_bool()) << where;
      return;
    case ser::Value::Kind::Int:
      EXPECT_EQ(got.to_int(), want.to_int()) << where;
      return;
    case ser::Value::Kind::Double: {
      const double g = got.to_double(), w = want.to_double();
      EXPECT_EQ(std::memcmp(&g, &w, sizeof(g)), 0) << where << ": " << g << " != " << w;
      return;
    }
    case ser::Value::Kind::String:
      EXPECT_EQ(got.to_string(), want.to_string()) << where;
      return;
    case ser::Value::Kind::Bytes:
      EXPECT_EQ(got.to_bytes(), want.to_bytes()) << where;
      return;
    case ser::Value::Kind::Tensor:
      EXPECT_TRUE(same_tensor(got.to_tensor(), want.to_tensor())) << where;
      return;
    case ser::Value::Kind::List:
    case ser::Value::Kind::Tuple:
      ASSERT_EQ(got.items().size(), want.items().size()) << where;
      for (size_t i = 0; i < want.items().size(); ++i) {
        expect_same_value(got.items()[i], want.items()[i], where + "[" + std::to_string(i) + "]");
      }
      return;
    case ser::Value::Kind::Dict: {
      const auto& g = got.to_dict();
      const auto& w = want.to_dict();
      ASSERT_EQ(g.size(), w.size()) << where << ": " << got << " vs " << want;
      for (size_t i = 0; i < w.size(); ++i) {
        std::ostringstream key;
        key << where << "[" << w.items()[i].first << "]";
        expect_same_value(g.items()[i].first, w.items()[i].first, key.str() + " (key)");
        expect_same_value(g.items()[i].second, w.items()[i].second, key.str());
      }
      ASSERT_EQ(g.attributes().size(), w.attributes().size()) << where << " attributes";
      for (size_t i = 0; i < w.attributes().size(); ++i) {
        EXPECT_EQ(g.attributes()[i].first, w.attributes()[i].first) << where;
        expect_same_value(g.attributes()[i].second, w.attributes()[i].second,
                          where + "." + w.attributes()[i].first);
      }
      return;
    }
  }
}

inline bool shares_storage(const torch::Tensor& a, const torch::Tensor& b) {
  return a.storage().unsafeGetStorageImpl() == b.storage().unsafeGetStorageImpl();
}

/// fixtures.Net: conv + BatchNorm + ReLU in `features`, then a linear `fc`; the same names.
struct NetImpl : torch::nn::Module {
  NetImpl() {
    features = register_module(
        "features",
        torch::nn::Sequential(torch::nn::Conv2d(torch::nn::Conv2dOptions(2, 4, 3).padding(1)),
                              torch::nn::BatchNorm2d(4), torch::nn::ReLU()));
    fc = register_module("fc", torch::nn::Linear(4 * 5 * 5, 3));
  }
  torch::Tensor forward(const torch::Tensor& x) {
    return fc->forward(torch::flatten(features->forward(x), 1));
  }
  torch::nn::Sequential features{nullptr};
  torch::nn::Linear fc{nullptr};
};
TORCH_MODULE(Net);

/// fixtures.net_input().
inline torch::Tensor net_input() {
  return torch::arange(2 * 2 * 5 * 5, torch::kFloat32).reshape({2, 2, 5, 5}).remainder(7) * 0.5 - 1;
}

}  // namespace mgd::testing
