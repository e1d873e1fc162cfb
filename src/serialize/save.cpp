// Writing checkpoints: a protocol-2 pickler for Value trees, the zip container of
// caffe2::serialize::PyTorchStreamWriter, and atomic replacement of the target file.
#include <caffe2/serialize/inline_container.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <unordered_map>

#include "mgd/serialize/checkpoint.h"
#include "source.h"
#include "unpickler.h"
#include "pickle_opcodes.h"

namespace mgd::serialize {
namespace {

using detail::fail;

struct StorageClassName {
  c10::ScalarType dtype;
  const char* name;
};

constexpr StorageClassName kStorageClassNames[] = {
    {c10::kFloat, "FloatStorage"},
    {c10::kDouble, "DoubleStorage"},
    {c10::kHalf, "HalfStorage"},
    {c10::kBFloat16, "BFloat16Storage"},
    {c10::kLong, "LongStorage"},
    {c10::kInt, "IntStorage"},
    {c10::kShort, "ShortStorage"},
    {c10::kChar, "CharStorage"},
    {c10::kByte, "ByteStorage"},
    {c10::kBool, "BoolStorage"},
    {c10::kComplexFloat, "ComplexFloatStorage"},
    {c10::kComplexDouble, "ComplexDoubleStorage"},
};

const char* storage_class(c10::ScalarType dtype) {
  for (const auto& s : kStorageClassNames) {
    if (s.dtype == dtype) return s.name;
  }
  return nullptr;
}

bool valid_utf8(const std::string& s) {
  size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<uint8_t>(s[i]);
    size_t extra = c < 0x80             ? 0
                   : (c & 0xe0) == 0xc0 ? 1
                   : (c & 0xf0) == 0xe0 ? 2
                   : (c & 0xf8) == 0xf0 ? 3
                                        : 9;
    if (extra == 9 || i + extra >= s.size() + (extra == 0)) return false;
    for (size_t k = 1; k <= extra; ++k) {
      if ((static_cast<uint8_t>(s[i + k]) & 0xc0) != 0x80) return false;
    }
    i += 1 + extra;
  }
  return true;
}

constexpr size_t kBatch = 1000;  // items per APPENDS / SETITEMS, as Python's pickler does

// Pickles a Value the way Python's pickle (protocol 2) pickles the objects it stands for,
// collecting tensor storages for the zip records.
class Pickler {
 public:
  struct StorageRecord {
    std::string key;
    c10::Storage storage;
    c10::ScalarType dtype;
  };

  explicit Pickler(std::string name) : name_(std::move(name)) {}

  void dump(const Value& value) {
    op(kProto);
    op(2);
    write(value, 0, "checkpoint");
    op(kStop);
  }

  const std::string& data() const { return out_; }
  const std::vector<StorageRecord>& storages() const { return storages_; }

 private:
  template <typename... Args>
  [[noreturn]] void error(const std::string& where, const Args&... args) const {
    fail(name_, ": cannot save ", where, ": ", args...);
  }

  void op(uint8_t c) { out_.push_back(static_cast<char>(c)); }
  void raw(const void* p, size_t n) { out_.append(static_cast<const char*>(p), n); }
  void le(uint64_t v, int n) {
    for (int k = 0; k < n; ++k) op(static_cast<uint8_t>(v >> (8 * k)));
  }

  void write_int(int64_t v) {
    if (v >= 0 && v < 256) {
      op(kBinInt1);
      le(static_cast<uint64_t>(v), 1);
    } else if (v >= 0 && v < 65536) {
      op(kBinInt2);
      le(static_cast<uint64_t>(v), 2);
    } else if (v >= INT32_MIN && v <= INT32_MAX) {
      op(kBinInt);
      le(static_cast<uint32_t>(static_cast<int32_t>(v)), 4);
    } else {
      // LONG1: minimal little-endian two's complement.
      uint8_t bytes[8];
      for (int k = 0; k < 8; ++k)
        bytes[k] = static_cast<uint8_t>(static_cast<uint64_t>(v) >> (8 * k));
      int n = 8;
      while (n > 1 && ((bytes[n - 1] == 0x00 && !(bytes[n - 2] & 0x80)) ||
                       (bytes[n - 1] == 0xff && (bytes[n - 2] & 0x80)))) {
        --n;
      }
      op(kLong1);
      op(static_cast<uint8_t>(n));
      raw(bytes, static_cast<size_t>(n));
    }
  }

