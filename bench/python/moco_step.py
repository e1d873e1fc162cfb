#!/usr/bin/python3
"""PyTorch baseline for bench/moco_bench.cpp: MoCo v2's training step as the official code
does it (facebookresearch/moco: moco/builder.py's MoCo.forward, main_moco.py's step), on
torchvision's ResNet with MoCo v2's MLP head, from the weights and queue mgd saved.

  step: with no_grad: the key encoder's momentum update, keys = normalize(encoder_k(im_k));
  q = normalize(encoder_q(im_q)); logits [q.k, q.queue] / T (einsum, as the builder); the
  keys enqueued; cross_entropy against zeros; zero_grad, backward, torch.optim.SGD step
  (momentum 0.9, weight decay 1e-4, no Nesterov: MoCo's). One process, one BatchNorm group:
  no key shuffling (mgd runs --moco-bn-splits 1 to match).

Server:  moco_step.py --serve --threads N
  prints "ready torch VERSION threads N", then one answer per line ("ok ..." or "error: ..."):
    threads N                  -> "ok N"
    setup ARCH DIM K M T DIR LR -> "ok PARAMS"  DIR/moco.pth (mgd's MoCo state_dict: encoder_q.*,
                                               encoder_k.*, queue, queue_ptr) and DIR/batch.pth
                                               {"im_q", "im_k"}
    step                       -> "ok SECONDS LOSS"
    quit
"""
import argparse
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

import twin_server


class MoCo(nn.Module):
    """moco/builder.py's MoCo (mlp=True), the encoders built by torchvision."""

    def __init__(self, arch, dim, K, m, T):
        super().__init__()
        self.K, self.m, self.T = K, m, T
        self.encoder_q = getattr(torchvision.models, arch)(num_classes=dim)
        self.encoder_k = getattr(torchvision.models, arch)(num_classes=dim)
        dim_mlp = self.encoder_q.fc.weight.shape[1]
        self.encoder_q.fc = nn.Sequential(nn.Linear(dim_mlp, dim_mlp), nn.ReLU(), self.encoder_q.fc)
        self.encoder_k.fc = nn.Sequential(nn.Linear(dim_mlp, dim_mlp), nn.ReLU(), self.encoder_k.fc)
        for p in self.encoder_k.parameters():
            p.requires_grad = False
        self.register_buffer("queue", torch.randn(dim, K))
        self.register_buffer("queue_ptr", torch.zeros(1, dtype=torch.long))

    @torch.no_grad()
    def _momentum_update_key_encoder(self):
        for param_q, param_k in zip(self.encoder_q.parameters(), self.encoder_k.parameters()):
            param_k.data = param_k.data * self.m + param_q.data * (1.0 - self.m)

    @torch.no_grad()
    def _dequeue_and_enqueue(self, keys):
        batch_size = keys.shape[0]
        ptr = int(self.queue_ptr)
        assert self.K % batch_size == 0
        self.queue[:, ptr:ptr + batch_size] = keys.T
        self.queue_ptr[0] = (ptr + batch_size) % self.K

    def forward(self, im_q, im_k):
        q = F.normalize(self.encoder_q(im_q), dim=1)
        with torch.no_grad():
            self._momentum_update_key_encoder()
            k = F.normalize(self.encoder_k(im_k), dim=1)
        l_pos = torch.einsum("nc,nc->n", [q, k]).unsqueeze(-1)
        l_neg = torch.einsum("nc,ck->nk", [q, self.queue.clone().detach()])
        logits = torch.cat([l_pos, l_neg], dim=1) / self.T
        labels = torch.zeros(logits.shape[0], dtype=torch.long)
        self._dequeue_and_enqueue(k)
        return logits, labels


class Case:
    def __init__(self, arch, dim, K, m, T, directory, lr):
        self.model = MoCo(arch, dim, K, m, T)
        self.model.load_state_dict(torch.load(directory + "/moco.pth"))  # strict
        self.model.train()
        batch = torch.load(directory + "/batch.pth")
        self.im_q, self.im_k = batch["im_q"], batch["im_k"]
        self.opt = torch.optim.SGD([p for p in self.model.parameters() if p.requires_grad], lr,
                                   momentum=0.9, weight_decay=1e-4)

    def step(self):
        logits, labels = self.model(self.im_q, self.im_k)
        loss = F.cross_entropy(logits, labels)
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        return loss.item()


def serve(threads):
    torch.set_num_threads(threads)
    state = {"case": None}

    def answer(w):
        if w[0] == "threads" and len(w) == 2:
            torch.set_num_threads(int(w[1]))
            return "%d" % torch.get_num_threads()
        if w[0] == "setup" and len(w) == 8:
            state["case"] = Case(w[1], int(w[2]), int(w[3]), float(w[4]), float(w[5]), w[6],
                                 float(w[7]))
            return "%d" % sum(p.numel() for p in state["case"].model.encoder_q.parameters())
        if w[0] == "step" and len(w) == 1:
            start = time.perf_counter()
            loss = state["case"].step()
            return "%r %r" % (time.perf_counter() - start, loss)
        raise ValueError("bad command: " + " ".join(w))

    twin_server.serve("torch %s threads %d" % (torch.__version__, torch.get_num_threads()), answer)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--serve", action="store_true", required=True)
    p.add_argument("--threads", type=int, default=2)
    serve(p.parse_args().threads)


if __name__ == "__main__":
    main()
