#include "mgd/reducers/rd.h"

#include <torch/torch.h>

namespace mgd {
namespace functional {

Reduced rd_reduce(const torch::Tensor& teacher, const torch::Tensor& margins,
                  const torch::Tensor& index, c10::optional<at::Generator> generator) {
  auto groups = group_channels(teacher, index);
  const int64_t k = index.size(0), s = index.size(1);
  auto long_opts = torch::TensorOptions().dtype(torch::kLong).device(teacher.device());
  auto pick = torch::randint(k, groups[0].sizes(), generator, long_opts);
  auto feature = groups[0];
  for (int64_t g = 1; g < k; ++g) feature = torch::where(pick == g, groups[g], feature);
  auto margin_pick = torch::randint(k, {1, s}, generator, long_opts.device(margins.device()));
  auto margin = group_margins(margins, index).gather(0, margin_pick).squeeze(0);
  return {feature, margin};
}

}  // namespace functional
}  // namespace mgd
