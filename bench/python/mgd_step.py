#!/usr/bin/python3
"""PyTorch baseline for bench/step_bench.cpp: the MGD training step and the matching update,
written in Python the way the authors' reference does them (kaiyuyue/mgd, mgd/builder.py and
cls/main_mgd.py), on the networks of bench/python/mgd_nets.py.

  * MGD step: teacher forward (no autograd graph; --teacher-graph records one, as the
    reference does), student forward, per position the student map through its own
    BatchNorm2d, the teacher map reduced to the student's channels (AMP: the k matched
    channels stacked, argmax of |value| over them, gather; margin = mean of theirs. SM: the
    matched channels), the partial L2 with margins, weighted 1 / 2^(n-i-1); loss = CE +
    d_loss / batch / loss_factor; zero_grad, backward, torch.optim.SGD step (momentum 0.9,
    Nesterov, weight decay 1e-4).
  * plain step: teacher forward (no graph) + the student's own training step (CE only).
  * matching update: both networks in eval mode without gradients over the tracking images;
    per position the channels L2-normalised, cost += sum over the batch of 2 - 2 <s, t>
    (torch.bmm, then numpy float64, as the reference); then the mean cost tiled k times
    (np.concatenate) and solved by scipy.optimize.linear_sum_assignment (SM: the s x t matrix,
    rectangular; the reference pads it to t x t).

Server (driven by step_bench):  mgd_step.py --serve --threads N
  prints "ready torch VERSION threads N", then answers one line per command:
    setup PAIR KIND           -> "ok T S"    builds (KIND plain|amp|sm); for amp/sm tracks
                                             2 batches and solves, untimed; T and S: the
                                             teacher's and student's parameter counts
    step PAIR KIND            -> "ok SECONDS LOSS"
    teacher PAIR              -> "ok SECONDS SUM"  the teacher's eval-mode forward (no_grad)
                                             of a fixed batch; SUM: sum of |logits|
    matching PAIR IMAGES      -> "ok SECONDS COST"  one tracking pass over IMAGES images + solve
                                             (AMP matching), COST the mean matched cost
    rss                       -> "ok KB"     peak resident set size of this process
    quit
  Errors answer "error: ..." (bench/python/twin_server.py's protocol).
Standalone:  mgd_step.py --pair r50_r18 --kind amp [--reps 5] [--threads 2]
"""
import argparse
import os
import resource
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from scipy.optimize import linear_sum_assignment  # noqa: E402
from scipy.special import ndtr  # noqa: E402

from mgd_nets import PAIRS  # noqa: E402
import twin_server  # noqa: E402

LOSS_FACTOR = 1e4
LR = 1e-4  # small: random networks give large losses, and the cost does not depend on it
SETUP_TRACK_BATCHES = 2


def margins_from_bn(bn):
    """MGD spec 2 (the reference's get_margin_from_BN), vectorised; sigma = 0 as mgd does."""
    s = bn.weight.detach().double().abs().numpy()
    m = bn.bias.detach().double().numpy()
    out = np.where(m < 0, m, 0.0)
    ok = s > 0
    z = np.divide(m, s, out=np.zeros_like(m), where=ok)
    tail = ndtr(-z)
    pdf = np.exp(-0.5 * z * z) / np.sqrt(2 * np.pi)
    normal = ok & (tail > 0.001)
    out = np.where(normal, m - s * pdf / np.where(normal, tail, 1.0), out)
    out = np.where(ok & ~(tail > 0.001), -3.0 * s, out)
    return torch.tensor(out, dtype=torch.float32).view(1, -1, 1, 1)


def distillation_loss(source, target, margin):
    target = torch.max(target, margin)
    loss = F.mse_loss(source, target, reduction="none")
    loss = loss * ((source > target) | (target > 0)).float()
    return loss.sum()


