#include "mgd/reducers/amp.h"

#include <torch/torch.h>

namespace mgd {
namespace functional {

Reduced amp_reduce(const torch::Tensor& teacher, const torch::Tensor& margins,
                   const torch::Tensor& index) {
  auto groups = group_channels(teacher, index);
  auto feature = groups[0];
  auto largest = feature.abs();
  for (size_t g = 1; g < groups.size(); ++g) {
    auto magnitude = groups[g].abs();
    auto take = magnitude > largest;  // strict: the first group wins ties
    feature = torch::where(take, groups[g], feature);
    if (g + 1 < groups.size()) largest = torch::where(take, magnitude, largest);
  }
  return {feature, group_margins(margins, index).mean(0)};
}

}  // namespace functional
}  // namespace mgd
