#!/usr/bin/python3
"""torchvision side of the detection building-block tests (tests/models/detection/).

  detection_oracle.py OUT   writes OUT (torch.save, a flat {name: tensor} dict): random
                            inputs with a fixed seed and what torchvision 0.14 computes from
                            them -- box_iou, nms / batched_nms, BoxCoder, AnchorGenerator,
                            Matcher, sigmoid_focal_loss (value and gradient), RetinaNet's
                            compute_loss and postprocess_detections, and Detectron2's
                            RetinaNet loss written out from its definition.

Names are "<case>.<what>"; lists are spread over "<name>.<i>".
"""
import math
import sys
import types

import torch
import torch.nn.functional as F
import torchvision
from torchvision.models.detection import _utils as det_utils
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.retinanet import RetinaNet, RetinaNetHead, _default_anchorgen
from torchvision.ops import batched_nms, box_iou, clip_boxes_to_image, nms, sigmoid_focal_loss
from torchvision.ops import boxes as box_ops

out = {}


def put(name, value):
    if isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            put(f"{name}.{i}", v)
        return
    if not isinstance(value, torch.Tensor):
        value = torch.tensor(value)
    out[name] = value.detach().clone().contiguous()


def random_boxes(n, scale=100.0, min_size=1.0, dtype=torch.float32):
    xy = torch.rand(n, 2, dtype=torch.float64) * scale
    wh = torch.rand(n, 2, dtype=torch.float64) * scale / 2 + min_size
    return torch.cat([xy, xy + wh], 1).to(dtype)


def cases_box_ops():
    a = random_boxes(20)
    b = random_boxes(30)
    b[3] = a[5]  # identical box
    b[4] = torch.tensor([10.0, 10.0, 10.0, 20.0])  # degenerate (zero width)
    put("iou.a", a)
    put("iou.b", b)
    put("iou.out", box_iou(a, b))
    put("iou.area_a", box_ops.box_area(a))
    c = random_boxes(25, scale=300.0) - 100.0
    put("clip.boxes", c)
    put("clip.out", clip_boxes_to_image(c, (120, 90)))


