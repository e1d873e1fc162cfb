#!/usr/bin/python3
"""Turns a PyTorch model into a TorchScript file that mgd distils (teacher or student).

Two kinds of model:
  * any nn.Module plus a list of taps: module paths (as in named_modules()) whose output ends
    in a ReLU (or ReLU6). Each tap is a distillation position: mgd sees the map before that
    final activation and after it. The norm producing the pre-activation map (a BatchNorm or
    GroupNorm, directly or as the residual branch of an add) is found from the traced graph
    and printed; --norm TAP=PATH names it where the search finds none or the wrong one.
    The tap's final activation is rewritten out of place, so an in-place ReLU cannot
    overwrite the pre-activation map (it does in a naive hook-based extractor).
  * a model with the MGD reference's interface (extract_feature(x, preReLU),
    get_bn_before_relu(), get_channel_num(): every model written for the authors' code).

The file holds the weights under their original names (mgd exports them back as a
state_dict the original model loads) and records the positions, their channels, their
norms and the number of logits. In mgd: --arch torchscript:FILE.pt (or --teacher-arch).

Examples (Debian's /usr/bin/python3 with python3-torch and python3-torchvision):
  tools/mgd_script.py --model torchvision.models.resnet18 --kwargs '{"num_classes": 10}' \\
      --taps layer1,layer2,layer3,layer4 -o resnet18.pt
  tools/mgd_script.py --model torchvision.models.resnet18 --list-taps
  tools/mgd_script.py --model my_package.nets:WideResNet --weights teacher.pth --reference \\
      -o teacher.pt
From Python: import this file and call script_model(model, taps, input_shape, path).
"""

import argparse
import copy
import importlib
import json
import operator
import sys
from typing import Dict, List, Optional, Tuple

import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F

FORMAT_VERSION = 1
NORM_TYPES = (nn.BatchNorm2d, nn.SyncBatchNorm, nn.GroupNorm, nn.InstanceNorm2d)


class ScriptError(Exception):
    """A problem with the model or the arguments: one message, no traceback."""


def _is_norm_module(m: nn.Module) -> bool:
    if isinstance(m, NORM_TYPES):
        return getattr(m, "weight", None) is not None and getattr(m, "bias", None) is not None
    # torchvision.ops.FrozenBatchNorm2d and look-alikes: an affine held in buffers.
    return type(m).__name__ == "FrozenBatchNorm2d"


class _TapTracer(fx.Tracer):
    """Records the output of every module call by module path."""

    def __init__(self):
        super().__init__()
        self.outputs: Dict[str, List[object]] = {}

    def call_module(self, m, forward, args, kwargs):
        out = super().call_module(m, forward, args, kwargs)
        try:
            path = self.path_of_module(m)
        except NameError:
            return out
        self.outputs.setdefault(path, []).append(out)
        return out


def _activation(node: fx.Node, modules: Dict[str, nn.Module]) -> Optional[str]:
    """'relu' / 'relu6' when `node` applies that activation to its first argument."""
    if node.op == "call_module":
        m = modules.get(node.target)
        if type(m) is nn.ReLU:
            return "relu"
        if type(m) is nn.ReLU6:
            return "relu6"
        return None
    if node.op == "call_function":
        if node.target in (torch.relu, torch.relu_, F.relu, F.relu_):
            return "relu"
        if node.target is F.relu6:
            return "relu6"
        if node.target in (F.hardtanh, F.hardtanh_):
            lo = node.args[1] if len(node.args) > 1 else node.kwargs.get("min_val", -1.0)
            hi = node.args[2] if len(node.args) > 2 else node.kwargs.get("max_val", 1.0)
            return "relu6" if (lo, hi) == (0.0, 6.0) else None
    if node.op == "call_method" and node.target in ("relu", "relu_"):
        return "relu"
    return None


