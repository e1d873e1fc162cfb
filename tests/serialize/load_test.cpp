// The checkpoint reader: files Python's torch.save wrote in both formats, then corrupt,
// truncated, hostile and randomly mutated files, which must all give a c10::Error naming the
// file, never a crash.
#include <caffe2/serialize/inline_container.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <functional>
#include <iostream>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "mgd/serialize/checkpoint.h"
#include "mgd/serialize/state_dict.h"
#include "serialize/serialize_testing.h"

namespace {

namespace ser = mgd::serialize;
using namespace std::string_literals;
using mgd::testing::error_of;
using mgd::testing::read_bytes;
using mgd::testing::TempDir;
using ser::Value;

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

// Files written by tests/serialize/python/write_checkpoints.py, once per test process.
class PythonCheckpoints : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = std::make_unique<TempDir>();
    auto result = mgd::testing::run_python("write_checkpoints.py", dir_->path());
    ok_ = result.status == 0;
    output_ = result.output;
  }
  static void TearDownTestSuite() { dir_.reset(); }
  void SetUp() override { ASSERT_TRUE(ok_) << "write_checkpoints.py failed:\n" << output_; }

  static std::string file(const std::string& name) { return *dir_ / name; }

  static std::unique_ptr<TempDir> dir_;
  static bool ok_;
  static std::string output_;
};
std::unique_ptr<TempDir> PythonCheckpoints::dir_;
bool PythonCheckpoints::ok_ = false;
std::string PythonCheckpoints::output_;

TEST_F(PythonCheckpoints, TensorsAndValuesInBothFormats) {
  const ser::Dict want = mgd::testing::expected_tensors();
  for (const std::string fmt : {"zip", "legacy"}) {
    SCOPED_TRACE(fmt);
    const Value got = ser::load_file(file("tensors_" + fmt + ".pt"));
    ASSERT_EQ(got.type_name(), "OrderedDict");
    const ser::Dict& d = got.to_dict();
    ASSERT_EQ(d.size(), want.size() + 1);
    for (size_t i = 0; i < want.size(); ++i) {
      const std::string& key = want.items()[i].first.to_string();
      EXPECT_EQ(d.items()[i].first.to_string(), key);  // the OrderedDict's order is kept
      EXPECT_TRUE(mgd::testing::same_tensor(d.at(key).to_tensor(), want.at(key).to_tensor()))
          << key;
    }
    // Views of one storage in Python are views of one storage here.
    const auto& base = d.at("base").to_tensor();
    for (const char* view : {"transposed", "sliced", "row"}) {
      EXPECT_TRUE(mgd::testing::shares_storage(base, d.at(view).to_tensor())) << view;
    }
    EXPECT_FALSE(mgd::testing::shares_storage(base, d.at("f32").to_tensor()));
    mgd::testing::expect_same_value(d.at("values"), mgd::testing::expected_values(), "values");
  }
}

TEST_F(PythonCheckpoints, StateDictsAndTrainingCheckpoints) {
  for (const std::string fmt : {"zip", "legacy"}) {
    SCOPED_TRACE(fmt);
    const Value state = ser::load_file(file("state_" + fmt + ".pt"));
    ASSERT_EQ(state.type_name(), "OrderedDict");
    EXPECT_EQ(state.to_dict().size(), 9u);
    const Value* metadata = state.to_dict().attribute("_metadata");
    ASSERT_NE(metadata, nullptr);
    EXPECT_EQ(metadata->type_name(), "OrderedDict");
    EXPECT_EQ(metadata->at("features.1").at("version").to_int(), 2);  // BatchNorm's version

    const Value train = ser::load_file(file("train_" + fmt + ".pt"));
    EXPECT_EQ(train.at("epoch").to_int(), 12);
    const Value& optimizer = train.at("optimizer");
    const Value& group = optimizer.at("param_groups").items().at(0);
    EXPECT_DOUBLE_EQ(group.at("lr").to_double(), 0.1);
    EXPECT_DOUBLE_EQ(group.at("momentum").to_double(), 0.9);
    EXPECT_FALSE(group.at("nesterov").to_bool());
    EXPECT_EQ(group.at("params").items().size(), 6u);
    EXPECT_EQ(optimizer.at("state").to_dict().size(), 6u);
    EXPECT_EQ(optimizer.at("state").at(0).at("momentum_buffer").to_tensor().sizes(),
              state.at("features.0.weight").to_tensor().sizes());

    // The same weights: bare, and under 'state_dict' with DataParallel's 'module.' prefix.
    const Value& wrapped = train.at("state_dict");
    ASSERT_EQ(wrapped.to_dict().size(), state.to_dict().size());
    for (const auto& item : state.to_dict()) {
      const std::string key = "module." + item.first.to_string();
      EXPECT_TRUE(torch::equal(wrapped.at(key).to_tensor(), item.second.to_tensor())) << key;
    }
  }
}

