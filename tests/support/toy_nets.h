// Toy distillable networks for the tests: a stack of conv3x3-BN-ReLU positions.
#pragma once

#include <torch/torch.h>

#include <vector>

#include "mgd/distiller/feature_net.h"

namespace mgd::testing {

struct ToyLayer {
  int64_t channels;
  int64_t stride = 1;
};

class ToyNetImpl : public FeatureNetImpl {
 public:
  ToyNetImpl(std::vector<ToyLayer> layers, int64_t in_channels = 1, int64_t classes = 5) {
    int64_t c = in_channels;
    for (size_t i = 0; i < layers.size(); ++i) {
      auto conv = torch::nn::Conv2d(torch::nn::Conv2dOptions(c, layers[i].channels, 3)
                                        .stride(layers[i].stride)
                                        .padding(1)
                                        .bias(false));
      auto bn = torch::nn::BatchNorm2d(layers[i].channels);
      convs_.push_back(register_module("conv" + std::to_string(i), conv));
      bns_.push_back(register_module("bn" + std::to_string(i), bn));
      c = layers[i].channels;
    }
    fc_ = register_module("fc", torch::nn::Linear(c, classes));
  }

  Features extract(const torch::Tensor& input) override {
    Features f;
    auto x = input;
    for (size_t i = 0; i < convs_.size(); ++i) {
      auto pre = bns_[i]->forward(convs_[i]->forward(x));
      x = torch::relu(pre);
      f.pre_relu.push_back(pre);
      f.post_relu.push_back(x);
    }
    f.logits = fc_->forward(x.mean({2, 3}));
    return f;
  }

  std::vector<torch::nn::BatchNorm2d> feature_norms() override { return bns_; }

 private:
  std::vector<torch::nn::Conv2d> convs_;
  std::vector<torch::nn::BatchNorm2d> bns_;
  torch::nn::Linear fc_{nullptr};
};
TORCH_MODULE(ToyNet);

/// A "network" whose features are set by the test: extract() returns them as they are.
class FixedFeaturesImpl : public FeatureNetImpl {
 public:
  explicit FixedFeaturesImpl(std::vector<int64_t> channels) {
    for (size_t i = 0; i < channels.size(); ++i) {
      bns_.push_back(
          register_module("bn" + std::to_string(i), torch::nn::BatchNorm2d(channels[i])));
    }
  }
  Features extract(const torch::Tensor&) override { return features; }
  std::vector<torch::nn::BatchNorm2d> feature_norms() override { return bns_; }
  Features features;

 private:
  std::vector<torch::nn::BatchNorm2d> bns_;
};
TORCH_MODULE(FixedFeatures);

}  // namespace mgd::testing