def _is_inplace(node: fx.Node, modules: Dict[str, nn.Module]) -> bool:
    if node.op == "call_module":
        return bool(getattr(modules.get(node.target), "inplace", False))
    if node.op == "call_function":
        if node.target in (torch.relu_, F.relu_, F.hardtanh_):
            return True
        if node.target in (F.relu, F.relu6):
            return bool(node.kwargs.get("inplace", node.args[1] if len(node.args) > 1 else False))
        if node.target is F.hardtanh:
            return bool(node.kwargs.get("inplace", node.args[3] if len(node.args) > 3 else False))
    return node.op == "call_method" and node.target.endswith("_")


def _is_add(node: fx.Node) -> bool:
    return (node.op == "call_function" and node.target in (operator.add, operator.iadd, torch.add)) or (
        node.op == "call_method" and node.target in ("add", "add_"))


def _norm_of(pre: fx.Node, modules: Dict[str, nn.Module]) -> Optional[str]:
    """The module path of the norm producing `pre`: the norm itself, or the first operand of
    a residual add that is a norm's output (the block's main branch in torchvision's
    `out += identity`)."""
    def norm_path(n):
        if isinstance(n, fx.Node) and n.op == "call_module" and _is_norm_module(modules[n.target]):
            return n.target
        return None
    found = norm_path(pre)
    if found is None and _is_add(pre):
        for a in pre.args:
            found = norm_path(a)
            if found is not None:
                break
    return found


def _trace(model: nn.Module) -> Tuple[fx.Graph, _TapTracer]:
    tracer = _TapTracer()
    try:
        graph = tracer.trace(model)
    except Exception as e:  # fx raises many types for untraceable Python
        raise ScriptError(f"torch.fx cannot trace {type(model).__name__}: {e}. Give the model "
                          "the reference's interface (extract_feature, get_bn_before_relu, "
                          "get_channel_num) and use --reference instead") from None
    return graph, tracer


def _tap_candidates(tracer: _TapTracer, modules) -> List[str]:
    out = []
    for path, values in tracer.outputs.items():
        if len(values) == 1 and isinstance(values[0], fx.Proxy) and \
                _activation(values[0].node, modules) is not None and path:
            out.append(path)
    return out


class _FxNet(nn.Module):
    """The root of a scripted file: `net` (the user's model, traced and rewritten to return
    (pre-activation maps, post-activation maps, logits or None)), the metadata mgd reads."""

    def __init__(self, net: nn.Module, meta: dict):
        super().__init__()
        self.net = net
        self.mgd_format = FORMAT_VERSION
        self.mgd_positions = meta["positions"]
        self.mgd_norms = meta["norms"]
        self.mgd_channels = meta["channels"]
        self.mgd_activation = meta["activation"]
        self.mgd_logits = meta["logits"]
        self.mgd_input = meta["input"]
        self.mgd_source = meta["source"]

    def forward(self, x: torch.Tensor) -> Tuple[List[torch.Tensor], List[torch.Tensor], Optional[torch.Tensor]]:
        return self.net(x)


def _replace_out_of_place(graph: fx.Graph, node: fx.Node, act: str, pre: fx.Node) -> fx.Node:
    """Replaces the activation `node` of `pre` by an out-of-place call; returns the new node."""
    with graph.inserting_after(node):
        new = graph.call_function(torch.relu if act == "relu" else F.relu6, (pre,))
    node.replace_all_uses_with(new)
    graph.erase_node(node)
    return new


def _out_of_place(graph: fx.Graph, pres: List[fx.Node], modules) -> None:
    """Every activation applied to a pre-activation map becomes out of place: an in-place
    ReLU (nn.ReLU(inplace=True), F.relu(x, inplace=True), x.relu_()) would overwrite it."""
    for pre in pres:
        for user in list(pre.users):
            act = _activation(user, modules)
            if act is not None and user.args[0] is pre and _is_inplace(user, modules):
                _replace_out_of_place(graph, user, act, pre)


