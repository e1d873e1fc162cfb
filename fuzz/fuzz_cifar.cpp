// libFuzzer target: CIFAR-10 and CIFAR-100 record parsing.
#include <mgd/data/cifar.h>

#include "fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  mgd_fuzz::init_once();
  for (int64_t classes : {10, 100}) {
    try {
      mgd::data::parse_cifar(data, size, classes, "fuzz");
    } catch (const c10::Error&) {
    }
  }
  return 0;
}
