#!/usr/bin/python3
"""torchvision baseline for bench/detection_bench.cpp: non-maximum suppression and the
RetinaNet training step, in one persistent process driven over a pipe.

  * NMS: torchvision.ops.nms and torchvision.ops.batched_nms (torchvision 0.14's CPU kernel,
    called from Python as a user does) on the boxes detection_bench wrote.
  * RetinaNet step: torchvision 0.14's RetinaNet as retinanet_resnet50_fpn builds it with a
    pretrained backbone (FrozenBatchNorm2d, trainable_backbone_layers 3, P6 from P5), on
    ResNet-18 or ResNet-50, with the weights mgd saved (load_state_dict, strict). One step is
    RetinaNet.forward in training mode without its GeneralizedRCNNTransform (the batch is
    already normalized and of one size, as mgd's data pipeline delivers it; the transform
    would resize it): the degenerate-box check, backbone, head, anchor generator,
    compute_loss; then loss = classification + bbox_regression, zero_grad, backward and a
    torch.optim.SGD step (momentum 0.9, Nesterov, weight decay 1e-4) over the trainable
    parameters, as mgd's step.
  * RetinaNet distillation (DistillCase): the R50-FPN -> R18-FPN pair with the reference's
    MGD settings for detection, written as the authors' code does (bench/python/mgd_step.py's
    Distiller), its step beside the plain step, and the matching update.

Server:  detection.py --serve --threads N
  prints "ready torch VERSION torchvision VERSION threads N", then answers one line per
  command ("ok ..." or "error: ..."):
    threads N                 -> "ok N"              intra-op threads from now on
    nms_load FILE             -> "ok CASES"          FILE: torch.save'd dict name ->
                                                     {"boxes", "scores", "idxs"}
    nms KIND CASE IOU CALLS   -> "ok SECONDS KEPT"   KIND nms|batched; SECONDS per call, the
                                                     mean over CALLS back-to-back calls
    nms_keep KIND CASE IOU FILE -> "ok KEPT"         writes the kept indices to FILE
    retina_setup NAME BACKBONE CLASSES DIR LR -> "ok PARAMS TRAINABLE"
                                                     DIR/weights.pth (state_dict) and
                                                     DIR/batch.pth {"images", "boxes",
                                                     "labels"}
    retina_step NAME          -> "ok SECONDS LOSS_CLS LOSS_BOX"
    distill_setup DIR LR      -> "ok TEACHER_PARAMS STUDENT_TRAINABLE"  see DistillCase
    distill_step plain|mgd    -> "ok SECONDS LOSS_CLS LOSS_BOX LOSS_DISTILL"
    distill_matching          -> "ok SECONDS COST"   tracking pass + solve, mean matched cost
    rss                       -> "ok KB"             peak resident set size of this process
    quit
"""
import argparse
import os
import resource
import sys
import time
import types
from collections import OrderedDict

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402
import torchvision  # noqa: E402
from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor  # noqa: E402
from torchvision.models.detection.image_list import ImageList  # noqa: E402
from torchvision.models.detection.retinanet import RetinaNet  # noqa: E402
from torchvision.ops import batched_nms, nms  # noqa: E402
from torchvision.ops.feature_pyramid_network import LastLevelP6P7  # noqa: E402
from torchvision.ops.misc import FrozenBatchNorm2d  # noqa: E402

from mgd_nets import _last_norm, stage_taps  # noqa: E402
from mgd_step import Distiller  # noqa: E402
import twin_server  # noqa: E402

LOSS_FACTOR = 5e7  # the reference's detection factor, per image
DIVISORS = [1.0, 1.0, 0.1, 0.1]  # C2-C5


def build_retinanet(backbone, classes):
    """retinanet_resnet50_fpn's construction (weights_backbone given) on any ResNet."""
    body = getattr(torchvision.models, backbone)(weights=None, norm_layer=FrozenBatchNorm2d)
    fpn = _resnet_fpn_extractor(body, 3, returned_layers=[2, 3, 4],
                                extra_blocks=LastLevelP6P7(256, 256))
    return RetinaNet(fpn, classes)


