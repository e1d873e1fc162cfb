// The message of the c10::Error a call throws: what the tests of clear error messages check.
#pragma once

#include <c10/util/Exception.h>

#include <functional>
#include <string>

namespace mgd::testing {

/// The message (without backtrace) of the c10::Error `f` throws, or "" when it throws none.
inline std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const c10::Error& e) {
    return e.what_without_backtrace();
  }
  return "";
}

}  // namespace mgd::testing
