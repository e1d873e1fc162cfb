// RetinaNet-FPN over the zoo's ResNets (spec A1), with MGD's feature taps (spec A2).
//
// The network part of RetinaNet: a ResNet body (no classifier), an FPN on its stages C3-C5
// with extra levels P6/P7, and the shared classification and regression heads. One forward
// pass yields everything training and distillation need: the head outputs per level and the
// nine distillation maps C2-C5 (each stage's output before its final ReLU; the FPN receives
// the ReLU'd maps) and P3-P7. Anchors, matching, losses and post-processing live apart
// (mgd/models/detection/{anchors,matcher,losses,postprocess}.h); losses() and detect() apply
// them to a forward pass with the options kept here.
//
// Module and parameter names equal torchvision 0.14's RetinaNet (backbone.body.*,
// backbone.fpn.*, head.*), so weights move both ways with serialize::load_state_dict_into()
// and save_state_dict(): with norm "frozen_batch" and p6_source "p5" the state_dict equals
// that of torchvision's retinanet_resnet50_fpn with a pretrained backbone (FrozenBatchNorm2d)
// key for key, with norm "batch" that of retinanet_resnet50_fpn(weights_backbone=None).
//
// Defaults follow Detectron2 (P6 from C5, FREEZE_AT 2, FrozenBatchNorm, 80 classes);
// torchvision's variants are options: p6_source("p5"), trainable_layers(k). The MGD student
// recipe (the reference's R18): freeze_at(1).group_norm_last_block(true).
//
//   auto net = mgd::detection::make_retinanet("retinanet_resnet18_fpn",
//                                             RetinaNetOptions().num_classes(80));
//   net->load_backbone_from_classifier(mgd::serialize::load_state_dict("resnet18.pth"));
//   auto out = net->forward(images);  // images: B x 3 x H x W, normalized and padded
//   double normalizer = mgd::detection::kInitialLossNormalizer;  // training state
//   auto losses = net->losses(out, targets, normalizer);
//   auto detections = net->detect(out, image_sizes);  // eval mode
#pragma once

#include <c10/util/Optional.h>
#include <torch/arg.h>
#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>
#include <torch/types.h>

#include <array>
#include <string>
#include <utility>
#include <vector>

#include "mgd/models/detection/anchors.h"
#include "mgd/models/detection/box_coder.h"
#include "mgd/models/detection/fpn.h"
#include "mgd/models/detection/losses.h"
#include "mgd/models/detection/matcher.h"
#include "mgd/models/detection/postprocess.h"
#include "mgd/models/detection/retinanet_head.h"
#include "mgd/models/resnet.h"
#include "mgd/serialize/state_dict.h"

namespace mgd::detection {

struct RetinaNetOptions {
  /// torchvision 0.14's retinanet_resnet50_fpn with a pretrained backbone: P6 from P5,
  /// trainable_layers 3, 91 classes, its anchors, L1 box loss and per-image normalization,
  /// 300 detections per image.
  static RetinaNetOptions torchvision();

