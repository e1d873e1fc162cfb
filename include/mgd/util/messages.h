// The one format of mgd's messages on stderr: "mgd: warning: <text>" and "mgd: error: <text>",
// one whole line each, with no logging banner and no internal function names.
#pragma once

#include <string>

namespace mgd {

/// Prints "mgd: warning: <message>" on stderr as one line (thread-safe).
void warn(const std::string& message);

/// Makes LibTorch's warnings (TORCH_WARN, in LibTorch or in code built on it) print through
/// mgd::warn in the calling thread (LibTorch's handler is per thread) -- instead of its
/// logging line with a "Logging before InitGoogleLogging()" banner and the function's name.
void install_warning_handler();

}  // namespace mgd