class RetinaCase:
    def __init__(self, backbone, classes, directory, lr):
        self.model = build_retinanet(backbone, classes)
        self.model.load_state_dict(torch.load(directory + "/weights.pth"))  # strict
        self.model.train()
        batch = torch.load(directory + "/batch.pth")
        self.images = batch["images"]
        self.targets = [{"boxes": b, "labels": l} for b, l in zip(batch["boxes"], batch["labels"])]
        self.image_sizes = [tuple(self.images.shape[-2:])] * self.images.shape[0]
        self.trainable = [p for p in self.model.parameters() if p.requires_grad]
        self.opt = torch.optim.SGD(self.trainable, lr=lr, momentum=0.9, weight_decay=1e-4,
                                   nesterov=True)

    def losses(self, features=None):
        """RetinaNet.forward in training mode, after its transform (features: the FPN's
        levels when the caller ran the backbone)."""
        model, targets = self.model, self.targets
        for target in targets:
            boxes = target["boxes"]
            if (boxes[:, 2:] <= boxes[:, :2]).any():
                raise ValueError("degenerate box")
        images = ImageList(self.images, self.image_sizes)
        if features is None:
            features = list(model.backbone(images.tensors).values())
        head_outputs = model.head(features)
        anchors = model.anchor_generator(images, features)
        return model.compute_loss(targets, head_outputs, anchors)

    def step(self):
        losses = self.losses()
        loss = losses["classification"] + losses["bbox_regression"]
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        return losses["classification"].item(), losses["bbox_regression"].item()


class BodyTaps:
    """A torchvision RetinaNet's ResNet body with mgd's detection taps, for mgd_step's
    Distiller: extract(x) -> (C2-C5 before their stage's last ReLU, [relu(C3), relu(C4),
    relu(C5)] for the FPN); feature_norms(): the FrozenBatchNorm2d producing each tap
    (its weight and bias give the margins)."""

    def __init__(self, model):
        self.model = model
        body = model.backbone.body
        self.stem = [body.conv1, body.bn1, body.relu, body.maxpool]
        self.stages = [body.layer1, body.layer2, body.layer3, body.layer4]

    def extract(self, x):
        for m in self.stem:
            x = m(x)
        taps, post = stage_taps(self.stages, x)
        return taps, post[1:]

    def feature_norms(self):
        return [types.SimpleNamespace(num_features=n.weight.numel(), weight=n.weight, bias=n.bias)
                for n in (_last_norm(stage[-1]) for stage in self.stages)]

    def parameters(self):
        return self.model.parameters()

    @property
    def training(self):
        return self.model.training

    def train(self, mode=True):
        self.model.train(mode)

    def eval(self):
        self.model.eval()


class DistillCase:
    """RetinaNet-R50-FPN teacher (frozen, eval mode) and RetinaNet-R18-FPN student, with
    mgd's weights, batch and matching (DIR/teacher.pth, DIR/weights.pth, DIR/batch.pth,
    DIR/matching.pth: one groups x s index per stage). Steps: "plain" = the teacher's body
    without a graph + the student's RetinaCase step; "mgd" = the same with the reference's
    distillation of C2-C5 (AMP, GroupNorm(32, s) on the student side, divisors
    [1, 1, 0.1, 0.1], / images / 5e7 added to the detection loss). DIR/tracking.pth: the
    image batches of the matching update."""

    def __init__(self, directory, lr):
        self.student = RetinaCase("resnet18", 80, directory, lr)
        teacher = build_retinanet("resnet50", 80)
        teacher.load_state_dict(torch.load(directory + "/teacher.pth"))  # strict
        teacher.eval()
        self.teacher = BodyTaps(teacher)
        self.distiller = Distiller(self.teacher, BodyTaps(self.student.model), "amp",
                                   norm=lambda c: torch.nn.GroupNorm(32, c), divisors=DIVISORS)
        self.matching = torch.load(directory + "/matching.pth")
        self.distiller.index = list(self.matching)
        self.distiller.train()
        self.tracking = torch.load(directory + "/tracking.pth")
        self.plain_opt = self.student.opt
        self.mgd_opt = torch.optim.SGD(self.student.trainable + list(self.distiller.BNs.parameters()),
                                       lr=lr, momentum=0.9, weight_decay=1e-4, nesterov=True)

    def step(self, kind):
        s = self.student
        if kind == "plain":
            with torch.no_grad():
                self.teacher.extract(s.images)
            losses = s.losses()
            d_loss = torch.zeros(())
            opt = self.plain_opt
        elif kind == "mgd":
            post, d_loss = self.distiller(s.images)
            fpn_in = OrderedDict((str(i), p) for i, p in enumerate(post))
            losses = s.losses(list(s.model.backbone.fpn(fpn_in).values()))
            opt = self.mgd_opt
        else:
            raise ValueError("unknown step kind " + kind)
        loss = (losses["classification"] + losses["bbox_regression"] +
                d_loss / s.images.shape[0] / LOSS_FACTOR)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return losses["classification"].item(), losses["bbox_regression"].item(), d_loss.item()

    def matching_update(self):
        """One tracking pass over the tracking batches (both bodies in eval mode, no graph)
        and the solve; the step's matching stays mgd's."""
        cost = self.distiller.matching_pass(self.tracking)
        self.distiller.index = list(self.matching)
        return cost


