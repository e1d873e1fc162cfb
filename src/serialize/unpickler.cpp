#include "unpickler.h"
#include "pickle_opcodes.h"

#include <ATen/Functions.h>
#include <c10/core/Allocator.h>

#include <charconv>
#include <cstring>
#include <unordered_map>
#include <utility>
#include <vector>

namespace mgd::serialize::detail {
namespace {

// Bounds on what one pickle may build: far above any real checkpoint (a ResNet-152 training
// checkpoint has ~10^5 objects) and far below what would exhaust memory.
constexpr size_t kMaxObjects = size_t{1} << 22;
constexpr size_t kMaxContainerItems = size_t{1} << 24;
constexpr size_t kMaxLine = 256;
constexpr int64_t kMaxDims = 64;

// The callables a checkpoint may name. Each is interpreted here; none is ever looked up.
enum class Global : uint8_t {
  kOrderedDict,
  kRebuildTensorV2,
  kRebuildTensor,
  kRebuildParameter,
  kRebuildParameterWithState,
  kCodecsEncode,
  kBytes,
  kTorchSize,
  kRestoreTypeTag,  // torch.jit._pickle.*: what torch::pickle_save writes
  kBuildList,
  kStorage,
};

struct StorageClass {
  const char* name;
  c10::ScalarType dtype;
};

constexpr StorageClass kStorageClasses[] = {
    {"FloatStorage", c10::kFloat},
    {"DoubleStorage", c10::kDouble},
    {"HalfStorage", c10::kHalf},
    {"BFloat16Storage", c10::kBFloat16},
    {"LongStorage", c10::kLong},
    {"IntStorage", c10::kInt},
    {"ShortStorage", c10::kShort},
    {"CharStorage", c10::kChar},
    {"ByteStorage", c10::kByte},
    {"BoolStorage", c10::kBool},
    {"ComplexFloatStorage", c10::kComplexFloat},
    {"ComplexDoubleStorage", c10::kComplexDouble},
    {"UntypedStorage", c10::kByte},
};

enum class Kind : uint8_t {
  kNone,
  kBool,
  kInt,
  kBigInt,
  kDouble,
  kString,
  kBytes,
  kTensor,
  kStorage,
  kList,
  kTuple,
  kDict,
  kGlobal,
};

const char* kind_name(Kind kind) {
  switch (kind) {
    case Kind::kNone:
      return "None";
    case Kind::kBool:
      return "bool";
    case Kind::kInt:
    case Kind::kBigInt:
      return "int";
    case Kind::kDouble:
      return "float";
    case Kind::kString:
      return "str";
    case Kind::kBytes:
      return "bytes";
    case Kind::kTensor:
      return "Tensor";
    case Kind::kStorage:
      return "storage";
    case Kind::kList:
      return "list";
    case Kind::kTuple:
      return "tuple";
    case Kind::kDict:
      return "dict";
    case Kind::kGlobal:
      return "global";
  }
  return "?";
}

// An object of the arena. `i` is the value of a bool or int, or the index of the object's
// payload in strings_, tensors_, storages_ or containers_, or a Global with its dtype.
struct Node {
  Kind kind;
  int64_t i = 0;
  double d = 0.0;
};

struct Container {
  std::vector<uint32_t> items;                    // list/tuple elements; dict: key, value, ...
  std::unordered_map<std::string, size_t> index;  // dict: encoded key -> position of the key
  std::vector<std::pair<std::string, uint32_t>> attributes;  // set by BUILD
  bool ordered = false;
};

struct StorageRef {
  c10::Storage storage;
  c10::ScalarType dtype;
};

constexpr uint32_t kNoneId = 0, kFalseId = 1, kTrueId = 2;

// Minimal little-endian two's complement.
std::string normalize_integer(std::string bytes) {
  while (bytes.size() > 1) {
    const auto last = static_cast<uint8_t>(bytes[bytes.size() - 1]);
    const auto prev = static_cast<uint8_t>(bytes[bytes.size() - 2]);
    if ((last == 0x00 && !(prev & 0x80)) || (last == 0xff && (prev & 0x80))) {
      bytes.pop_back();
    } else {
      break;
    }
  }
  return bytes;
}

std::string int64_bytes(int64_t v) {
  std::string out(8, '\0');
  for (int k = 0; k < 8; ++k)
    out[k] = static_cast<char>((static_cast<uint64_t>(v) >> (8 * k)) & 0xff);
  return normalize_integer(std::move(out));
}

// Decodes UTF-8 (as Python's pickle encodes str) into code points; false when malformed.
bool decode_utf8(const std::string& s, std::vector<uint32_t>& out) {
  size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<uint8_t>(s[i]);
    int extra;
    uint32_t cp;
    if (c < 0x80) {
      extra = 0;
      cp = c;
    } else if ((c & 0xe0) == 0xc0) {
      extra = 1;
      cp = c & 0x1f;
    } else if ((c & 0xf0) == 0xe0) {
      extra = 2;
      cp = c & 0x0f;
    } else if ((c & 0xf8) == 0xf0) {
      extra = 3;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (i + static_cast<size_t>(extra) >= s.size() && extra > 0) return false;
    for (int k = 1; k <= extra; ++k) {
      const auto cc = static_cast<uint8_t>(s[i + static_cast<size_t>(k)]);
      if ((cc & 0xc0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3f);
    }
    out.push_back(cp);
    i += 1 + static_cast<size_t>(extra);
  }
  return true;
}

class Unpickler {
 public:
  Unpickler(Cursor& in, const StorageLoader* loader) : in_(in), loader_(loader) {
    nodes_.push_back({Kind::kNone});
    nodes_.push_back({Kind::kBool, 0});
    nodes_.push_back({Kind::kBool, 1});
  }

  uint32_t run();

  Value to_value(uint32_t id) {
    // Shared objects are copied into each place that refers to them, so the tree could be
    // exponentially larger than the pickle; bound it by the arena's size.
    budget_ = 4 * nodes_.size() + (size_t{1} << 16);
    return convert(id, 0);
  }

  std::string integer_bytes(uint32_t id) {
    const Node& n = nodes_[id];
    if (n.kind == Kind::kInt) return int64_bytes(n.i);
    if (n.kind == Kind::kBigInt) return strings_[static_cast<size_t>(n.i)];
    in_.fail("expected an integer but the pickle holds a ", kind_name(n.kind));
  }

 private:
  template <typename... Args>
  [[noreturn]] void fail(const Args&... args) const {
    in_.fail(args...);
  }

  uint32_t add(Node node) {
    if (nodes_.size() >= kMaxObjects) fail("too many objects (more than ", kMaxObjects, ")");
    nodes_.push_back(node);
    return static_cast<uint32_t>(nodes_.size() - 1);
  }
  uint32_t add_string(Kind kind, std::string s) {
    strings_.push_back(std::move(s));
    return add({kind, static_cast<int64_t>(strings_.size() - 1)});
  }
  uint32_t add_container(Kind kind, std::vector<uint32_t> items = {}) {
    count_items(items.size());
    Container c;
    c.items = std::move(items);
    containers_.push_back(std::move(c));
    return add({kind, static_cast<int64_t>(containers_.size() - 1)});
  }
  uint32_t add_tensor(at::Tensor t) {
    tensors_.push_back(std::move(t));
    return add({Kind::kTensor, static_cast<int64_t>(tensors_.size() - 1)});
  }
  uint32_t add_int(int64_t v) { return add({Kind::kInt, v}); }
  void count_items(size_t n) {
    items_ += n;
    if (items_ > kMaxContainerItems) fail("containers hold too many items");
  }

  size_t base() const { return marks_.empty() ? 0 : marks_.back(); }
  void push(uint32_t id) {
    if (stack_.size() >= kMaxObjects) fail("pickle stack too deep");
    stack_.push_back(id);
  }
  uint32_t pop() {
    if (stack_.size() <= base()) fail("corrupt pickle: stack underflow");
    const uint32_t id = stack_.back();
    stack_.pop_back();
    return id;
  }
  uint32_t top() const {
    if (stack_.size() <= base()) fail("corrupt pickle: stack underflow");
    return stack_.back();
  }
  std::vector<uint32_t> pop_mark() {
    if (marks_.empty()) fail("corrupt pickle: MARK expected");
    const size_t b = marks_.back();
    std::vector<uint32_t> items(stack_.begin() + static_cast<std::ptrdiff_t>(b), stack_.end());
    stack_.resize(b);
    marks_.pop_back();
    return items;
  }

  const Node& node(uint32_t id) const { return nodes_[id]; }
  Container& container(uint32_t id, Kind kind, const char* op) {
    const Node& n = nodes_[id];
    if (n.kind != kind) fail("corrupt pickle: ", op, " on a ", kind_name(n.kind));
    return containers_[static_cast<size_t>(n.i)];
  }
  const std::vector<uint32_t>& tuple_items(uint32_t id, const char* what) {
    const Node& n = nodes_[id];
    if (n.kind != Kind::kTuple) fail(what, " must be a tuple, not ", kind_name(n.kind));
    return containers_[static_cast<size_t>(n.i)].items;
  }
  const std::string& string_of(uint32_t id, const char* what) const {
    const Node& n = nodes_[id];
    if (n.kind != Kind::kString) fail(what, " must be a str, not ", kind_name(n.kind));
    return strings_[static_cast<size_t>(n.i)];
  }
  int64_t int_of(uint32_t id, const char* what) const {
    const Node& n = nodes_[id];
    if (n.kind != Kind::kInt) fail(what, " must be an int, not ", kind_name(n.kind));
    return n.i;
  }
  bool bool_of(uint32_t id, const char* what) const {
    const Node& n = nodes_[id];
    if (n.kind != Kind::kBool) fail(what, " must be a bool, not ", kind_name(n.kind));
    return n.i != 0;
  }
  std::vector<int64_t> int_tuple(uint32_t id, const char* what) {
    const auto& items = tuple_items(id, what);
    if (static_cast<int64_t>(items.size()) > kMaxDims) fail(what, " has too many dimensions");
    std::vector<int64_t> out;
    for (uint32_t item : items) out.push_back(int_of(item, what));
    return out;
  }

  std::string dict_key(uint32_t key) const {
    const Node& n = nodes_[key];
    if (n.kind == Kind::kString) return "s" + strings_[static_cast<size_t>(n.i)];
    if (n.kind == Kind::kInt) {
      std::string out(1 + sizeof(int64_t), 'i');
      std::memcpy(&out[1], &n.i, sizeof(int64_t));
      return out;
    }
    fail("unsupported dict key of type ", kind_name(n.kind), " (only str and int keys are)");
  }
  void set_item(uint32_t dict, uint32_t key, uint32_t value) {
    std::string code = dict_key(key);
    Container& c = container(dict, Kind::kDict, "SETITEM");
    auto [it, inserted] = c.index.emplace(std::move(code), c.items.size());
    if (inserted) {
      count_items(2);
      c.items.push_back(key);
      c.items.push_back(value);
    } else {
      c.items[it->second + 1] = value;
    }
  }

  void memo_put(uint64_t index) {
    if (memo_.size() >= kMaxObjects && memo_.find(index) == memo_.end()) fail("memo too large");
    memo_[index] = top();
  }
  uint32_t memo_get(uint64_t index) const {
    auto it = memo_.find(index);
    if (it == memo_.end()) fail("corrupt pickle: memo entry ", index, " was never stored");
    return it->second;
  }

  int64_t parse_int(const std::string& text) const {
    int64_t v = 0;
    const char* end = text.data() + text.size();
    auto [ptr, ec] = std::from_chars(text.data(), end, v);
    if (ec == std::errc::result_out_of_range) fail("integer ", text, " does not fit in 64 bits");
    if (ec != std::errc() || ptr != end || text.empty())
      fail("corrupt pickle: bad integer '", text, "'");
    return v;
  }

  uint64_t read_le(int n) {
    unsigned char b[8] = {};
    in_.read(b, static_cast<uint64_t>(n));
    uint64_t v = 0;
    for (int k = n - 1; k >= 0; --k) v = (v << 8) | b[k];
    return v;
  }
  // A length prefix, checked against what is left of the input.
  uint64_t read_length(int n) {
    const uint64_t len = read_le(n);
    if (len > in_.remaining()) {
      fail("truncated pickle: a ", len, "-byte field but only ", in_.remaining(), " bytes left");
    }
    return len;
  }

  uint32_t long_from_bytes(std::string bytes) {
    if (bytes.empty()) return add_int(0);
    bytes = normalize_integer(std::move(bytes));
    if (bytes.size() > 8) return add_string(Kind::kBigInt, std::move(bytes));
    uint64_t v = (static_cast<uint8_t>(bytes.back()) & 0x80) ? ~uint64_t{0} : 0;
    for (size_t k = bytes.size(); k-- > 0;) v = (v << 8) | static_cast<uint8_t>(bytes[k]);
    return add_int(static_cast<int64_t>(v));
  }

  uint32_t resolve_global(const std::string& module, const std::string& name) {
    Global g;
    c10::ScalarType dtype = c10::kByte;
    if (module == "collections" && name == "OrderedDict") {
      g = Global::kOrderedDict;
    } else if (module == "torch._utils" && name == "_rebuild_tensor_v2") {
      g = Global::kRebuildTensorV2;
    } else if (module == "torch._utils" && name == "_rebuild_tensor") {
      g = Global::kRebuildTensor;
    } else if (module == "torch._utils" && name == "_rebuild_parameter") {
      g = Global::kRebuildParameter;
    } else if (module == "torch._utils" && name == "_rebuild_parameter_with_state") {
      g = Global::kRebuildParameterWithState;
    } else if (module == "_codecs" && name == "encode") {
      g = Global::kCodecsEncode;
    } else if ((module == "builtins" || module == "__builtin__") && name == "bytes") {
      g = Global::kBytes;
    } else if (module == "torch" && name == "Size") {
      g = Global::kTorchSize;
    } else if (module == "torch.jit._pickle" && name == "restore_type_tag") {
      g = Global::kRestoreTypeTag;
    } else if (module == "torch.jit._pickle" &&
               (name == "build_intlist" || name == "build_doublelist" || name == "build_boollist" ||
                name == "build_tensorlist")) {
      g = Global::kBuildList;
    } else {
      const StorageClass* found = nullptr;
      if (module == "torch") {
        for (const auto& sc : kStorageClasses) {
          if (name == sc.name) found = &sc;
        }
      }
      if (found == nullptr) {
        std::string shown = module + "." + name;
        if (shown.size() > 120) shown = shown.substr(0, 120) + "...";
        detail::fail(in_.source().name(), ": unsupported pickle global '", shown, "' (", in_.what(),
                     ", byte ", in_.position(),
                     "); a checkpoint may only hold tensors, numbers, strings, lists, tuples "
                     "and dicts");
      }
      g = Global::kStorage;
      dtype = found->dtype;
    }
    return add({Kind::kGlobal, (static_cast<int64_t>(g) << 16) | static_cast<int64_t>(dtype)});
  }
  static Global global_of(const Node& n) { return static_cast<Global>(n.i >> 16); }
  static c10::ScalarType dtype_of(const Node& n) {
    return static_cast<c10::ScalarType>(n.i & 0xffff);
  }

  uint32_t persistent_load(uint32_t pid) {
    const auto items = tuple_items(pid, "a persistent id");  // copy: the arena may grow
    if (items.empty()) fail("empty persistent id");
    const std::string kind = string_of(items[0], "the persistent id's type");
    if (kind == "module") {
      fail("the checkpoint pickles a whole nn.Module; save and load its state_dict() instead");
    }
    if (kind != "storage") fail("unsupported persistent id type '", kind, "'");
    if (items.size() != 5 && items.size() != 6) {
      fail("a storage persistent id has ", items.size(), " fields, not 5 (zip) or 6 (legacy)");
    }
    const Node& cls = node(items[1]);
    if (cls.kind != Kind::kGlobal || global_of(cls) != Global::kStorage) {
      fail("a storage persistent id names no storage class");
    }
    const c10::ScalarType dtype = dtype_of(cls);
    std::string key;
    if (node(items[2]).kind == Kind::kInt) {
      key = std::to_string(node(items[2]).i);
    } else {
      key = string_of(items[2], "a storage key");
    }
    string_of(items[3], "a storage location");  // 'cpu', 'cuda:0', ...: all load on the CPU
    const int64_t numel = int_of(items[4], "a storage size");
    if (numel < 0) fail("negative storage size ", numel);
    if (items.size() == 6 && node(items[5]).kind != Kind::kNone) {
      fail("storage views (checkpoints from PyTorch before 0.4) are not supported");
    }
    if (loader_ == nullptr || !*loader_) fail("unexpected tensor storage in this pickle");
    storages_.push_back({(*loader_)(key, dtype, numel), dtype});
    return add({Kind::kStorage, static_cast<int64_t>(storages_.size() - 1)});
  }

  uint32_t rebuild_tensor(const std::vector<uint32_t>& args) {
    const Node& s = node(args[0]);
    if (s.kind != Kind::kStorage) fail("a tensor's storage is a ", kind_name(s.kind));
    const StorageRef& storage = storages_[static_cast<size_t>(s.i)];
    const int64_t offset = int_of(args[1], "a tensor's storage offset");
    const std::vector<int64_t> sizes = int_tuple(args[2], "a tensor's size");
    const std::vector<int64_t> strides = int_tuple(args[3], "a tensor's stride");
    if (sizes.size() != strides.size()) {
      fail("a tensor has ", sizes.size(), " sizes but ", strides.size(), " strides");
    }
    if (offset < 0) fail("negative storage offset ", offset);
    // The last element the view reaches, checked against the storage without overflow, so
    // set_() below never needs to grow the storage.
    int64_t numel = 1, last = offset;
    for (size_t d = 0; d < sizes.size(); ++d) {
      if (sizes[d] < 0 || strides[d] < 0) fail("negative tensor size or stride");
      if (__builtin_mul_overflow(numel, sizes[d], &numel)) fail("tensor size overflows");
    }
    const auto item = static_cast<int64_t>(storage_element_size(storage.dtype));
    int64_t need_bytes = 0;
    if (numel > 0) {
      for (size_t d = 0; d < sizes.size(); ++d) {
        int64_t reach;
        if (__builtin_mul_overflow(sizes[d] - 1, strides[d], &reach) ||
            __builtin_add_overflow(last, reach, &last)) {
          fail("tensor extent overflows");
        }
      }
      if (__builtin_add_overflow(last, int64_t{1}, &need_bytes) ||
          __builtin_mul_overflow(need_bytes, item, &need_bytes)) {
        fail("tensor extent overflows");
      }
    }
    if (static_cast<uint64_t>(need_bytes) > storage.storage.nbytes()) {
      fail("a tensor of size ", c10::IntArrayRef(sizes), ", stride ", c10::IntArrayRef(strides),
           " at offset ", offset, " needs ", need_bytes, " bytes but its storage has ",
           storage.storage.nbytes());
    }
    at::Tensor t = at::empty({0}, at::TensorOptions().dtype(storage.dtype));
    t.set_(storage.storage, offset, sizes, strides);
    return add_tensor(std::move(t));
  }

  uint32_t rebuild_parameter(const std::vector<uint32_t>& args) {
    const Node& n = node(args[0]);
    if (n.kind != Kind::kTensor) fail("a parameter's data is a ", kind_name(n.kind));
    at::Tensor t = tensors_[static_cast<size_t>(n.i)].detach();
    const bool requires_grad = bool_of(args[1], "requires_grad");
    if (requires_grad && (t.is_floating_point() || t.is_complex())) t.set_requires_grad(true);
    return add_tensor(std::move(t));
  }

  uint32_t codecs_encode(const std::vector<uint32_t>& args) {
    const std::string& text = string_of(args[0], "the text of a bytes object");
    const std::string& encoding = string_of(args[1], "the encoding of a bytes object");
    if (encoding == "utf-8" || encoding == "utf8") return add_string(Kind::kBytes, text);
    if (encoding != "latin1" && encoding != "latin-1" && encoding != "iso-8859-1") {
      fail("unsupported bytes encoding '", encoding, "'");
    }
    std::vector<uint32_t> cps;
    if (!decode_utf8(text, cps)) fail("malformed UTF-8 in a bytes object");
    std::string out;
    out.reserve(cps.size());
    for (uint32_t cp : cps) {
      if (cp > 0xff) fail("a latin1 bytes object holds a character above U+00FF");
      out.push_back(static_cast<char>(cp));
    }
    return add_string(Kind::kBytes, std::move(out));
  }

  uint32_t call(uint32_t fn, uint32_t arg_tuple) {
    const Node& f = node(fn);
    if (f.kind != Kind::kGlobal) fail("corrupt pickle: calling a ", kind_name(f.kind));
    const std::vector<uint32_t> args = tuple_items(arg_tuple, "call arguments");
    const Global g = global_of(f);
    auto want = [&](size_t lo, size_t hi, const char* what) {
      if (args.size() < lo || args.size() > hi) {
        fail(what, " takes ", lo, lo == hi ? "" : "+", " arguments, not ", args.size());
      }
    };
    switch (g) {
      case Global::kOrderedDict: {
        want(0, 0, "collections.OrderedDict");
        const uint32_t id = add_container(Kind::kDict);
        containers_.back().ordered = true;
        return id;
      }
      case Global::kRebuildTensorV2: {
        // (storage, offset, size, stride, requires_grad, backward_hooks[, metadata])
        want(6, 7, "torch._utils._rebuild_tensor_v2");
        const uint32_t id = rebuild_tensor(args);
        if (bool_of(args[4], "requires_grad")) {
          at::Tensor& t = tensors_.back();
          if (t.is_floating_point() || t.is_complex()) t.set_requires_grad(true);
        }
        return id;
      }
      case Global::kRebuildTensor:
        want(4, 4, "torch._utils._rebuild_tensor");
        return rebuild_tensor(args);
      case Global::kRebuildParameter:
        want(3, 3, "torch._utils._rebuild_parameter");
        return rebuild_parameter(args);
      case Global::kRebuildParameterWithState:
        want(4, 4, "torch._utils._rebuild_parameter_with_state");
        return rebuild_parameter(args);
      case Global::kCodecsEncode:
        want(2, 2, "_codecs.encode");
        return codecs_encode(args);
      case Global::kBytes:
        want(0, 0, "bytes");
        return add_string(Kind::kBytes, "");
      case Global::kTorchSize: {
        want(0, 1, "torch.Size");
        if (args.empty()) return add_container(Kind::kTuple);
        int_tuple(args[0], "torch.Size");
        return args[0];
      }
      case Global::kRestoreTypeTag:
        want(2, 2, "torch.jit._pickle.restore_type_tag");
        return args[0];
      case Global::kBuildList:
        want(1, 1, "torch.jit._pickle.build_*list");
        if (node(args[0]).kind != Kind::kList) fail("torch.jit._pickle.build_*list needs a list");
        return args[0];
      case Global::kStorage:
        break;
    }
    fail("constructing a storage directly is not supported");
  }

  void build() {
    const uint32_t state = pop();
    const uint32_t inst = top();
    const Node& n = node(inst);
    if (n.kind != Kind::kDict || !containers_[static_cast<size_t>(n.i)].ordered) {
      fail("setting the state of a ", kind_name(n.kind), " is not supported");
    }
    // OrderedDict has no __setstate__: the state is its __dict__, or (__dict__, slots).
    std::vector<uint32_t> parts{state};
    if (node(state).kind == Kind::kTuple) {
      parts = tuple_items(state, "BUILD state");
      if (parts.size() != 2) fail("an object state tuple must have 2 items");
    }
    for (uint32_t part : parts) {
      if (node(part).kind == Kind::kNone) continue;
      const Container& s = container(part, Kind::kDict, "BUILD");
      std::vector<std::pair<std::string, uint32_t>> attrs;
      for (size_t k = 0; k < s.items.size(); k += 2) {
        attrs.emplace_back(string_of(s.items[k], "an attribute name"), s.items[k + 1]);
      }
      auto& target = containers_[static_cast<size_t>(n.i)].attributes;
      for (auto& a : attrs) {
        bool replaced = false;
        for (auto& t : target) {
          if (t.first == a.first) {
            t.second = a.second;
            replaced = true;
          }
        }
        if (!replaced) {
          count_items(1);
          target.push_back(std::move(a));
        }
      }
    }
  }

  Value convert(uint32_t id, int depth) {
    if (depth > kMaxDepth) {
      fail("objects nested more than ", kMaxDepth, " deep (or an object that contains itself)");
    }
    if (++converted_ > budget_) fail("shared objects expand to too many objects");
    const Node& n = nodes_[id];
    const auto index = static_cast<size_t>(n.i);
    switch (n.kind) {
      case Kind::kNone:
        return Value();
      case Kind::kBool:
        return Value(n.i != 0);
      case Kind::kInt:
        return Value(n.i);
      case Kind::kBigInt:
        fail("an integer does not fit in 64 bits");
      case Kind::kDouble:
        return Value(n.d);
      case Kind::kString:
        return Value(strings_[index]);
      case Kind::kBytes:
        return Value::bytes(strings_[index]);
      case Kind::kTensor:
        return Value(tensors_[index]);
      case Kind::kStorage:
        fail("bare storages are not supported (save tensors instead)");
      case Kind::kGlobal:
        fail("a bare reference to a class or function is not data");
      case Kind::kList:
      case Kind::kTuple: {
        std::vector<Value> items;
        const size_t count = containers_[index].items.size();
        items.reserve(count);
        for (size_t k = 0; k < count; ++k) {
          items.push_back(convert(containers_[index].items[k], depth + 1));
        }
        return n.kind == Kind::kList ? Value::list(std::move(items))
                                     : Value::tuple(std::move(items));
      }
      case Kind::kDict: {
        Dict d;
        d.set_ordered(containers_[index].ordered);
        const size_t count = containers_[index].items.size();
        for (size_t k = 0; k + 1 < count; k += 2) {
          Value key = convert(containers_[index].items[k], depth + 1);
          d.insert_or_assign(std::move(key), convert(containers_[index].items[k + 1], depth + 1));
        }
        for (size_t k = 0; k < containers_[index].attributes.size(); ++k) {
          const auto& a = containers_[index].attributes[k];
          d.set_attribute(a.first, convert(a.second, depth + 1));
        }
        return Value(std::move(d));
      }
    }
    fail("corrupt pickle");
  }

  Cursor& in_;
  const StorageLoader* loader_;
  std::vector<Node> nodes_;
  std::vector<std::string> strings_;
  std::vector<at::Tensor> tensors_;
  std::vector<StorageRef> storages_;
  std::vector<Container> containers_;
  std::vector<uint32_t> stack_;
  std::vector<size_t> marks_;
  std::unordered_map<uint64_t, uint32_t> memo_;
  size_t items_ = 0;
  size_t budget_ = 0, converted_ = 0;
};

uint32_t Unpickler::run() {
  while (true) {
    const uint8_t op = in_.byte();
    switch (op) {
      case kProto: {
        const uint8_t version = in_.byte();
        if (version > 5) fail("unsupported pickle protocol ", static_cast<int>(version));
        break;
      }
      case kFrame:
        read_length(8);  // a framing hint; the opcodes that follow are read as usual
        break;
      case kStop:
        return pop();
      case kMark:
        if (marks_.size() >= kMaxObjects) fail("too many MARKs");
        marks_.push_back(stack_.size());
        break;
      case kPop:
        if (stack_.size() > base()) {
          stack_.pop_back();
        } else {
          pop_mark();
        }
        break;
      case kPopMark:
        pop_mark();
        break;
      case kDup:
        push(top());
        break;

      case kNone:
        push(kNoneId);
        break;
      case kNewTrue:
        push(kTrueId);
        break;
      case kNewFalse:
        push(kFalseId);
        break;
      case kInt: {
        const std::string text = in_.line(kMaxLine);
        if (text == "00") {
          push(kFalseId);
        } else if (text == "01") {
          push(kTrueId);
        } else {
          push(add_int(parse_int(text)));
        }
        break;
      }
      case kLong: {
        std::string text = in_.line(kMaxLine);
        if (!text.empty() && text.back() == 'L') text.pop_back();
        push(add_int(parse_int(text)));
        break;
      }
      case kBinInt:
        push(add_int(static_cast<int32_t>(static_cast<uint32_t>(read_le(4)))));
        break;
      case kBinInt1:
        push(add_int(static_cast<int64_t>(read_le(1))));
        break;
      case kBinInt2:
        push(add_int(static_cast<int64_t>(read_le(2))));
        break;
      case kLong1:
        push(long_from_bytes(in_.string(read_length(1))));
        break;
      case kLong4: {
        const auto n = static_cast<int32_t>(static_cast<uint32_t>(read_le(4)));
        if (n < 0) fail("corrupt pickle: negative LONG4 length");
        if (static_cast<uint64_t>(n) > in_.remaining()) fail("truncated pickle in LONG4");
        push(long_from_bytes(in_.string(static_cast<uint64_t>(n))));
        break;
      }
      case kFloat: {
        const std::string text = in_.line(kMaxLine);
        double v = 0;
        const char* end = text.data() + text.size();
        auto [ptr, ec] = std::from_chars(text.data(), end, v);
        if (ec != std::errc() || ptr != end) fail("corrupt pickle: bad float '", text, "'");
        push(add({Kind::kDouble, 0, v}));
        break;
      }
      case kBinFloat: {
        const uint64_t bits = __builtin_bswap64(read_le(8));  // big-endian on the wire
        double v;
        std::memcpy(&v, &bits, sizeof(v));
        push(add({Kind::kDouble, 0, v}));
        break;
      }

      case kShortBinUnicode:
      case kShortBinString:
        push(add_string(Kind::kString, in_.string(read_length(1))));
        break;
      case kBinUnicode:
        push(add_string(Kind::kString, in_.string(read_length(4))));
        break;
      case kBinString: {
        const auto n = static_cast<int32_t>(static_cast<uint32_t>(read_le(4)));
        if (n < 0) fail("corrupt pickle: negative BINSTRING length");
        if (static_cast<uint64_t>(n) > in_.remaining()) fail("truncated pickle in BINSTRING");
        push(add_string(Kind::kString, in_.string(static_cast<uint64_t>(n))));
        break;
      }
      case kBinUnicode8:
        push(add_string(Kind::kString, in_.string(read_length(8))));
        break;
      case kShortBinBytes:
        push(add_string(Kind::kBytes, in_.string(read_length(1))));
        break;
      case kBinBytes:
        push(add_string(Kind::kBytes, in_.string(read_length(4))));
        break;
      case kBinBytes8:
      case kByteArray8:
        push(add_string(Kind::kBytes, in_.string(read_length(8))));
        break;

      case kEmptyTuple:
        push(add_container(Kind::kTuple));
        break;
      case kTuple:
        push(add_container(Kind::kTuple, pop_mark()));
        break;
      case kTuple1:
      case kTuple2:
      case kTuple3: {
        const size_t n = op - kTuple1 + 1;
        std::vector<uint32_t> items(n);
        for (size_t k = n; k-- > 0;) items[k] = pop();
        push(add_container(Kind::kTuple, std::move(items)));
        break;
      }
      case kEmptyList:
        push(add_container(Kind::kList));
        break;
      case kList:
        push(add_container(Kind::kList, pop_mark()));
        break;
      case kAppend: {
        const uint32_t value = pop();
        Container& list = container(top(), Kind::kList, "APPEND");
        count_items(1);
        list.items.push_back(value);
        break;
      }
      case kAppends: {
        const std::vector<uint32_t> values = pop_mark();
        Container& list = container(top(), Kind::kList, "APPENDS");
        count_items(values.size());
        list.items.insert(list.items.end(), values.begin(), values.end());
        break;
      }
      case kEmptyDict:
        push(add_container(Kind::kDict));
        break;
      case kDict: {
        const std::vector<uint32_t> items = pop_mark();
        if (items.size() % 2) fail("corrupt pickle: DICT with an odd number of items");
        const uint32_t dict = add_container(Kind::kDict);
        for (size_t k = 0; k < items.size(); k += 2) set_item(dict, items[k], items[k + 1]);
        push(dict);
        break;
      }
      case kSetItem: {
        const uint32_t value = pop();
        const uint32_t key = pop();
        set_item(top(), key, value);
        break;
      }
      case kSetItems: {
        const std::vector<uint32_t> items = pop_mark();
        if (items.size() % 2) fail("corrupt pickle: SETITEMS with an odd number of items");
        const uint32_t dict = top();
        for (size_t k = 0; k < items.size(); k += 2) set_item(dict, items[k], items[k + 1]);
        break;
      }

      case kPut: {
        const std::string text = in_.line(kMaxLine);
        const int64_t index = parse_int(text);
        if (index < 0) fail("corrupt pickle: negative memo index");
        memo_put(static_cast<uint64_t>(index));
        break;
      }
      case kBinPut:
        memo_put(read_le(1));
        break;
      case kLongBinPut:
        memo_put(read_le(4));
        break;
      case kMemoize:
        memo_put(memo_.size());
        break;
      case kGet: {
        const std::string text = in_.line(kMaxLine);
        const int64_t index = parse_int(text);
        if (index < 0) fail("corrupt pickle: negative memo index");
        push(memo_get(static_cast<uint64_t>(index)));
        break;
      }
      case kBinGet:
        push(memo_get(read_le(1)));
        break;
      case kLongBinGet:
        push(memo_get(read_le(4)));
        break;

      case kGlobal: {
        const std::string module = in_.line(kMaxLine);
        const std::string name = in_.line(kMaxLine);
        push(resolve_global(module, name));
        break;
      }
      case kStackGlobal: {
        const uint32_t name = pop();
        const uint32_t module = pop();
        push(resolve_global(string_of(module, "a global's module"),
                            string_of(name, "a global's name")));
        break;
      }
      case kReduce: {
        const uint32_t args = pop();
        const uint32_t fn = pop();
        push(call(fn, args));
        break;
      }
      case kNewObj: {
        const uint32_t args = pop();
        const uint32_t cls = pop();
        const Node& c = node(cls);
        if (c.kind != Kind::kGlobal || global_of(c) != Global::kOrderedDict) {
          fail("creating objects of this class is not supported");
        }
        push(call(cls, args));
        break;
      }
      case kBuild:
        build();
        break;
      case kBinPersId:
        push(persistent_load(pop()));
        break;
      case kPersId:
        fail("text persistent ids (pickle protocol 0) are not supported");

      default:
        static const char* kHex = "0123456789abcdef";
        fail("unsupported pickle opcode 0x", kHex[op >> 4], kHex[op & 15]);
    }
  }
}

}  // namespace

size_t storage_element_size(c10::ScalarType dtype) {
  for (const auto& sc : kStorageClasses) {
    if (sc.dtype == dtype) return c10::elementSize(dtype);
  }
  return 0;
}

Value unpickle(Cursor& in, const StorageLoader& loader) {
  Unpickler u(in, &loader);
  const uint32_t root = u.run();
  return u.to_value(root);
}

std::string unpickle_integer(Cursor& in) {
  Unpickler u(in, nullptr);
  return u.integer_bytes(u.run());
}

}  // namespace mgd::serialize::detail
