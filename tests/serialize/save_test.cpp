// The checkpoint writer: round trips through the reader, Python's torch.load reading what C++
// wrote, values that cannot be saved, and atomic replacement when writing fails.
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <torch/torch.h>

#include <csignal>
#include <filesystem>
#include <set>
#include <string>

#include "mgd/serialize/checkpoint.h"
#include "mgd/serialize/state_dict.h"
#include "serialize/serialize_testing.h"

namespace {

namespace ser = mgd::serialize;
using mgd::testing::error_of;
using mgd::testing::read_bytes;
using mgd::testing::TempDir;
using ser::Dict;
using ser::Value;

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

std::set<std::string> files_in(const std::string& dir) {
  std::set<std::string> names;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    names.insert(e.path().filename().string());
  }
  return names;
}

Value everything() {
  Dict d = mgd::testing::expected_tensors();
  d.insert_or_assign("values", mgd::testing::expected_values());
  return Value(std::move(d));
}

TEST(SerializeSave, RoundTripsEveryKindOfValue) {
  TempDir dir;
  Value v = everything();
  Dict metadata = Dict::ordered_dict();
  Dict version;
  version.insert_or_assign("version", 2);
  metadata.insert_or_assign("bn", version);
  v.to_dict().set_attribute("_metadata", metadata);
  Dict big;  // more items than one SETITEMS / APPENDS batch, ints of every width
  std::vector<Value> list;
  for (int64_t i = 0; i < 2500; ++i) {
    const int64_t x = (i % 2 ? -1 : 1) * (i * i * i * i * i);
    big.insert_or_assign(x, i);
    list.push_back(x);
  }
  v.to_dict().insert_or_assign("big", big);
  v.to_dict().insert_or_assign("list", Value::list(list));
  v.to_dict().insert_or_assign("extremes",
                               Value::list({INT64_MIN, INT64_MAX, INT32_MIN, -1, 255, 256, 65536}));
  v.to_dict().insert_or_assign("tuples",
                               Value::tuple({Value::tuple(), Value::tuple({1, 2, 3, 4})}));

  ser::save_file(dir / "all.pt", v);
  EXPECT_EQ(files_in(dir.path()), std::set<std::string>{"all.pt"});
  const Value got = ser::load_file(dir / "all.pt");
  mgd::testing::expect_same_value(got, v);
  const auto& base = got.at("base").to_tensor();
  for (const char* view : {"transposed", "sliced", "row"}) {
    EXPECT_TRUE(mgd::testing::shares_storage(base, got.at(view).to_tensor())) << view;
  }
  // save_bytes writes the same bytes.
  EXPECT_EQ(ser::save_bytes(v), read_bytes(dir / "all.pt"));
}

TEST(SerializeSave, PythonReadsWhatCppWrites) {
  TempDir dir;
  ser::save_file(dir / "tensors.pt", everything());

  torch::manual_seed(11);
  mgd::testing::Net net;
  net->train();
  {
    torch::NoGradGuard no_grad;
    net->forward(mgd::testing::net_input());
  }
  net->eval();
  ser::save_state_dict(dir / "state.pt", *net);
  Dict io;
  io.insert_or_assign("input", mgd::testing::net_input());
  io.insert_or_assign("output", net->forward(mgd::testing::net_input()).detach());
  ser::save_file(dir / "io.pt", io);

  Dict buffer;
  buffer.insert_or_assign("momentum_buffer", torch::full({2, 3}, 0.5));
  Dict state;
  state.insert_or_assign(0, buffer);
  Dict group;
  group.insert_or_assign("lr", 0.1);
  group.insert_or_assign("params", Value::list({0}));
  Dict optimizer;
  optimizer.insert_or_assign("state", state);
  optimizer.insert_or_assign("param_groups", Value::list({group}));
  std::string rng;
  for (int i = 0; i < 256; ++i) rng.push_back(static_cast<char>(i));
  Dict train;
  train.insert_or_assign("state_dict", ser::state_dict_value(*net));
  train.insert_or_assign("epoch", 3);
  train.insert_or_assign("optimizer", optimizer);
  train.insert_or_assign("rng", Value::bytes(rng));
  train.insert_or_assign("matching", Value::list({Value::list({0, 2, 1}), Value::list({1, 0})}));
  ser::save_file(dir / "train.pt", train);

  const auto result = mgd::testing::run_python("check_checkpoints.py", dir.path());
  EXPECT_EQ(result.status, 0) << result.output;
}