  /// The zoo ResNet of the body: resnet18, resnet34, resnet50, resnet101, resnet152 (or the
  /// CIFAR-size resnet20, resnet56, resnet8x4, resnet32x4 for small experiments).
  TORCH_ARG(std::string, backbone) = "resnet50";
  /// Object classes K (COCO: 80, Detectron2's contiguous ids; torchvision's COCO models use 91).
  TORCH_ARG(int64_t, num_classes) = 80;
  /// Input image channels.
  TORCH_ARG(int64_t, in_channels) = 3;
  /// Channels of every FPN level and of the head towers.
  TORCH_ARG(int64_t, fpn_channels) = 256;
  /// The body's stages (1-based, layer<i>) that feed the FPN, increasing; empty: the last
  /// three (layer2-layer4 = C3-C5 for ImageNet ResNets, as both reference codebases).
  TORCH_ARG(std::vector<int64_t>, returned_stages) = {};
  /// Extra FPN levels above the last returned stage (2: P6, P7).
  TORCH_ARG(int64_t, extra_levels) = 2;
  /// The input of P6: "c5" (Detectron2) or "p5" (torchvision's retinanet_resnet50_fpn).
  TORCH_ARG(std::string, p6_source) = "c5";
  /// Anchors per location (3 sizes x 3 aspect ratios).
  TORCH_ARG(int64_t, num_anchors) = 9;
  /// 3x3 convs in each head tower.
  TORCH_ARG(int64_t, head_convs) = 4;
  /// Initial foreground probability of every anchor.
  TORCH_ARG(double, prior_probability) = 0.01;
  /// The body's norms: "frozen_batch" (FrozenBatchNorm2d, both references' default for a
  /// backbone initialized from ImageNet weights) or "batch".
  TORCH_ARG(std::string, norm) = "frozen_batch";
  /// Trainable GroupNorm(32) for the norms of every stage's last block (the MGD student).
  TORCH_ARG(bool, group_norm_last_block) = false;
  /// Detectron2's FREEZE_AT: 0 nothing, 1 the stem, k >= 2 the stem and layer1..layer{k-1}
  /// (Detectron2's default 2; the MGD reference's student uses 1).
  TORCH_ARG(int64_t, freeze_at) = 2;
  /// torchvision's trainable_backbone_layers (0-5): when set, replaces freeze_at with
  /// torchvision's rule (the last k of layer4, layer3, layer2, layer1, conv1 stay trainable;
  /// bn1 only when k = 5).
  TORCH_ARG(c10::optional<int64_t>, trainable_layers) = c10::nullopt;

  /// Anchors per level (their count per location must equal num_anchors, their levels the
  /// FPN's).
  TORCH_ARG(AnchorOptions, anchors) = AnchorOptions();
  /// Anchor labelling for the losses (IoU 0.5 / 0.4, low-quality matches).
  TORCH_ARG(MatcherOptions, matcher) = MatcherOptions();
  /// The box parametrization of bbox_regression.
  TORCH_ARG(BoxCoderOptions, box_coder) = BoxCoderOptions();
  /// Focal and box losses and their normalization.
  TORCH_ARG(RetinaNetLossOptions, loss) = RetinaNetLossOptions();
  /// Inference: score threshold, top-k per level, NMS, detections per image.
  TORCH_ARG(PostprocessOptions, postprocess) = PostprocessOptions();
};

/// Everything one forward pass of a RetinaNet produces.
struct DetectorOutput {
  /// Distillation maps: every stage's output before its final ReLU (C2-C5 for ImageNet
  /// ResNets), then the FPN levels (P3-P7). See RetinaNetImpl::tap_channels().
  std::vector<torch::Tensor> taps;
  /// Per FPN level: B x (H * W * A) x K logits and B x (H * W * A) x 4 box deltas.
  std::vector<torch::Tensor> cls_logits, bbox_regression;
  /// Per FPN level: its (H, W).
  std::vector<std::array<int64_t, 2>> feature_sizes;
  /// (H, W) of the input batch (padded), which the anchors of the "torchvision" style need.
  std::array<int64_t, 2> image_size{0, 0};
};

/// A distillable network (FeatureNetImpl) whose positions are the taps: extract() runs the
/// body and the FPN (not the heads) and has no logits; feature_affines() gives the stage taps'
/// norms and none for the FPN levels (distill those with a student-only criterion, or ignore
/// them: MGD's detection recipe ignores P3-P7).
class RetinaNetImpl : public FeatureNetImpl {
 public:
  explicit RetinaNetImpl(RetinaNetOptions options = {});

  /// One pass over a batch of B x C x H x W images (normalized, padded to a common size).
  DetectorOutput forward(const torch::Tensor& images);

