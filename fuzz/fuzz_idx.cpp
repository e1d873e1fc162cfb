// libFuzzer target: IDX parsing, raw and gzip.
#include <mgd/data/idx.h>

#include "fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  mgd_fuzz::init_once();
  try {
    mgd::data::parse_idx(data, size, "fuzz");
  } catch (const c10::Error&) {
  }
  try {
    // A small output cap: a bomb must be refused, not expanded.
    mgd::data::gunzip(data, size, "fuzz", size_t{64} << 20);
  } catch (const c10::Error&) {
  }
  return 0;
}
