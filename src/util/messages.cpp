#include "mgd/util/messages.h"

#include <c10/util/Exception.h>

#include <iostream>
#include <mutex>

namespace mgd {
namespace {

std::mutex g_stderr_mutex;

class MgdWarningHandler : public c10::WarningHandler {
 public:
  void process(const c10::SourceLocation& /*where*/, const std::string& message,
               const bool /*verbatim*/) override {
    warn(message);
  }
};

}  // namespace

void warn(const std::string& message) {
  std::lock_guard<std::mutex> lock(g_stderr_mutex);
  std::cerr << "mgd: warning: " << message << std::endl;
}

void install_warning_handler() {
  static MgdWarningHandler handler;  // lives as long as the process
  c10::Warning::set_warning_handler(&handler);
}

}  // namespace mgd
