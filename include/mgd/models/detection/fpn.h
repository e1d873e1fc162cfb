// Feature Pyramid Network (Lin et al., "Feature Pyramid Networks for Object Detection",
// CVPR 2017) with RetinaNet's extra levels P6/P7 (Lin et al., "Focal Loss for Dense Object
// Detection", ICCV 2017, section 4).
//
// From backbone maps C_i (increasing depth, each half the previous resolution) it builds one
// map per level with `out_channels` channels: a 1x1 lateral conv of each C_i, summed top-down
// with the nearest-neighbour upsampled sum of the level above, then a 3x3 conv. Extra levels:
// P6 = conv3x3/2(source), P7 = conv3x3/2(relu(P6)), where the source is the last input map
// (Detectron2: "c5") or the last FPN output (torchvision whenever LastLevelP6P7 gets
// in_channels == out_channels, as in retinanet_resnet50_fpn: "p5") -- a real difference
// between the two codebases, named here. The upsampling goes to the lateral map's exact size
// (torchvision), which equals Detectron2's factor-2 upsampling whenever sizes halve exactly.
//
// Parameter names are torchvision 0.14's: inner_blocks.<i>.0.{weight,bias},
// layer_blocks.<i>.0.{weight,bias}, extra_blocks.p6.*, extra_blocks.p7.*.
#pragma once

#include <torch/arg.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/pimpl.h>
#include <torch/types.h>

#include <string>
#include <vector>

namespace mgd::detection {

struct FeaturePyramidNetworkOptions {
  FeaturePyramidNetworkOptions(std::vector<int64_t> in_channels, int64_t out_channels = 256)
      : in_channels_(std::move(in_channels)), out_channels_(out_channels) {}
  /// Channels of each input map, highest resolution first.
  TORCH_ARG(std::vector<int64_t>, in_channels);
  /// Channels of every output level.
  TORCH_ARG(int64_t, out_channels) = 256;
  /// Extra levels above the last input: 0 (none), 1 (P6) or 2 (P6 and P7, RetinaNet).
  TORCH_ARG(int64_t, extra_levels) = 2;
  /// The input of P6: "c5" (the last input map, Detectron2) or "p5" (the last FPN output,
  /// torchvision's retinanet_resnet50_fpn).
  TORCH_ARG(std::string, p6_source) = "c5";
};

class FeaturePyramidNetworkImpl : public torch::nn::Module {
 public:
  explicit FeaturePyramidNetworkImpl(FeaturePyramidNetworkOptions options);
  /// `features`: one B x in_channels[i] x H_i x W_i map per input (the ReLU'd backbone
  /// outputs). Returns the P levels, highest resolution first, then the extra levels.
  std::vector<torch::Tensor> forward(const std::vector<torch::Tensor>& features);
  /// Number of output levels: inputs + extra levels.
  int64_t num_levels() const;

  FeaturePyramidNetworkOptions options;

 private:
  std::vector<torch::nn::Conv2d> inner_, layer_;
  torch::nn::Conv2d p6_{nullptr}, p7_{nullptr};
};
TORCH_MODULE(FeaturePyramidNetwork);

}  // namespace mgd::detection
