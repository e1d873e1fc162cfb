#!/usr/bin/python3
"""torchvision side of the RetinaNet tests (tests/models/detection/retinanet_test.cpp).

The model is torchvision 0.14's RetinaNet as retinanet_resnet50_fpn builds it, on ResNet
BACKBONE (resnet18 or resnet50): resnet(norm_layer) -> _resnet_fpn_extractor(backbone,
TRAINABLE, returned_layers=[2, 3, 4], extra_blocks=LastLevelP6P7(P6_IN, 256)) ->
RetinaNet(backbone, CLASSES), with NORM "frozen_batch" (FrozenBatchNorm2d, the builder's
choice with a pretrained backbone) or "batch" (BatchNorm2d, its choice without), and P6_IN =
256 for P6 from P5 (the builder's LastLevelP6P7(256, 256)) or C5's channels for P6 from C5.

  keys BACKBONE NORM P6 CLASSES TRAINABLE
      'name shape requires_grad' per state_dict entry (requires_grad '-' for buffers).
  export BACKBONE P6 CLASSES DIR
      frozen norms with random statistics and affines, random head biases; writes
      DIR/weights.pth (its state_dict) and DIR/expected.pth {"input", "taps": C2..C5 before
      their final ReLU then P3..P7, "cls_logits", "bbox_regression": per level}.
  task BACKBONE CLASSES DIR
      as export with P6 from P5, plus torchvision's own losses (compute_loss) and detections
      (postprocess_detections) for fixed targets: DIR/weights.pth and DIR/task.pth {"input",
      "image_sizes", "boxes", "labels" (per image), "loss_cls", "loss_box_reg", "detections":
      per image [boxes, scores, labels]}.
  check BACKBONE P6 CLASSES FILE
      loads the state_dict FILE (written by mgd) strictly and compares the FPN levels and head
      outputs on FILE.io's {"input", "taps", "cls_logits", "bbox_regression"}; exit 1 on a
      relative difference above 1e-4.
"""
import sys

import torch
import torchvision
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor
from torchvision.models.detection.retinanet import RetinaNet
from torchvision.ops.feature_pyramid_network import LastLevelP6P7
from torchvision.ops.misc import FrozenBatchNorm2d

C5_CHANNELS = {"resnet18": 512, "resnet34": 512, "resnet50": 2048, "resnet101": 2048}


def build(backbone, norm, p6, classes, trainable=5):
    norm_layer = {"frozen_batch": FrozenBatchNorm2d, "batch": torch.nn.BatchNorm2d}[norm]
    body = getattr(torchvision.models, backbone)(weights=None, norm_layer=norm_layer)
    p6_in = {"p5": 256, "c5": C5_CHANNELS[backbone]}[p6]
    fpn = _resnet_fpn_extractor(body, trainable, returned_layers=[2, 3, 4],
                                extra_blocks=LastLevelP6P7(p6_in, 256))
    return RetinaNet(fpn, classes)


def keys(backbone, norm, p6, classes, trainable):
    torch.manual_seed(0)
    model = build(backbone, norm, p6, classes, trainable)
    if backbone == "resnet50" and norm == "batch" and p6 == "p5" and trainable == 5:
        # The builder itself, to make sure build() replicates it.
        ref = torchvision.models.detection.retinanet_resnet50_fpn(
            weights=None, weights_backbone=None, num_classes=classes)
        a = {k: v.shape for k, v in model.state_dict().items()}
        b = {k: v.shape for k, v in ref.state_dict().items()}
        assert a == b, "build() differs from retinanet_resnet50_fpn"
    params = dict(model.named_parameters())
    for name, value in model.state_dict().items():
        grad = str(int(params[name].requires_grad)) if name in params else "-"
        print(name, "x".join(str(d) for d in value.shape), grad)


def forward(model, x):
    """(taps, cls_logits per level, bbox_regression per level) of one eval pass."""
    pre = {}
    hooks = []
    for i in range(1, 5):
        block = getattr(model.backbone.body, f"layer{i}")[-1]
        # The block's last relu call receives the pre-ReLU stage output (before the call: the
        # ReLU is in place).
        hooks.append(block.relu.register_forward_pre_hook(
            lambda m, inp, i=i: pre.__setitem__(i, inp[0].detach().clone())))
    features = list(model.backbone(x).values())
    for h in hooks:
        h.remove()
    head = model.head(features)
    sizes = [f.shape[-2] * f.shape[-1] * model.anchor_generator.num_anchors_per_location()[0]
             for f in features]
    cls = list(head["cls_logits"].split(sizes, dim=1))
    box = list(head["bbox_regression"].split(sizes, dim=1))
    return [pre[i] for i in range(1, 5)] + features, cls, box


