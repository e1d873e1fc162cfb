// Thread count for LibTorch's intra-op pool. Debian's LibTorch starts with one thread;
// mgd uses every core by default.
#pragma once

namespace mgd {

/// Sets LibTorch's intra-op thread count: `threads` if > 0, else the number of cores.
/// Returns the count in effect.
int set_num_threads(int threads = 0);

}  // namespace mgd
