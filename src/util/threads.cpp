#include "mgd/util/threads.h"

#include <torch/torch.h>

#include <thread>

namespace mgd {

int set_num_threads(int threads) {
  if (threads <= 0) threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  torch::set_num_threads(threads);
  return torch::get_num_threads();
}

}  // namespace mgd
