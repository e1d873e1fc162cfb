#include "mgd/reducers/amp.h"

#include <torch/torch.h>

namespace mgd {
namespace functional {

Reduced amp_reduce(const torch::Tensor& teacher, const torch::Tensor& margins,
                   const torch::Tensor& index) {
  auto groups = group_channels(teacher, index);  // B x k x s x H x W
  auto winner = groups.abs().argmax(1, /*keepdim=*/true);
  auto feature = groups.gather(1, winner).squeeze(1);
  auto margin = group_margins(margins, index).mean(0);
  return {feature, margin};
}

}  // namespace functional
}  // namespace mgd
