#include "mgd/models/wrn.h"

#include <torch/torch.h>

#include "mgd/models/layers.h"

namespace mgd::models {
namespace detail {

WideBlockImpl::WideBlockImpl(int64_t in, int64_t out, int64_t stride) {
  bn1 = register_module("bn1", torch::nn::BatchNorm2d(in));
  conv1_ = register_module("conv1", conv(in, out, 3, stride));
  bn2_ = register_module("bn2", torch::nn::BatchNorm2d(out));
  conv2_ = register_module("conv2", conv(out, out, 3));
  if (in != out) shortcut_ = register_module("convShortcut", conv(in, out, 1, stride));
}

torch::Tensor WideBlockImpl::forward(const torch::Tensor& x, const torch::Tensor& act) {
  auto out = conv2_(torch::relu(bn2_(conv1_(act))));
  // With unequal widths the shortcut takes the activated input, as in the original code.
  return (shortcut_ ? shortcut_(act) : x) + out;
}

FrozenWideBlock WideBlockImpl::frozen(FrozenLayout layout) const {
  FrozenWideBlock f;
  f.bn1 = FrozenBatchNormOp(bn1);
  f.conv1 = FoldedConv(conv1_, bn2_, layout);
  f.conv2 = FoldedConv(conv2_, nullptr, layout);
  if (shortcut_) f.shortcut = FoldedConv(shortcut_, nullptr, layout);
  return f;
}

torch::Tensor FrozenWideBlock::forward(const torch::Tensor& x, const torch::Tensor& act) const {
  return conv2.forward(conv1.forward(act, /*relu=*/true, {}), /*relu=*/false,
                       shortcut.defined() ? shortcut(act) : x);
}

struct FrozenWideResNet {
  FrozenLayout layout;
  FoldedConv conv1;
  std::vector<std::vector<FrozenWideBlock>> stages;
  std::vector<FrozenBatchNormOp> tap_norms;  ///< as feature_norms()
};

}  // namespace detail

WideResNetImpl::WideResNetImpl(int64_t depth, int64_t widen_factor, const ModelOptions& options) {
  TORCH_CHECK(depth >= 10 && (depth - 4) % 6 == 0 && widen_factor >= 1,
              "WideResNet: depth must be 6n+4 (>= 10) and width >= 1, got WRN-", depth, "-",
              widen_factor);
  const int64_t n = (depth - 4) / 6;
  const std::vector<int64_t> widths = {16, 16 * widen_factor, 32 * widen_factor, 64 * widen_factor};
  conv1_ = register_module("conv1", detail::conv(options.in_channels(), widths[0], 3));
  int64_t in = widths[0];
  for (int s = 0; s < 3; ++s) {
    auto layer = detail::group(*detail::group(*this, "block" + std::to_string(s + 1)), "layer");
    std::vector<detail::WideBlock> blocks;
    for (int64_t b = 0; b < n; ++b) {
      blocks.push_back(layer->register_module(
          std::to_string(b), detail::WideBlock(in, widths[s + 1], (s > 0 && b == 0) ? 2 : 1)));
      in = widths[s + 1];
    }
    stages_.push_back(std::move(blocks));
  }
  bn1_ = register_module("bn1", torch::nn::BatchNorm2d(in));
  fc_ = register_module("fc", torch::nn::Linear(in, options.classes()));
  detail::init_weights(*this);
  torch::NoGradGuard no_grad;
  torch::nn::init::zeros_(fc_->bias);
}

Features WideResNetImpl::extract(const torch::Tensor& input) {
  TORCH_CHECK(input.dim() == 4 && input.size(1) == conv1_->options.in_channels(),
              "WideResNet: expected a batch of ", conv1_->options.in_channels(),
              "-channel images (B x C x H x W), got ", input.sizes());
  Features f;
  auto norms = feature_norms();
  auto x = conv1_(input);
  // The previous stage's tap is the next block's bn1 output: its ReLU is that block's input
  // activation, computed once.
  torch::Tensor pending;
  for (size_t s = 0; s < stages_.size(); ++s) {
    for (size_t b = 0; b < stages_[s].size(); ++b) {
      auto& block = stages_[s][b];
      auto act = (b == 0 && pending.defined()) ? f.post_relu.back() : torch::relu(block->bn1(x));
      x = block->forward(x, act);
    }
    pending = norms[s](x);
    f.pre_relu.push_back(pending);
    f.post_relu.push_back(torch::relu(pending));
  }
  f.logits = fc_(f.post_relu.back().mean({2, 3}));
  return f;
}

Features WideResNetImpl::extract_frozen(const torch::Tensor& input) {
  if (!detail::frozen_program_applies(*this, input)) return FeatureNetImpl::extract_frozen(input);
  TORCH_CHECK(input.size(1) == conv1_->options.in_channels(), "WideResNet: expected a batch of ",
              conv1_->options.in_channels(), "-channel images (B x C x H x W), got ",
              input.sizes());
  if (frozen_version_.update(*this) || !frozen_) {
    auto program = std::make_shared<detail::FrozenWideResNet>();
    // Measured (step_bench's teacher row, MGD_FROZEN_LAYOUT, MGD_WINOGRAD): with oneDNN's
    // convolutions the blocked layout (NHWC 146 ms, the unfolded network 132 ms, blocked
    // 124 ms); channels-last with Winograd convolutions faster still.
    program->layout = detail::winograd_or_blocked();
    program->conv1 = detail::FoldedConv(conv1_, nullptr, program->layout);
    for (auto& stage : stages_) {
      program->stages.emplace_back();
      for (auto& block : stage) program->stages.back().push_back(block->frozen(program->layout));
    }
    for (auto& bn : feature_norms()) program->tap_norms.emplace_back(bn);
    frozen_ = std::move(program);
  }
  if (!frozen_version_.finite()) return FeatureNetImpl::extract_frozen(input);
  std::vector<torch::Tensor> taps;
  {
    c10::InferenceMode inference;
    auto x = frozen_->conv1(detail::to_frozen_layout(input, frozen_->layout));
    torch::Tensor act_of_tap;
    for (size_t s = 0; s < frozen_->stages.size(); ++s) {
      for (size_t b = 0; b < frozen_->stages[s].size(); ++b) {
        const auto& block = frozen_->stages[s][b];
        auto act = (b == 0 && act_of_tap.defined()) ? act_of_tap : at::relu(block.bn1(x));
        x = block.forward(x, act);
      }
      taps.push_back(frozen_->tap_norms[s](x));
      if (s + 1 < frozen_->stages.size()) act_of_tap = at::relu(taps.back());
    }
  }
  torch::NoGradGuard no_grad;
  Features f;
  for (auto& tap : taps) {
    f.pre_relu.push_back(detail::from_frozen_layout(tap));
    f.post_relu.push_back(torch::relu(f.pre_relu.back()));
  }
  f.logits = fc_(f.post_relu.back().mean({2, 3}));
  return f;
}

std::vector<torch::nn::BatchNorm2d> WideResNetImpl::feature_norms() {
  return {stages_[1][0]->bn1, stages_[2][0]->bn1, bn1_};
}

WideResNet wrn_16_2(const ModelOptions& o) {
  return WideResNet(16, 2, o);
}
WideResNet wrn_40_2(const ModelOptions& o) {
  return WideResNet(40, 2, o);
}

}  // namespace mgd::models