def randomized(backbone, p6, classes):
    torch.manual_seed(0)
    model = build(backbone, "frozen_batch", p6, classes)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, FrozenBatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
        for name, p in model.head.named_parameters():
            if name.endswith("bias"):
                p.uniform_(-0.1, 0.1)
    model.eval()
    return model


def export(backbone, p6, classes, out):
    model = randomized(backbone, p6, classes)
    x = torch.randn(2, 3, 80, 96)
    with torch.no_grad():
        taps, cls, box = forward(model, x)
    torch.save(model.state_dict(), f"{out}/weights.pth")
    torch.save({"input": x, "taps": taps, "cls_logits": cls, "bbox_regression": box},
               f"{out}/expected.pth")


def task(backbone, classes, out):
    model = randomized(backbone, "p5", classes)
    x = torch.randn(2, 3, 80, 96)
    image_sizes = [(80, 96), (70, 90)]
    targets = [
        {"boxes": torch.tensor([[4.0, 6.0, 40.0, 50.0], [30.0, 20.0, 90.0, 78.0],
                                [60.0, 5.0, 70.0, 15.0]]),
         "labels": torch.tensor([1, classes - 1, 0])},
        {"boxes": torch.tensor([[10.0, 10.0, 60.0, 40.0]]), "labels": torch.tensor([2])},
    ]
    with torch.no_grad():
        features = list(model.backbone(x).values())
        head = model.head(features)
        anchors = model.anchor_generator(ImageList(x, image_sizes), features)
        losses = model.compute_loss(targets, head, anchors)
        per_level = [f.shape[-2] * f.shape[-1] * 9 for f in features]
        split = {k: list(v.split(per_level, dim=1)) for k, v in head.items()}
        split_anchors = [list(a.split(per_level)) for a in anchors]
        detections = model.postprocess_detections(split, split_anchors, image_sizes)
    torch.save(model.state_dict(), f"{out}/weights.pth")
    torch.save({"input": x, "image_sizes": [list(s) for s in image_sizes],
                "boxes": [t["boxes"] for t in targets], "labels": [t["labels"] for t in targets],
                "loss_cls": losses["classification"], "loss_box_reg": losses["bbox_regression"],
                "detections": [[d["boxes"], d["scores"], d["labels"]] for d in detections]},
               f"{out}/task.pth")


def rel(a, b):
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-12)).item()


def check(backbone, p6, classes, path):
    model = build(backbone, "frozen_batch", p6, classes)
    model.load_state_dict(torch.load(path))  # strict
    model.eval()
    io = torch.load(path + ".io")
    with torch.no_grad():
        taps, cls, box = forward(model, io["input"])
    worst = 0.0
    for name, ours, theirs in (("taps", taps, io["taps"]), ("cls_logits", cls, io["cls_logits"]),
                               ("bbox_regression", box, io["bbox_regression"])):
        assert len(ours) == len(theirs), f"{name}: {len(ours)} levels vs {len(theirs)}"
        for a, b in zip(ours, theirs):
            assert a.shape == b.shape, f"{name}: {a.shape} vs {b.shape}"
            worst = max(worst, rel(a, b))
    print(f"{backbone} {p6}: max relative |torchvision - mgd| = {worst:.3g}")
    sys.exit(0 if worst < 1e-4 else 1)


if __name__ == "__main__":
    mode, args = sys.argv[1], sys.argv[2:]
    if mode == "keys":
        keys(args[0], args[1], args[2], int(args[3]), int(args[4]))
    elif mode == "export":
        export(args[0], args[1], int(args[2]), args[3])
    elif mode == "task":
        task(args[0], int(args[1]), args[2])
    elif mode == "check":
        check(args[0], args[1], int(args[2]), args[3])
    else:
        sys.exit(f"unknown mode {mode}")