TEST_F(PythonCheckpoints, PickledCodeIsRejectedNotRun) {
  for (const std::string fmt : {"zip", "legacy"}) {
    const std::string path = file("exploit_" + fmt + ".pt");
    const std::string msg = error_of([&] { ser::load_file(path); });
    EXPECT_TRUE(contains(msg, path + ": unsupported pickle global 'posix.system'")) << msg;
    EXPECT_FALSE(std::filesystem::exists(file("exploited"))) << "os.system ran";
  }
}

// Random bit flips, byte overwrites and truncations of valid files: each must load or throw
// c10::Error. Tensors that load are read in full (ASan builds check every byte).
void mutate_and_load(const std::string& original, const std::string& name, std::mt19937& rng,
                     int rounds, const std::function<std::string(std::string)>& wrap = nullptr) {
  int loaded = 0;
  for (int round = 0; round < rounds; ++round) {
    std::string data = original;
    const int kind = static_cast<int>(rng() % 4);
    if (kind == 0) {
      const int flips = 1 + static_cast<int>(rng() % 4);
      for (int f = 0; f < flips; ++f)
        data[rng() % data.size()] ^= static_cast<char>(1 << (rng() % 8));
    } else if (kind == 1) {
      const size_t at = rng() % data.size();
      const size_t n = std::min<size_t>(1 + rng() % 8, data.size() - at);
      for (size_t k = 0; k < n; ++k) data[at + k] = static_cast<char>(rng() % 256);
    } else if (kind == 2) {
      data.resize(rng() % data.size());
    } else {
      const size_t at = rng() % data.size();
      data.erase(at, std::min<size_t>(1 + rng() % 16, data.size() - at));
    }
    if (wrap) data = wrap(data);
    try {
      const Value v = ser::load_bytes(data.data(), data.size(), name);
      ++loaded;
      std::function<void(const Value&)> touch = [&](const Value& x) {
        if (x.is_tensor()) {
          x.to_tensor().contiguous().sum();
        } else if (x.is_list() || x.is_tuple()) {
          for (const auto& item : x.items()) touch(item);
        } else if (x.is_dict()) {
          for (const auto& item : x.to_dict()) touch(item.second);
        }
      };
      touch(v);
    } catch (const c10::Error& e) {
      ASSERT_TRUE(contains(e.what_without_backtrace(), name)) << e.what_without_backtrace();
    }
  }
  std::cout << name << ": " << loaded << " of " << rounds << " mutants loaded\n";
}