def cases_nms():
    # Random boxes with distinct scores, several thresholds; dtype float and double.
    for name, n, thr, dtype in [("nms.rand", 500, 0.5, torch.float32),
                                ("nms.low", 400, 0.3, torch.float32),
                                ("nms.double", 300, 0.6, torch.float64),
                                ("nms.big", 3000, 0.7, torch.float32)]:
        boxes = random_boxes(n, dtype=dtype)
        scores = torch.rand(n, dtype=dtype)
        put(name + ".boxes", boxes)
        put(name + ".scores", scores)
        put(name + ".thr", torch.tensor(thr, dtype=torch.float64))
        put(name + ".keep", nms(boxes, scores, thr))
    # Exact ties in scores and duplicated boxes.
    boxes = random_boxes(300, scale=40.0)
    boxes[100:150] = boxes[0:50]
    scores = torch.randint(0, 5, (300,)).float() / 4
    put("nms.ties.boxes", boxes)
    put("nms.ties.scores", scores)
    put("nms.ties.thr", torch.tensor(0.5, dtype=torch.float64))
    put("nms.ties.keep", nms(boxes, scores, 0.5))
    # batched: up to 1000 boxes (torchvision's coordinate trick) and above (per class).
    for name, n, classes in [("bnms.small", 400, 5), ("bnms.big", 3000, 12)]:
        boxes = random_boxes(n, scale=60.0)
        boxes[n // 2:n // 2 + 40] = boxes[0:40]
        scores = torch.randint(0, 20, (n,)).float() / 19
        idxs = torch.randint(0, classes, (n,))
        put(name + ".boxes", boxes)
        put(name + ".scores", scores)
        put(name + ".idxs", idxs)
        put(name + ".thr", torch.tensor(0.5, dtype=torch.float64))
        put(name + ".keep", batched_nms(boxes, scores, idxs, 0.5))


def cases_box_coder():
    anchors = random_boxes(200)
    targets = random_boxes(200)
    deltas = torch.randn(200, 4)
    deltas[:10, 2:] = 8.0  # beyond the clamp log(1000/16)
    put("coder.anchors", anchors)
    put("coder.targets", targets)
    put("coder.deltas", deltas)
    coder = det_utils.BoxCoder((1.0, 1.0, 1.0, 1.0))
    put("coder.encoded", coder.encode_single(targets, anchors))
    put("coder.decoded", coder.decode_single(deltas, anchors))
    weighted = det_utils.BoxCoder((10.0, 10.0, 5.0, 5.0))
    put("coder.w.encoded", weighted.encode_single(targets, anchors))
    deltas8 = torch.randn(200, 8)
    put("coder.deltas8", deltas8)
    put("coder.w.decoded8", weighted.decode_single(deltas8, anchors))


def tv_anchors(image_size, feature_sizes, batch=1):
    gen = _default_anchorgen()
    images = ImageList(torch.zeros(batch, 3, *image_size), [tuple(image_size)] * batch)
    feats = [torch.zeros(batch, 8, h, w) for h, w in feature_sizes]
    per_level = gen.grid_anchors(
        [f.shape[-2:] for f in feats],
        [[torch.tensor(image_size[0] // h), torch.tensor(image_size[1] // w)]
         for h, w in feature_sizes])
    whole = gen(images, feats)[0]
    assert torch.equal(torch.cat(per_level), whole)
    return per_level


def cases_anchors():
    for name, image, feats in [
            ("anchors.a", (800, 1216), [(100, 152), (50, 76), (25, 38), (13, 19), (7, 10)]),
            ("anchors.b", (513, 777), [(65, 98), (33, 49), (17, 25), (9, 13), (5, 7)]),
            ("anchors.c", (64, 96), [(8, 12), (4, 6), (2, 3), (1, 2), (1, 1)])]:
        put(name + ".image", torch.tensor(image))
        put(name + ".features", torch.tensor(feats))
        put(name + ".out", tv_anchors(image, feats))


def cases_matcher():
    gt = random_boxes(6)
    anchors = random_boxes(400)
    iou = box_iou(gt, anchors)
    put("match.rand.iou", iou)
    put("match.rand.out", det_utils.Matcher(0.5, 0.4, True)(iou))
    put("match.rand.strict", det_utils.Matcher(0.5, 0.4, False)(iou))
    # Low-quality ties: gt 0's best IoU (0.3) is shared by anchors 1 and 3; anchor 3 prefers
    # gt 1 (0.35); gt 2's best is 0.45 (between thresholds).
    t = torch.tensor([[0.10, 0.30, 0.00, 0.30, 0.20, 0.00],
                      [0.00, 0.10, 0.05, 0.35, 0.00, 0.60],
                      [0.00, 0.00, 0.45, 0.00, 0.39, 0.00]])
    put("match.ties.iou", t)
    put("match.ties.out", det_utils.Matcher(0.5, 0.4, True)(t))


def cases_focal():
    x = (torch.randn(50, 7) * 3).requires_grad_()
    y = (torch.rand(50, 7) < 0.2).float()
    put("focal.x", x)
    put("focal.y", y)
    for name, alpha, gamma in [("focal.a", 0.25, 2.0), ("focal.b", -1.0, 1.5)]:
        loss = sigmoid_focal_loss(x, y, alpha=alpha, gamma=gamma, reduction="none")
        (g,) = torch.autograd.grad(loss.sum(), x)
        put(name + ".none", loss)
        put(name + ".grad", g)
        put(name + ".mean", sigmoid_focal_loss(x, y, alpha=alpha, gamma=gamma, reduction="mean"))


def loss_inputs(batch, classes):
    """Anchors of a small pyramid, ground truth near some anchors, random head outputs."""
    feats = [(8, 8), (4, 4), (2, 2), (1, 1), (1, 1)]
    anchors = torch.cat(tv_anchors((64, 64), feats))
    targets = []
    for i in range(batch):
        n = [5, 0, 3][i % 3]
        pick = torch.randperm(anchors.size(0))[:n]
        boxes = (anchors[pick] + torch.randn(n, 4) * 3).clamp(0, 64)
        boxes[:, 2:] = torch.max(boxes[:, 2:], boxes[:, :2] + 2)
        targets.append({"boxes": boxes, "labels": torch.randint(0, classes, (n,))})
    logits = (torch.randn(batch, anchors.size(0), classes) * 2).requires_grad_()
    regression = (torch.randn(batch, anchors.size(0), 4) * 0.5).requires_grad_()
    return anchors, targets, logits, regression


def put_loss_inputs(name, anchors, targets, logits, regression):
    put(name + ".anchors", anchors)
    put(name + ".boxes", [t["boxes"] for t in targets])
    put(name + ".labels", [t["labels"] for t in targets])
    put(name + ".logits", logits)
    put(name + ".regression", regression)


def cases_torchvision_loss():
    classes, batch = 6, 3
    anchors, targets, logits, regression = loss_inputs(batch, classes)
    put_loss_inputs("tvloss", anchors, targets, logits, regression)
    model = types.SimpleNamespace(proposal_matcher=det_utils.Matcher(0.5, 0.4, True),
                                  head=RetinaNetHead(8, 9, classes))
    losses = RetinaNet.compute_loss(model, targets, {"cls_logits": logits, "bbox_regression": regression},
                                    [anchors] * batch)
    put("tvloss.cls", losses["classification"])
    put("tvloss.box", losses["bbox_regression"])
    g_logits, g_reg = torch.autograd.grad(losses["classification"] + 2 * losses["bbox_regression"],
                                          [logits, regression])
    put("tvloss.grad_logits", g_logits)
    put("tvloss.grad_regression", g_reg)


def cases_detectron2_loss():
    """Detectron2's RetinaNet.losses (meta_arch/retinanet.py), written out: matched labels,
    one-hot targets without the background column, focal loss over valid anchors, smooth-L1
    (beta 0.1) over foreground anchors, both divided by the updated EMA normalizer."""
    classes, batch = 5, 3
    anchors, targets, logits, regression = loss_inputs(batch, classes)
    put_loss_inputs("d2loss", anchors, targets, logits, regression)
    matcher = det_utils.Matcher(0.5, 0.4, True)
    coder = det_utils.BoxCoder((1.0, 1.0, 1.0, 1.0))
    gt_labels, gt_deltas = [], []
    for t in targets:
        if t["boxes"].numel() == 0:
            gt_labels.append(torch.full((anchors.size(0),), classes))
            gt_deltas.append(torch.zeros_like(anchors))
            continue
        m = matcher(box_iou(t["boxes"], anchors))
        labels = t["labels"][m.clamp(min=0)]
        labels[m == -1] = classes
        labels[m == -2] = -1
        gt_labels.append(labels)
        gt_deltas.append(coder.encode_single(t["boxes"][m.clamp(min=0)], anchors))
    gt_labels = torch.stack(gt_labels)
    gt_deltas = torch.stack(gt_deltas)
    valid = gt_labels >= 0
    pos = valid & (gt_labels != classes)
    normalizer = 0.9 * 100.0 + 0.1 * max(int(pos.sum()), 1)
    onehot = F.one_hot(gt_labels[valid], classes + 1)[:, :-1].float()
    cls = sigmoid_focal_loss(logits[valid], onehot, alpha=0.25, gamma=2.0, reduction="sum") / normalizer
    diff = (regression[pos] - gt_deltas[pos]).abs()
    box = torch.where(diff < 0.1, 0.5 * diff ** 2 / 0.1, diff - 0.05).sum() / normalizer
    put("d2loss.cls", cls)
    put("d2loss.box", box)
    put("d2loss.normalizer", torch.tensor(normalizer, dtype=torch.float64))
    put("d2loss.num_fg", torch.tensor(int(pos.sum())))
    g_logits, g_reg = torch.autograd.grad(cls + box, [logits, regression])
    put("d2loss.grad_logits", g_logits)
    put("d2loss.grad_regression", g_reg)


def cases_postprocess():
    for name, image, feats, classes, topk, dets, sizes in [
            ("pp.small", (64, 96), [(8, 12), (4, 6), (2, 3), (1, 2), (1, 1)], 4, 50, 30,
             [(60, 90), (64, 70)]),
            ("pp.big", (256, 256), [(32, 32), (16, 16), (8, 8), (4, 4), (2, 2)], 8, 1000, 300,
             [(256, 256), (200, 240)])]:
        anchors = tv_anchors(image, feats)
        batch = len(sizes)
        logits = [torch.randn(batch, a.size(0), classes) * 2 - 2 for a in anchors]
        regression = [torch.randn(batch, a.size(0), 4) * 0.3 for a in anchors]
        model = types.SimpleNamespace(box_coder=det_utils.BoxCoder((1.0, 1.0, 1.0, 1.0)),
                                      score_thresh=0.05, topk_candidates=topk, nms_thresh=0.5,
                                      detections_per_img=dets)
        result = RetinaNet.postprocess_detections(
            model, {"cls_logits": logits, "bbox_regression": regression},
            [anchors] * batch, sizes)
        put(name + ".anchors", anchors)
        put(name + ".logits", logits)
        put(name + ".regression", regression)
        put(name + ".sizes", torch.tensor(sizes))
        put(name + ".topk", torch.tensor(topk))
        put(name + ".dets", torch.tensor(dets))
        put(name + ".boxes", [r["boxes"] for r in result])
        put(name + ".scores", [r["scores"] for r in result])
        put(name + ".labels", [r["labels"] for r in result])


def main():
    torch.manual_seed(0)
    torch.set_num_threads(1)
    cases_box_ops()
    cases_nms()
    cases_box_coder()
    cases_anchors()
    cases_matcher()
    cases_focal()
    cases_torchvision_loss()
    cases_detectron2_loss()
    cases_postprocess()
    put("versions.torchvision", torch.tensor([ord(c) for c in torchvision.__version__]))
    torch.save(out, sys.argv[1])


if __name__ == "__main__":
    main()
