#include "mgd/reducers/sm.h"

#include <torch/torch.h>

namespace mgd {
namespace functional {

Reduced sm_reduce(const torch::Tensor& teacher, const torch::Tensor& margins,
                  const torch::Tensor& index) {
  TORCH_CHECK(index.dim() == 2 && index.size(0) == 1,
              "sm_reduce: sparse matching takes a 1 x s index, got ", index.sizes());
  return {group_channels(teacher, index)[0], group_margins(margins, index).squeeze(0)};
}

}  // namespace functional
}  // namespace mgd
