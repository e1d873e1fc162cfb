#include "mgd/models/detection/losses.h"

#include <algorithm>
#include <cmath>

#include "mgd/models/detection/box_ops.h"

namespace mgd::detection {
namespace {

torch::Tensor reduce(const torch::Tensor& loss, at::Reduction::Reduction reduction) {
  switch (reduction) {
    case at::Reduction::None:
      return loss;
    case at::Reduction::Mean:
      return loss.mean();
    case at::Reduction::Sum:
      return loss.sum();
    default:
      TORCH_CHECK(false, "Invalid loss reduction: ", static_cast<int>(reduction));
  }
}

// Boxes of an image as n x 4 (an empty tensor of any shape counts as no box).
torch::Tensor gt_boxes(const Target& target, size_t image) {
  TORCH_CHECK(target.boxes.defined(), "Invalid target of image ", image, ": no boxes tensor");
  if (target.boxes.numel() == 0) return target.boxes.reshape({0, 4});
  TORCH_CHECK(target.boxes.dim() == 2 && target.boxes.size(1) == 4,
              "Invalid target boxes of image ", image,
              ": expected n x 4 (x1, y1, x2, y2), got shape ", target.boxes.sizes());
  TORCH_CHECK(target.boxes.is_floating_point(), "Invalid target boxes of image ", image,
              ": expected a floating dtype, got ", target.boxes.scalar_type());
  return target.boxes;
}

const torch::Tensor& anchors_of(const std::vector<torch::Tensor>& anchors, size_t image) {
  return anchors.size() == 1 ? anchors.front() : anchors[image];
}

}  // namespace

torch::Tensor sigmoid_focal_loss(const torch::Tensor& inputs, const torch::Tensor& targets,
                                 double alpha, double gamma, at::Reduction::Reduction reduction) {
  TORCH_CHECK(inputs.sizes() == targets.sizes(), "Invalid focal loss targets: shape ",
              targets.sizes(), " for logits of shape ", inputs.sizes());
  TORCH_CHECK(gamma >= 0, "Invalid focal loss gamma: ", gamma, " (expected >= 0)");
  const auto p = torch::sigmoid(inputs);
  const auto ce =
      torch::binary_cross_entropy_with_logits(inputs, targets, {}, {}, at::Reduction::None);
  const auto p_t = p * targets + (1 - p) * (1 - targets);
  auto loss = ce * torch::pow(1 - p_t, gamma);
  if (alpha >= 0) {
    const auto alpha_t = alpha * targets + (1 - alpha) * (1 - targets);
    loss = alpha_t * loss;
  }
  return reduce(loss, reduction);
}

torch::Tensor smooth_l1_loss(const torch::Tensor& input, const torch::Tensor& target, double beta,
                             at::Reduction::Reduction reduction) {
  TORCH_CHECK(input.sizes() == target.sizes(), "Invalid smooth-L1 target: shape ", target.sizes(),
              " for input of shape ", input.sizes());
  TORCH_CHECK(beta >= 0, "Invalid smooth-L1 beta: ", beta, " (expected >= 0)");
  const auto n = torch::abs(input - target);
  if (beta < 1e-5) return reduce(n, reduction);
  return reduce(torch::where(n < beta, 0.5 * n * n / beta, n - 0.5 * beta), reduction);
}

RetinaNetLossOptions RetinaNetLossOptions::torchvision() {
  return RetinaNetLossOptions().style("torchvision").smooth_l1_beta(0.0);
}

std::vector<torch::Tensor> match_anchors(const std::vector<torch::Tensor>& anchors,
                                         const std::vector<Target>& targets,
                                         const MatcherOptions& matcher) {
  TORCH_CHECK(anchors.size() == 1 || anchors.size() == targets.size(),
              "Invalid anchors: expected one tensor for all images or one per image (",
              targets.size(), "), got ", anchors.size());
  std::vector<torch::Tensor> matched;
  for (size_t i = 0; i < targets.size(); ++i) {
    const auto& a = anchors_of(anchors, i);
    TORCH_CHECK(a.dim() == 2 && a.size(1) == 4, "Invalid anchors of image ", i,
                ": expected A x 4, got shape ", a.sizes());
    const auto boxes = gt_boxes(targets[i], i);
    if (boxes.size(0) == 0) {
      matched.push_back(torch::full({a.size(0)}, kBelowLowThreshold,
                                    torch::dtype(torch::kLong).device(a.device())));
    } else {
      matched.push_back(match(box_iou(boxes.to(a.device()), a), matcher));
    }
  }
  return matched;
}

RetinaNetLosses retinanet_losses(const torch::Tensor& cls_logits,
                                 const torch::Tensor& box_regression,
                                 const std::vector<torch::Tensor>& anchors,
                                 const std::vector<Target>& targets, const MatcherOptions& matcher,
                                 const BoxCoder& box_coder, const RetinaNetLossOptions& options,
                                 double& normalizer) {
  const auto& style = options.style();
  TORCH_CHECK(style == "detectron2" || style == "torchvision", "Invalid RetinaNet loss style '",
              style, "': expected \"detectron2\" or \"torchvision\"");
  TORCH_CHECK(cls_logits.dim() == 3,
              "Invalid classification logits: expected B x A x K, got shape ", cls_logits.sizes());
  const int64_t batch = cls_logits.size(0), num_anchors = cls_logits.size(1);
  const int64_t classes = cls_logits.size(2);
  TORCH_CHECK(box_regression.dim() == 3 && box_regression.size(0) == batch &&
                  box_regression.size(1) == num_anchors && box_regression.size(2) == 4,
              "Invalid box regression: expected ", batch, " x ", num_anchors, " x 4, got shape ",
              box_regression.sizes());
  TORCH_CHECK(static_cast<int64_t>(targets.size()) == batch, "Invalid targets: ", targets.size(),
              " for a batch of ", batch, " images");
  TORCH_CHECK(batch > 0, "Invalid batch: no image");
  for (size_t i = 0; i < anchors.size(); ++i) {
    TORCH_CHECK(anchors[i].dim() == 2 && anchors[i].size(0) == num_anchors,
                "Invalid anchors: expected ", num_anchors,
                " x 4 (as the heads' outputs), got shape ", anchors[i].sizes());
  }
  for (size_t i = 0; i < targets.size(); ++i) {
    const auto& labels = targets[i].labels;
    const int64_t n = gt_boxes(targets[i], i).size(0);
    TORCH_CHECK(labels.defined() && labels.numel() == n && !labels.is_floating_point(),
                "Invalid target labels of image ", i, ": expected ", n,
                " integer class indices (one per box), got ",
                labels.defined() ? labels.sizes() : c10::IntArrayRef{});
    if (n > 0) {
      const int64_t lo = labels.min().item<int64_t>(), hi = labels.max().item<int64_t>();
      TORCH_CHECK(lo >= 0 && hi < classes, "Invalid target labels of image ", i, ": values in [",
                  lo, ", ", hi, "], expected class indices in [0, ", classes, ")");
    }
  }
  if (style == "detectron2") {
    TORCH_CHECK(std::isfinite(normalizer) && normalizer > 0,
                "Invalid loss normalizer: ", normalizer,
                " (expected > 0; start at kInitialLossNormalizer)");
    TORCH_CHECK(options.normalizer_momentum() >= 0 && options.normalizer_momentum() <= 1,
                "Invalid loss normalizer momentum: ", options.normalizer_momentum());
  }

  const auto matched = match_anchors(anchors, targets, matcher);
  std::vector<torch::Tensor> cls_losses, box_losses;
  std::vector<torch::Tensor> valid_logits, valid_targets, fg_deltas, fg_targets;
  int64_t total_foreground = 0;
  // One image at a time through unbind, not indexing: the backward pass then stacks the
  // images' gradients once instead of summing one zero-padded full-batch gradient per image.
  const auto logits_per_image = cls_logits.unbind(0);
  const auto deltas_per_image = box_regression.unbind(0);
  for (int64_t i = 0; i < batch; ++i) {
    const auto& m = matched[i];
    const auto& logits = logits_per_image[i];
    const auto fg = torch::where(m >= 0)[0];
    const int64_t num_fg = fg.size(0);
    total_foreground += num_fg;
    const auto gt = m.index_select(0, fg);
    const auto boxes = gt_boxes(targets[i], i).to(box_regression.device());
    const auto labels = targets[i].labels.reshape({-1}).to(torch::kLong).to(logits.device());

    auto cls_target = torch::zeros_like(logits);
    if (num_fg > 0) cls_target.index_put_({fg, labels.index_select(0, gt)}, 1.0);
    const auto valid = m != kBetweenThresholds;
    const auto logits_v = logits.index({valid});
    const auto target_v = cls_target.index({valid});

    const auto anchors_fg = anchors_of(anchors, i).to(box_regression.device()).index_select(0, fg);
    const auto box_target =
        box_coder.encode(boxes.index_select(0, gt).to(box_regression.scalar_type()),
                         anchors_fg.to(box_regression.scalar_type()));
    const auto deltas = deltas_per_image[i].index_select(0, fg);
    if (style == "torchvision") {
      const double divisor = static_cast<double>(std::max<int64_t>(1, num_fg));
      cls_losses.push_back(sigmoid_focal_loss(logits_v, target_v, options.focal_alpha(),
                                              options.focal_gamma(), at::Reduction::Sum) /
                           divisor);
      box_losses.push_back(
          smooth_l1_loss(deltas, box_target, options.smooth_l1_beta(), at::Reduction::Sum) /
          divisor);
    } else {
      valid_logits.push_back(logits_v);
      valid_targets.push_back(target_v);
      fg_deltas.push_back(deltas);
      fg_targets.push_back(box_target);
    }
  }

  RetinaNetLosses out;
  out.num_foreground = total_foreground;
  if (style == "torchvision") {
    auto cls = cls_losses[0], box = box_losses[0];
    for (int64_t i = 1; i < batch; ++i) {
      cls = cls + cls_losses[i];
      box = box + box_losses[i];
    }
    out.loss_cls = cls / static_cast<double>(batch);
    out.loss_box_reg = box / static_cast<double>(batch);
    return out;
  }
  const double momentum = options.normalizer_momentum();
  normalizer = momentum * normalizer +
               (1 - momentum) * static_cast<double>(std::max<int64_t>(total_foreground, 1));
  out.loss_cls =
      sigmoid_focal_loss(torch::cat(valid_logits), torch::cat(valid_targets), options.focal_alpha(),
                         options.focal_gamma(), at::Reduction::Sum) /
      normalizer;
  out.loss_box_reg = smooth_l1_loss(torch::cat(fg_deltas), torch::cat(fg_targets),
                                    options.smooth_l1_beta(), at::Reduction::Sum) /
                     normalizer;
  return out;
}

}  // namespace mgd::detection
