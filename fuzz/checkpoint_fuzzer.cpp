// libFuzzer target for the checkpoint reader (fuzz/build.sh builds and runs it).
//
// Any input must load or throw c10::Error: a crash, a sanitizer report, a hang or an
// allocation over libFuzzer's -malloc_limit_mb is a bug. Inputs that load are also checked
// for a round trip: when the value can be saved, the saved bytes must load again.
#include <c10/util/Exception.h>
#include <torch/torch.h>

#include <cstdint>
#include <cstdlib>
#include <functional>

#include "mgd/serialize/checkpoint.h"
#include "mgd/serialize/state_dict.h"

namespace {

namespace ser = mgd::serialize;

void touch(const ser::Value& v) {
  if (v.is_tensor()) {
    // Reads every element the view reaches. Zero strides can make a view of a small storage
    // huge (as torch.save keeps expanded tensors); those are not worth materializing.
    if (v.to_tensor().numel() <= (int64_t{1} << 22)) (void)v.to_tensor().contiguous().sum();
  } else if (v.is_list() || v.is_tuple()) {
    for (const auto& item : v.items()) touch(item);
  } else if (v.is_dict()) {
    for (const auto& item : v.to_dict()) touch(item.second);
    for (const auto& a : v.to_dict().attributes()) touch(a.second);
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  torch::set_num_threads(1);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  ser::Value value;
  try {
    value = ser::load_bytes(data, size, "fuzz.pt");
  } catch (const c10::Error&) {
    return 0;
  }
  touch(value);
  try {
    (void)ser::to_state_dict(value);
  } catch (const c10::Error&) {
  }
  std::string saved;
  try {
    saved = ser::save_bytes(value);
  } catch (const c10::Error&) {
    return 0;  // loadable but not savable (e.g. a str that is not UTF-8)
  }
  try {
    touch(ser::load_bytes(saved.data(), saved.size(), "resaved.pt"));
  } catch (const c10::Error& e) {
    std::fprintf(stderr, "round trip failed: %s\n", e.what_without_backtrace());
    std::abort();
  }
  return 0;
}
