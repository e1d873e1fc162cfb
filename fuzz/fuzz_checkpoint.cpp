// libFuzzer entry point: the checkpoint reader (the body is mgd_fuzz::checkpoint in targets.h).
#include "targets.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  mgd_fuzz::init_once();
  return mgd_fuzz::checkpoint(data, size);
}
