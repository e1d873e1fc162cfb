// Building blocks shared by the model zoo (not part of the public API).
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/normalization.h>

#include <memory>
#include <string>
#include <utility>

#include "mgd/models/norm.h"

namespace mgd::models::detail {

/// Bias-free convolution, as every conv of the zoo's networks.
torch::nn::Conv2d conv(int64_t in, int64_t out, int64_t kernel, int64_t stride = 1,
                       int64_t groups = 1);

/// A parameterless container registered as `name` under `parent`, so children get PyTorch's
/// dotted names (e.g. "downsample.0.weight") without the container running them.
std::shared_ptr<torch::nn::Module> group(torch::nn::Module& parent, const std::string& name);

/// One normalization layer of a zoo network, of the kind chosen when the network was built:
/// "batch" (BatchNorm2d), "frozen_batch" (FrozenBatchNorm2d) or "group" (GroupNorm(groups, C)),
/// so one block type serves classifiers and detection backbones under the same names.
class Norm {
 public:
  Norm() = default;
  /// Registers the layer as `name` under `parent`.
  Norm(torch::nn::Module& parent, const std::string& name, const std::string& kind,
       int64_t channels, int64_t groups = 32);
  torch::Tensor operator()(const torch::Tensor& x);
  /// The BatchNorm2d, or an empty holder when the layer is of another kind.
  torch::nn::BatchNorm2d batch() const { return batch_; }
  /// The FrozenBatchNorm2d, or an empty holder when the layer is of another kind.
  FrozenBatchNorm2d frozen() const { return frozen_; }
  /// Whether eval mode makes it a fixed per-channel map (BatchNorm2d, FrozenBatchNorm2d),
  /// which a preceding convolution can absorb (models/frozen.h).
  bool foldable() const { return batch_ || frozen_; }
  /// The per-channel scale and shift (gamma, beta): parameters, or a frozen norm's buffers.
  std::pair<torch::Tensor, torch::Tensor> affine() const;
  bool is_empty() const { return kind_.empty(); }
  const std::string& kind() const { return kind_; }

 private:
  std::string kind_;
  torch::nn::BatchNorm2d batch_{nullptr};
  FrozenBatchNorm2d frozen_{nullptr};
  torch::nn::GroupNorm group_{nullptr};
};

/// conv(x), the same result as the module's forward. On the CPU a 1x1 convolution runs with
/// dilation 2, which for a 1x1 kernel computes exactly the same thing: ATen 1.13 sends an
/// undilated 1x1 stride-1 convolution of fewer than 16 images at one thread to its im2col +
/// BLAS path, forward and backward, several times slower than oneDNN with a reference BLAS
/// (Debian's default libblas: a ResNet-50 detector's step 3-4x slower); a dilated one always
/// goes to oneDNN, to the same 1x1 kernel as at two threads. Zero padding only (every zoo
/// conv).
torch::Tensor conv_forward(const torch::nn::Conv2d& conv, const torch::Tensor& x);

/// The normalization kinds Norm accepts for a whole network (GroupNorm needs a group count).
bool is_norm_kind(const std::string& kind);

/// Kaiming-normal (fan_out) convs, unit BN weights and zero BN biases, as torchvision.
void init_weights(torch::nn::Module& module);

}  // namespace mgd::models::detail
