#!/usr/bin/python3
"""PyTorch side of the MoCo tests (tests/models/moco_test.cpp), on tensors mgd wrote.

Each command reads the dict IN (torch.save format, written by mgd) and writes the dict OUT.
The expressions are those of MoCo (facebookresearch/moco, moco/builder.py) and of its CIFAR
demo's kNN monitor and SplitBatchNorm (colab/moco_cifar10_demo.ipynb), retyped here.

  logits IN OUT     IN {q, k, queue, t}: OUT {logits, loss} as MoCo.forward computes them
                    (l_pos, l_neg by einsum, cat, /= T; CrossEntropyLoss against zeros).
  momentum IN OUT   IN {key: [tensors], query: [tensors], m}: OUT {key: [updated]} with
                    param_k * m + param_q * (1 - m).
  enqueue IN OUT    IN {queue, keys, ptr}: OUT {queue, ptr} by _dequeue_and_enqueue
                    (K % batch == 0, as MoCo asserts).
  knn IN OUT        IN {features, bank (d x N as the demo holds it), labels, classes, k, t}:
                    OUT {scores} of the demo's knn_predict.
  splitbn IN OUT    IN {state (an encoder state_dict), input, splits, arch, dim, mlp}: a
                    torchvision ResNet with one input channel, MoCo's MLP head in place of fc
                    and the demo's SplitBatchNorm, in training mode: OUT {output}.
  official IN OUT   IN {input, dim}: OUT is a MoCo v2 training checkpoint as main_moco.py
                    writes it (ResNet-18, one input channel, legacy torch.save, module.
                    names, optimizer state); OUT.out {output}: its query encoder in
                    evaluation mode on input.
"""
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision


def logits(d):
    q, k, queue, t = d["q"], d["k"], d["queue"], float(d["t"])
    l_pos = torch.einsum("nc,nc->n", [q, k]).unsqueeze(-1)
    l_neg = torch.einsum("nc,ck->nk", [q, queue.clone().detach()])
    out = torch.cat([l_pos, l_neg], dim=1)
    out /= t
    labels = torch.zeros(out.shape[0], dtype=torch.long)
    loss = nn.CrossEntropyLoss()(out, labels)
    return {"logits": out, "loss": loss}


def momentum(d):
    m = float(d["m"])
    keys = [k.clone() for k in d["key"]]
    for i, (param_k, param_q) in enumerate(zip(keys, d["query"])):
        keys[i] = param_k * m + param_q * (1.0 - m)
    return {"key": keys}


def enqueue(d):
    queue, keys, ptr = d["queue"].clone(), d["keys"], int(d["ptr"])
    batch_size = keys.shape[0]
    assert queue.shape[1] % batch_size == 0
    queue[:, ptr:ptr + batch_size] = keys.T
    ptr = (ptr + batch_size) % queue.shape[1]
    return {"queue": queue, "ptr": ptr}


def knn(d):
    feature, feature_bank, feature_labels = d["features"], d["bank"], d["labels"]
    classes, knn_k, knn_t = int(d["classes"]), int(d["k"]), float(d["t"])
    sim_matrix = torch.mm(feature, feature_bank)
    sim_weight, sim_indices = sim_matrix.topk(k=knn_k, dim=-1)
    sim_labels = torch.gather(feature_labels.expand(feature.size(0), -1), dim=-1,
                              index=sim_indices)
    sim_weight = (sim_weight / knn_t).exp()
    one_hot_label = torch.zeros(feature.size(0) * knn_k, classes, device=sim_labels.device)
    one_hot_label = one_hot_label.scatter(dim=-1, index=sim_labels.view(-1, 1), value=1.0)
    pred_scores = torch.sum(one_hot_label.view(feature.size(0), -1, classes) *
                            sim_weight.unsqueeze(dim=-1), dim=1)
    return {"scores": pred_scores}


class SplitBatchNorm(nn.BatchNorm2d):
    def __init__(self, num_features, num_splits, **kw):
        super().__init__(num_features, **kw)
        self.num_splits = num_splits

    def forward(self, input):
        N, C, H, W = input.shape
        if self.training or not self.track_running_stats:
            running_mean_split = self.running_mean.repeat(self.num_splits)
            running_var_split = self.running_var.repeat(self.num_splits)
            outcome = F.batch_norm(
                input.view(-1, C * self.num_splits, H, W), running_mean_split, running_var_split,
                self.weight.repeat(self.num_splits), self.bias.repeat(self.num_splits),
                True, self.momentum, self.eps).view(N, C, H, W)
            self.running_mean.data.copy_(running_mean_split.view(self.num_splits, C).mean(dim=0))
            self.running_var.data.copy_(running_var_split.view(self.num_splits, C).mean(dim=0))
            return outcome
        return F.batch_norm(input, self.running_mean, self.running_var, self.weight, self.bias,
                            False, self.momentum, self.eps)


def splitbn(d):
    splits, dim, mlp = int(d["splits"]), int(d["dim"]), bool(d["mlp"])
    norm = lambda c: SplitBatchNorm(c, splits)  # noqa: E731
    net = getattr(torchvision.models, d["arch"])(num_classes=dim, norm_layer=norm)
    net.conv1 = nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
    if mlp:
        dim_mlp = net.fc.weight.shape[1]
        net.fc = nn.Sequential(nn.Linear(dim_mlp, dim_mlp), nn.ReLU(), net.fc)
    net.load_state_dict(d["state"])
    net.train()
    with torch.no_grad():
        out = net(d["input"])
    return {"output": out}


def official(d, dst):
    """MoCo's own training checkpoint, as main_moco.py saves it under DDP: legacy torch.save
    format, every name under module., the optimizer's state beside; plus what its query
    encoder computes in evaluation mode on IN["input"] (returned)."""
    torch.manual_seed(0)
    dim = int(d["dim"])

    def encoder():
        net = torchvision.models.resnet18(num_classes=dim)
        net.conv1 = nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
        net.fc = nn.Sequential(nn.Linear(512, 512), nn.ReLU(), net.fc)
        for m in net.modules():  # trained-looking statistics and affines
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.data.uniform_(0.5, 1.5)
                m.bias.data.normal_(0, 0.1)
        return net

    q, k = encoder(), encoder()
    state = {}
    for prefix, net in (("module.encoder_q.", q), ("module.encoder_k.", k)):
        for name, value in net.state_dict().items():
            state[prefix + name] = value
    state["module.queue"] = F.normalize(torch.randn(dim, 64), dim=0)
    state["module.queue_ptr"] = torch.zeros(1, dtype=torch.long)
    # A step of rate 0: the optimizer holds momentum buffers, the weights stay as drawn.
    optimizer = torch.optim.SGD(q.parameters(), 0.0, momentum=0.9, weight_decay=1e-4)
    q(torch.randn(2, 1, 32, 32)).sum().backward()
    optimizer.step()
    torch.save({"epoch": 200, "arch": "resnet18", "state_dict": state,
                "optimizer": optimizer.state_dict()}, dst, _use_new_zipfile_serialization=False)
    q.eval()
    with torch.no_grad():
        return {"output": q(d["input"])}


def main():
    command, src, dst = sys.argv[1:4]
    d = torch.load(src)
    if command == "official":  # writes the checkpoint to dst, the expectation to dst + ".out"
        torch.save(official(d, dst), dst + ".out")
        return
    out = {"logits": logits, "momentum": momentum, "enqueue": enqueue, "knn": knn,
           "splitbn": splitbn}[command](d)
    torch.save(out, dst)


if __name__ == "__main__":
    main()
