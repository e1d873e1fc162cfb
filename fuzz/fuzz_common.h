// Shared by the libFuzzer targets: errors are expected (most inputs are invalid) and must be
// c10::Error; anything else -- a crash, an ASan report, another exception type escaping -- is
// a finding.
#pragma once

#include <c10/util/Logging.h>

#include <cstddef>
#include <cstdint>

namespace mgd_fuzz {

// c10::Error captures a backtrace when thrown; the fuzzers throw on almost every input.
inline void init_once() {
  static const bool done = [] {
    c10::SetStackTraceFetcher([] { return std::string(); });
    return true;
  }();
  (void)done;
}

}  // namespace mgd_fuzz
