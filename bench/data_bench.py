#!/usr/bin/env python3
"""torchvision baseline for bench/data_bench.cpp: ImageFolder + DataLoader on the same folder.

  data_bench.py ROOT [--workers 2] [--batch 32] [--epochs 3] [--eval]

Prints one line per measured epoch and, last, "images/s: <best>" for data_bench to parse.
"""
import argparse
import time

import torch
import torchvision.transforms as T
from torch.utils.data import DataLoader
from torchvision.datasets import ImageFolder


def main():
    p = argparse.ArgumentParser()
    p.add_argument("root")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--eval", action="store_true", help="Resize 256 + CenterCrop 224 instead")
    a = p.parse_args()
    torch.manual_seed(0)
    normalize = T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    if a.eval:
        tf = T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor(), normalize])
    else:
        tf = T.Compose([T.RandomResizedCrop(224), T.RandomHorizontalFlip(), T.ToTensor(), normalize])
    ds = ImageFolder(f"{a.root}/train", tf)
    loader = DataLoader(ds, batch_size=a.batch, shuffle=True, num_workers=a.workers,
                        persistent_workers=a.workers > 0)
    best = 0.0
    for epoch in range(a.epochs + 1):  # the first epoch warms up (worker start, page cache)
        t0 = time.perf_counter()
        n = 0
        for images, labels in loader:
            assert images.shape[1:] == (3, 224, 224) and torch.isfinite(images[0]).all()
            n += images.shape[0]
        rate = n / (time.perf_counter() - t0)
        if epoch > 0:
            best = max(best, rate)
            print(f"torchvision epoch {epoch}: {n} images, {rate:.1f} images/s", flush=True)
    print(f"images/s: {best:.1f}")


if __name__ == "__main__":
    main()
