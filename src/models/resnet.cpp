#include "mgd/models/resnet.h"

#include <torch/torch.h>

#include "mgd/models/layers.h"

namespace mgd::models {
namespace detail {

ResidualBlockImpl::ResidualBlockImpl(int64_t in, int64_t planes, int64_t stride, bool bottleneck)
    : bottleneck_(bottleneck), out_channels_(bottleneck ? planes * 4 : planes) {
  if (bottleneck) {
    // torchvision's v1.5 bottleneck: the stride sits on the 3x3 conv.
    conv1_ = register_module("conv1", conv(in, planes, 1));
    bn1_ = register_module("bn1", torch::nn::BatchNorm2d(planes));
    conv2_ = register_module("conv2", conv(planes, planes, 3, stride));
    bn2_ = register_module("bn2", torch::nn::BatchNorm2d(planes));
    conv3_ = register_module("conv3", conv(planes, out_channels_, 1));
    bn3_ = register_module("bn3", torch::nn::BatchNorm2d(out_channels_));
  } else {
    conv1_ = register_module("conv1", conv(in, planes, 3, stride));
    bn1_ = register_module("bn1", torch::nn::BatchNorm2d(planes));
    conv2_ = register_module("conv2", conv(planes, planes, 3));
    bn2_ = register_module("bn2", torch::nn::BatchNorm2d(planes));
  }
  if (stride != 1 || in != out_channels_) {
    auto down = group(*this, "downsample");
    down_conv_ = down->register_module("0", conv(in, out_channels_, 1, stride));
    down_bn_ = down->register_module("1", torch::nn::BatchNorm2d(out_channels_));
  }
}

torch::Tensor ResidualBlockImpl::forward_pre(const torch::Tensor& x) {
  auto out = torch::relu(bn1_(conv1_(x)));
  out = bn2_(conv2_(out));
  if (bottleneck_) out = bn3_(conv3_(torch::relu(out)));
  return out + (down_conv_ ? down_bn_(down_conv_(x)) : x);
}

}  // namespace detail

ResNetImpl::ResNetImpl(const ResNetConfig& config, const ModelOptions& options) : config_(config) {
  TORCH_CHECK(!config.blocks.empty() && config.blocks.size() == config.widths.size(),
              "ResNet: expected one width per stage, got ", config.blocks.size(), " stages and ",
              config.widths.size(), " widths");
  TORCH_CHECK(options.classes() >= 1 && options.in_channels() >= 1, "ResNet: invalid classes ",
              options.classes(), " or input channels ", options.in_channels());
  conv1_ = register_module(
      "conv1",
      config.imagenet_stem
          ? torch::nn::Conv2d(torch::nn::Conv2dOptions(options.in_channels(), config.stem_width, 7)
                                  .stride(2)
                                  .padding(3)
                                  .bias(false))
          : detail::conv(options.in_channels(), config.stem_width, 3));
  bn1_ = register_module("bn1", torch::nn::BatchNorm2d(config.stem_width));
  int64_t in = config.stem_width;
  for (size_t s = 0; s < config.blocks.size(); ++s) {
    auto layer = detail::group(*this, "layer" + std::to_string(s + 1));
    std::vector<detail::ResidualBlock> blocks;
    for (int64_t b = 0; b < config.blocks[s]; ++b) {
      const int64_t stride = (s > 0 && b == 0) ? 2 : 1;
      blocks.push_back(layer->register_module(
          std::to_string(b),
          detail::ResidualBlock(in, config.widths[s], stride, config.bottleneck)));
      in = blocks.back()->out_channels();
    }
    stages_.push_back(std::move(blocks));
  }
  fc_ = register_module("fc", torch::nn::Linear(in, options.classes()));
  detail::init_weights(*this);
}

Features ResNetImpl::extract(const torch::Tensor& input) {
  TORCH_CHECK(input.dim() == 4 && input.size(1) == conv1_->options.in_channels(),
              "ResNet: expected a batch of ", conv1_->options.in_channels(),
              "-channel images (B x C x H x W), got ", input.sizes());
  Features f;
  auto x = torch::relu(bn1_(conv1_(input)));
  if (config_.imagenet_stem) x = torch::max_pool2d(x, 3, 2, 1);
  for (auto& stage : stages_) {
    torch::Tensor pre;
    for (auto& block : stage) {
      pre = block->forward_pre(x);
      x = torch::relu(pre);
    }
    f.pre_relu.push_back(pre);
    f.post_relu.push_back(x);
  }
  f.logits = fc_(x.mean({2, 3}));
  return f;
}

std::vector<torch::nn::BatchNorm2d> ResNetImpl::feature_norms() {
  std::vector<torch::nn::BatchNorm2d> norms;
  for (auto& stage : stages_) norms.push_back(stage.back()->last_norm());
  return norms;
}

namespace {
ResNet imagenet(bool bottleneck, std::vector<int64_t> blocks, const ModelOptions& o) {
  return ResNet(ResNetConfig{bottleneck, std::move(blocks), {64, 128, 256, 512}, 64, true}, o);
}
ResNet cifar(int64_t depth, std::vector<int64_t> widths, int64_t stem, const ModelOptions& o) {
  const int64_t n = (depth - 2) / 6;
  return ResNet(ResNetConfig{false, {n, n, n}, std::move(widths), stem, false}, o);
}
}  // namespace

ResNet resnet18(const ModelOptions& o) {
  return imagenet(false, {2, 2, 2, 2}, o);
}
ResNet resnet34(const ModelOptions& o) {
  return imagenet(false, {3, 4, 6, 3}, o);
}
ResNet resnet50(const ModelOptions& o) {
  return imagenet(true, {3, 4, 6, 3}, o);
}
ResNet resnet101(const ModelOptions& o) {
  return imagenet(true, {3, 4, 23, 3}, o);
}
ResNet resnet152(const ModelOptions& o) {
  return imagenet(true, {3, 8, 36, 3}, o);
}
ResNet resnet20(const ModelOptions& o) {
  return cifar(20, {16, 32, 64}, 16, o);
}
ResNet resnet56(const ModelOptions& o) {
  return cifar(56, {16, 32, 64}, 16, o);
}
ResNet resnet8x4(const ModelOptions& o) {
  return cifar(8, {64, 128, 256}, 32, o);
}
ResNet resnet32x4(const ModelOptions& o) {
  return cifar(32, {64, 128, 256}, 32, o);
}

}  // namespace mgd::models
