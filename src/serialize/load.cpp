// Reading checkpoints: container detection, the zip format and the legacy format.
#include <c10/core/Allocator.h>
#include <c10/core/CPUAllocator.h>
#include <c10/core/Storage.h>

#include <new>
#include <unordered_map>

#include "mgd/serialize/checkpoint.h"
#include "source.h"
#include "unpickler.h"
#include "zip.h"

namespace mgd::serialize {
namespace {

using detail::Cursor;
using detail::fail;
using detail::Source;
using detail::StorageLoader;

// torch/serialization.py: MAGIC_NUMBER = 0x1950a86a20f9469cfc6c, little-endian.
const std::string kLegacyMagic("\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19", 10);
constexpr int64_t kLegacyProtocolVersion = 1001;

c10::Storage new_storage(uint64_t nbytes) {
  return c10::Storage(c10::Storage::use_byte_size_t(), static_cast<size_t>(nbytes),
                      c10::GetDefaultCPUAllocator(), /*resizable=*/true);
}

uint64_t storage_bytes(const Source& src, const std::string& key, c10::ScalarType dtype,
                       int64_t numel) {
  const size_t item = detail::storage_element_size(dtype);
  uint64_t nbytes = 0;
  if (__builtin_mul_overflow(static_cast<uint64_t>(numel), static_cast<uint64_t>(item), &nbytes) ||
      nbytes > src.size()) {
    fail(src.name(), ": storage '", key, "' claims ", numel, " elements of ", dtype,
         ", more than the ", src.size(), "-byte file can hold");
  }
  return nbytes;
}

Value load_zip(const Source& src) {
  const std::string& name = src.name();
  detail::ZipReader zip(src);
  if (zip.entries().empty()) fail(name, ": empty zip archive, not a PyTorch checkpoint");
  // torch.save names the archive's top folder after the file; PyTorch takes it from the
  // first record.
  const std::string& first = zip.entries().front().name;
  const size_t slash = first.find('/');
  if (slash == std::string::npos) {
    fail(name, ": not a torch.save zip archive: its first record '", first, "' is not in a folder");
  }
  const std::string prefix = first.substr(0, slash + 1);
  const detail::ZipEntry* pickle_entry = zip.find(prefix + "data.pkl");
  if (pickle_entry == nullptr) {
    fail(name, ": not a torch.save zip archive: no ", prefix, "data.pkl record",
         zip.find(prefix + "constants.pkl") ? " (it looks like a TorchScript archive)" : "");
  }
  if (const detail::ZipEntry* order = zip.find(prefix + "byteorder")) {
    const std::string byteorder = zip.read_string(*order, 16);
    if (byteorder != "little") {
      fail(name, ": only little-endian checkpoints are supported (byteorder '", byteorder, "')");
    }
  }
  const std::string pickle = zip.read_string(*pickle_entry, src.size());
  auto pickle_source = detail::memory_source(pickle.data(), pickle.size(), name);

  std::unordered_map<std::string, c10::Storage> storages;
  uint64_t total = 0;
  StorageLoader loader = [&](const std::string& key, c10::ScalarType dtype, int64_t numel) {
    const uint64_t nbytes = storage_bytes(src, key, dtype, numel);
    auto it = storages.find(key);
    if (it != storages.end()) return it->second;  // a view of a storage loaded before
    const std::string record = prefix + "data/" + key;
    const detail::ZipEntry* entry = zip.find(record);
    if (entry == nullptr) fail(name, ": missing record '", record, "' for a tensor storage");
    if (entry->size < nbytes) {
      fail(name, ": record '", record, "' has ", entry->size, " bytes but its storage needs ",
           nbytes);
    }
    // Records of a valid archive do not overlap, so together they fit in the file.
    total += entry->size;
    if (total > src.size()) fail(name, ": corrupt zip archive: storage records overlap");
    c10::Storage storage = new_storage(entry->size);
    zip.read(*entry, storage.data());
    storages.emplace(key, storage);
    return storage;
  };
  Cursor cursor(*pickle_source, 0, pickle.size(), prefix + "data.pkl");
  return detail::unpickle(cursor, loader);
}

struct LegacyStorage {
  c10::Storage storage;
  int64_t numel;
  bool filled = false;
};

Value load_legacy(const Source& src) {
  const std::string& name = src.name();
  // torch/serialization.py _legacy_load: magic number, protocol version, sys_info, the object,
  // the list of storage keys, then each storage as an int64 element count and raw bytes.
  Cursor header(src, 0, src.size(), "legacy header");
  if (detail::unpickle_integer(header) != kLegacyMagic) {
    fail(name, ": not a PyTorch checkpoint (a pickle, but without torch.save's magic number)");
  }
  const std::string version = detail::unpickle_integer(header);
  if (version != std::string("\xe9\x03", 2)) {  // 1001
    fail(name, ": unsupported legacy checkpoint protocol version (expected ",
         kLegacyProtocolVersion, ")");
  }
  const Value sys_info = detail::unpickle(header, StorageLoader());
  if (sys_info.is_dict()) {
    const Value* little = sys_info.to_dict().find("little_endian");
    if (little != nullptr && little->is_bool() && !little->to_bool()) {
      fail(name, ": big-endian legacy checkpoints are not supported");
    }
  }

  const uint64_t start = header.position();
  Cursor body(src, start, src.size(), "legacy pickle");
  std::unordered_map<std::string, LegacyStorage> storages;
  uint64_t total = 0;
  StorageLoader loader = [&](const std::string& key, c10::ScalarType dtype, int64_t numel) {
    const uint64_t nbytes = storage_bytes(src, key, dtype, numel);
    auto it = storages.find(key);
    if (it != storages.end()) return it->second.storage;  // sized by its first use, as in Python
    // Each storage's bytes follow the pickles, so together they fit in the rest of the file.
    total += nbytes;
    if (total > body.remaining()) {
      fail(name, ": truncated checkpoint: its storages need ", total, " bytes but only ",
           body.remaining(), " remain");
    }
    LegacyStorage entry{new_storage(nbytes), numel};
    storages.emplace(key, entry);
    return entry.storage;
  };
  Value root = detail::unpickle(body, loader);

  Cursor tail(src, start + body.position(), src.size(), "legacy storage data");
  const Value keys = detail::unpickle(tail, StorageLoader());
  if (!keys.is_list()) fail(name, ": corrupt legacy checkpoint: storage keys are not a list");
  for (const Value& key : keys.items()) {
    if (!key.is_string()) fail(name, ": corrupt legacy checkpoint: a storage key is not a str");
    auto it = storages.find(key.to_string());
    if (it == storages.end()) {
      fail(name, ": corrupt legacy checkpoint: storage '", key.to_string(),
           "' is listed but no tensor uses it");
    }
    LegacyStorage& s = it->second;
    if (s.filled)
      fail(name, ": corrupt legacy checkpoint: storage '", key.to_string(), "' listed twice");
    unsigned char count_bytes[8];
    tail.read(count_bytes, 8);
    uint64_t count = 0;
    for (int k = 7; k >= 0; --k) count = (count << 8) | count_bytes[k];
    if (count != static_cast<uint64_t>(s.numel)) {
      fail(name, ": corrupt legacy checkpoint: storage '", key.to_string(), "' has ", count,
           " elements in the file but ", s.numel, " in the pickle");
    }
    tail.read(s.storage.data(), s.storage.nbytes());
    s.filled = true;
  }
  for (const auto& s : storages) {
    if (!s.second.filled)
      fail(name, ": truncated or corrupt legacy checkpoint: no data for storage '", s.first, "'");
  }
  return root;
}

Value load_source(const Source& src) {
  const std::string& name = src.name();
  if (src.size() == 0) fail(name, ": empty file, not a PyTorch checkpoint");
  unsigned char head[2] = {0, 0};
  src.read(0, head, src.size() >= 2 ? 2 : 1, "file header");
  try {
    if (head[0] == 'P' && head[1] == 'K') return load_zip(src);
    if (head[0] == 0x80) return load_legacy(src);  // PROTO: a pickle of protocol >= 2
  } catch (const std::bad_alloc&) {
    fail(name, ": out of memory while loading");
  }
  static const char* kHex = "0123456789abcdef";
  fail(name, ": not a PyTorch checkpoint: neither a zip archive nor a pickle (starts with 0x",
       kHex[head[0] >> 4], kHex[head[0] & 15], ")");
}

}  // namespace

Value load_file(const std::string& path) {
  auto source = detail::open_file_source(path);
  return load_source(*source);
}

Value load_bytes(const void* data, size_t size, const std::string& name) {
  auto source = detail::memory_source(data, size, name);
  return load_source(*source);
}

}  // namespace mgd::serialize