class Server:
    def __init__(self):
        self.nms_cases = {}
        self.retina = {}

    def run_nms(self, kind, case, iou):
        c = self.nms_cases[case]
        if kind == "nms":
            return nms(c["boxes"], c["scores"], iou)
        if kind == "batched":
            return batched_nms(c["boxes"], c["scores"], c["idxs"], iou)
        raise ValueError("unknown NMS kind " + kind)

    def answer(self, words):
        cmd, args = words[0], words[1:]
        if cmd == "threads" and len(args) == 1:
            torch.set_num_threads(int(args[0]))
            return "%d" % torch.get_num_threads()
        if cmd == "nms_load" and len(args) == 1:
            self.nms_cases = torch.load(args[0])
            return "%d" % len(self.nms_cases)
        if cmd == "nms" and len(args) == 4:
            kind, case, iou, calls = args[0], args[1], float(args[2]), int(args[3])
            with torch.no_grad():
                start = time.perf_counter()
                for _ in range(calls):
                    keep = self.run_nms(kind, case, iou)
                seconds = (time.perf_counter() - start) / calls
            return "%r %d" % (seconds, keep.numel())
        if cmd == "nms_keep" and len(args) == 4:
            with torch.no_grad():
                keep = self.run_nms(args[0], args[1], float(args[2]))
            torch.save(keep, args[3])
            return "%d" % keep.numel()
        if cmd == "retina_setup" and len(args) == 5:
            name, backbone, classes, directory, lr = args
            case = RetinaCase(backbone, int(classes), directory, float(lr))
            self.retina[name] = case
            return "%d %d" % (sum(p.numel() for p in case.model.parameters()),
                              sum(p.numel() for p in case.trainable))
        if cmd == "retina_step" and len(args) == 1:
            case = self.retina[args[0]]
            start = time.perf_counter()
            loss_cls, loss_box = case.step()
            return "%r %r %r" % (time.perf_counter() - start, loss_cls, loss_box)
        if cmd == "distill_setup" and len(args) == 2:
            self.distill = DistillCase(args[0], float(args[1]))
            return "%d %d" % (sum(p.numel() for p in self.distill.teacher.parameters()),
                              sum(p.numel() for p in self.distill.student.trainable))
        if cmd == "distill_step" and len(args) == 1:
            start = time.perf_counter()
            losses = self.distill.step(args[0])
            return "%r %r %r %r" % ((time.perf_counter() - start,) + losses)
        if cmd == "distill_matching" and not args:
            start = time.perf_counter()
            cost = self.distill.matching_update()
            return "%r %r" % (time.perf_counter() - start, cost)
        if cmd == "rss" and not args:
            return "%d" % resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        raise ValueError("bad command: " + " ".join(words))


def serve(threads):
    torch.set_num_threads(threads)
    server = Server()
    twin_server.serve("torch %s torchvision %s threads %d" %
                      (torch.__version__, torchvision.__version__, torch.get_num_threads()),
                      server.answer)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--serve", action="store_true", required=True)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    serve(a.threads)


if __name__ == "__main__":
    main()