def _finish(model: nn.Module, graph: fx.Graph, pres, posts, logits) -> fx.GraphModule:
    output = next(n for n in graph.nodes if n.op == "output")
    output.args = ((list(pres), list(posts), logits),)
    output.type = None  # not the model's own return annotation
    graph.lint()
    gm = fx.GraphModule(model, graph, class_name=type(model).__name__)
    missing = sorted(set(model.state_dict()) - set(gm.state_dict()))
    if missing:
        raise ScriptError("the traced forward does not use these weights, so the file could "
                          f"not give them back: {', '.join(missing[:8])}"
                          f"{' ...' if len(missing) > 8 else ''}")
    return gm


def _build_reference(model: nn.Module, no_logits: bool):
    """The reference's extract_feature(x, preReLU=True), traced by torch.fx (its Python,
    `if not preReLU` included, runs once; the authors' models do not compile as TorchScript
    as they are: preReLU has no type annotation)."""
    norms, channels = _reference_meta(model)
    base = type(model)

    def forward(self, x):
        return base.extract_feature(self, x, True)

    traced = copy.copy(model)
    traced.__class__ = type(base.__name__, (base,), {"forward": forward})
    graph, _ = _trace(traced)
    modules = dict(model.named_modules())
    output = next(n for n in graph.nodes if n.op == "output")
    ret = output.args[0]
    if not (isinstance(ret, (tuple, list)) and len(ret) == 2 and isinstance(ret[0], (tuple, list))
            and all(isinstance(f, fx.Node) for f in ret[0])):
        raise ScriptError("--reference: extract_feature(x, preReLU=True) must return "
                          "([feature maps], logits)")
    pres = list(ret[0])
    if len(pres) != len(norms):
        raise ScriptError(f"--reference: extract_feature gives {len(pres)} maps, "
                          f"get_bn_before_relu() {len(norms)} norms")
    _out_of_place(graph, pres, modules)
    posts = []
    for pre in pres:  # the model's own ReLU of the map where it has one, else a new one
        own = [u for u in pre.users if _activation(u, modules) == "relu" and u.args[0] is pre]
        if own:
            posts.append(own[0])
            continue
        with graph.inserting_after(pre):
            posts.append(graph.call_function(torch.relu, (pre,)))
    logits = ret[1]
    if no_logits:
        logits = None
    elif not isinstance(logits, fx.Node):
        raise ScriptError("--reference: extract_feature's second result is not the logits; "
                          "use --no-logits")
    return _finish(model, graph, pres, posts, logits), norms, channels


def _build_fx(model: nn.Module, taps: List[str], norms_given: Dict[str, str], no_logits: bool):
    graph, tracer = _trace(model)
    modules = dict(model.named_modules())
    candidates = _tap_candidates(tracer, modules)
    pres, posts, norms, acts = [], [], [], []
    for tap in taps:
        if tap not in modules:
            raise ScriptError(f"tap '{tap}': {type(model).__name__} has no module of that name; "
                              f"modules ending in a ReLU: {', '.join(candidates) or 'none'}")
        values = tracer.outputs.get(tap, [])
        if len(values) != 1:
            raise ScriptError(f"tap '{tap}': the module is called {len(values)} times in one "
                              "forward pass; a tap must be called exactly once")
        if not isinstance(values[0], fx.Proxy):
            raise ScriptError(f"tap '{tap}': its output is not one tensor")
        post = values[0].node
        act = _activation(post, modules)
        if act is None:
            raise ScriptError(f"tap '{tap}': its output does not come from a ReLU (it comes from "
                              f"{post.op} {post.target}); modules ending in a ReLU: "
                              f"{', '.join(candidates) or 'none'}")
        pre = post.args[0] if post.args else post.kwargs.get("input")
        norm = norms_given.get(tap) or _norm_of(pre, modules)
        if norm is None:
            raise ScriptError(f"tap '{tap}': no norm produces its pre-ReLU map (it comes from "
                              f"{pre.op} {pre.target}); name one with --norm {tap}=MODULE_PATH "
                              "(a BatchNorm2d or GroupNorm with weight and bias)")
        if norm not in modules or not _is_norm_module(modules[norm]):
            raise ScriptError(f"tap '{tap}': norm '{norm}' is not a module of the model with a "
                              "weight and a bias (BatchNorm2d, GroupNorm, FrozenBatchNorm2d)")
        # The final activation, out of place: nothing can overwrite `pre` any more.
        pres.append(pre)
        posts.append(_replace_out_of_place(graph, post, act, pre))
        norms.append(norm)
        acts.append(act)
    if len(set(acts)) > 1:
        raise ScriptError(f"the taps end in different activations ({', '.join(acts)}); "
                          "mgd needs one kind per network")
    output = next(n for n in graph.nodes if n.op == "output")
    logits = output.args[0]
    if not no_logits and not isinstance(logits, fx.Node):
        raise ScriptError("the model's output is not one tensor (the logits); use --no-logits "
                          "for a network without a classifier")
    _out_of_place(graph, pres, modules)
    gm = _finish(model, graph, pres, posts, None if no_logits else logits)
    return gm, norms, acts[0]