  void write_string(const std::string& s, const std::string& where) {
    if (!valid_utf8(s)) error(where, "a str is not valid UTF-8 (use Value::bytes for raw bytes)");
    if (s.size() > UINT32_MAX) error(where, "a str longer than 4 GiB");
    op(kBinUnicode);
    le(s.size(), 4);
    raw(s.data(), s.size());
  }

  void write_global(const char* module, const char* name) {
    const std::string key = std::string(module) + "\n" + name + "\n";
    auto it = memo_.find(key);
    if (it != memo_.end()) {
      if (it->second < 256) {
        op(kBinGet);
        le(it->second, 1);
      } else {
        op(kLongBinGet);
        le(it->second, 4);
      }
      return;
    }
    op(kGlobal);
    raw(key.data(), key.size());
    const uint32_t index = static_cast<uint32_t>(memo_.size());
    memo_.emplace(key, index);
    if (index < 256) {
      op(kBinPut);
      le(index, 1);
    } else {
      op(kLongBinPut);
      le(index, 4);
    }
  }

  void write_int_tuple(c10::IntArrayRef values) {
    if (values.empty()) {
      op(kEmptyTuple);
      return;
    }
    if (values.size() > 3) op(kMark);
    for (int64_t v : values) write_int(v);
    op(values.size() > 3 ? uint8_t{kTuple} : static_cast<uint8_t>(kTuple1 + values.size() - 1));
  }

  void write_tensor(const torch::Tensor& tensor, const std::string& where) {
    at::Tensor t = tensor;
    if (t.layout() != c10::kStrided)
      error(where, "only dense tensors can be saved, not ", t.layout());
    if (t.is_quantized()) error(where, "quantized tensors cannot be saved");
    const char* storage_name = storage_class(t.scalar_type());
    if (storage_name == nullptr)
      error(where, "tensors of dtype ", t.scalar_type(), " cannot be saved");
    if (!t.device().is_cpu()) t = t.to(c10::kCPU);
    if (t.is_conj()) t = t.resolve_conj();
    if (t.is_neg()) t = t.resolve_neg();

    const c10::Storage& storage = t.storage();
    const size_t item = t.element_size();
    auto found = storage_index_.find(storage.unsafeGetStorageImpl());
    size_t index;
    if (found != storage_index_.end()) {
      index = found->second;
      if (storages_[index].dtype != t.scalar_type()) {
        error(where, "it views a storage already saved with dtype ", storages_[index].dtype, " as ",
              t.scalar_type(), "; save a copy (.clone()) instead");
      }
    } else {
      if (storage.nbytes() % item != 0)
        error(where, "its storage size is not a whole number of elements");
      index = storages_.size();
      storages_.push_back({std::to_string(index), storage, t.scalar_type()});
      storage_index_.emplace(storage.unsafeGetStorageImpl(), index);
    }
    const StorageRecord& record = storages_[index];

    // torch._utils._rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad,
    //                                  backward_hooks), the storage as a persistent id
    // ('storage', torch.<Type>Storage, key, location, numel): what Tensor.__reduce_ex__ gives.
    write_global("torch._utils", "_rebuild_tensor_v2");
    op(kMark);
    op(kMark);
    write_string("storage", where);
    write_global("torch", storage_name);
    write_string(record.key, where);
    write_string("cpu", where);
    write_int(static_cast<int64_t>(record.storage.nbytes() / item));
    op(kTuple);
    op(kBinPersId);
    write_int(t.storage_offset());
    write_int_tuple(t.sizes());
    write_int_tuple(t.strides());
    op(t.requires_grad() ? kNewTrue : kNewFalse);
    write_global("collections", "OrderedDict");
    op(kEmptyTuple);
    op(kReduce);
    op(kTuple);
    op(kReduce);
  }

  static std::string key_path(const std::string& where, const Value& key) {
    if (key.is_string()) return where + "['" + key.to_string() + "']";
    return where + "[" + std::to_string(key.to_int()) + "]";
  }

