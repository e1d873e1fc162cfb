#include "mgd/models/frozen.h"

#include <ATen/Context.h>
#include <ATen/core/LegacyTypeDispatch.h>
#include <torch/torch.h>

#include <cstdlib>
#include <cstring>

#include "mgd/models/layers.h"

namespace mgd::models::detail {

bool frozen_program_applies(const torch::nn::Module& net, const torch::Tensor& input) {
  static const bool enabled = [] {
    const char* v = std::getenv("MGD_FROZEN_PROGRAM");
    return !(v && std::strcmp(v, "0") == 0);
  }();
  // oneDNN's ReLU maps NaN to 0 (ATen's keeps it): a NaN input or weight must stay visible,
  // so such inputs take the unfolded path (networks check their weights at each rebuild).
  return enabled && at::hasMKLDNN() && !net.is_training() && input.dim() == 4 &&
         input.device().is_cpu() && input.layout() == torch::kStrided &&
         input.scalar_type() == torch::kFloat && input.size(0) >= 1 &&
         torch::isfinite(input).all().item<bool>();
}

FrozenLayout frozen_layout(FrozenLayout preferred) {
  // Read whenever a program is built (rarely), so a test can compare the layouts.
  const char* v = std::getenv("MGD_FROZEN_LAYOUT");
  if (v == nullptr || *v == 0) return preferred;
  if (std::strcmp(v, "blocked") == 0) return FrozenLayout::kBlocked;
  if (std::strcmp(v, "channels_last") == 0) return FrozenLayout::kChannelsLast;
  TORCH_CHECK(false, "MGD_FROZEN_LAYOUT: expected blocked or channels_last, got '", v, "'");
}

FrozenLayout winograd_or_blocked() {
  return frozen_layout(WinogradConv::applies(8, 8) ? FrozenLayout::kChannelsLast
                                                   : FrozenLayout::kBlocked);
}

torch::Tensor to_frozen_layout(const torch::Tensor& x, FrozenLayout layout) {
  if (layout == FrozenLayout::kBlocked) return x.contiguous().to_mkldnn();
  return x.contiguous(torch::MemoryFormat::ChannelsLast);
}

torch::Tensor from_frozen_layout(const torch::Tensor& x) {
  TORCH_CHECK(!c10::InferenceMode::is_enabled(), "from_frozen_layout: in inference mode");
  if (x.is_mkldnn()) {
    // An inference tensor has no autograd keys, so its ops reach oneDNN's kernels without
    // autograd being excluded, which they assert; this guard excludes it. The result, made
    // outside inference mode, is an ordinary tensor.
    at::AutoDispatchBelowADInplaceOrView guard;
    return x.to_dense();
  }
  auto y = x.contiguous();
  return y.is_inference() ? y.clone() : y;
}

std::pair<torch::Tensor, torch::Tensor> eval_scale_shift(const Norm& norm) {
  torch::Tensor weight, bias, mean, var;
  double eps = 0;
  if (auto bn = norm.batch()) {
    TORCH_CHECK(bn->running_mean.defined() && bn->running_var.defined(),
                "eval_scale_shift: a BatchNorm2d without running statistics");
    weight = bn->weight, bias = bn->bias, mean = bn->running_mean, var = bn->running_var;
    eps = bn->options.eps();
  } else if (auto frozen = norm.frozen()) {
    weight = frozen->weight, bias = frozen->bias, mean = frozen->running_mean;
    var = frozen->running_var, eps = frozen->options.eps();
  } else {
    TORCH_CHECK(false, "eval_scale_shift: a ", norm.kind(), " norm has no fixed per-channel map");
  }
  torch::NoGradGuard no_grad;
  auto scale = (var.to(torch::kFloat) + eps).rsqrt();
  if (weight.defined()) scale = scale * weight.to(torch::kFloat);
  auto shift = -mean.to(torch::kFloat) * scale;
  if (bias.defined()) shift = shift + bias.to(torch::kFloat);
  return {scale, shift};
}

FoldedConv::FoldedConv(const torch::nn::Conv2d& conv, const Norm* norm, FrozenLayout layout) {
  if (norm) {
    auto [scale, shift] = eval_scale_shift(*norm);
    build(conv, scale, shift, layout);
  } else {
    build(conv, {}, {}, layout);
  }
}

FoldedConv::FoldedConv(const torch::nn::Conv2d& conv, const torch::nn::BatchNorm2d& bn,
                       FrozenLayout layout) {
  torch::NoGradGuard no_grad;
  auto scale = (bn->running_var + bn->options.eps()).rsqrt() * bn->weight;
  build(conv, scale, bn->bias - bn->running_mean * scale, layout);
}

void FoldedConv::build(const torch::nn::Conv2d& conv, const torch::Tensor& scale,
                       const torch::Tensor& shift, FrozenLayout layout) {
  torch::NoGradGuard no_grad;
  const auto& o = conv->options;
  TORCH_CHECK(torch::enumtype::get_enum_name(o.padding_mode()) == "kZeros",
              "FoldedConv: expected a Conv2d with zero padding");
  stride_ = {o.stride()->at(0), o.stride()->at(1)};
  dilation_ = {o.dilation()->at(0), o.dilation()->at(1)};
  // Every zoo convolution pads (kernel - 1) / 2 (detail::conv, the 7x7 stem). The options'
  // padding is a c10::variant in LibTorch 1.13 and a std::variant in 2.x: not read here.
  const auto& w0 = conv->weight;
  padding_ = {(w0.size(2) - 1) / 2, (w0.size(3) - 1) / 2};
  groups_ = o.groups();
  auto w = conv->weight.detach().to(torch::kFloat);
  auto b = conv->bias.defined() ? conv->bias.detach().to(torch::kFloat)
                                : torch::zeros({w.size(0)}, torch::kFloat);
  if (scale.defined()) {
    w = w * scale.reshape({-1, 1, 1, 1});
    b = b * scale + shift;
  }
  if (layout == FrozenLayout::kChannelsLast && w.size(2) == 3 && w.size(3) == 3 &&
      stride_ == std::vector<int64_t>{1, 1} && dilation_ == std::vector<int64_t>{1, 1} &&
      groups_ == 1 && WinogradConv::applies(w.size(1), w.size(0))) {
    winograd_ = WinogradConv(w, b);
  }
  // As detail::conv_forward: a 1x1 kernel dilated computes the same and always runs on oneDNN
  // (ATen 1.13 sends an undilated one of under 16 images at one thread to im2col + BLAS).
  if (layout == FrozenLayout::kChannelsLast && w.size(2) == 1 && w.size(3) == 1) {
    dilation_ = {2, 2};
  }
  if (layout == FrozenLayout::kBlocked) {
    weight_ = at::mkldnn_reorder_conv2d_weight(w.contiguous().to_mkldnn(), padding_, stride_,
                                               dilation_, groups_);
  } else {
    weight_ = w.contiguous(torch::MemoryFormat::ChannelsLast);
  }
  bias_ = b.contiguous();
}

namespace {

// Whether a Winograd convolution beats a direct one on an h x w map: it computes whole 4 x 4
// output tiles at 36 multiplies per 16 outputs, a direct one 9 per output. Below ratio 1
// (maps of 2 x 2, 1 x n) oneDNN runs it (measured at 2 x 2, 512 channels: 1.06x either way).
bool winograd_pays(const torch::Tensor& x) {
  const int64_t h = x.size(2), w = x.size(3);
  return h * w > 4 * ((h + 3) / 4) * ((w + 3) / 4);
}

}  // namespace

torch::Tensor FoldedConv::operator()(const torch::Tensor& x) const {
  if (winograd_.defined() && winograd_pays(x)) return winograd_(x);
  if (weight_.is_mkldnn()) {
    return at::mkldnn_convolution(x, weight_, bias_, padding_, stride_, dilation_, groups_);
  }
  return at::conv2d(x, weight_, bias_, stride_, padding_, dilation_, groups_);
}

torch::Tensor FoldedConv::forward(const torch::Tensor& x, bool relu,
                                  const torch::Tensor& residual) const {
  if (winograd_.defined() && winograd_pays(x)) return winograd_(x, relu, residual);
  auto y = (*this)(x);
  if (residual.defined()) y.add_(residual);
  return relu ? y.relu_() : y;
}

FrozenBatchNormOp::FrozenBatchNormOp(const torch::nn::BatchNorm2d& bn) {
  torch::NoGradGuard no_grad;
  weight_ = bn->weight.detach().clone();
  bias_ = bn->bias.detach().clone();
  mean_ = bn->running_mean.detach().clone();
  var_ = bn->running_var.detach().clone();
  eps_ = bn->options.eps();
}

torch::Tensor FrozenBatchNormOp::operator()(const torch::Tensor& x) const {
  return at::batch_norm(x, weight_, bias_, mean_, var_, /*training=*/false, 0.0, eps_,
                        /*cudnn_enabled=*/false);
}

bool WeightsVersion::update(const torch::nn::Module& module) {
  std::vector<std::pair<const void*, uint32_t>> now;
  for (const auto& p : module.parameters()) now.emplace_back(p.unsafeGetTensorImpl(), p._version());
  for (const auto& b : module.buffers()) now.emplace_back(b.unsafeGetTensorImpl(), b._version());
  // Data pointers too: set_data() or a .to() keeps the TensorImpl but swaps its storage.
  for (const auto& p : module.parameters()) now.emplace_back(p.data_ptr(), 0);
  for (const auto& b : module.buffers()) now.emplace_back(b.data_ptr(), 0);
  if (now == seen_) return false;
  seen_ = std::move(now);
  finite_ = true;
  for (const auto& p : module.parameters())
    finite_ = finite_ && torch::isfinite(p).all().item<bool>();
  for (const auto& b : module.buffers()) {
    if (b.is_floating_point()) finite_ = finite_ && torch::isfinite(b).all().item<bool>();
  }
  return true;
}

}  // namespace mgd::models::detail
