#include "mgd/models/detection/fpn.h"

#include <torch/torch.h>

#include "mgd/models/layers.h"

namespace mgd::detection {
namespace {

// A biased conv, initialized as both torchvision and Detectron2 do (c2_xavier_fill):
// kaiming-uniform with a = 1, zero bias.
torch::nn::Conv2d fpn_conv(int64_t in, int64_t out, int64_t kernel, int64_t stride = 1) {
  torch::nn::Conv2d conv(
      torch::nn::Conv2dOptions(in, out, kernel).stride(stride).padding((kernel - 1) / 2));
  torch::NoGradGuard no_grad;
  torch::nn::init::kaiming_uniform_(conv->weight, /*a=*/1);
  torch::nn::init::zeros_(conv->bias);
  return conv;
}

}  // namespace

FeaturePyramidNetworkImpl::FeaturePyramidNetworkImpl(FeaturePyramidNetworkOptions options_)
    : options(std::move(options_)) {
  const auto& in = options.in_channels();
  const int64_t out = options.out_channels();
  TORCH_CHECK(!in.empty(), "FeaturePyramidNetwork: needs at least one input map");
  for (size_t i = 0; i < in.size(); ++i) {
    TORCH_CHECK(in[i] > 0, "FeaturePyramidNetwork: invalid in_channels[", i, "] = ", in[i]);
  }
  TORCH_CHECK(out > 0, "FeaturePyramidNetwork: invalid out_channels ", out);
  TORCH_CHECK(options.extra_levels() >= 0 && options.extra_levels() <= 2,
              "FeaturePyramidNetwork: invalid extra_levels ", options.extra_levels(),
              ", expected 0, 1 or 2");
  TORCH_CHECK(options.p6_source() == "c5" || options.p6_source() == "p5",
              "FeaturePyramidNetwork: unknown p6_source '", options.p6_source(),
              "', expected c5 or p5");
  auto inner = models::detail::group(*this, "inner_blocks");
  auto layer = models::detail::group(*this, "layer_blocks");
  for (size_t i = 0; i < in.size(); ++i) {
    const auto name = std::to_string(i);
    inner_.push_back(
        models::detail::group(*inner, name)->register_module("0", fpn_conv(in[i], out, 1)));
    layer_.push_back(
        models::detail::group(*layer, name)->register_module("0", fpn_conv(out, out, 3)));
  }
  if (options.extra_levels() > 0) {
    auto extra = models::detail::group(*this, "extra_blocks");
    const int64_t p6_in = options.p6_source() == "c5" ? in.back() : out;
    p6_ = extra->register_module("p6", fpn_conv(p6_in, out, 3, 2));
    if (options.extra_levels() > 1) p7_ = extra->register_module("p7", fpn_conv(out, out, 3, 2));
  }
}

int64_t FeaturePyramidNetworkImpl::num_levels() const {
  return static_cast<int64_t>(inner_.size()) + options.extra_levels();
}

std::vector<torch::Tensor> FeaturePyramidNetworkImpl::forward(
    const std::vector<torch::Tensor>& features) {
  TORCH_CHECK(features.size() == inner_.size(), "FeaturePyramidNetwork: expected ", inner_.size(),
              " input maps, got ", features.size());
  for (size_t i = 0; i < features.size(); ++i) {
    const auto& f = features[i];
    TORCH_CHECK(f.dim() == 4 && f.size(1) == options.in_channels()[i],
                "FeaturePyramidNetwork: input ", i, " must be B x ", options.in_channels()[i],
                " x H x W, got ", f.sizes());
  }
  const int64_t n = static_cast<int64_t>(features.size());
  std::vector<torch::Tensor> out(n);
  // models::detail::conv_forward: the 1x1 laterals on oneDNN at any thread count.
  auto last_inner = models::detail::conv_forward(inner_[n - 1], features[n - 1]);
  out[n - 1] = layer_[n - 1](last_inner);
  for (int64_t i = n - 2; i >= 0; --i) {
    auto lateral = models::detail::conv_forward(inner_[i], features[i]);
    auto top_down = torch::nn::functional::interpolate(
        last_inner, torch::nn::functional::InterpolateFuncOptions()
                        .size(std::vector<int64_t>{lateral.size(2), lateral.size(3)})
                        .mode(torch::kNearest));
    last_inner = lateral.add_(top_down);  // the conv's backward does not read its output
    out[i] = layer_[i](last_inner);
  }
  if (p6_) {
    const auto& source = options.p6_source() == "c5" ? features.back() : out.back();
    out.push_back(p6_(source));
    if (p7_) out.push_back(p7_(torch::relu(out.back())));
  }
  return out;
}

}  // namespace mgd::detection