  /// The taps without the heads: pre_relu = the taps, post_relu = the ReLU'd stage maps (what
  /// the FPN receives) and the FPN levels as they are; logits undefined.
  Features extract(const torch::Tensor& images) override { return extract(images, true); }
  /// With levels false, the body alone: the FPN's positions are undefined tensors (what a
  /// distiller that ignores them needs; a frozen teacher's FPN is 15-20% of its forward).
  Features extract(const torch::Tensor& images, bool levels);
  /// As extract(), the body as a frozen program where it has one (models/frozen.h) and the
  /// FPN without a graph: a frozen teacher's forward.
  Features extract_frozen(const torch::Tensor& images) override {
    return extract_frozen(images, true);
  }
  Features extract_frozen(const torch::Tensor& images, bool levels);
  std::vector<NormAffine> feature_affines() override { return tap_affines(); }
  std::vector<int64_t> feature_channels() override { return tap_channels(); }

  /// Channels of each tap: the body's stages, then fpn_channels per FPN level.
  std::vector<int64_t> tap_channels() const;
  /// (gamma, beta) of the norm that produces each stage's pre-ReLU tap (a frozen norm's
  /// buffers, a BatchNorm's or GroupNorm's parameters), then undefined tensors for the FPN
  /// levels, which have no norm.
  std::vector<NormAffine> tap_affines() const;
  /// Number of stage taps (the first taps) and of FPN levels (the rest).
  int64_t num_stage_taps() const;
  int64_t num_levels() const { return fpn->num_levels(); }

  /// The anchors of `out`, one (H_l * W_l * A) x 4 tensor per level, on the outputs' device.
  std::vector<torch::Tensor> anchors(const DetectorOutput& out) const;
  /// The training losses of a pass over a batch with ground truth `targets` (one per image,
  /// boxes in the input's pixels). `normalizer`: the "detectron2" style's moving foreground
  /// count, training state the caller keeps (start: kInitialLossNormalizer).
  RetinaNetLosses losses(const DetectorOutput& out, const std::vector<Target>& targets,
                         double& normalizer) const;
  /// Detections per image; `image_sizes[b]` is the (H, W) of image b's content within the
  /// padded batch (boxes are clipped to it).
  std::vector<Detections> detect(const DetectorOutput& out,
                                 const std::vector<std::array<int64_t, 2>>& image_sizes) const;

  /// Initializes backbone.body from the state_dict of a classifier of the same ResNet (zoo or
  /// torchvision names: conv1, bn1, layer*, fc). fc.* is ignored, as are statistics and
  /// num_batches_tracked that the body's norms do not keep (FrozenBatchNorm2d has no counter,
  /// GroupNorm no statistics); a GroupNorm takes the BatchNorm's gamma and beta. A body entry
  /// missing from `state`, an entry that is not the body's, or a shape mismatch is a c10::Error
  /// naming every such key; nothing is copied then. requires_grad flags are kept.
  void load_backbone_from_classifier(const serialize::StateDict& state);

  RetinaNetOptions options;
  models::ResNet body{nullptr};
  FeaturePyramidNetwork fpn{nullptr};
  RetinaNetHead head{nullptr};

 private:
  // The FPN levels appended to the body's features (or undefined placeholders).
  Features with_levels(Features features, bool levels);
  std::vector<int64_t> returned_stages_;
  BoxCoder box_coder_;
};
TORCH_MODULE(RetinaNet);

/// A RetinaNet by name: retinanet_resnet18_fpn, retinanet_resnet34_fpn, retinanet_resnet50_fpn,
/// retinanet_resnet101_fpn, retinanet_resnet152_fpn (ImageNet ResNets) and
/// retinanet_resnet20_fpn, retinanet_resnet56_fpn, retinanet_resnet8x4_fpn,
/// retinanet_resnet32x4_fpn (CIFAR-size). The name sets options.backbone; an unknown name is a
/// c10::Error listing the known ones.
RetinaNet make_retinanet(const std::string& name, RetinaNetOptions options = {});

/// The names make_retinanet() accepts, sorted.
std::vector<std::string> retinanet_names();

}  // namespace mgd::detection
