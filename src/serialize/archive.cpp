#include "mgd/serialize/archive.h"

#include <cstdint>

#include "source.h"
#include "zip.h"

namespace mgd::serialize {
namespace {

constexpr uint64_t kMaxInflated = uint64_t{256} << 20;

void check(const detail::Source& source) {
  using detail::fail;
  detail::ZipReader zip(source);
  const auto& entries = zip.entries();
  if (entries.empty()) fail(source.name(), ": empty zip archive, not a TorchScript file");
  const std::string& first = entries.front().name;
  const size_t slash = first.find('/');
  if (slash == std::string::npos) {
    fail(source.name(), ": not a TorchScript archive: its first record '", first,
         "' is not in a folder");
  }
  const std::string prefix = first.substr(0, slash + 1);
  bool code = false;
  for (const auto& e : entries) {
    if (e.name.compare(0, prefix.size(), prefix) != 0) {
      fail(source.name(), ": not a TorchScript archive: record '", e.name, "' is outside ",
           prefix);
    }
    if (e.name.compare(prefix.size(), 5, "code/") == 0) code = true;
    // Deflated records (the code) are small; tensors are stored.
    zip.verify(e, kMaxInflated);
  }
  const bool data = zip.find(prefix + "data.pkl") != nullptr;
  if (!data || zip.find(prefix + "constants.pkl") == nullptr || !code) {
    fail(source.name(), ": a zip archive but not a TorchScript file (no ", prefix, "code/, ",
         prefix, "data.pkl and ", prefix, "constants.pkl records",
         data ? "; a torch.save checkpoint? give it as the weights, with --checkpoint or "
                "--teacher-checkpoint"
              : "",
         ")");
  }
}

}  // namespace

void check_torchscript_archive(const std::string& path) { check(*detail::open_file_source(path)); }

void check_torchscript_archive(const void* bytes, size_t size, const std::string& name) {
  check(*detail::memory_source(bytes, size, name));
}

}  // namespace mgd::serialize
