#include "mgd/reducers/sp.h"

#include <torch/torch.h>

namespace mgd {
namespace functional {

Reduced sp_reduce(const torch::Tensor& teacher, const torch::Tensor& margins,
                  const torch::Tensor& index, Pooling pooling) {
  auto groups = group_channels(teacher, index);
  auto grouped_margins = group_margins(margins, index);
  auto feature = groups[0];
  for (size_t g = 1; g < groups.size(); ++g) {
    feature = pooling == Pooling::kMax ? torch::max(feature, groups[g]) : feature + groups[g];
  }
  if (pooling == Pooling::kMax) return {feature, std::get<0>(grouped_margins.max(0))};
  return {feature / static_cast<double>(groups.size()), grouped_margins.mean(0)};
}

}  // namespace functional
}  // namespace mgd
