#include "mgd/models/detection/retinanet.h"

#include <torch/torch.h>

#include <algorithm>
#include <set>
#include <sstream>

#include "mgd/models/layers.h"

namespace mgd::detection {
namespace {

bool starts_with(const std::string& s, const std::string& prefix) {
  return s.compare(0, prefix.size(), prefix) == 0;
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// torchvision's _resnet_fpn_extractor rule: only the last `trainable` of layer4, layer3,
// layer2, layer1, conv1 (and bn1 when all five) keep requires_grad.
void freeze_torchvision(torch::nn::Module& body, int64_t trainable) {
  std::vector<std::string> train = {"layer4", "layer3", "layer2", "layer1", "conv1"};
  train.resize(static_cast<size_t>(trainable));
  if (trainable == 5) train.push_back("bn1");
  for (auto& item : body.named_parameters()) {
    const bool keep = std::any_of(train.begin(), train.end(),
                                  [&](const std::string& p) { return starts_with(item.key(), p); });
    if (!keep) item.value().set_requires_grad(false);
  }
}

}  // namespace

RetinaNetOptions RetinaNetOptions::torchvision() {
  return RetinaNetOptions()
      .num_classes(91)
      .p6_source("p5")
      .trainable_layers(3)
      .anchors(AnchorOptions::torchvision())
      .loss(RetinaNetLossOptions::torchvision())
      .postprocess(PostprocessOptions::torchvision());
}

RetinaNetImpl::RetinaNetImpl(RetinaNetOptions options_)
    : options(std::move(options_)), box_coder_(options.box_coder()) {
  auto config = models::resnet_config(options.backbone());
  const auto stages = static_cast<int64_t>(config.blocks.size());
  TORCH_CHECK(options.norm() == "frozen_batch" || options.norm() == "batch",
              "RetinaNet: unknown norm '", options.norm(), "', expected frozen_batch or batch");
  if (options.trainable_layers()) {
    const int64_t t = *options.trainable_layers();
    TORCH_CHECK(t >= 0 && t <= 5 && stages == 4, "RetinaNet: invalid trainable_layers ", t,
                ", expected 0 to 5 with a four-stage ResNet");
  }
  returned_stages_ = options.returned_stages();
  if (returned_stages_.empty()) {
    for (int64_t s = std::max<int64_t>(1, stages - 2); s <= stages; ++s)
      returned_stages_.push_back(s);
  }
  for (size_t i = 0; i < returned_stages_.size(); ++i) {
    const int64_t s = returned_stages_[i];
    TORCH_CHECK(s >= 1 && s <= stages && (i == 0 || s > returned_stages_[i - 1]),
                "RetinaNet: invalid returned_stages ", c10::IntArrayRef(options.returned_stages()),
                " for ", options.backbone(), ": expected increasing stages in 1..", stages);
  }

  config.norm = options.norm();
  config.group_norm_last_block = options.group_norm_last_block();
  config.freeze_at = options.trainable_layers() ? 0 : options.freeze_at();
  config.classifier = false;
  auto backbone = models::detail::group(*this, "backbone");
  body = backbone->register_module(
      "body", models::ResNet(config, models::ModelOptions().in_channels(options.in_channels())));
  if (options.trainable_layers()) freeze_torchvision(*body, *options.trainable_layers());

  const auto channels = body->feature_channels();
  std::vector<int64_t> fpn_in;
  for (int64_t s : returned_stages_) fpn_in.push_back(channels[s - 1]);
  fpn = backbone->register_module(
      "fpn", FeaturePyramidNetwork(FeaturePyramidNetworkOptions(fpn_in, options.fpn_channels())
                                       .extra_levels(options.extra_levels())
                                       .p6_source(options.p6_source())));
  head = register_module(
      "head", RetinaNetHead(RetinaNetHeadOptions(options.fpn_channels(), options.num_classes())
                                .num_anchors(options.num_anchors())
                                .num_convs(options.head_convs())
                                .prior_probability(options.prior_probability())));
  TORCH_CHECK(anchors_per_location(options.anchors()) == options.num_anchors(),
              "RetinaNet: the anchor options give ", anchors_per_location(options.anchors()),
              " anchors per location, the heads predict ", options.num_anchors());
  TORCH_CHECK(static_cast<int64_t>(options.anchors().sizes().size()) == fpn->num_levels(),
              "RetinaNet: the anchor options have sizes for ", options.anchors().sizes().size(),
              " levels, the FPN has ", fpn->num_levels());
}

DetectorOutput RetinaNetImpl::forward(const torch::Tensor& images) {
  auto features = body->extract(images);
  std::vector<torch::Tensor> fpn_in;
  for (int64_t s : returned_stages_) fpn_in.push_back(features.post_relu[s - 1]);
  auto levels = fpn(fpn_in);
  DetectorOutput out;
  out.taps = std::move(features.pre_relu);
  for (const auto& p : levels) {
    out.taps.push_back(p);
    out.feature_sizes.push_back({p.size(2), p.size(3)});
  }
  std::tie(out.cls_logits, out.bbox_regression) = head(levels);
  out.image_size = {images.size(2), images.size(3)};
  return out;
}

Features RetinaNetImpl::extract(const torch::Tensor& images, bool levels) {
  return with_levels(body->extract(images), levels);
}

Features RetinaNetImpl::extract_frozen(const torch::Tensor& images, bool levels) {
  auto features = body->extract_frozen(images);
  torch::NoGradGuard no_grad;
  return with_levels(std::move(features), levels);
}

Features RetinaNetImpl::with_levels(Features features, bool levels) {
  if (!levels) {
    features.pre_relu.resize(features.pre_relu.size() + static_cast<size_t>(fpn->num_levels()));
    features.post_relu.resize(features.post_relu.size() + static_cast<size_t>(fpn->num_levels()));
    return features;
  }
  std::vector<torch::Tensor> fpn_in;
  for (int64_t s : returned_stages_) fpn_in.push_back(features.post_relu[s - 1]);
  for (auto& p : fpn(fpn_in)) {
    features.pre_relu.push_back(p);
    features.post_relu.push_back(p);
  }
  return features;
}

std::vector<torch::Tensor> RetinaNetImpl::anchors(const DetectorOutput& out) const {
  TORCH_CHECK(!out.bbox_regression.empty(), "RetinaNet::anchors: an empty DetectorOutput");
  return make_anchors(options.anchors(), out.feature_sizes, out.image_size,
                      torch::TensorOptions()
                          .dtype(out.bbox_regression[0].scalar_type())
                          .device(out.bbox_regression[0].device()));
}

RetinaNetLosses RetinaNetImpl::losses(const DetectorOutput& out, const std::vector<Target>& targets,
                                      double& normalizer) const {
  TORCH_CHECK(
      !out.cls_logits.empty() && static_cast<int64_t>(targets.size()) == out.cls_logits[0].size(0),
      "RetinaNet::losses: expected one target per image (",
      out.cls_logits.empty() ? 0 : out.cls_logits[0].size(0), "), got ", targets.size());
  const auto all_anchors = torch::cat(anchors(out), 0);
  return retinanet_losses(torch::cat(out.cls_logits, 1), torch::cat(out.bbox_regression, 1),
                          {all_anchors}, targets, options.matcher(), box_coder_, options.loss(),
                          normalizer);
}

std::vector<Detections> RetinaNetImpl::detect(
    const DetectorOutput& out, const std::vector<std::array<int64_t, 2>>& image_sizes) const {
  TORCH_CHECK(!out.cls_logits.empty() &&
                  static_cast<int64_t>(image_sizes.size()) == out.cls_logits[0].size(0),
              "RetinaNet::detect: expected one image size per image (",
              out.cls_logits.empty() ? 0 : out.cls_logits[0].size(0), "), got ",
              image_sizes.size());
  return postprocess(out.cls_logits, out.bbox_regression, anchors(out), image_sizes, box_coder_,
                     options.postprocess());
}

int64_t RetinaNetImpl::num_stage_taps() const {
  return static_cast<int64_t>(body->config().blocks.size());
}

std::vector<int64_t> RetinaNetImpl::tap_channels() const {
  std::vector<int64_t> channels;
  for (const auto& [gamma, beta] : body.ptr()->feature_affines()) channels.push_back(gamma.numel());
  channels.insert(channels.end(), fpn->num_levels(), options.fpn_channels());
  return channels;
}

std::vector<NormAffine> RetinaNetImpl::tap_affines() const {
  auto affines = body.ptr()->feature_affines();
  affines.resize(affines.size() + fpn->num_levels());
  return affines;
}

void RetinaNetImpl::load_backbone_from_classifier(const serialize::StateDict& state) {
  const auto own = serialize::module_state_dict(*body);
  std::vector<std::string> missing, unexpected;
  serialize::StateDict selected;
  for (const auto& item : own) {
    if (const auto* value = state.find(item.key())) {
      selected.insert(item.key(), *value);
    } else if (!ends_with(item.key(), "num_batches_tracked")) {  // loader sets it to 0
      missing.push_back(item.key());
    }
  }
  for (const auto& item : state) {
    const auto& key = item.key();
    if (own.contains(key) || starts_with(key, "fc.")) continue;
    // Statistics and counters a FrozenBatchNorm2d or GroupNorm does not keep.
    const bool norm_state = ends_with(key, ".num_batches_tracked") ||
                            ends_with(key, ".running_mean") || ends_with(key, ".running_var");
    if (!norm_state || !own.contains(key.substr(0, key.rfind('.')) + ".weight")) {
      unexpected.push_back(key);
    }
  }
  if (!missing.empty() || !unexpected.empty()) {
    std::ostringstream msg;
    msg << "load_backbone_from_classifier: the state_dict is not a " << options.backbone()
        << " classifier's";
    if (!missing.empty()) {
      msg << "; missing:";
      for (const auto& k : missing) msg << " " << k;
    }
    if (!unexpected.empty()) {
      msg << "; not in the backbone:";
      for (const auto& k : unexpected) msg << " " << k;
    }
    TORCH_CHECK(false, msg.str());
  }
  serialize::load_state_dict_into(*body, selected, /*strict=*/true);
}

namespace {
const std::vector<std::string>& backbones() {
  static const std::vector<std::string> kBackbones = {"resnet10", "resnet101", "resnet152",  "resnet18",
                                                      "resnet20",  "resnet32x4", "resnet34",
                                                      "resnet50",  "resnet56",   "resnet8x4"};
  return kBackbones;
}
}  // namespace

std::vector<std::string> retinanet_names() {
  std::vector<std::string> names;
  for (const auto& b : backbones()) names.push_back("retinanet_" + b + "_fpn");
  std::sort(names.begin(), names.end());
  return names;
}

RetinaNet make_retinanet(const std::string& name, RetinaNetOptions options) {
  for (const auto& b : backbones()) {
    if (name == "retinanet_" + b + "_fpn") return RetinaNet(options.backbone(b));
  }
  std::ostringstream known;
  for (const auto& n : retinanet_names()) known << (known.tellp() > 0 ? ", " : "") << n;
  TORCH_CHECK(false, "Unknown detector '", name, "'; available: ", known.str());
}

}  // namespace mgd::detection
