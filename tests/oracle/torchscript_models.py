#!/usr/bin/python3
"""The Python side of tests/models/torchscript_test.cpp.

  export DIR   writes, through tools/mgd_script.py: torchvision's ResNet-18 and MobileNet-V2
               (10 classes, seeded) as DIR/<name>.pt with their weights as DIR/<name>.pth, and
               a small model with the MGD reference's interface as DIR/reference.pt with
               DIR/reference.expected.pth (an input, its pre-ReLU maps, logits and weights);
               a 1-channel student for the engine as DIR/tiny.pt; a TorchScript file not
               written by the tool as DIR/plain.pt; a model with tied weights as DIR/tied.pt; and the tool's error cases' messages in
               DIR/errors.txt, one line each.
  check NAME WEIGHTS IO
               loads WEIGHTS (written by mgd) strictly into a fresh Python model NAME
               (resnet18, mobilenet_v2, reference, tiny) and checks that it computes the logits in
               IO ({input, logits}) in eval mode.
"""
import os
import subprocess
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tools"))
import mgd_script  # noqa: E402


class ReferenceNet(nn.Module):
    """A model written for the authors' code: extract_feature, get_bn_before_relu,
    get_channel_num, and an in-place ReLU after each distilled BN."""

    def __init__(self, num_classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 16, 3, stride=2, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU(inplace=True)
        self.fc = nn.Linear(16, num_classes)

    def extract_feature(self, x, preReLU=False):  # unannotated, as in the authors' code
        f1 = self.bn1(self.conv1(x))
        x = self.relu(f1)  # in place: overwrites f1 when run as it is
        f2 = self.bn2(self.conv2(x))
        x = F.relu(f2, inplace=True)
        out = self.fc(x.mean((2, 3)))
        if not preReLU:
            f1 = F.relu(f1)
            f2 = F.relu(f2)
        return [f1, f2], out

    def get_bn_before_relu(self):
        return [self.bn1, self.bn2]

    def get_channel_num(self):
        return [8, 16]

    def forward(self, x):
        return self.extract_feature(x)[1]


class TinyNet(nn.Module):
    """A 1-channel student for the engine's tests: three stages at 28, 14 and 7 px of
    8, 16 and 32 channels (a CIFAR ResNet's positions at a quarter of their width)."""

    def __init__(self, num_classes=10):
        super().__init__()

        def stage(cin, cout, stride):
            return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False),
                                 nn.BatchNorm2d(cout), nn.ReLU(inplace=True))
        self.stage1 = stage(1, 8, 1)
        self.stage2 = stage(8, 16, 2)
        self.stage3 = stage(16, 32, 2)
        self.fc = nn.Linear(32, num_classes)

    def forward(self, x):
        x = self.stage3(self.stage2(self.stage1(x)))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class TiedNet(nn.Module):
    """Two layers sharing one weight tensor."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.act = nn.ReLU()
        self.fc = nn.Linear(4, 4)
        self.fc2 = nn.Linear(4, 4)
        self.fc2.weight = self.fc.weight

    def forward(self, x):
        return self.fc2(self.fc(self.act(self.bn(self.conv(x))).mean((2, 3))))


class NoNormAtTap(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.act = nn.ReLU()
        self.fc = nn.Linear(4, 10)

    def forward(self, x):
        return self.fc(self.act(self.conv(x)).mean((2, 3)))


def make(name):
    torch.manual_seed(0)
    if name == "resnet18":
        m = torchvision.models.resnet18(num_classes=10)
    elif name == "mobilenet_v2":
        m = torchvision.models.mobilenet_v2(num_classes=10)
    elif name == "reference":
        m = ReferenceNet()
    elif name == "tiny":
        m = TinyNet()
    else:
        raise SystemExit(f"unknown model {name}")
    # Non-trivial BatchNorm statistics and affines, so eval mode and margins are exercised.
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, nn.BatchNorm2d):
                mod.running_mean.uniform_(-0.2, 0.2)
                mod.running_var.uniform_(0.5, 1.5)
                mod.weight.uniform_(0.5, 1.5)
                mod.bias.uniform_(-0.3, 0.3)
    return m.eval()


TAPS = {
    "resnet18": ["layer1", "layer2", "layer3", "layer4"],
    "mobilenet_v2": ["features.4.conv.0", "features.7.conv.0", "features.11.conv.0",
                     "features.17.conv.0"],
}


def export(d):
    os.makedirs(d, exist_ok=True)
    for name, taps in TAPS.items():
        m = make(name)
        torch.save(m.state_dict(), os.path.join(d, name + ".pth"))
        mgd_script.script_model(m, taps, [3, 64, 64], os.path.join(d, name + ".pt"),
                                source=name, quiet=True)
    torch.manual_seed(0)
    mgd_script.script_model(TinyNet(), ["stage1", "stage2", "stage3"], [1, 28, 28],
                            os.path.join(d, "tiny.pt"), source="tiny", quiet=True)
    torch.jit.script(nn.Linear(4, 2)).save(os.path.join(d, "plain.pt"))  # not mgd's
    mgd_script.script_model(TiedNet(), ["act"], [3, 8, 8], os.path.join(d, "tied.pt"), quiet=True)
    m = make("reference")
    mgd_script.script_model(m, None, [3, 16, 16], os.path.join(d, "reference.pt"),
                            reference=True, source="reference", quiet=True)
    torch.manual_seed(1)
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():  # the maps computed op by op: extract_feature's own are overwritten
        f1 = m.bn1(m.conv1(x))
        f2 = m.bn2(m.conv2(F.relu(f1)))
        out = m.fc(F.relu(f2).mean((2, 3)))
        feats = [f1, f2]
    torch.save({"input": x, "pre": feats, "logits": out, "state_dict": m.state_dict()},
               os.path.join(d, "reference.expected.pth"))
    # The tool's error messages (run as a program, as a user would).
    tool = os.path.join(HERE, "..", "..", "tools", "mgd_script.py")
    cases = [
        ["--model", "torchvision.models.resnet18", "--taps", "layer9", "-o", os.path.join(d, "x.pt")],
        ["--model", "torchvision.models.resnet18", "--taps", "layer1.0.conv1", "-o",
         os.path.join(d, "x.pt")],
        ["--model", "torchscript_models:NoNormAtTap", "--taps", "act", "--input-shape", "3,8,8",
         "-o", os.path.join(d, "x.pt")],
    ]
    env = dict(os.environ, PYTHONPATH=HERE)
    with open(os.path.join(d, "errors.txt"), "w") as f:
        for args in cases:
            r = subprocess.run([sys.executable, tool] + args, capture_output=True, text=True, env=env)
            f.write(f"{r.returncode}\t{r.stderr.strip()}\n")


def check(name, weights, io):
    m = make(name)
    state = torch.load(weights)
    m.load_state_dict(state, strict=True)
    io = torch.load(io)
    with torch.no_grad():
        out = m(io["input"])
    diff = (out - io["logits"]).abs().max().item()
    scale = io["logits"].abs().max().item()
    if not torch.allclose(out, io["logits"], rtol=1e-4, atol=1e-4 + 1e-5 * scale):
        raise SystemExit(f"{name}: Python computes other logits with mgd's weights (max diff {diff})")
    print(f"{name}: strict load ok, logits max diff {diff:.3g}")


if __name__ == "__main__":
    if sys.argv[1] == "export":
        export(sys.argv[2])
    elif sys.argv[1] == "check":
        check(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        raise SystemExit(__doc__)
