#include "mgd/models/mobilenet.h"

#include <torch/torch.h>

#include <array>

#include "mgd/models/layers.h"

namespace mgd::models {
namespace {

void check_input(const torch::Tensor& input, int64_t channels, const char* net) {
  TORCH_CHECK(input.dim() == 4 && input.size(1) == channels, net, ": expected a batch of ",
              channels, "-channel images (B x C x H x W), got ", input.sizes());
}

// Positions of MobileNet-V1 (indices into model.<i>) and MobileNet-V2 (features.<i>).
constexpr std::array<size_t, 4> kV1Taps = {3, 5, 11, 13};
constexpr std::array<size_t, 4> kV2Taps = {4, 7, 11, 17};

}  // namespace

MobileNetV1Impl::MobileNetV1Impl(const ModelOptions& options) {
  auto model = detail::group(*this, "model");
  auto stem = detail::group(*model, "0");
  blocks_.push_back({{stem->register_module("0", detail::conv(options.in_channels(), 32, 3, 2)),
                      stem->register_module("1", torch::nn::BatchNorm2d(32))}});
  // (output channels, stride) of the 13 depthwise-separable blocks.
  const std::array<std::pair<int64_t, int64_t>, 13> cfg = {{{64, 1},
                                                            {128, 2},
                                                            {128, 1},
                                                            {256, 2},
                                                            {256, 1},
                                                            {512, 2},
                                                            {512, 1},
                                                            {512, 1},
                                                            {512, 1},
                                                            {512, 1},
                                                            {512, 1},
                                                            {1024, 2},
                                                            {1024, 1}}};
  int64_t in = 32;
  for (size_t i = 0; i < cfg.size(); ++i) {
    auto block = detail::group(*model, std::to_string(i + 1));
    const auto [out, stride] = cfg[i];
    blocks_.push_back({{block->register_module("0", detail::conv(in, in, 3, stride, in)),
                        block->register_module("1", torch::nn::BatchNorm2d(in))},
                       {block->register_module("3", detail::conv(in, out, 1)),
                        block->register_module("4", torch::nn::BatchNorm2d(out))}});
    in = out;
  }
  fc_ = register_module("fc", torch::nn::Linear(in, options.classes()));
  detail::init_weights(*this);
}

Features MobileNetV1Impl::extract(const torch::Tensor& input) {
  check_input(input, blocks_[0][0].conv->options.in_channels(), "MobileNetV1");
  Features f;
  auto x = input;
  size_t tap = 0;
  for (size_t i = 0; i < blocks_.size(); ++i) {
    torch::Tensor pre;
    for (auto& layer : blocks_[i]) {
      pre = layer.bn(layer.conv(x));
      x = torch::relu(pre);
    }
    if (tap < kV1Taps.size() && i == kV1Taps[tap]) {
      f.pre_relu.push_back(pre);
      f.post_relu.push_back(x);
      ++tap;
    }
  }
  f.logits = fc_(x.mean({2, 3}));
  return f;
}

std::vector<torch::nn::BatchNorm2d> MobileNetV1Impl::feature_norms() {
  std::vector<torch::nn::BatchNorm2d> norms;
  for (size_t i : kV1Taps) norms.push_back(blocks_[i].back().bn);
  return norms;
}

namespace detail {
namespace {
ConvBN conv_bn(torch::nn::Module& parent, const std::string& name, int64_t in, int64_t out,
               int64_t kernel, int64_t stride = 1, int64_t groups = 1) {
  auto g = group(parent, name);
  return {g->register_module("0", conv(in, out, kernel, stride, groups)),
          g->register_module("1", torch::nn::BatchNorm2d(out))};
}
}  // namespace

InvertedResidualImpl::InvertedResidualImpl(int64_t in, int64_t out, int64_t stride,
                                           int64_t expand_ratio)
    : residual_(stride == 1 && in == out) {
  const int64_t hidden = in * expand_ratio;
  auto seq = group(*this, "conv");
  int idx = 0;
  if (expand_ratio != 1) expand_ = conv_bn(*seq, std::to_string(idx++), in, hidden, 1);
  depthwise_ = conv_bn(*seq, std::to_string(idx++), hidden, hidden, 3, stride, hidden);
  project_ = seq->register_module(std::to_string(idx++), conv(hidden, out, 1));
  project_bn_ = seq->register_module(std::to_string(idx++), torch::nn::BatchNorm2d(out));
}

torch::Tensor InvertedResidualImpl::forward(const torch::Tensor& x, torch::Tensor* expand_pre,
                                            torch::Tensor* depthwise_pre) {
  auto h = x;
  if (expand_.conv) {
    auto pre = expand_.bn(expand_.conv(h));
    if (expand_pre) *expand_pre = pre;
    h = torch::relu6(pre);
  }
  auto pre = depthwise_.bn(depthwise_.conv(h));
  if (depthwise_pre) *depthwise_pre = pre;
  auto out = project_bn_(project_(torch::relu6(pre)));
  return residual_ ? x + out : out;
}
}  // namespace detail

MobileNetV2Impl::MobileNetV2Impl(const ModelOptions& options, bool reference_layout)
    : reference_layout_(reference_layout) {
  auto features = detail::group(*this, "features");
  stem_ = detail::conv_bn(*features, "0", options.in_channels(), 32, 3, 2);
  // (expansion t, channels c, repeats n, stride s), as in the paper and torchvision.
  std::vector<std::array<int64_t, 4>> cfg = {{1, 16, 1, 1}, {6, 24, 2, 2}, {6, 32, 3, 2},
                                             {6, 64, 4, 2}, {6, 96, 3, 1}, {6, 160, 3, 2},
                                             {6, 320, 1, 1}};
  if (reference_layout) std::swap(cfg[3][3], cfg[4][3]);  // the authors' stride swap
  int64_t in = 32, index = 1;
  for (const auto& [t, c, n, s] : cfg) {
    for (int64_t i = 0; i < n; ++i) {
      blocks_.push_back(features->register_module(
          std::to_string(index++), detail::InvertedResidual(in, c, i == 0 ? s : 1, t)));
      in = c;
    }
  }
  head_ = detail::conv_bn(*features, std::to_string(index), in, 1280, 1);
  auto classifier = detail::group(*this, "classifier");
  classifier_ = classifier->register_module("1", torch::nn::Linear(1280, options.classes()));
  detail::init_weights(*this);
  torch::NoGradGuard no_grad;
  torch::nn::init::normal_(classifier_->weight, 0, 0.01);
  torch::nn::init::zeros_(classifier_->bias);
}

Features MobileNetV2Impl::extract(const torch::Tensor& input) {
  check_input(input, stem_.conv->options.in_channels(), "MobileNetV2");
  Features f;
  auto x = torch::relu6(stem_.bn(stem_.conv(input)));
  size_t tap = 0;
  for (size_t i = 0; i < blocks_.size(); ++i) {
    const bool tapped = tap < kV2Taps.size() && i + 1 == kV2Taps[tap];
    torch::Tensor expand_pre, depthwise_pre;
    x = blocks_[i]->forward(x, tapped ? &expand_pre : nullptr, tapped ? &depthwise_pre : nullptr);
    if (tapped) {
      auto pre = reference_layout_ ? depthwise_pre : expand_pre;
      f.pre_relu.push_back(pre);
      f.post_relu.push_back(torch::relu6(pre));
      ++tap;
    }
  }
  x = torch::relu6(head_.bn(head_.conv(x)));
  x = x.mean({2, 3});
  // torchvision drops out 20% before the classifier; the authors' variant has no dropout.
  f.logits = classifier_(torch::dropout(x, reference_layout_ ? 0.0 : 0.2, is_training()));
  return f;
}

std::vector<torch::nn::BatchNorm2d> MobileNetV2Impl::feature_norms() {
  std::vector<torch::nn::BatchNorm2d> norms;
  for (size_t i : kV2Taps) {
    norms.push_back(reference_layout_ ? blocks_[i - 1]->depthwise_norm()
                                      : blocks_[i - 1]->expand_norm());
  }
  return norms;
}

MobileNetV1 mobilenet_v1(const ModelOptions& o) {
  return MobileNetV1(o);
}
MobileNetV2 mobilenet_v2(const ModelOptions& o) {
  return MobileNetV2(o, false);
}
MobileNetV2 mobilenet_v2_mgd(const ModelOptions& o) {
  return MobileNetV2(o, true);
}

}  // namespace mgd::models
