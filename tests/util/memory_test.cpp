#include "mgd/util/memory.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <torch/torch.h>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace {

#if defined(__GLIBC__)
// A 16 MiB tensor freed after keep_freed_memory() stays in the process's heap (free bytes
// there grow by its size) instead of being unmapped, so the next step reuses its pages.
// Runs in a freshly started process (death-test style "threadsafe" re-executes the binary):
// malloc settings are process-wide, and the heap's history must not depend on earlier tests.
TEST(KeepFreedMemory, FreedTensorStaysInTheHeap) {
#if defined(__SANITIZE_ADDRESS__)
  GTEST_SKIP() << "AddressSanitizer replaces malloc: mallopt and mallinfo2 do not apply";
#endif
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  ASSERT_EXIT(
      {
        unsetenv("MALLOC_MMAP_THRESHOLD_");
        unsetenv("MALLOC_TRIM_THRESHOLD_");
        unsetenv("MGD_KEEP_FREED_MEMORY");
        if (!mgd::keep_freed_memory()) _exit(2);
        const size_t free_before = mallinfo2().fordblks;
        {
          auto t = torch::empty({4 << 20});  // 16 MiB (not touched: no parallel region)
          if (mallinfo2().hblkhd >= (size_t{16} << 20)) _exit(3);  // came from a mapping
        }
        _exit(mallinfo2().fordblks >= free_before + (size_t{15} << 20) ? 0 : 4);
      },
      ::testing::ExitedWithCode(0), "");
}

TEST(KeepFreedMemory, UserSettingsWin) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  ASSERT_EXIT(
      {
        setenv("MGD_KEEP_FREED_MEMORY", "0", 1);
        _exit(mgd::keep_freed_memory() ? 1 : 0);
      },
      ::testing::ExitedWithCode(0), "");
  ASSERT_EXIT(
      {
        unsetenv("MGD_KEEP_FREED_MEMORY");
        setenv("MALLOC_TRIM_THRESHOLD_", "1000000", 1);
        _exit(mgd::keep_freed_memory() ? 1 : 0);
      },
      ::testing::ExitedWithCode(0), "");
}
#endif

}  // namespace
