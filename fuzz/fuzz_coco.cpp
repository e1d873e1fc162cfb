// libFuzzer entry point: COCO instances JSON (the body is mgd_fuzz::coco in targets.h).
#include "targets.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  mgd_fuzz::init_once();
  return mgd_fuzz::coco(data, size);
}
