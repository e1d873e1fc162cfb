// libFuzzer entry point: CIFAR-10/100 record parsing (the body is mgd_fuzz::cifar in targets.h).
#include "targets.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  mgd_fuzz::init_once();
  return mgd_fuzz::cifar(data, size);
}
