// What this mgd is: its version, the git revision it was built from, the LibTorch it runs on.
#pragma once

#include <string>

namespace mgd {

/// "0.1.0" (the CMake project's version).
std::string version();
/// The git revision the build was configured from ("36070a3", "36070a3-dirty"), or "unknown"
/// outside a git checkout (a source tarball, a .deb build).
std::string git_revision();
/// `mgd --version`'s text: mgd's version and revision, LibTorch's version, and CUDA: whether
/// this LibTorch was built with it and how many devices it sees.
std::string version_text();

}  // namespace mgd
