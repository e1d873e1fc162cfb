#include "mgd/models/shufflenet.h"

#include <torch/torch.h>

#include "mgd/models/layers.h"
#include "mgd/models/pooling.h"

namespace mgd::models {
namespace detail {

ShuffleBlockImpl::ShuffleBlockImpl(int64_t in, int64_t out, int64_t stride) : stride_(stride) {
  const int64_t half = out / 2;
  TORCH_CHECK(stride > 1 || in == 2 * half, "ShuffleNetV2: a stride-1 block needs in = out, got ",
              in, " and ", out);
  auto add = [](torch::nn::Module& seq, std::vector<Layer>& branch, int conv_idx, int64_t cin,
                int64_t cout, int64_t kernel, int64_t s, int64_t groups, bool relu_after) {
    branch.push_back(
        {seq.register_module(std::to_string(conv_idx), conv(cin, cout, kernel, s, groups)),
         seq.register_module(std::to_string(conv_idx + 1), torch::nn::BatchNorm2d(cout)),
         relu_after});
  };
  if (stride > 1) {
    // torchvision: branch1 = dw3x3, BN, 1x1, BN, ReLU.
    auto b1 = group(*this, "branch1");
    add(*b1, b1_, 0, in, in, 3, stride, in, false);
    add(*b1, b1_, 2, in, half, 1, 1, 1, false);
  }
  // torchvision: branch2 = 1x1, BN, ReLU, dw3x3, BN, 1x1, BN, ReLU.
  auto b2 = group(*this, "branch2");
  const int64_t b2_in = stride > 1 ? in : half;
  add(*b2, b2_, 0, b2_in, half, 1, 1, 1, true);
  add(*b2, b2_, 3, half, half, 3, stride, half, false);
  add(*b2, b2_, 5, half, half, 1, 1, 1, false);
}

torch::Tensor ShuffleBlockImpl::run(std::vector<Layer>& branch, torch::Tensor x) {
  for (auto& layer : branch) {
    x = layer.bn(layer.conv(x));
    if (layer.relu_after) x = torch::relu(x);
  }
  return x;  // before the branch's final ReLU
}

torch::Tensor ShuffleBlockImpl::forward_pre(const torch::Tensor& x_pre) {
  torch::Tensor out;
  if (stride_ == 1) {
    auto halves = x_pre.chunk(2, 1);
    out = torch::cat({halves[0], run(b2_, torch::relu(halves[1]))}, 1);
  } else {
    auto x = torch::relu(x_pre);
    out = torch::cat({run(b1_, x), run(b2_, x)}, 1);
  }
  // Channel shuffle with two groups.
  const auto b = out.size(0), c = out.size(1), h = out.size(2), w = out.size(3);
  return out.view({b, 2, c / 2, h, w}).transpose(1, 2).reshape({b, c, h, w});
}

}  // namespace detail

ShuffleNetV2Impl::ShuffleNetV2Impl(std::vector<int64_t> stage_channels, const ModelOptions& options)
    : channels_(std::move(stage_channels)) {
  TORCH_CHECK(channels_.size() == 5, "ShuffleNetV2: expected 5 stage channel counts, got ",
              channels_.size());
  auto c1 = detail::group(*this, "conv1");
  conv1_ = c1->register_module("0", detail::conv(options.in_channels(), channels_[0], 3, 2));
  bn1_ = c1->register_module("1", torch::nn::BatchNorm2d(channels_[0]));
  const std::vector<int64_t> repeats = {4, 8, 4};
  int64_t in = channels_[0];
  for (size_t s = 0; s < repeats.size(); ++s) {
    auto stage = detail::group(*this, "stage" + std::to_string(s + 2));
    std::vector<detail::ShuffleBlock> blocks;
    for (int64_t b = 0; b < repeats[s]; ++b) {
      blocks.push_back(stage->register_module(
          std::to_string(b), detail::ShuffleBlock(in, channels_[s + 1], b == 0 ? 2 : 1)));
      in = channels_[s + 1];
    }
    stages_.push_back(std::move(blocks));
  }
  auto c5 = detail::group(*this, "conv5");
  conv5_ = c5->register_module("0", detail::conv(in, channels_[4], 1));
  bn5_ = c5->register_module("1", torch::nn::BatchNorm2d(channels_[4]));
  fc_ = register_module("fc", torch::nn::Linear(channels_[4], options.classes()));
  detail::init_weights(*this);
}

Features ShuffleNetV2Impl::extract(const torch::Tensor& input) {
  TORCH_CHECK(input.dim() == 4 && input.size(1) == conv1_->options.in_channels(),
              "ShuffleNetV2: expected a batch of ", conv1_->options.in_channels(),
              "-channel images (B x C x H x W), got ", input.sizes());
  Features f;
  // max-pool commutes with ReLU, so the pooled BN output is the stem's pre-ReLU map.
  auto pre = detail::max_pool_3x3_s2(bn1_(conv1_(input)));
  f.pre_relu.push_back(pre);
  f.post_relu.push_back(torch::relu(pre));
  for (auto& stage : stages_) {
    for (auto& block : stage) pre = block->forward_pre(pre);
    f.pre_relu.push_back(pre);
    f.post_relu.push_back(torch::relu(pre));
  }
  auto x = torch::relu(bn5_(conv5_(f.post_relu.back())));
  f.logits = fc_(x.mean({2, 3}));
  return f;
}

std::vector<torch::nn::BatchNorm2d> ShuffleNetV2Impl::feature_norms() {
  std::vector<torch::nn::BatchNorm2d> norms = {bn1_};
  for (auto& stage : stages_) norms.push_back(stage.back()->last_norm());
  return norms;
}

std::vector<int64_t> ShuffleNetV2Impl::feature_channels() {
  return {channels_[0], channels_[1], channels_[2], channels_[3]};
}

ShuffleNetV2 shufflenet_v2_x0_5(const ModelOptions& o) {
  return ShuffleNetV2(std::vector<int64_t>{24, 48, 96, 192, 1024}, o);
}
ShuffleNetV2 shufflenet_v2_x1_0(const ModelOptions& o) {
  return ShuffleNetV2(std::vector<int64_t>{24, 116, 232, 464, 1024}, o);
}

}  // namespace mgd::models
