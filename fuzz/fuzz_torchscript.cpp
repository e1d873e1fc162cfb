// libFuzzer entry point: the TorchScript archive check (the body is mgd_fuzz::torchscript in targets.h).
#include "targets.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  mgd_fuzz::init_once();
  return mgd_fuzz::torchscript(data, size);
}
