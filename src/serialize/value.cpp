#include "mgd/serialize/value.h"

#include <c10/util/Exception.h>

#include <cstring>
#include <iomanip>
#include <sstream>

namespace mgd::serialize {
namespace {

const char* kind_name(Value::Kind kind) {
  switch (kind) {
    case Value::Kind::None:
      return "NoneType";
    case Value::Kind::Bool:
      return "bool";
    case Value::Kind::Int:
      return "int";
    case Value::Kind::Double:
      return "float";
    case Value::Kind::String:
      return "str";
    case Value::Kind::Bytes:
      return "bytes";
    case Value::Kind::Tensor:
      return "Tensor";
    case Value::Kind::List:
      return "list";
    case Value::Kind::Tuple:
      return "tuple";
    case Value::Kind::Dict:
      return "dict";
  }
  return "?";
}

// The index key of a dict key: str and int keys never collide.
std::string encode_key(const Value& key) {
  if (key.is_string()) return "s" + key.to_string();
  TORCH_CHECK(key.is_int(), "Dict: keys must be str or int, not ", key.type_name());
  const int64_t v = key.to_int();
  std::string out(1 + sizeof(v), 'i');
  std::memcpy(&out[1], &v, sizeof(v));
  return out;
}

std::string key_repr(const Value& key) {
  std::ostringstream out;
  out << key;
  return out.str();
}

}  // namespace

Value::Value(torch::Tensor value) : kind_(Kind::Tensor), tensor_(std::move(value)) {
  TORCH_CHECK(tensor_.defined(), "Value: an undefined tensor cannot be stored");
}

Value::Value(Dict value) : kind_(Kind::Dict), dict_(std::make_unique<Dict>(std::move(value))) {}

Value Value::bytes(std::string data) {
  Value v(std::move(data));
  v.kind_ = Kind::Bytes;
  return v;
}

Value Value::list(std::vector<Value> items) {
  Value v;
  v.kind_ = Kind::List;
  v.items_ = std::move(items);
  return v;
}

Value Value::tuple(std::vector<Value> items) {
  Value v = list(std::move(items));
  v.kind_ = Kind::Tuple;
  return v;
}

Value::Value(const Value& other)
    : kind_(other.kind_),
      int_(other.int_),
      double_(other.double_),
      string_(other.string_),
      tensor_(other.tensor_),
      items_(other.items_),
      dict_(other.dict_ ? std::make_unique<Dict>(*other.dict_) : nullptr) {}

Value::Value(Value&& other) noexcept = default;

Value& Value::operator=(const Value& other) {
  if (this != &other) *this = Value(other);
  return *this;
}

Value& Value::operator=(Value&& other) noexcept = default;
Value::~Value() = default;

std::string Value::type_name() const {
  if (kind_ == Kind::Dict && dict_->is_ordered()) return "OrderedDict";
  return kind_name(kind_);
}

void Value::check_kind(Kind expected, const char* what) const {
  TORCH_CHECK(kind_ == expected, "Value: expected ", what, " but got ", type_name());
}

bool Value::to_bool() const {
  check_kind(Kind::Bool, "bool");
  return int_ != 0;
}

int64_t Value::to_int() const {
  check_kind(Kind::Int, "int");
  return int_;
}

double Value::to_double() const {
  if (kind_ == Kind::Int) return static_cast<double>(int_);
  check_kind(Kind::Double, "float");
  return double_;
}

const std::string& Value::to_string() const {
  check_kind(Kind::String, "str");
  return string_;
}

const std::string& Value::to_bytes() const {
  check_kind(Kind::Bytes, "bytes");
  return string_;
}

const torch::Tensor& Value::to_tensor() const {
  check_kind(Kind::Tensor, "Tensor");
  return tensor_;
}

const std::vector<Value>& Value::items() const {
  TORCH_CHECK(kind_ == Kind::List || kind_ == Kind::Tuple, "Value: expected list or tuple but got ",
              type_name());
  return items_;
}

std::vector<Value>& Value::items() {
  TORCH_CHECK(kind_ == Kind::List || kind_ == Kind::Tuple, "Value: expected list or tuple but got ",
              type_name());
  return items_;
}

const Dict& Value::to_dict() const {
  check_kind(Kind::Dict, "dict");
  return *dict_;
}

Dict& Value::to_dict() {
  check_kind(Kind::Dict, "dict");
  return *dict_;
}

const Value& Value::at(const Value& key) const {
  return to_dict().at(key);
}
bool Value::contains(const Value& key) const {
  return to_dict().contains(key);
}

Value& Dict::insert_or_assign(Value key, Value value) {
  std::string code = encode_key(key);
  auto it = index_.find(code);
  if (it != index_.end()) {
    items_[it->second].second = std::move(value);
    return items_[it->second].second;
  }
  index_.emplace(std::move(code), items_.size());
  items_.emplace_back(std::move(key), std::move(value));
  return items_.back().second;
}

const Value* Dict::find(const Value& key) const {
  if (!key.is_string() && !key.is_int()) return nullptr;
  auto it = index_.find(encode_key(key));
  return it == index_.end() ? nullptr : &items_[it->second].second;
}

Value* Dict::find(const Value& key) {
  return const_cast<Value*>(static_cast<const Dict*>(this)->find(key));
}

const Value& Dict::at(const Value& key) const {
  const Value* v = find(key);
  TORCH_CHECK(v != nullptr, "Dict: no key ", key_repr(key));
  return *v;
}

bool Dict::erase(const Value& key) {
  if (!key.is_string() && !key.is_int()) return false;
  auto it = index_.find(encode_key(key));
  if (it == index_.end()) return false;
  const size_t pos = it->second;
  items_.erase(items_.begin() + static_cast<std::ptrdiff_t>(pos));
  index_.erase(it);
  for (auto& entry : index_) {
    if (entry.second > pos) --entry.second;
  }
  return true;
}

const Value* Dict::attribute(const std::string& name) const {
  for (const auto& a : attributes_) {
    if (a.first == name) return &a.second;
  }
  return nullptr;
}

void Dict::set_attribute(std::string name, Value value) {
  for (auto& a : attributes_) {
    if (a.first == name) {
      a.second = std::move(value);
      return;
    }
  }
  attributes_.emplace_back(std::move(name), std::move(value));
}

std::ostream& operator<<(std::ostream& out, const Value& value) {
  switch (value.kind()) {
    case Value::Kind::None:
      return out << "None";
    case Value::Kind::Bool:
      return out << (value.to_bool() ? "True" : "False");
    case Value::Kind::Int:
      return out << value.to_int();
    case Value::Kind::Double: {
      std::ostringstream s;
      s << std::setprecision(17) << value.to_double();
      return out << s.str();
    }
    case Value::Kind::String:
      return out << "'" << value.to_string() << "'";
    case Value::Kind::Bytes: {
      out << "b'";
      for (unsigned char c : value.to_bytes()) {
        if (c >= 0x20 && c < 0x7f && c != '\\' && c != '\'') {
          out << static_cast<char>(c);
        } else {
          static const char* kHex = "0123456789abcdef";
          out << "\\x" << kHex[c >> 4] << kHex[c & 15];
        }
      }
      return out << "'";
    }
    case Value::Kind::Tensor: {
      const auto& t = value.to_tensor();
      return out << "tensor(" << t.scalar_type() << t.sizes() << ")";
    }
    case Value::Kind::List:
    case Value::Kind::Tuple: {
      const bool list = value.is_list();
      out << (list ? "[" : "(");
      const auto& items = value.items();
      for (size_t i = 0; i < items.size(); ++i) out << (i ? ", " : "") << items[i];
      if (!list && items.size() == 1) out << ",";
      return out << (list ? "]" : ")");
    }
    case Value::Kind::Dict: {
      const Dict& d = value.to_dict();
      out << (d.is_ordered() ? "OrderedDict({" : "{");
      bool first = true;
      for (const auto& item : d) {
        out << (first ? "" : ", ") << item.first << ": " << item.second;
        first = false;
      }
      return out << (d.is_ordered() ? "})" : "}");
    }
  }
  return out;
}

}  // namespace mgd::serialize