def _reference_meta(model: nn.Module):
    for attr in ("extract_feature", "get_bn_before_relu", "get_channel_num"):
        if not hasattr(model, attr):
            raise ScriptError(f"--reference: {type(model).__name__} has no {attr}()")
    names = {id(m): n for n, m in model.named_modules()}
    norms = []
    for i, bn in enumerate(model.get_bn_before_relu()):
        if id(bn) not in names:
            raise ScriptError(f"--reference: get_bn_before_relu()[{i}] is not a module of the model")
        norms.append(names[id(bn)])
    return norms, [int(c) for c in model.get_channel_num()]


def script_model(model: nn.Module, taps: Optional[List[str]], input_shape: List[int], path: str,
                 norms: Optional[Dict[str, str]] = None, reference: bool = False,
                 no_logits: bool = False, source: str = "", quiet: bool = False):
    """Writes `model` as an mgd TorchScript file at `path`; returns the scripted module."""
    model = model.eval()
    norms = norms or {}
    mods = dict(model.named_modules())
    if reference:
        gm, norm_paths, channels = _build_reference(model, no_logits)
        positions, act = [f"position{i}" for i in range(len(norm_paths))], "relu"
    else:
        if not taps:
            raise ScriptError("give --taps (module paths; --list-taps shows the candidates) "
                              "or --reference")
        gm, norm_paths, act = _build_fx(model, taps, norms, no_logits)
        positions = list(taps)
        channels = [int(mods[n].weight.numel()) for n in norm_paths]
    root = _FxNet(gm, dict(positions=positions, norms=norm_paths, channels=channels,
                           activation=act, logits=0, input=list(input_shape), source=source))
    # Check on a sample: one map per position with its norm's channel count.
    x = torch.randn([2] + list(input_shape))
    with torch.no_grad():
        pre, post, logits = root(x)
    if len(pre) != len(norm_paths) or len(post) != len(pre):
        raise ScriptError(f"the model gives {len(pre)} maps for {len(norm_paths)} norms")
    for i, (p, n) in enumerate(zip(pre, norm_paths)):
        c = mods[n].weight.numel()
        if p.dim() != 4 or p.shape[1] != c:
            raise ScriptError(f"position {i} ({root.mgd_positions[i]}): its map is "
                              f"{list(p.shape)}, its norm '{n}' has {c} channels")
    if reference and len(channels) != len(pre):
        raise ScriptError(f"--reference: get_channel_num() has {len(channels)} entries for "
                          f"{len(pre)} maps")
    root.mgd_logits = 0 if logits is None else int(logits.shape[-1])
    try:
        scripted = torch.jit.script(root)
    except Exception as e:
        raise ScriptError(f"TorchScript cannot compile the model: {e}") from None
    with torch.no_grad():
        s_pre, _, s_logits = scripted(x)
    for a, b in zip(s_pre, pre):
        if not torch.allclose(a, b, rtol=1e-4, atol=1e-5):
            raise ScriptError("the scripted model computes other maps than the model")
    scripted.save(path)
    if not quiet:
        print(f"{path}: {len(pre)} positions, {root.mgd_logits} logits, input {list(input_shape)}")
        print(f"  {'position':<24} {'norm':<28} {'channels':>8}  map (batch 2)")
        for i, n in enumerate(norm_paths):
            print(f"  {root.mgd_positions[i]:<24} {n:<28} {channels[i]:>8}  {list(pre[i].shape)}")
    return scripted


