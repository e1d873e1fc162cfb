#include "mgd/distiller/feature_net.h"

#include <torch/torch.h>

namespace mgd {

std::vector<int64_t> FeatureNetImpl::feature_channels() {
  std::vector<int64_t> channels;
  for (const auto& bn : feature_norms()) {
    TORCH_CHECK(!bn.is_empty(), "feature_channels: a feature position has no BatchNorm");
    channels.push_back(bn->options.num_features());
  }
  return channels;
}

}  // namespace mgd
