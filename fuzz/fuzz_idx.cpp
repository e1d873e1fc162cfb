// libFuzzer entry point: IDX parsing, raw and gzip (the body is mgd_fuzz::idx in targets.h).
#include "targets.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  mgd_fuzz::init_once();
  return mgd_fuzz::idx(data, size);
}