class Distiller(nn.Module):
    """The reference's distiller. Classification: BatchNorm2d on the student side, position i
    of n divided by 2^(n-i-1). Detection (bench/python/detection.py) passes its own
    student-side norm (GroupNorm(32, s)) and divisors ([1, 1, 0.1, 0.1])."""

    def __init__(self, teacher, student, reducer, teacher_graph=False, norm=None, divisors=None):
        super().__init__()
        assert reducer in ("amp", "sm")
        self.teacher, self.student, self.reducer = teacher, student, reducer
        self.teacher_graph = teacher_graph
        if not teacher_graph:
            for p in teacher.parameters():
                p.requires_grad_(False)
        self.t_channels = [bn.num_features for bn in teacher.feature_norms()]
        self.s_channels = [bn.num_features for bn in student.feature_norms()]
        self.n = len(self.t_channels)
        self.BNs = nn.ModuleList([(norm or nn.BatchNorm2d)(s) for s in self.s_channels])
        self.divisors = divisors or [2 ** (self.n - i - 1) for i in range(self.n)]
        for i, bn in enumerate(teacher.feature_norms()):
            self.register_buffer("margin%d" % i, margins_from_bn(bn))
        self.groups = [1 if reducer == "sm" else t // s
                       for s, t in zip(self.s_channels, self.t_channels)]
        # The reference shaves every position when any has t % s != 0.
        self.shave = reducer != "sm" and any(t % s for s, t in zip(self.s_channels, self.t_channels))
        self.index = [None] * self.n
        self.reset_tracking()

    def train(self, mode=True):
        super().train(mode)
        self.teacher.eval()
        return self

    # --- tracking and matching (reference: track_running_stats, update_flow) ---
    def reset_tracking(self):
        self.adj = [np.zeros((s, t)) for s, t in zip(self.s_channels, self.t_channels)]
        self.tracked = 0

    def track(self, x):
        with torch.no_grad():
            t_feats, _ = self.teacher.extract(x)
            s_feats, _ = self.student.extract(x)
            for i in range(self.n):
                t, s = t_feats[i], s_feats[i]
                b, tc = t.shape[:2]
                sc = s.shape[1]
                t = F.normalize(t.reshape(b, tc, -1), p=2, dim=2)
                s = F.normalize(s.reshape(b, sc, -1), p=2, dim=2)
                cost = 2 - 2 * torch.bmm(s, t.transpose(1, 2))
                self.adj[i] += cost.sum(dim=0).cpu().numpy()
            self.tracked += b

    def update_matching(self):
        total = 0.0
        for i in range(self.n):
            s, t, k = self.s_channels[i], self.t_channels[i], self.groups[i]
            adj = np.concatenate([self.adj[i]] * k, axis=0) if k > 1 else self.adj[i]
            cost = adj / self.tracked
            if self.shave:
                cost = cost[:, : k * s]
            rows, cols = linear_sum_assignment(cost)
            total += cost[rows, cols].sum() / (k * s)
            self.index[i] = torch.from_numpy(cols.astype(np.int64)).view(k, s)
        return total / self.n

    def matching_pass(self, batches):
        was_training = self.student.training
        self.student.eval()
        self.reset_tracking()
        for x in batches:
            self.track(x)
        self.student.train(was_training)
        return self.update_matching()

    # --- reducers (reference: amp, sm) ---
    def reduce(self, i, t_feat):
        margins = getattr(self, "margin%d" % i)
        index = self.index[i]
        b, _, h, w = t_feat.shape
        s = index.shape[1]
        if self.reducer == "sm":
            return t_feat[:, index[0]], margins[:, index[0]]
        t = torch.stack([t_feat[:, index[g]] for g in range(index.shape[0])], dim=2)
        m = torch.stack([margins[:, index[g]] for g in range(index.shape[0])], dim=2)
        t = t.reshape(b, s, index.shape[0], -1)
        m = m.reshape(1, s, index.shape[0], -1)
        t_inds = torch.argmax(torch.abs(t), dim=2)
        t = t.gather(2, t_inds.unsqueeze(2))
        return t.reshape(b, s, h, w), m.mean(dim=2).reshape(1, s, 1, 1)

    def forward(self, x):
        if self.teacher_graph:
            t_feats, _ = self.teacher.extract(x)
        else:
            with torch.no_grad():
                t_feats, _ = self.teacher.extract(x)
        s_feats, s_out = self.student.extract(x)
        loss = 0
        for i in range(self.n):
            s = self.BNs[i](s_feats[i])
            t, m = self.reduce(i, t_feats[i])
            loss = loss + distillation_loss(s, t.detach(), m) / self.divisors[i]
        return s_out, loss


def sgd(params):
    return torch.optim.SGD(params, lr=LR, momentum=0.9, weight_decay=1e-4, nesterov=True)


class Case:
    """One pair and kind: networks, optimizer, a fixed batch."""

    def __init__(self, pair, kind, teacher, teacher_graph=False):
        spec = PAIRS[pair]
        torch.manual_seed(1)
        self.kind, self.teacher = kind, teacher
        self.student = spec["student"]()
        self.x = torch.randn(spec["batch"], spec["channels"], spec["size"], spec["size"])
        self.y = torch.randint(0, spec["classes"], (spec["batch"],))
        if kind == "plain":
            self.student.train()
            self.opt = sgd(self.student.parameters())
            self.distiller = None
        else:
            self.distiller = Distiller(teacher, self.student, kind, teacher_graph)
            self.distiller.matching_pass([torch.randn_like(self.x)
                                          for _ in range(SETUP_TRACK_BATCHES)])
            self.distiller.train()
            self.opt = sgd(list(self.student.parameters()) + list(self.distiller.BNs.parameters()))

    def step(self):
        x, y = self.x, self.y
        if self.distiller is None:
            with torch.no_grad():
                self.teacher(x)
            loss = F.cross_entropy(self.student(x), y)
        else:
            logits, d_loss = self.distiller(x)
            loss = F.cross_entropy(logits, y) + d_loss / x.shape[0] / LOSS_FACTOR
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        return loss.item()


