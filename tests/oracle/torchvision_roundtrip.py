#!/usr/bin/python3
"""PyTorch side of the model interop tests (tests/models/interop_test.cpp).

  export NAME DIR   torchvision model NAME with random weights and BatchNorm statistics:
                    DIR/NAME.zip.pth and DIR/NAME.legacy.pth (its state_dict in both
                    torch.save formats) and DIR/NAME.expected.pth ({"input", "logits",
                    "features": the maps mgd taps, from forward hooks}).
  check NAME FILE   loads the state_dict FILE (written by mgd) into torchvision's NAME and
                    compares its logits on FILE's companion FILE.io ({"input", "logits"}),
                    exit status 1 on a difference above 1e-4.
"""
import sys

import torch
import torchvision


def taps(name, model):
    """The modules whose outputs mgd exposes as features, in position order."""
    if name.startswith("resnet"):
        return [model.layer1, model.layer2, model.layer3, model.layer4]  # post-ReLU stage outputs
    if name == "mobilenet_v2":
        return [model.features[i].conv[0][1] for i in (4, 7, 11, 17)]  # expansion BN (pre-ReLU6)
    if name.startswith("shufflenet"):
        return [model.maxpool, model.stage2, model.stage3, model.stage4]  # post-ReLU
    raise ValueError(name)


def build(name):
    model = getattr(torchvision.models, name)()
    return model


def export(name, out):
    torch.manual_seed(0)
    model = build(name)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
                m.num_batches_tracked.fill_(7)
    model.eval()
    feats = []
    hooks = [t.register_forward_hook(lambda mod, i, o: feats.append(o.detach().clone()))
             for t in taps(name, model)]
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        logits = model(x)
    for h in hooks:
        h.remove()
    state = model.state_dict()
    torch.save(state, f"{out}/{name}.zip.pth")
    torch.save(state, f"{out}/{name}.legacy.pth", _use_new_zipfile_serialization=False)
    torch.save({"input": x, "logits": logits, "features": feats}, f"{out}/{name}.expected.pth")


def check(name, path):
    model = build(name)
    model.load_state_dict(torch.load(path))  # strict
    model.eval()
    io = torch.load(path + ".io")
    with torch.no_grad():
        logits = model(io["input"])
    diff = (logits - io["logits"]).abs().max().item()
    # Float rounding at the logits' scale (see close_at_scale in tests/models/interop_test.cpp).
    scale = io["logits"].abs().max().item()
    print(f"{name}: max |torchvision - mgd| = {diff:.3g} (largest logit {scale:.3g})")
    sys.exit(0 if diff < 1e-4 + 1e-5 * scale else 1)


if __name__ == "__main__":
    if sys.argv[1] == "export":
        export(sys.argv[2], sys.argv[3])
    elif sys.argv[1] == "check":
        check(sys.argv[2], sys.argv[3])
    else:
        sys.exit(f"unknown mode {sys.argv[1]}")