TEST_F(PythonCheckpoints, MutatedFilesLoadOrThrow) {
  std::mt19937 rng(1234);
  for (const std::string seed : {"small_zip.pt", "small_legacy.pt", "tensors_zip.pt",
                                 "tensors_legacy.pt", "train_legacy.pt"}) {
    const std::string data = read_bytes(file(seed));
    ASSERT_GT(data.size(), 100u);
    mutate_and_load(data, seed, rng, 600);
  }
  // Mutating the pickle of a zip checkpoint and re-packing it (with valid checksums) reaches
  // the unpickler, which checksums would otherwise shield.
  const std::string pickle = read_bytes(file("small_zip/data.pkl"));
  const std::string w = read_bytes(file("small_zip/data/0"));
  const std::string n = read_bytes(file("small_zip/data/1"));
  mutate_and_load(pickle, "repacked.pt", rng, 1500, [&](std::string p) {
    std::string out;
    caffe2::serialize::PyTorchStreamWriter writer([&](const void* data, size_t size) {
      out.append(static_cast<const char*>(data), size);
      return size;
    });
    writer.writeRecord("data.pkl", p.data(), p.size());
    writer.writeRecord("data/0", w.data(), w.size());
    writer.writeRecord("data/1", n.data(), n.size());
    writer.writeEndOfFile();
    return out;
  });
}

TEST_F(PythonCheckpoints, EveryTruncationIsAnError) {
  for (const std::string seed : {"small_zip.pt", "small_legacy.pt"}) {
    const std::string data = read_bytes(file(seed));
    for (size_t size = 0; size < data.size(); ++size) {
      const std::string msg = error_of([&] { ser::load_bytes(data.data(), size, seed); });
      ASSERT_TRUE(contains(msg, seed + ": ")) << size << ": " << msg;
    }
  }
  const std::string legacy = read_bytes(file("small_legacy.pt"));
  EXPECT_TRUE(contains(error_of([&] { ser::load_bytes(legacy.data(), legacy.size() - 1, "t.pt"); }),
                       "t.pt: truncated"));
}

// --- Hand-made hostile inputs: a zip archive around a given pickle.

std::string zip_with(const std::string& pickle,
                     const std::vector<std::pair<std::string, std::string>>& records = {},
                     bool compress = false) {
  std::string out;
  caffe2::serialize::PyTorchStreamWriter writer([&](const void* data, size_t size) {
    out.append(static_cast<const char*>(data), size);
    return size;
  });
  writer.writeRecord("data.pkl", pickle.data(), pickle.size(), compress);
  for (const auto& r : records) writer.writeRecord(r.first, r.second.data(), r.second.size());
  writer.writeEndOfFile();
  return out;
}

std::string load_error(const std::string& bytes) {
  return error_of([&] { ser::load_bytes(bytes.data(), bytes.size(), "evil.pt"); });
}

const std::string kProto = "\x80\x02";

std::string int_op(int64_t v) {  // BININT (4 bytes) or LONG1 (8 bytes)
  std::string out;
  const bool small = v >= INT32_MIN && v <= INT32_MAX;
  out += small ? "J" : std::string("\x8a\x08", 2);
  for (int k = 0; k < (small ? 4 : 8); ++k)
    out.push_back(static_cast<char>(static_cast<uint64_t>(v) >> (8 * k)));
  return out;
}

std::string str_op(const std::string& s) {
  return "\x8c" + std::string(1, static_cast<char>(s.size())) + s;
}

// _rebuild_tensor_v2 of a FloatStorage persistent id ('storage', FloatStorage, key, 'cpu', numel).
std::string tensor_pickle(int64_t numel, int64_t offset, std::vector<int64_t> size,
                          std::vector<int64_t> stride, const std::string& key = "0") {
  std::string p = kProto + "ctorch._utils\n_rebuild_tensor_v2\n((" + str_op("storage") +
                  "ctorch\nFloatStorage\n" + str_op(key) + str_op("cpu") + int_op(numel) + "tQ" +
                  int_op(offset) + "(";
  for (int64_t s : size) p += int_op(s);
  p += "t(";
  for (int64_t s : stride) p += int_op(s);
  p += "t\x89}tR.";
  return p;
}

