// libFuzzer entry point: JPEG and PNG decoding and the resampler (the body is mgd_fuzz::image in targets.h).
#include "targets.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  mgd_fuzz::init_once();
  return mgd_fuzz::image(data, size);
}
