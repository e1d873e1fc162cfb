// What a PyTorch checkpoint holds: a small tree of Python values.
//
// `torch.save` pickles a tree of Python objects; checkpoints use a small subset of them:
// None, bool, int, float, str, bytes, tensors, list, tuple, dict and collections.OrderedDict
// (a state_dict is an OrderedDict whose `_metadata` attribute records module versions).
// mgd::serialize::Value is that subset as a C++ value type, read by load_file() and written
// by save_file() (mgd/serialize/checkpoint.h).
//
//   Value ckpt = Dict{};
//   ckpt.to_dict().insert_or_assign("epoch", 12);
//   ckpt.to_dict().insert_or_assign("state_dict", state_dict_value(*model));
//   int64_t epoch = ckpt.at("epoch").to_int();
//
// Values have value semantics: copying one copies the tree, except that tensors are shared the
// way torch::Tensor copies are. Python's `int` maps to int64_t (larger integers are rejected by
// the reader), `float` to double, `str` to a UTF-8 std::string and `bytes` to a std::string of
// raw bytes. Dict keys are str or int, as in state dicts and optimizer states.
#pragma once

#include <torch/types.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <ostream>
#include <string>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

namespace mgd::serialize {

class Dict;

/// One Python value of a checkpoint.
class Value {
 public:
  enum class Kind : uint8_t { None, Bool, Int, Double, String, Bytes, Tensor, List, Tuple, Dict };

  /// None.
  Value() = default;
  Value(std::nullptr_t) {}
  Value(bool value) : kind_(Kind::Bool), int_(value ? 1 : 0) {}
  /// Any integer type but bool; throws if an unsigned value exceeds int64_t.
  template <typename T,
            std::enable_if_t<std::is_integral_v<T> && !std::is_same_v<T, bool>, int> = 0>
  Value(T value) : kind_(Kind::Int), int_(static_cast<int64_t>(value)) {
    if constexpr (std::is_unsigned_v<T> && sizeof(T) >= sizeof(int64_t)) {
      TORCH_CHECK(value <= static_cast<T>(INT64_MAX), "Value: integer ", value,
                  " does not fit in int64");
    }
  }
  Value(double value) : kind_(Kind::Double), double_(value) {}
  /// A str (UTF-8).
  Value(std::string value) : kind_(Kind::String), string_(std::move(value)) {}
  Value(const char* value) : Value(std::string(value)) {}
  Value(torch::Tensor value);
  Value(Dict value);

  /// A Python `bytes` object holding `data`.
  static Value bytes(std::string data);
  static Value list(std::vector<Value> items = {});
  static Value tuple(std::vector<Value> items = {});

  Value(const Value& other);
  Value(Value&& other) noexcept;
  Value& operator=(const Value& other);
  Value& operator=(Value&& other) noexcept;
  ~Value();

  Kind kind() const { return kind_; }
  bool is_none() const { return kind_ == Kind::None; }
  bool is_bool() const { return kind_ == Kind::Bool; }
  bool is_int() const { return kind_ == Kind::Int; }
  bool is_double() const { return kind_ == Kind::Double; }
  bool is_string() const { return kind_ == Kind::String; }
  bool is_bytes() const { return kind_ == Kind::Bytes; }
  bool is_tensor() const { return kind_ == Kind::Tensor; }
  bool is_list() const { return kind_ == Kind::List; }
  bool is_tuple() const { return kind_ == Kind::Tuple; }
  bool is_dict() const { return kind_ == Kind::Dict; }

  /// The Python type name: "NoneType", "bool", "int", "float", "str", "bytes", "Tensor",
  /// "list", "tuple", "dict" or "OrderedDict".
  std::string type_name() const;

  // Accessors throw c10::Error naming both types when the value is of another kind.
  bool to_bool() const;
  int64_t to_int() const;
  /// A float, or an int converted to double (Python code mixes the two freely).
  double to_double() const;
  const std::string& to_string() const;
  const std::string& to_bytes() const;
  const torch::Tensor& to_tensor() const;
  /// The elements of a list or a tuple.
  const std::vector<Value>& items() const;
  std::vector<Value>& items();
  const Dict& to_dict() const;
  Dict& to_dict();

  /// Shortcuts for a dict: the value under `key` (throws naming the key when absent) and
  /// whether there is one.
  const Value& at(const Value& key) const;
  bool contains(const Value& key) const;

 private:
  void check_kind(Kind expected, const char* what) const;

  Kind kind_ = Kind::None;
  int64_t int_ = 0;  // Bool and Int
  double double_ = 0.0;
  std::string string_;        // String and Bytes
  torch::Tensor tensor_;      // Tensor
  std::vector<Value> items_;  // List and Tuple
  std::unique_ptr<Dict> dict_;
};

/// A Python dict or collections.OrderedDict: insertion-ordered, keys str or int.
class Dict {
 public:
  using Item = std::pair<Value, Value>;

  /// A plain `dict` (what `{...}` gives in Python); set_ordered(true) makes it an OrderedDict.
  Dict() = default;
  static Dict ordered_dict() {
    Dict d;
    d.ordered_ = true;
    return d;
  }

  /// collections.OrderedDict rather than dict (state_dicts are OrderedDicts).
  bool is_ordered() const { return ordered_; }
  void set_ordered(bool ordered) { ordered_ = ordered; }

  size_t size() const { return items_.size(); }
  bool empty() const { return items_.empty(); }
  std::vector<Item>::const_iterator begin() const { return items_.begin(); }
  std::vector<Item>::const_iterator end() const { return items_.end(); }
  const std::vector<Item>& items() const { return items_; }

  /// Sets `key` (a str or int Value; throws otherwise) to `value`. An existing key keeps its
  /// position, as in Python. Returns the stored value.
  Value& insert_or_assign(Value key, Value value);
  const Value* find(const Value& key) const;
  Value* find(const Value& key);
  bool contains(const Value& key) const { return find(key) != nullptr; }
  /// The value under `key`; throws c10::Error naming the key when it is absent.
  const Value& at(const Value& key) const;
  /// Removes `key`; returns whether it was there.
  bool erase(const Value& key);

  /// Attributes of the dict object, in the order set (an OrderedDict can carry them; a
  /// state_dict's `_metadata` is one). Only OrderedDicts with attributes can be saved.
  const std::vector<std::pair<std::string, Value>>& attributes() const { return attributes_; }
  const Value* attribute(const std::string& name) const;
  void set_attribute(std::string name, Value value);

 private:
  std::vector<Item> items_;
  std::unordered_map<std::string, size_t> index_;  // encoded key -> position in items_
  bool ordered_ = false;
  std::vector<std::pair<std::string, Value>> attributes_;
};

/// A short Python-like rendering (tensors as `tensor(Float[2, 3])`), for messages and tests.
std::ostream& operator<<(std::ostream& out, const Value& value);

}  // namespace mgd::serialize