def _load_model(spec: str, kwargs: dict) -> nn.Module:
    if ":" in spec:
        module_name, attr = spec.split(":", 1)
    else:
        module_name, _, attr = spec.rpartition(".")
    if not module_name:
        raise ScriptError(f"--model '{spec}': expected package.module:Callable or package.module.callable")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ScriptError(f"--model '{spec}': cannot import {module_name}: {e}") from None
    fn = module
    for part in attr.split("."):
        if not hasattr(fn, part):
            raise ScriptError(f"--model '{spec}': {module_name} has no {attr}")
        fn = getattr(fn, part)
    model = fn(**kwargs)
    if not isinstance(model, nn.Module):
        raise ScriptError(f"--model '{spec}' did not build a torch.nn.Module")
    return model


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--model", required=True, help="package.module:Callable building the model")
    p.add_argument("--kwargs", default="{}", help="its keyword arguments, JSON")
    p.add_argument("--weights", help="a state_dict (torch.save) to load first, strictly")
    p.add_argument("--taps", help="comma-separated module paths, one per position")
    p.add_argument("--norm", action="append", default=[], metavar="TAP=PATH",
                   help="the norm producing TAP's pre-ReLU map, where the search finds none")
    p.add_argument("--reference", action="store_true",
                   help="the model has the reference's interface (extract_feature, ...)")
    p.add_argument("--no-logits", action="store_true", help="a network without a classifier")
    p.add_argument("--input-shape", default="3,224,224", help="C,H,W of the check input")
    p.add_argument("--list-taps", action="store_true",
                   help="print the modules that end in a ReLU (tap candidates) and their norms")
    p.add_argument("-o", "--output", help="the TorchScript file to write")
    args = p.parse_args(argv)
    sys.path.insert(0, ".")  # --model from the current directory, as `python -m` would
    try:
        try:
            kwargs = json.loads(args.kwargs)
        except json.JSONDecodeError as e:
            raise ScriptError(f"--kwargs is not JSON: {e}") from None
        model = _load_model(args.model, kwargs)
        if args.weights:
            state = torch.load(args.weights, map_location="cpu")
            if isinstance(state, dict) and "state_dict" in state:
                state = state["state_dict"]
            try:
                model.load_state_dict(state)
            except RuntimeError as e:
                raise ScriptError(f"--weights {args.weights}: {e}") from None
        if args.list_taps:
            graph, tracer = _trace(model.eval())
            modules = dict(model.named_modules())
            print(f"{'tap (its output is a ReLU)':<32} {'norm producing its input':<32} channels")
            for path in _tap_candidates(tracer, modules):
                node = tracer.outputs[path][0].node
                norm = _norm_of(node.args[0], modules) if node.args else None
                c = modules[norm].weight.numel() if norm else "-"
                print(f"{path:<32} {norm or '(no norm found)':<32} {c}")
            return 0
        if not args.output:
            raise ScriptError("give -o FILE.pt (or --list-taps)")
        norms = {}
        for item in args.norm:
            tap, sep, path = item.partition("=")
            if not sep or not tap or not path:
                raise ScriptError(f"--norm '{item}': expected TAP=MODULE_PATH")
            norms[tap] = path
        taps = [t for t in args.taps.split(",") if t] if args.taps else None
        shape = [int(s) for s in args.input_shape.split(",")]
        script_model(model, taps, shape, args.output, norms=norms, reference=args.reference,
                     no_logits=args.no_logits, source=args.model)
    except ScriptError as e:
        print(f"mgd_script: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