  void write(const Value& v, int depth, const std::string& where) {
    if (depth > detail::kMaxDepth)
      error(where, "values nested more than ", detail::kMaxDepth, " deep");
    switch (v.kind()) {
      case Value::Kind::None:
        op(kNone);
        return;
      case Value::Kind::Bool:
        op(v.to_bool() ? kNewTrue : kNewFalse);
        return;
      case Value::Kind::Int:
        write_int(v.to_int());
        return;
      case Value::Kind::Double: {
        const double d = v.to_double();
        uint64_t bits;
        std::memcpy(&bits, &d, sizeof(bits));
        op(kBinFloat);
        bits = __builtin_bswap64(bits);  // big-endian on the wire
        raw(&bits, sizeof(bits));
        return;
      }
      case Value::Kind::String:
        write_string(v.to_string(), where);
        return;
      case Value::Kind::Bytes: {
        // Protocol 2 has no bytes opcode: Python pickles b'...' as
        // _codecs.encode('<the bytes as latin-1 text>', 'latin1').
        std::string text;
        for (unsigned char c : v.to_bytes()) {
          if (c < 0x80) {
            text.push_back(static_cast<char>(c));
          } else {
            text.push_back(static_cast<char>(0xc0 | (c >> 6)));
            text.push_back(static_cast<char>(0x80 | (c & 0x3f)));
          }
        }
        write_global("_codecs", "encode");
        write_string(text, where);
        write_string("latin1", where);
        op(kTuple2);
        op(kReduce);
        return;
      }
      case Value::Kind::Tensor:
        write_tensor(v.to_tensor(), where);
        return;
      case Value::Kind::Tuple: {
        const auto& items = v.items();
        if (items.empty()) {
          op(kEmptyTuple);
          return;
        }
        if (items.size() > 3) op(kMark);
        for (size_t k = 0; k < items.size(); ++k) {
          write(items[k], depth + 1, where + "[" + std::to_string(k) + "]");
        }
        op(items.size() > 3 ? uint8_t{kTuple} : static_cast<uint8_t>(kTuple1 + items.size() - 1));
        return;
      }
      case Value::Kind::List: {
        const auto& items = v.items();
        op(kEmptyList);
        for (size_t k = 0; k < items.size(); ++k) {
          if (k % kBatch == 0) op(kMark);
          write(items[k], depth + 1, where + "[" + std::to_string(k) + "]");
          if (k % kBatch == kBatch - 1 || k + 1 == items.size()) op(kAppends);
        }
        return;
      }
      case Value::Kind::Dict: {
        const Dict& d = v.to_dict();
        if (d.is_ordered()) {
          write_global("collections", "OrderedDict");
          op(kEmptyTuple);
          op(kReduce);
        } else {
          op(kEmptyDict);
        }
        size_t k = 0;
        for (const auto& item : d) {
          const std::string path = key_path(where, item.first);
          if (k % kBatch == 0) op(kMark);
          write(item.first, depth + 1, path);
          write(item.second, depth + 1, path);
          if (k % kBatch == kBatch - 1 || k + 1 == d.size()) op(kSetItems);
          ++k;
        }
        if (!d.attributes().empty()) {
          if (!d.is_ordered()) error(where, "only an OrderedDict can carry attributes, not a dict");
          // OrderedDict.__reduce__ gives its __dict__ as the state that BUILD restores.
          op(kEmptyDict);
          op(kMark);
          for (const auto& a : d.attributes()) {
            write_string(a.first, where);
            write(a.second, depth + 1, where + "." + a.first);
          }
          op(kSetItems);
          op(kBuild);
        }
        return;
      }
    }
  }

