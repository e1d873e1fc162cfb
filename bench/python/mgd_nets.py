"""The benchmark's networks in PyTorch, with the feature taps mgd's models expose.

Each network has extract(x) -> (pre_relu_features, logits), computed in one forward pass,
and feature_norms() -> the BatchNorm producing each pre-ReLU map (the teacher's margins come
from it, MGD spec 2). The layouts are those of mgd's models (src/models/):

  * ResNet-18/50: torchvision's own modules. A position is the output of a stage (layer1..4)
    before the last block's final ReLU, so the last block of each stage is run by hand up to
    that ReLU (torchvision's blocks apply it inside forward); the BatchNorm is that block's
    bn2 (basic) or bn3 (bottleneck). The reference instead moves every block's ReLU to the
    start of the next block (mgd/cls/models/resnet.py); the arithmetic is the same.
  * ResNet-20 (CIFAR-style, 3x3 stem, widths 16/32/64, three stages of three basic blocks)
    and WRN-16-2 (pre-activation blocks, widths 32/64/128; a position is a stage's output
    passed through the BatchNorm that follows it, before its ReLU, as in OFD/MGD's code and
    mgd's wrn.cpp), for 28 px, 1-channel Fashion-MNIST inputs.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision
from torchvision.models.resnet import BasicBlock, Bottleneck


def _block_pre_relu(block, x):
    """torchvision BasicBlock / Bottleneck forward without the final ReLU."""
    identity = x if block.downsample is None else block.downsample(x)
    out = F.relu(block.bn1(block.conv1(x)))
    out = block.bn2(block.conv2(out))
    if isinstance(block, Bottleneck):
        out = block.bn3(block.conv3(F.relu(out)))
    return out + identity


def stage_taps(stages, x):
    """Runs torchvision ResNet stages from x: (each stage's output before its last ReLU, each
    stage's output)."""
    feats, outs = [], []
    for stage in stages:
        for block in list(stage)[:-1]:
            x = block(x)
        pre = _block_pre_relu(stage[-1], x)
        feats.append(pre)
        x = F.relu(pre)
        outs.append(x)
    return feats, outs


def _last_norm(block):
    return block.bn3 if isinstance(block, Bottleneck) else block.bn2


class TorchvisionResNet(nn.Module):
    """torchvision.models.resnet18/resnet50 with mgd's four feature taps."""

    def __init__(self, name, num_classes=1000):
        super().__init__()
        self.net = getattr(torchvision.models, name)(num_classes=num_classes)
        self.stages = [self.net.layer1, self.net.layer2, self.net.layer3, self.net.layer4]

    def extract(self, x):
        n = self.net
        feats, outs = stage_taps(self.stages, n.maxpool(n.relu(n.bn1(n.conv1(x)))))
        logits = n.fc(torch.flatten(n.avgpool(outs[-1]), 1))
        return feats, logits

    def feature_norms(self):
        return [_last_norm(stage[-1]) for stage in self.stages]

    def forward(self, x):
        return self.extract(x)[1]


def _init(module):
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def _conv(cin, cout, kernel, stride=1):
    return nn.Conv2d(cin, cout, kernel, stride=stride, padding=(kernel - 1) // 2, bias=False)


class CifarResNet(nn.Module):
    """resnet20 (depth 6n+2) as mgd's models::resnet20: 3x3 stem, stages 16/32/64."""

    def __init__(self, depth=20, widths=(16, 32, 64), stem=16, in_channels=1, num_classes=10):
        super().__init__()
        n = (depth - 2) // 6
        self.conv1 = _conv(in_channels, stem, 3)
        self.bn1 = nn.BatchNorm2d(stem)
        cin = stem
        stages = []
        for s, width in enumerate(widths):
            blocks = []
            for b in range(n):
                stride = 2 if s > 0 and b == 0 else 1
                down = None
                if stride != 1 or cin != width:
                    down = nn.Sequential(_conv(cin, width, 1, stride), nn.BatchNorm2d(width))
                blocks.append(BasicBlock(cin, width, stride, down))
                cin = width
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.ModuleList(stages)
        self.fc = nn.Linear(cin, num_classes)
        _init(self)

    def extract(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        feats = []
        for stage in self.stages:
            for block in list(stage)[:-1]:
                x = block(x)
            pre = _block_pre_relu(stage[-1], x)
            feats.append(pre)
            x = F.relu(pre)
        return feats, self.fc(x.mean((2, 3)))

    def feature_norms(self):
        return [_last_norm(stage[-1]) for stage in self.stages]

    def forward(self, x):
        return self.extract(x)[1]


class WideBlock(nn.Module):
    """Pre-activation wide block; forward takes x and pre = bn1(x) (computed by the caller)."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = _conv(cin, cout, 3, stride)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv2 = _conv(cout, cout, 3)
        self.shortcut = _conv(cin, cout, 1, stride) if cin != cout else None

    def forward(self, x, pre):
        act = F.relu(pre)
        out = self.conv2(F.relu(self.bn2(self.conv1(act))))
        return (self.shortcut(act) if self.shortcut is not None else x) + out


class WideResNet(nn.Module):
    """WRN-d-w as mgd's models::wrn_16_2 (depth 16, width 2: stages 32/64/128)."""

    def __init__(self, depth=16, widen=2, in_channels=1, num_classes=10):
        super().__init__()
        n = (depth - 4) // 6
        widths = [16, 16 * widen, 32 * widen, 64 * widen]
        self.conv1 = _conv(in_channels, widths[0], 3)
        cin = widths[0]
        stages = []
        for s in range(3):
            blocks = []
            for b in range(n):
                blocks.append(WideBlock(cin, widths[s + 1], 2 if s > 0 and b == 0 else 1))
                cin = widths[s + 1]
            stages.append(nn.ModuleList(blocks))
        self.stages = nn.ModuleList(stages)
        self.bn1 = nn.BatchNorm2d(cin)
        self.fc = nn.Linear(cin, num_classes)
        _init(self)
        nn.init.zeros_(self.fc.bias)

    def feature_norms(self):
        return [self.stages[1][0].bn1, self.stages[2][0].bn1, self.bn1]

    def extract(self, x):
        norms = self.feature_norms()
        x = self.conv1(x)
        pending = None  # the previous tap's BN output, reused as the next block's bn1(x)
        feats = []
        for s, stage in enumerate(self.stages):
            for b, block in enumerate(stage):
                pre = pending if (b == 0 and pending is not None) else block.bn1(x)
                x = block(x, pre)
            pending = norms[s](x)
            feats.append(pending)
        return feats, self.fc(F.relu(pending).mean((2, 3)))

    def forward(self, x):
        return self.extract(x)[1]


# The benchmark's pairs: (teacher, student, input channels, size, batch, classes).
PAIRS = {
    "r50_r18": dict(teacher=lambda: TorchvisionResNet("resnet50", 1000),
                    student=lambda: TorchvisionResNet("resnet18", 1000),
                    channels=3, size=112, batch=16, classes=1000),
    "fmnist": dict(teacher=lambda: WideResNet(16, 2, 1, 10),
                   student=lambda: CifarResNet(20, (16, 32, 64), 16, 1, 10),
                   channels=1, size=28, batch=64, classes=10),
}
