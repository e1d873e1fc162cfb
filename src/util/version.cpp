#include "mgd/version.h"

#include <ATen/Context.h>
#include <torch/cuda.h>
#include <torch/version.h>

#include <sstream>

#ifndef MGD_VERSION
#define MGD_VERSION "unknown"
#endif
#ifndef MGD_GIT_REVISION
#define MGD_GIT_REVISION "unknown"
#endif

namespace mgd {

std::string version() { return MGD_VERSION; }

std::string git_revision() { return MGD_GIT_REVISION; }

std::string version_text() {
  std::ostringstream s;
  s << "mgd " << version() << " (git " << git_revision() << ")\n"
    << "LibTorch " << TORCH_VERSION << ", ";
  if (!at::hasCUDA()) {
    s << "CUDA: no (a CPU-only LibTorch)";
  } else {
    s << "CUDA: yes, " << torch::cuda::device_count() << " device(s) visible";
  }
  return s.str();
}

}  // namespace mgd