TEST(SerializeLoad, ContainerErrorsNameTheFile) {
  TempDir dir;
  EXPECT_TRUE(contains(error_of([&] { ser::load_file(dir / "absent.pt"); }),
                       dir / "absent.pt: cannot open: No such file"));
  EXPECT_TRUE(contains(error_of([&] { ser::load_file(dir.path()); }), "not a regular file"));
  mgd::testing::write_bytes(dir / "empty.pt", "");
  EXPECT_TRUE(
      contains(error_of([&] { ser::load_file(dir / "empty.pt"); }), "empty.pt: empty file"));

  std::mt19937 rng(7);
  std::string noise(4096, '\0');
  for (auto& c : noise) c = static_cast<char>(rng());
  noise[0] = 'x';
  EXPECT_TRUE(contains(load_error(noise), "evil.pt: not a PyTorch checkpoint"));
  noise[0] = 'P';
  noise[1] = 'K';
  EXPECT_TRUE(contains(load_error(noise), "evil.pt: truncated or corrupt zip archive"));
  noise[0] = '\x80';
  EXPECT_TRUE(contains(load_error(noise), "evil.pt: "));
  // A pickle that is not torch.save's legacy format.
  EXPECT_TRUE(contains(load_error(kProto + "K\x05."), "without torch.save's magic number"));
}

TEST(SerializeLoad, ZipLevelErrors) {
  const std::string good = ser::save_bytes(Value(torch::arange(4, torch::kFloat32)));
  ASSERT_TRUE(ser::load_bytes(good.data(), good.size()).is_tensor());

  // A flipped byte in a tensor's record fails its checksum.
  const std::string bytes = good;
  const size_t at = bytes.find(std::string("\x00\x00\x80\x3f", 4));  // 1.0f
  ASSERT_NE(at, std::string::npos);
  std::string flipped = bytes;
  flipped[at + 3] ^= 0x01;
  EXPECT_TRUE(contains(load_error(flipped), "checksum mismatch in record 'archive/data/0'"));

  EXPECT_TRUE(
      contains(load_error(zip_with(kProto + "N.", {}, /*compress=*/true)), "is compressed"));

  std::string out;
  {
    caffe2::serialize::PyTorchStreamWriter writer([&](const void* data, size_t size) {
      out.append(static_cast<const char*>(data), size);
      return size;
    });
    writer.writeRecord("constants.pkl", "x", 1);
  }
  EXPECT_TRUE(contains(load_error(out), "no archive/data.pkl record"));
}

