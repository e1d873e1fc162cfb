#include "mgd/models/layers.h"

#include <torch/torch.h>

namespace mgd::models::detail {

torch::nn::Conv2d conv(int64_t in, int64_t out, int64_t kernel, int64_t stride, int64_t groups) {
  return torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, kernel)
                               .stride(stride)
                               .padding((kernel - 1) / 2)
                               .groups(groups)
                               .bias(false));
}

std::shared_ptr<torch::nn::Module> group(torch::nn::Module& parent, const std::string& name) {
  return parent.register_module(name, std::make_shared<torch::nn::Module>());
}

Norm::Norm(torch::nn::Module& parent, const std::string& name, const std::string& kind,
           int64_t channels, int64_t groups)
    : kind_(kind) {
  if (kind == "batch") {
    batch_ = parent.register_module(name, torch::nn::BatchNorm2d(channels));
  } else if (kind == "frozen_batch") {
    frozen_ = parent.register_module(name, FrozenBatchNorm2d(channels));
  } else if (kind == "group") {
    TORCH_CHECK(groups > 0 && channels % groups == 0, "GroupNorm(", groups, ", ", channels,
                "): the channels of '", name, "' must be a multiple of the groups");
    group_ = parent.register_module(
        name, torch::nn::GroupNorm(torch::nn::GroupNormOptions(groups, channels)));
  } else {
    TORCH_CHECK(false, "Unknown norm '", kind, "' for '", name,
                "': expected batch, frozen_batch or group");
  }
}

torch::Tensor Norm::operator()(const torch::Tensor& x) {
  if (batch_) return batch_(x);
  if (frozen_) return frozen_(x);
  return group_(x);
}

std::pair<torch::Tensor, torch::Tensor> Norm::affine() const {
  if (batch_) return {batch_->weight, batch_->bias};
  if (frozen_) return {frozen_->weight, frozen_->bias};
  return {group_->weight, group_->bias};
}

torch::Tensor conv_forward(const torch::nn::Conv2d& conv, const torch::Tensor& x) {
  const auto& o = conv->options;
  // The options' variants are c10::variant in LibTorch 1.13 and std::variant in 2.x: only
  // the functional API and get_enum_name, which take either, name them here.
  TORCH_CHECK(torch::enumtype::get_enum_name(o.padding_mode()) == "kZeros",
              "conv_forward: expected a Conv2d with zero padding");
  const auto& w = conv->weight;
  torch::ExpandingArray<2> dilation = o.dilation();
  if (x.device().is_cpu() && w.size(2) == 1 && w.size(3) == 1)
    dilation = torch::ExpandingArray<2>(2);
  return torch::nn::functional::conv2d(x, w,
                                       torch::nn::functional::Conv2dFuncOptions()
                                           .bias(conv->bias)
                                           .stride(o.stride())
                                           .padding(o.padding())
                                           .dilation(dilation)
                                           .groups(o.groups()));
}

bool is_norm_kind(const std::string& kind) {
  return kind == "batch" || kind == "frozen_batch";
}

void init_weights(torch::nn::Module& module) {
  torch::NoGradGuard no_grad;
  for (auto& m : module.modules(/*include_self=*/false)) {
    if (auto* c = m->as<torch::nn::Conv2d>()) {
      torch::nn::init::kaiming_normal_(c->weight, 0.0, torch::kFanOut, torch::kReLU);
    } else if (auto* bn = m->as<torch::nn::BatchNorm2d>()) {
      torch::nn::init::ones_(bn->weight);
      torch::nn::init::zeros_(bn->bias);
    }
  }
}

}  // namespace mgd::models::detail
