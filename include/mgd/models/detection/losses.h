// RetinaNet's training losses (Lin et al., "Focal Loss for Dense Object Detection", ICCV
// 2017): the focal loss on every non-ignored anchor's K sigmoid logits, and a box
// regression loss on the foreground anchors' deltas, both normalized by a foreground count.
//
//   focal(p, y) = -alpha_t (1 - p_t)^gamma log(p_t),  p_t = y ? p : 1 - p,
//                                                      alpha_t = y ? alpha : 1 - alpha
//   smooth_l1(x) = |x| < beta ? 0.5 x^2 / beta : |x| - 0.5 beta   (beta = 0: |x|)
//
// Anchors are labelled by match() on box_iou(ground truth, anchors): foreground anchors get
// a one-hot target of their box's class and regress box_coder.encode(box, anchor);
// background anchors get all-zero targets; ignored anchors (kBetweenThresholds) take no
// part. Two normalizations, chosen by RetinaNetLossOptions::style:
//
//   "detectron2" (mgd's default; Detectron2's RetinaNet.losses): both losses summed over the
//       batch and divided by an exponential moving average of the batch's foreground count,
//       normalizer <- momentum * normalizer + (1 - momentum) * max(foreground, 1),
//       starting from kInitialLossNormalizer; smooth-L1 with beta 0.1;
//   "torchvision" (RetinaNet.compute_loss, torchvision 0.14): per image, each loss divided
//       by max(1, that image's foreground count), then the mean over images; L1 box loss
//       (beta 0: RetinaNetLossOptions::torchvision()).
//
// The normalizer is training state (Detectron2 keeps it in the model): the caller owns it,
// passes it to every step and saves it with the checkpoint.
#pragma once

#include <ATen/core/Reduction.h>
#include <torch/arg.h>
#include <torch/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "mgd/models/detection/box_coder.h"
#include "mgd/models/detection/matcher.h"

namespace mgd::detection {

/// Detectron2's starting value of the loss normalizer ("any reasonable #fg that's not too
/// small").
constexpr double kInitialLossNormalizer = 100.0;

/// Ground truth of one image: `boxes` n x 4 (xyxy, pixels of the network's input, floating),
/// `labels` n int64 class indices in [0, K). n may be 0.
struct Target {
  torch::Tensor boxes;
  torch::Tensor labels;
};

/// Sigmoid focal loss of logits `inputs` against `targets` (same shape, values in [0, 1]),
/// elementwise or reduced; alpha < 0 leaves out the alpha_t weight. Equal to
/// torchvision.ops.sigmoid_focal_loss (same expression, hence the same gradient).
torch::Tensor sigmoid_focal_loss(const torch::Tensor& inputs, const torch::Tensor& targets,
                                 double alpha = 0.25, double gamma = 2.0,
                                 at::Reduction::Reduction reduction = at::Reduction::None);

/// Smooth-L1 (Huber divided by beta) of input - target, elementwise or reduced; beta < 1e-5
/// is the L1 loss (as Detectron2's smooth_l1_loss).
torch::Tensor smooth_l1_loss(const torch::Tensor& input, const torch::Tensor& target,
                             double beta = 0.1,
                             at::Reduction::Reduction reduction = at::Reduction::None);

struct RetinaNetLossOptions {
  /// torchvision's RetinaNet: style "torchvision", L1 box loss.
  static RetinaNetLossOptions torchvision();

  /// "detectron2" or "torchvision": the normalization (see the file comment).
  TORCH_ARG(std::string, style) = "detectron2";
  /// Focal loss alpha (weight of the positive term).
  TORCH_ARG(double, focal_alpha) = 0.25;
  /// Focal loss gamma (down-weighting of easy examples).
  TORCH_ARG(double, focal_gamma) = 2.0;
  /// Box loss: smooth-L1 with this beta (Detectron2's RetinaNet: 0.1); 0 is the L1 loss.
  TORCH_ARG(double, smooth_l1_beta) = 0.1;
  /// "detectron2" style: momentum of the foreground-count moving average.
  TORCH_ARG(double, normalizer_momentum) = 0.9;
};

struct RetinaNetLosses {
  /// Classification (focal) loss, a 0-dim tensor.
  torch::Tensor loss_cls;
  /// Box regression loss, a 0-dim tensor.
  torch::Tensor loss_box_reg;
  /// Foreground anchors in the batch (for logging; Detectron2 logs it per image).
  int64_t num_foreground = 0;
};

/// Anchor labels of every image (match() on box_iou(boxes, anchors)); an image without boxes
/// is all kBelowLowThreshold. `anchors`: one A x 4 tensor per image, or one for all.
std::vector<torch::Tensor> match_anchors(const std::vector<torch::Tensor>& anchors,
                                         const std::vector<Target>& targets,
                                         const MatcherOptions& matcher);

/// The batch's RetinaNet losses. `cls_logits` B x A x K and `box_regression` B x A x 4 are
/// the heads' outputs over all levels (concatenated in the anchors' order); `anchors` one
/// A x 4 tensor per image or one shared by all; `targets` one per image. `normalizer` is
/// read and updated by the "detectron2" style (start it at kInitialLossNormalizer) and left
/// alone by the "torchvision" style. Gradients flow into the logits and the regression.
RetinaNetLosses retinanet_losses(const torch::Tensor& cls_logits,
                                 const torch::Tensor& box_regression,
                                 const std::vector<torch::Tensor>& anchors,
                                 const std::vector<Target>& targets, const MatcherOptions& matcher,
                                 const BoxCoder& box_coder, const RetinaNetLossOptions& options,
                                 double& normalizer);

}  // namespace mgd::detection
