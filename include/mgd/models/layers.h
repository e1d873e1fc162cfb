// Building blocks shared by the model zoo (not part of the public API).
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/conv.h>

#include <memory>
#include <string>

namespace mgd::models::detail {

/// Bias-free convolution, as every conv of the zoo's networks.
torch::nn::Conv2d conv(int64_t in, int64_t out, int64_t kernel, int64_t stride = 1,
                       int64_t groups = 1);

/// A parameterless container registered as `name` under `parent`, so children get PyTorch's
/// dotted names (e.g. "downsample.0.weight") without the container running them.
std::shared_ptr<torch::nn::Module> group(torch::nn::Module& parent, const std::string& name);

/// Kaiming-normal (fan_out) convs, unit BN weights and zero BN biases, as torchvision.
void init_weights(torch::nn::Module& module);

}  // namespace mgd::models::detail
