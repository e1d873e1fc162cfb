#include "mgd/models/detection/retinanet_head.h"

#include <torch/torch.h>

#include <algorithm>
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

// (N, A * K, H, W) -> (N, A, K, H, W) -> (N, H, W, A, K) -> (N, HWA, K)
torch::Tensor anchor_major(const torch::Tensor& x, int64_t per_anchor) {
  const int64_t n = x.size(0), h = x.size(2), w = x.size(3);
  return x.view({n, -1, per_anchor, h, w}).permute({0, 3, 4, 1, 2}).reshape({n, -1, per_anchor});
}

}  // namespace

LevelPacking pack_small_levels(const std::vector<torch::Tensor>& features, int64_t max_area) {
  const auto levels = static_cast<int64_t>(features.size());
  LevelPacking packing;
  packing.first = levels;
  while (packing.first > 0 &&
         features[packing.first - 1].size(2) * features[packing.first - 1].size(3) <= max_area) {
    --packing.first;
  }
  if (levels - packing.first < 2) {  // nothing to gain from one level alone
    packing.first = levels;
    return packing;
  }
  for (int64_t l = packing.first; l < levels; ++l)
    packing.height = std::max(packing.height, features[l].size(2));
  // Columns of levels, top to bottom, one zero row or column between any two.
  int64_t column_x = 0, column_width = 0, y = 0;
  for (int64_t l = packing.first; l < levels; ++l) {
    const int64_t h = features[l].size(2), w = features[l].size(3);
    if (y > 0 && y + h > packing.height) {
      column_x += column_width + 1;
      column_width = 0;
      y = 0;
    }
    packing.places.push_back({y, column_x, h, w});
    y += h + 1;
    column_width = std::max(column_width, w);
  }
  packing.width = column_x + column_width;
  packing.mask = torch::zeros({1, 1, packing.height, packing.width}, features[0].options());
  for (const auto& p : packing.places)
    packing.mask.slice(2, p.y, p.y + p.h).slice(3, p.x, p.x + p.w).fill_(1);
  return packing;
}

torch::Tensor pack(const std::vector<torch::Tensor>& features, const LevelPacking& packing) {
  const auto& f0 = features[packing.first];
  auto map = torch::zeros({f0.size(0), f0.size(1), packing.height, packing.width}, f0.options());
  for (size_t i = 0; i < packing.places.size(); ++i) {
    const auto& p = packing.places[i];
    map.slice(2, p.y, p.y + p.h).slice(3, p.x, p.x + p.w).copy_(features[packing.first + i]);
  }
  return map;
}

RetinaNetTowerImpl::RetinaNetTowerImpl(const RetinaNetHeadOptions& o, int64_t per_anchor,
                                       const std::string& predictor_name, double predictor_bias)
    : per_anchor_(per_anchor), packed_level_area_(o.packed_level_area()) {
  auto tower = models::detail::group(*this, "conv");
  for (int64_t i = 0; i < o.num_convs(); ++i) {
    convs_.push_back(models::detail::group(*tower, std::to_string(i))
                         ->register_module("0", head_conv(o.in_channels(), o.in_channels(), 0.0)));
  }
  predictor_ = register_module(
      predictor_name, head_conv(o.in_channels(), o.num_anchors() * per_anchor, predictor_bias));
}

std::vector<torch::Tensor> RetinaNetTowerImpl::forward(const std::vector<torch::Tensor>& features) {
  for (const auto& f : features) {
    TORCH_CHECK(f.dim() == 4 && f.size(1) == predictor_->options.in_channels() &&
                    f.size(0) == features[0].size(0),
                "RetinaNetHead: expected B x ", predictor_->options.in_channels(),
                " x H x W levels, got ", f.sizes());
  }
  const auto packing = pack_small_levels(features, packed_level_area_);
  std::vector<torch::Tensor> maps(features.begin(), features.begin() + packing.first);
  if (packing.first < static_cast<int64_t>(features.size()))
    maps.push_back(pack(features, packing));
  std::vector<torch::Tensor> outputs;
  outputs.reserve(features.size());
  for (size_t m = 0; m < maps.size(); ++m) {
    const bool packed = static_cast<int64_t>(m) == packing.first;
    auto x = maps[m];
    // In place: a convolution's backward does not read its output.
    for (auto& conv : convs_) {
      x = conv(x);
      if (packed) x.mul_(packing.mask);  // the gaps stay zero: every level's own zero padding
      x = torch::relu_(x);
    }
    x = predictor_(x);
    if (!packed) {
      outputs.push_back(anchor_major(x, per_anchor_));
      continue;
    }
    for (const auto& p : packing.places) {
      outputs.push_back(
          anchor_major(x.slice(2, p.y, p.y + p.h).slice(3, p.x, p.x + p.w), per_anchor_));
    }
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