  std::string name_;
  std::string out_;
  std::unordered_map<std::string, uint32_t> memo_;
  std::vector<StorageRecord> storages_;
  std::unordered_map<const c10::StorageImpl*, size_t> storage_index_;
};

// Writes the zip container through `sink` (PyTorchStreamWriter aligns each record to 64
// bytes and adds the `version` record, as torch.save's writer does).
void write_archive(const Pickler& pickler, const std::function<size_t(const void*, size_t)>& sink) {
  static const char kEmpty = 0;
  caffe2::serialize::PyTorchStreamWriter writer(sink);
  writer.writeRecord("data.pkl", pickler.data().data(), pickler.data().size());
  writer.writeRecord("byteorder", "little", 6);
  for (const auto& record : pickler.storages()) {
    const void* data = record.storage.nbytes() > 0 ? record.storage.data() : &kEmpty;
    writer.writeRecord("data/" + record.key, data, record.storage.nbytes());
  }
  writer.writeEndOfFile();
}

// A temporary file beside `path` that replaces `path` on commit() and is removed otherwise.
class AtomicFile {
 public:
  explicit AtomicFile(std::string path) : path_(std::move(path)) {
    if (path_.empty() || path_.back() == '/') fail("save_file: '", path_, "' is not a file name");
    const size_t slash = path_.rfind('/');
    dir_ = slash == std::string::npos ? "." : slash == 0 ? "/" : path_.substr(0, slash);
    const std::string base = slash == std::string::npos ? path_ : path_.substr(slash + 1);
    static std::atomic<unsigned> counter{0};
    for (int attempt = 0; fd_ < 0; ++attempt) {
      temp_ = dir_ + "/." + base + ".tmp." + std::to_string(::getpid()) + "." +
              std::to_string(counter++);
      fd_ = ::open(temp_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
      if (fd_ < 0 && (errno != EEXIST || attempt > 100)) {
        fail(path_, ": cannot write: cannot create a temporary file in '", dir_,
             "': ", std::strerror(errno));
      }
    }
  }

  ~AtomicFile() {
    if (fd_ >= 0) ::close(fd_);
    if (!committed_) ::unlink(temp_.c_str());
  }

  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  // Never fails: the first error is remembered and reported by commit(), so the zip writer
  // is never interrupted half-way.
  size_t write(const void* data, size_t n) {
    const char* p = static_cast<const char*>(data);
    size_t left = n;
    while (left > 0 && error_ == 0) {
      const ssize_t done = ::write(fd_, p, left);
      if (done < 0 && errno == EINTR) continue;
      if (done < 0) {
        error_ = errno;
        break;
      }
      p += done;
      left -= static_cast<size_t>(done);
    }
    return n;
  }

  // Replaces the (empty) temporary file by a hard link to `from` and renames it over the
  // target; false when the filesystem cannot link (the caller copies instead).
  bool link_from(const std::string& from) {
    ::close(fd_);
    fd_ = -1;
    ::unlink(temp_.c_str());
    if (::link(from.c_str(), temp_.c_str()) != 0) return false;
    if (::rename(temp_.c_str(), path_.c_str()) != 0) {
      fail(path_, ": cannot replace it: ", std::strerror(errno));
    }
    committed_ = true;
    return true;
  }

  void commit() {
    if (error_ != 0) fail(path_, ": write failed: ", std::strerror(error_));
    if (::fsync(fd_) != 0) fail(path_, ": write failed (fsync): ", std::strerror(errno));
    const int fd = fd_;
    fd_ = -1;
    if (::close(fd) != 0) fail(path_, ": write failed (close): ", std::strerror(errno));
    if (::rename(temp_.c_str(), path_.c_str()) != 0) {
      fail(path_, ": cannot replace it: ", std::strerror(errno));
    }
    committed_ = true;
    // Make the rename itself durable; a failure here leaves a complete file either way.
    const int dir = ::open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir >= 0) {
      ::fsync(dir);
      ::close(dir);
    }
  }

 private:
  std::string path_, dir_, temp_;
  int fd_ = -1;
  int error_ = 0;
  bool committed_ = false;
};

}  // namespace

std::string save_bytes(const Value& value) {
  Pickler pickler("save_bytes");
  pickler.dump(value);
  std::string out;
  write_archive(pickler, [&](const void* data, size_t n) {
    out.append(static_cast<const char*>(data), n);
    return n;
  });
  return out;
}

void link_or_copy_file(const std::string& from, const std::string& to) {
  {
    AtomicFile file(to);  // reserves a unique temporary name beside `to`
    if (file.link_from(from)) return;
  }
  std::ifstream in(from, std::ios::binary);
  if (!in) fail(to, ": cannot copy '", from, "': ", std::strerror(errno));
  AtomicFile file(to);
  char buffer[1 << 16];
  while (in) {
    in.read(buffer, sizeof buffer);
    if (in.gcount() > 0) file.write(buffer, static_cast<size_t>(in.gcount()));
  }
  if (in.bad()) fail(to, ": cannot copy '", from, "': read failed");
  file.commit();
}

void write_file_atomically(const std::string& path, const std::string& bytes) {
  AtomicFile file(path);
  file.write(bytes.data(), bytes.size());
  file.commit();
}

void save_file(const std::string& path, const Value& value) {
  Pickler pickler(path);
  pickler.dump(value);  // errors in the value surface before the disk is touched
  AtomicFile file(path);
  write_archive(pickler, [&](const void* data, size_t n) { return file.write(data, n); });
  file.commit();
}

}  // namespace mgd::serialize
