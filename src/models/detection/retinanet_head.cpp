#include "mgd/models/detection/retinanet_head.h"

#include <torch/torch.h>

#include <cmath>

#include "mgd/models/layers.h"

namespace mgd::detection {
namespace detail {
namespace {

torch::nn::Conv2d head_conv(int64_t in, int64_t out, double bias) {
  torch::nn::Conv2d conv(torch::nn::Conv2dOptions(in, out, 3).padding(1));
  torch::NoGradGuard no_grad;
  torch::nn::init::normal_(conv->weight, 0.0, 0.01);
  torch::nn::init::constant_(conv->bias, bias);
  return conv;
}

}  // namespace

RetinaNetTowerImpl::RetinaNetTowerImpl(const RetinaNetHeadOptions& o, int64_t per_anchor,
                                       const std::string& predictor_name, double predictor_bias)
    : per_anchor_(per_anchor) {
  auto tower = models::detail::group(*this, "conv");
  for (int64_t i = 0; i < o.num_convs(); ++i) {
    convs_.push_back(models::detail::group(*tower, std::to_string(i))
                         ->register_module("0", head_conv(o.in_channels(), o.in_channels(), 0.0)));
  }
  predictor_ = register_module(
      predictor_name, head_conv(o.in_channels(), o.num_anchors() * per_anchor, predictor_bias));
}

std::vector<torch::Tensor> RetinaNetTowerImpl::forward(const std::vector<torch::Tensor>& features) {
  std::vector<torch::Tensor> outputs;
  outputs.reserve(features.size());
  for (const auto& f : features) {
    TORCH_CHECK(f.dim() == 4 && f.size(1) == predictor_->options.in_channels(),
                "RetinaNetHead: expected B x ", predictor_->options.in_channels(),
                " x H x W levels, got ", f.sizes());
    auto x = f;
    for (auto& conv : convs_) x = torch::relu(conv(x));
    x = predictor_(x);
    const int64_t n = x.size(0), h = x.size(2), w = x.size(3);
    // (N, A * K, H, W) -> (N, A, K, H, W) -> (N, H, W, A, K) -> (N, HWA, K)
    outputs.push_back(
        x.view({n, -1, per_anchor_, h, w}).permute({0, 3, 4, 1, 2}).reshape({n, -1, per_anchor_}));
  }
  return outputs;
}

}  // namespace detail

RetinaNetHeadImpl::RetinaNetHeadImpl(RetinaNetHeadOptions options_) : options(options_) {
  TORCH_CHECK(options.in_channels() > 0, "RetinaNetHead: invalid in_channels ",
              options.in_channels());
  TORCH_CHECK(options.num_classes() > 0, "RetinaNetHead: invalid num_classes ",
              options.num_classes());
  TORCH_CHECK(options.num_anchors() > 0, "RetinaNetHead: invalid num_anchors ",
              options.num_anchors());
  TORCH_CHECK(options.num_convs() >= 0, "RetinaNetHead: invalid num_convs ", options.num_convs());
  const double pi = options.prior_probability();
  TORCH_CHECK(pi > 0 && pi < 1, "RetinaNetHead: invalid prior_probability ", pi,
              ", expected a value in (0, 1)");
  classification_head = register_module(
      "classification_head", detail::RetinaNetTower(options, options.num_classes(), "cls_logits",
                                                    -std::log((1 - pi) / pi)));
  regression_head =
      register_module("regression_head", detail::RetinaNetTower(options, 4, "bbox_reg", 0.0));
}

std::pair<std::vector<torch::Tensor>, std::vector<torch::Tensor>> RetinaNetHeadImpl::forward(
    const std::vector<torch::Tensor>& features) {
  return {classification_head(features), regression_head(features)};
}

}  // namespace mgd::detection