class Bench:
    def __init__(self, teacher_graph=False):
        self.teachers, self.cases, self.teacher_graph = {}, {}, teacher_graph

    def teacher(self, pair):
        if pair not in self.teachers:
            torch.manual_seed(0)
            t = PAIRS[pair]["teacher"]()
            t.eval()
            self.teachers[pair] = t
        return self.teachers[pair]

    def case(self, pair, kind):
        if pair not in PAIRS or kind not in ("plain", "amp", "sm"):
            raise ValueError("unknown case %s:%s" % (pair, kind))
        if (pair, kind) not in self.cases:
            self.cases[(pair, kind)] = Case(pair, kind, self.teacher(pair), self.teacher_graph)
        return self.cases[(pair, kind)]

    def step(self, pair, kind):
        case = self.case(pair, kind)
        start = time.perf_counter()
        loss = case.step()
        return time.perf_counter() - start, loss

    def teacher_forward(self, pair):
        """The teacher's eval-mode forward (no_grad) on a fixed batch of the pair, in s."""
        spec = PAIRS[pair]
        if not hasattr(self, "_tx") or self._tx[0] != pair:
            torch.manual_seed(3)
            self._tx = (pair, torch.randn(spec["batch"], spec["channels"], spec["size"],
                                          spec["size"]))
        teacher, x = self.teacher(pair), self._tx[1]
        start = time.perf_counter()
        with torch.no_grad():
            out = teacher(x)
        return time.perf_counter() - start, float(out.float().abs().sum())

    def matching(self, pair, images):
        spec = PAIRS[pair]
        if not hasattr(self, "_match") or self._match[0] != (pair, images):
            torch.manual_seed(2)
            student = spec["student"]()
            d = Distiller(self.teacher(pair), student, "amp", self.teacher_graph)
            b = spec["batch"]
            batches = [torch.randn(min(b, images - i), spec["channels"], spec["size"], spec["size"])
                       for i in range(0, images, b)]
            self._match = ((pair, images), d, batches)
        _, d, batches = self._match
        start = time.perf_counter()
        cost = d.matching_pass(batches)
        return time.perf_counter() - start, cost


def count(net):
    return sum(p.numel() for p in net.parameters())


def peak_rss_kb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def serve(threads, teacher_graph):
    bench = Bench(teacher_graph)

    def answer(words):
        if words[0] == "setup" and len(words) == 3:
            case = bench.case(words[1], words[2])
            return "%d %d" % (count(case.teacher), count(case.student))
        if words[0] == "step" and len(words) == 3:
            return "%r %r" % bench.step(words[1], words[2])
        if words[0] == "teacher" and len(words) == 2:
            return "%r %r" % bench.teacher_forward(words[1])
        if words[0] == "matching" and len(words) == 3:
            return "%r %r" % bench.matching(words[1], int(words[2]))
        if words[0] == "rss" and len(words) == 1:
            return "%d" % peak_rss_kb()
        raise ValueError("bad command: " + " ".join(words))

    twin_server.serve("torch %s threads %d" % (torch.__version__, torch.get_num_threads()), answer)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--serve", action="store_true")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--teacher-graph", action="store_true",
                   help="record the teacher's autograd graph in the MGD step, as the reference")
    p.add_argument("--pair", default="r50_r18", choices=sorted(PAIRS))
    p.add_argument("--kind", default="amp", choices=["plain", "amp", "sm", "matching"])
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--images", type=int, default=320, help="tracking images (--kind matching)")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    if a.serve:
        serve(a.threads, a.teacher_graph)
        return
    bench = Bench(a.teacher_graph)
    times = []
    for rep in range(a.reps + 1):  # the first is a warm-up
        if a.kind == "matching":
            seconds, _ = bench.matching(a.pair, a.images)
        else:
            seconds, _ = bench.step(a.pair, a.kind)
        if rep > 0:
            times.append(seconds)
    med = float(np.median(times))
    unit = "%.1f images/s" % (a.images / med) if a.kind == "matching" else "%.1f ms" % (1e3 * med)
    print("%s %s: median %s over %d, %d threads, peak RSS %.0f MiB" %
          (a.pair, a.kind, unit, a.reps, torch.get_num_threads(), peak_rss_kb() / 1024))


if __name__ == "__main__":
    main()
