#include "mgd/reducers/sp.h"

#include <torch/torch.h>

namespace mgd {
namespace functional {

Reduced sp_reduce(const torch::Tensor& teacher, const torch::Tensor& margins,
                  const torch::Tensor& index, Pooling pooling) {
  auto groups = group_channels(teacher, index);  // B x k x s x H x W
  auto grouped_margins = group_margins(margins, index);
  if (pooling == Pooling::kMax) {
    return {std::get<0>(groups.max(1)), std::get<0>(grouped_margins.max(0))};
  }
  return {groups.mean(1), grouped_margins.mean(0)};
}

}  // namespace functional
}  // namespace mgd