TEST(SerializeSave, UnsavableValuesLeaveThePreviousFile) {
  TempDir dir;
  const std::string path = dir / "ckpt.pt";
  ser::save_file(path, Value(torch::ones({3})));
  const std::string previous = read_bytes(path);

  auto save_error = [&](const Value& v) { return error_of([&] { ser::save_file(path, v); }); };
  Dict bad_string;
  bad_string.insert_or_assign("name", "\xff\xfe");
  EXPECT_TRUE(contains(save_error(bad_string),
                       path + ": cannot save checkpoint['name']: a str is not valid UTF-8"));
  EXPECT_TRUE(contains(save_error(Value::list({torch::eye(3).to_sparse()})),
                       "cannot save checkpoint[0]: only dense tensors can be saved"));
  Dict plain;
  plain.set_attribute("_metadata", 1);
  EXPECT_TRUE(contains(save_error(plain), "only an OrderedDict can carry attributes"));
  Value deep = Value::list();
  for (int i = 0; i < 300; ++i) deep = Value::list({deep});
  EXPECT_TRUE(contains(save_error(deep), "nested more than 200 deep"));
  const auto t = torch::zeros({4});
  EXPECT_TRUE(contains(save_error(Value::list({t, t.view(torch::kInt32)})),
                       "views a storage already saved with dtype Float as Int"));

  EXPECT_EQ(read_bytes(path), previous);
  EXPECT_EQ(files_in(dir.path()), std::set<std::string>{"ckpt.pt"});
}

TEST(SerializeSave, UnwritablePlaces) {
  TempDir dir;
  const Value v(torch::ones({2}));
  std::string msg = error_of([&] { ser::save_file(dir / "missing/x.pt", v); });
  EXPECT_TRUE(contains(msg, dir / "missing/x.pt: cannot write: cannot create a temporary file in"))
      << msg;
  EXPECT_TRUE(contains(msg, "No such file or directory")) << msg;

  mgd::testing::write_bytes(dir / "file", "not a directory");
  msg = error_of([&] { ser::save_file(dir / "file/x.pt", v); });
  EXPECT_TRUE(contains(msg, dir / "file/x.pt: cannot write")) << msg;
  EXPECT_TRUE(contains(msg, "Not a directory")) << msg;

  msg = error_of([&] { ser::save_file("/proc/mgd-serialize-test.pt", v); });
  EXPECT_TRUE(contains(msg, "/proc/mgd-serialize-test.pt: cannot write")) << msg;

  // The target is a directory: the rename fails, the temporary file is removed.
  std::filesystem::create_directory(dir / "target");
  mgd::testing::write_bytes(dir / "target/keep", "x");
  msg = error_of([&] { ser::save_file(dir / "target", v); });
  EXPECT_TRUE(contains(msg, dir / "target: cannot replace it")) << msg;
  EXPECT_EQ(files_in(dir.path()), (std::set<std::string>{"file", "target"}));
  EXPECT_EQ(files_in(dir / "target"), std::set<std::string>{"keep"});

  EXPECT_TRUE(contains(error_of([&] { ser::save_file("", v); }), "is not a file name"));
}

TEST(SerializeSave, DiskFullLeavesThePreviousFile) {
  TempDir dir;
  const std::string path = dir / "ckpt.pt";
  ser::save_file(path, Value(torch::arange(10)));
  const std::string previous = read_bytes(path);

  // A file size limit makes write() fail with EFBIG part-way, as a full disk would (ENOSPC);
  // root is subject to it too. SIGXFSZ would otherwise kill the process.
  struct rlimit saved {};
  ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &saved), 0);
  auto old_handler = std::signal(SIGXFSZ, SIG_IGN);
  struct rlimit small = saved;
  small.rlim_cur = 64 * 1024;
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &small), 0);
  const std::string msg = error_of([&] { ser::save_file(path, Value(torch::zeros({100000}))); });
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &saved), 0);
  std::signal(SIGXFSZ, old_handler);

  EXPECT_TRUE(contains(msg, path + ": write failed: File too large")) << msg;
  EXPECT_EQ(read_bytes(path), previous);
  EXPECT_EQ(files_in(dir.path()), std::set<std::string>{"ckpt.pt"});
  EXPECT_TRUE(torch::equal(ser::load_file(path).to_tensor(), torch::arange(10)));
}

TEST(SerializeSave, OverwritesAndMovesTensorsToTheCpu) {
  TempDir dir;
  const std::string path = dir / "ckpt.pt";
  ser::save_file(path, Value(1));
  ser::save_file(path, Value::list({2, torch::full({2}, 7)}));
  const Value got = ser::load_file(path);
  EXPECT_EQ(got.items()[0].to_int(), 2);
  EXPECT_TRUE(got.items()[1].to_tensor().device().is_cpu());
  EXPECT_EQ(files_in(dir.path()), std::set<std::string>{"ckpt.pt"});
  // A relative path writes into the current directory.
  const auto cwd = std::filesystem::current_path();
  std::filesystem::current_path(dir.path());
  ser::save_file("relative.pt", Value(3));
  std::filesystem::current_path(cwd);
  EXPECT_EQ(ser::load_file(dir / "relative.pt").to_int(), 3);
}

}  // namespace
