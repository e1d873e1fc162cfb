#include "mgd/models/resnet.h"

#include <torch/torch.h>

#include "mgd/models/layers.h"
#include "mgd/models/pooling.h"

namespace mgd::models {
namespace detail {

ResidualBlockImpl::ResidualBlockImpl(int64_t in, int64_t planes, int64_t stride, bool bottleneck,
                                     const std::string& norm, int64_t groups)
    : bottleneck_(bottleneck), out_channels_(bottleneck ? planes * 4 : planes) {
  if (bottleneck) {
    // torchvision's v1.5 bottleneck: the stride sits on the 3x3 conv.
    conv1_ = register_module("conv1", conv(in, planes, 1));
    bn1_ = Norm(*this, "bn1", norm, planes, groups);
    conv2_ = register_module("conv2", conv(planes, planes, 3, stride));
    bn2_ = Norm(*this, "bn2", norm, planes, groups);
    conv3_ = register_module("conv3", conv(planes, out_channels_, 1));
    bn3_ = Norm(*this, "bn3", norm, out_channels_, groups);
  } else {
    conv1_ = register_module("conv1", conv(in, planes, 3, stride));
    bn1_ = Norm(*this, "bn1", norm, planes, groups);
    conv2_ = register_module("conv2", conv(planes, planes, 3));
    bn2_ = Norm(*this, "bn2", norm, planes, groups);
  }
  if (stride != 1 || in != out_channels_) {
    auto down = group(*this, "downsample");
    down_conv_ = down->register_module("0", conv(in, out_channels_, 1, stride));
    down_bn_ = Norm(*down, "1", norm, out_channels_, groups);
  }
}

// In-place ReLUs and sum: no norm's backward reads its output. conv_forward: the 1x1 convs on
// oneDNN at any thread count.
torch::Tensor ResidualBlockImpl::forward_pre(const torch::Tensor& x) {
  auto out = bn1_(conv_forward(conv1_, x)).relu_();
  out = bn2_(conv_forward(conv2_, out));
  if (bottleneck_) out = bn3_(conv_forward(conv3_, torch::relu_(out)));
  return out.add_(down_conv_ ? down_bn_(conv_forward(down_conv_, x)) : x);
}

bool ResidualBlockImpl::foldable() const {
  return bn1_.foldable() && bn2_.foldable() && (!bottleneck_ || bn3_.foldable()) &&
         (!down_conv_ || down_bn_.foldable());
}

FrozenResidualBlock ResidualBlockImpl::frozen(FrozenLayout layout) const {
  FrozenResidualBlock f;
  f.conv1 = FoldedConv(conv1_, &bn1_, layout);
  f.conv2 = FoldedConv(conv2_, &bn2_, layout);
  if (bottleneck_) f.conv3 = FoldedConv(conv3_, &bn3_, layout);
  if (down_conv_) f.down = FoldedConv(down_conv_, &down_bn_, layout);
  return f;
}

torch::Tensor FrozenResidualBlock::forward_pre(const torch::Tensor& x) const {
  const auto residual = down.defined() ? down(x) : x;
  auto out = conv1.forward(x, /*relu=*/true, {});
  if (conv3.defined()) return conv3.forward(conv2.forward(out, true, {}), false, residual);
  return conv2.forward(out, false, residual);
}

struct FrozenResNet {
  FrozenLayout layout;
  FoldedConv stem;
  std::vector<std::vector<FrozenResidualBlock>> stages;
};

}  // namespace detail

namespace {
void freeze(torch::nn::Module& module) {
  for (auto& p : module.parameters()) p.set_requires_grad(false);
}
}  // namespace

ResNetImpl::ResNetImpl(const ResNetConfig& config, const ModelOptions& options) : config_(config) {
  TORCH_CHECK(!config.blocks.empty() && config.blocks.size() == config.widths.size(),
              "ResNet: expected one width per stage, got ", config.blocks.size(), " stages and ",
              config.widths.size(), " widths");
  TORCH_CHECK(options.classes() >= 1 && options.in_channels() >= 1, "ResNet: invalid classes ",
              options.classes(), " or input channels ", options.in_channels());
  TORCH_CHECK(detail::is_norm_kind(config.norm), "ResNet: unknown norm '", config.norm,
              "', expected batch or frozen_batch");
  const auto stages = static_cast<int64_t>(config.blocks.size());
  TORCH_CHECK(config.freeze_at >= 0 && config.freeze_at <= stages + 1, "ResNet: invalid freeze_at ",
              config.freeze_at, ", expected 0 (nothing) to ", stages + 1, " (every stage)");
  conv1_ = register_module(
      "conv1",
      config.imagenet_stem
          ? torch::nn::Conv2d(torch::nn::Conv2dOptions(options.in_channels(), config.stem_width, 7)
                                  .stride(2)
                                  .padding(3)
                                  .bias(false))
          : detail::conv(options.in_channels(), config.stem_width, 3));
  bn1_ = detail::Norm(*this, "bn1", config.norm, config.stem_width);
  int64_t in = config.stem_width;
  for (int64_t s = 0; s < stages; ++s) {
    auto layer = detail::group(*this, "layer" + std::to_string(s + 1));
    const bool frozen = config.freeze_at >= s + 2;
    std::vector<detail::ResidualBlock> blocks;
    for (int64_t b = 0; b < config.blocks[s]; ++b) {
      const int64_t stride = (s > 0 && b == 0) ? 2 : 1;
      const bool group_norm = config.group_norm_last_block && !frozen && b + 1 == config.blocks[s];
      blocks.push_back(layer->register_module(
          std::to_string(b),
          detail::ResidualBlock(in, config.widths[s], stride, config.bottleneck,
                                group_norm ? "group" : config.norm, config.group_norm_groups)));
      in = blocks.back()->out_channels();
    }
    stages_.push_back(std::move(blocks));
  }
  if (config.classifier) fc_ = register_module("fc", torch::nn::Linear(in, options.classes()));
  detail::init_weights(*this);
  if (config.freeze_at >= 1) {
    freeze(*conv1_);
    if (!bn1_.is_empty() && bn1_.batch()) freeze(*bn1_.batch());
  }
  for (int64_t s = 0; s + 2 <= config.freeze_at; ++s) {
    for (auto& block : stages_[s]) freeze(*block);
  }
}

Features ResNetImpl::extract(const torch::Tensor& input) {
  TORCH_CHECK(input.dim() == 4 && input.size(1) == conv1_->options.in_channels(),
              "ResNet: expected a batch of ", conv1_->options.in_channels(),
              "-channel images (B x C x H x W), got ", input.sizes());
  Features f;
  auto x = bn1_(detail::conv_forward(conv1_, input)).relu_();
  if (config_.imagenet_stem) x = detail::max_pool_3x3_s2(x);
  for (auto& stage : stages_) {
    torch::Tensor pre;
    for (size_t b = 0; b < stage.size(); ++b) {
      pre = stage[b]->forward_pre(x);
      // Only a stage's last pre-ReLU output is kept (a tap); the others ReLU in place.
      x = b + 1 < stage.size() ? torch::relu_(pre) : torch::relu(pre);
    }
    f.pre_relu.push_back(pre);
    f.post_relu.push_back(x);
  }
  if (fc_) f.logits = fc_(x.mean({2, 3}));
  return f;
}

Features ResNetImpl::extract_frozen(const torch::Tensor& input) {
  bool foldable = bn1_.foldable();
  for (auto& stage : stages_) {
    for (auto& block : stage) foldable = foldable && block->foldable();
  }
  if (!foldable || !detail::frozen_program_applies(*this, input)) {
    return FeatureNetImpl::extract_frozen(input);
  }
  TORCH_CHECK(input.size(1) == conv1_->options.in_channels(), "ResNet: expected a batch of ",
              conv1_->options.in_channels(), "-channel images (B x C x H x W), got ",
              input.sizes());
  if (frozen_version_.update(*this) || !frozen_) {
    auto program = std::make_shared<detail::FrozenResNet>();
    // Measured (step_bench's teacher row, MGD_FROZEN_LAYOUT): oneDNN's blocked layout;
    // basic blocks (two 3x3 convolutions) channels-last where those run as Winograd ones.
    program->layout = config_.bottleneck ? detail::frozen_layout(detail::FrozenLayout::kBlocked)
                                         : detail::winograd_or_blocked();
    program->stem = detail::FoldedConv(conv1_, &bn1_, program->layout);
    for (auto& stage : stages_) {
      program->stages.emplace_back();
      for (auto& block : stage) program->stages.back().push_back(block->frozen(program->layout));
    }
    frozen_ = std::move(program);
  }
  if (!frozen_version_.finite()) return FeatureNetImpl::extract_frozen(input);
  std::vector<torch::Tensor> taps;
  torch::Tensor last;
  {
    c10::InferenceMode inference;
    auto x = frozen_->stem(detail::to_frozen_layout(input, frozen_->layout)).relu_();
    if (config_.imagenet_stem) x = at::max_pool2d(x, {3, 3}, {2, 2}, {1, 1});
    for (auto& stage : frozen_->stages) {
      for (size_t b = 0; b < stage.size(); ++b) {
        auto pre = stage[b].forward_pre(x);
        if (b + 1 < stage.size()) {
          x = pre.relu_();
        } else {
          taps.push_back(pre);
          x = at::relu(pre);
        }
      }
    }
  }
  // Back to ordinary tensors outside inference mode (autograd may save them).
  torch::NoGradGuard no_grad;
  Features f;
  for (auto& tap : taps) {
    f.pre_relu.push_back(detail::from_frozen_layout(tap));
    f.post_relu.push_back(torch::relu(f.pre_relu.back()));
  }
  if (fc_) f.logits = fc_(f.post_relu.back().mean({2, 3}));
  return f;
}

std::vector<torch::nn::BatchNorm2d> ResNetImpl::feature_norms() {
  std::vector<torch::nn::BatchNorm2d> norms;
  for (auto& stage : stages_) {
    norms.push_back(stage.back()->last_norm());
    TORCH_CHECK(!norms.back().is_empty(), "ResNet::feature_norms: stage ", norms.size(),
                "'s last norm is not a BatchNorm2d (norm '", config_.norm,
                "', group_norm_last_block ", config_.group_norm_last_block,
                "); use feature_affines()");
  }
  return norms;
}

std::vector<int64_t> ResNetImpl::feature_channels() {
  std::vector<int64_t> channels;
  for (auto& stage : stages_) channels.push_back(stage.back()->out_channels());
  return channels;
}

std::vector<NormAffine> ResNetImpl::feature_affines() {
  std::vector<NormAffine> affines;
  for (auto& stage : stages_) {
    auto [weight, bias] = stage.back()->last_norm_affine();
    affines.push_back({weight, bias});
  }
  return affines;
}

namespace {
ResNetConfig imagenet(bool bottleneck, std::vector<int64_t> blocks) {
  return ResNetConfig{bottleneck, std::move(blocks), {64, 128, 256, 512}, 64, true};
}
ResNetConfig cifar(int64_t depth, std::vector<int64_t> widths, int64_t stem) {
  const int64_t n = (depth - 2) / 6;
  return ResNetConfig{false, {n, n, n}, std::move(widths), stem, false};
}
}  // namespace

ResNetConfig resnet_config(const std::string& name) {
  // ResNet-10: one basic block per stage (timm's resnet10t without its deep stem), half of
  // ResNet-18's work -- a student for ResNet-18 teachers (k = 1 at every stage).
  if (name == "resnet10") return imagenet(false, {1, 1, 1, 1});
  if (name == "resnet18") return imagenet(false, {2, 2, 2, 2});
  if (name == "resnet34") return imagenet(false, {3, 4, 6, 3});
  if (name == "resnet50") return imagenet(true, {3, 4, 6, 3});
  if (name == "resnet101") return imagenet(true, {3, 4, 23, 3});
  if (name == "resnet152") return imagenet(true, {3, 8, 36, 3});
  if (name == "resnet20") return cifar(20, {16, 32, 64}, 16);
  if (name == "resnet56") return cifar(56, {16, 32, 64}, 16);
  if (name == "resnet8x4") return cifar(8, {64, 128, 256}, 32);
  if (name == "resnet32x4") return cifar(32, {64, 128, 256}, 32);
  TORCH_CHECK(
      false, "Unknown ResNet '", name,
      "'; available: resnet10, resnet18, resnet34, resnet50, resnet101, resnet152, resnet20, "
      "resnet56, resnet8x4, resnet32x4");
}

ResNet resnet10(const ModelOptions& o) {
  return ResNet(resnet_config("resnet10"), o);
}
ResNet resnet18(const ModelOptions& o) {
  return ResNet(resnet_config("resnet18"), o);
}
ResNet resnet34(const ModelOptions& o) {
  return ResNet(resnet_config("resnet34"), o);
}
ResNet resnet50(const ModelOptions& o) {
  return ResNet(resnet_config("resnet50"), o);
}
ResNet resnet101(const ModelOptions& o) {
  return ResNet(resnet_config("resnet101"), o);
}
ResNet resnet152(const ModelOptions& o) {
  return ResNet(resnet_config("resnet152"), o);
}
ResNet resnet20(const ModelOptions& o) {
  return ResNet(resnet_config("resnet20"), o);
}
ResNet resnet56(const ModelOptions& o) {
  return ResNet(resnet_config("resnet56"), o);
}
ResNet resnet8x4(const ModelOptions& o) {
  return ResNet(resnet_config("resnet8x4"), o);
}
ResNet resnet32x4(const ModelOptions& o) {
  return ResNet(resnet_config("resnet32x4"), o);
}

}  // namespace mgd::models