TEST(SerializeLoad, HostilePickles) {
  struct Case {
    std::string pickle;
    std::string error;
  };
  std::string deep = kProto;  // 100000 nested lists
  for (int i = 0; i < 100000; ++i) deep += "]";
  for (int i = 0; i < 99999; ++i) deep += "a";
  deep += ".";
  std::string laughs = kProto + "]q\x00"s;  // level i+1 = [level i, level i]; 2^60 leaves
  for (int i = 0; i < 60; ++i) {
    laughs += "](h" + std::string(1, static_cast<char>(i)) + "h" +
              std::string(1, static_cast<char>(i)) + "eq" +
              std::string(1, static_cast<char>(i + 1));
  }
  laughs += ".";
  const std::vector<Case> cases = {
      {kProto + "cos\nsystem\n" + str_op("true") + "\x85R.",
       "unsupported pickle global 'os.system'"},
      {kProto + str_op("builtins") + str_op("eval") + "\x93.",
       "unsupported pickle global 'builtins.eval'"},
      {kProto + "c__main__\nNet\n)\x81.", "unsupported pickle global '__main__.Net'"},
      {kProto + ".", "stack underflow"},
      {kProto + "(N1.", "stack underflow"},
      {kProto + "h\x05.", "memo entry 5 was never stored"},
      {kProto + "]q\x00h\x00"
                "a."s,
       "or an object that contains itself"},
      {deep, "nested more than 200 deep"},
      {laughs, "shared objects expand to too many objects"},
      {kProto + "X\xff\xff\xff\x7f" + "abc.", "truncated pickle: a 2147483647-byte field"},
      {kProto + "\x8d\xff\xff\xff\xff\xff\xff\xff\xff", "truncated pickle"},
      {kProto + "\x8f.", "unsupported pickle opcode 0x8f"},
      {kProto + "\x8a\x09\x00\x00\x00\x00\x00\x00\x00\x00\x01."s, "does not fit in 64 bits"},
      {kProto + "}]Ns.", "unsupported dict key of type list"},
      {kProto + "]}b.", "setting the state of a list"},
      {kProto + "N)R.", "calling a None"},
      {kProto + "ccollections\nOrderedDict\nK\x01\x85R.", "takes 0 arguments, not 1"},
      {kProto + "\x95\xff\xff\xff\x00\x00\x00\x00\x00N."s, "truncated pickle"},
      {kProto + "(" + str_op("module") + "tQ.", "pickles a whole nn.Module"},
      {kProto + "N", "unexpected end of data"},
      {kProto + "\x80\x09.", "unsupported pickle protocol 9"},
      {kProto + "I12x\n.", "bad integer '12x'"},
      {tensor_pickle(2, 0, {10}, {1}), "needs 40 bytes but its storage has 8"},
      {tensor_pickle(2, 2, {1}, {1}), "needs 12 bytes but its storage has 8"},
      {tensor_pickle(2, 0, {2}, {-1}), "negative tensor size or stride"},
      {tensor_pickle(2, -1, {1}, {1}), "negative storage offset"},
      {tensor_pickle(2, 0, {int64_t{1} << 62, 4}, {0, 0}), "tensor size overflows"},
      {tensor_pickle(2, 0, {2, int64_t{1} << 61}, {1, 4}), "tensor extent overflows"},
      {tensor_pickle(int64_t{1} << 40, 0, {1}, {1}), "claims 1099511627776 elements"},
      {tensor_pickle(2, 0, {2}, {1}, "9"), "missing record 'archive/data/9'"},
      {tensor_pickle(4, 0, {4}, {1}),
       "record 'archive/data/0' has 8 bytes but its storage needs 16"},
  };
  const std::vector<std::pair<std::string, std::string>> storage = {
      {"data/0", std::string(8, '\0')}};
  for (const auto& c : cases) {
    const std::string msg = load_error(zip_with(c.pickle, storage));
    EXPECT_TRUE(contains(msg, "evil.pt: ")) << msg;
    EXPECT_TRUE(contains(msg, c.error)) << "expected '" << c.error << "' in: " << msg;
  }
  // The same tensor pickle with a valid extent loads, sharing the record's storage.
  const std::string ok = zip_with(tensor_pickle(2, 1, {1}, {1}), storage);
  const Value v = ser::load_bytes(ok.data(), ok.size());
  EXPECT_EQ(v.to_tensor().storage_offset(), 1);
  EXPECT_EQ(v.to_tensor().numel(), 1);
}

TEST(SerializeLoad, ReadsTorchPickleSave) {
  // torch::pickle_save wraps containers in torch.jit._pickle type tags; they read as plain values.
  c10::impl::GenericDict dict(c10::StringType::get(), c10::AnyType::get());
  dict.insert("w", torch::arange(6, torch::kFloat32).reshape({2, 3}));
  dict.insert("ids", c10::List<int64_t>({3, 1, 2}));
  dict.insert("lr", 0.5);
  const std::vector<char> bytes = torch::pickle_save(dict);
  const Value v = ser::load_bytes(bytes.data(), bytes.size());
  EXPECT_TRUE(
      torch::equal(v.at("w").to_tensor(), torch::arange(6, torch::kFloat32).reshape({2, 3})));
  ASSERT_EQ(v.at("ids").items().size(), 3u);
  EXPECT_EQ(v.at("ids").items()[0].to_int(), 3);
  EXPECT_DOUBLE_EQ(v.at("lr").to_double(), 0.5);
}

}  // namespace
