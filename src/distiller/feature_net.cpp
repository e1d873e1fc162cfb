#include "mgd/distiller/feature_net.h"

#include <torch/torch.h>

namespace mgd {

Features FeatureNetImpl::extract_frozen(const torch::Tensor& input) {
  torch::NoGradGuard no_grad;
  return extract(input);
}

std::vector<NormAffine> FeatureNetImpl::feature_affines() {
  std::vector<NormAffine> affines;
  for (const auto& bn : feature_norms()) {
    if (bn.is_empty()) affines.push_back({});
    else affines.push_back({bn->weight, bn->bias});
  }
  return affines;
}

std::vector<int64_t> FeatureNetImpl::feature_channels() {
  std::vector<int64_t> channels;
  for (const auto& affine : feature_affines()) {
    TORCH_CHECK(affine.weight.defined(),
                "feature_channels: a feature position has no norm; the network must override "
                "feature_channels()");
    channels.push_back(affine.weight.numel());
  }
  return channels;
}

}  // namespace mgd
