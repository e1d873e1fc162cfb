#include "mgd/util/memory.h"

#include <cstdlib>
#include <cstring>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace mgd {

bool keep_freed_memory() {
#if defined(__GLIBC__)
  const char* opt_out = std::getenv("MGD_KEEP_FREED_MEMORY");
  if (opt_out != nullptr && std::strcmp(opt_out, "0") == 0) return false;
  if (std::getenv("MALLOC_MMAP_THRESHOLD_") != nullptr ||
      std::getenv("MALLOC_TRIM_THRESHOLD_") != nullptr) {
    return false;
  }
  // Fixing either setting turns off glibc's moving thresholds, so both are fixed together:
  // a trim threshold alone would leave every block over 128 KiB to mmap (4x slower steps).
  // 32 MiB is the largest mmap threshold glibc accepts on 64-bit.
  const bool mmap_ok = mallopt(M_MMAP_THRESHOLD, 32 << 20) == 1;
  const bool trim_ok = mallopt(M_TRIM_THRESHOLD, 1 << 30) == 1;
  return mmap_ok && trim_ok;
#else
  return false;
#endif
}

}  // namespace mgd
