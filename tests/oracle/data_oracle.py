#!/usr/bin/env python3
"""Reference outputs for mgd's data-pipeline tests, from PIL and torchvision.

Run with an interpreter that has PIL, numpy and torchvision (Debian: python3-torchvision).

  data_oracle.py images OUTDIR   writes test images in many modes with PIL, plus what
                                 PIL decodes each to (Image.open(f).convert("RGB")): NAME.rgb,
                                 raw bytes, and a line "NAME HEIGHT WIDTH" in OUTDIR/manifest.txt
  data_oracle.py jobs FILE       runs torchvision transforms listed in FILE, one per line,
                                 fields separated by tabs (paths may hold spaces):
                                   resized_crop IN OUT top left height width out_h out_w
                                   resize IN OUT size            (shorter side)
                                   resize_hw IN OUT height width
                                   center_crop IN OUT height width
                                   pad_crop IN OUT padding top left height width
                                   hflip IN OUT
                                   to_tensor IN OUT              (raw float32, C x H x W)
                                   normalize IN OUT m0 m1 m2 s0 s1 s2
                                   eval IN OUT resize crop       (Resize, CenterCrop, ToTensor,
                                                                  ImageNet Normalize)
                                 IN is an image file; OUT a PNG, or raw float32 for tensors
  data_oracle.py folder DIR OUT  torchvision.datasets.ImageFolder(DIR): its classes on the
                                 first line, then "path<TAB>label" per sample
  data_oracle.py hue RAW H W OUT F...
                                 torchvision's adjust_hue on the PIL image of RAW (H x W x 3
                                 bytes) for each factor F; OUT: the results' bytes, one after
                                 the other
"""
import sys

import numpy as np
from PIL import Image


def smooth(h, w, channels, seed):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    planes = []
    for _ in range(channels):
        fx, fy, ph = 1 + 5 * rng.random(), 1 + 5 * rng.random(), 6.28 * rng.random()
        p = 127.5 + 100 * np.sin(fx * x / w * 3.14 + ph) * np.cos(fy * y / h * 3.14)
        p += 20 * (rng.random((h, w)) - 0.5)
        planes.append(np.clip(p, 0, 255).astype(np.uint8))
    return np.stack(planes, axis=-1) if channels > 1 else planes[0]


def images(out):
    rgb = Image.fromarray(smooth(61, 83, 3, 1), "RGB")
    big = Image.fromarray(smooth(375, 500, 3, 2), "RGB")
    gray = Image.fromarray(smooth(47, 58, 1, 3), "L")
    rgba = Image.fromarray(smooth(33, 29, 4, 4), "RGBA")
    made = {
        "rgb420.jpg": lambda p: rgb.save(p, quality=90, subsampling=2),
        "rgb422.jpg": lambda p: rgb.save(p, quality=90, subsampling=1),
        "rgb444.jpg": lambda p: rgb.save(p, quality=95, subsampling=0),
        "gray.jpg": lambda p: gray.save(p, quality=90),
        "progressive.jpg": lambda p: rgb.save(p, quality=85, progressive=True),
        "cmyk.jpg": lambda p: rgb.convert("CMYK").save(p, quality=90),
        "big.jpg": lambda p: big.save(p, quality=90),
        "big_progressive.jpg": lambda p: big.save(p, quality=90, progressive=True),
        "rgb.png": lambda p: rgb.save(p),
        "rgba.png": lambda p: rgba.save(p),
        "la.png": lambda p: rgba.convert("LA").save(p),
        "gray.png": lambda p: gray.save(p),
        "bw.png": lambda p: gray.convert("1").save(p),
        "palette.png": lambda p: rgb.convert("P", palette=Image.ADAPTIVE, colors=50).save(p),
        "palette_trns.png": lambda p: rgb.convert("P", palette=Image.ADAPTIVE, colors=16).save(
            p, transparency=3),
        "big.png": lambda p: big.save(p),
    }
    with open(f"{out}/manifest.txt", "w") as manifest:
        for name, save in made.items():
            path = f"{out}/{name}"
            save(path)
            with Image.open(path) as im:
                ref = np.asarray(im.convert("RGB"))
            ref.tofile(f"{path}.rgb")
            manifest.write(f"{name} {ref.shape[0]} {ref.shape[1]}\n")


def jobs(path):
    import torch
    import torchvision.transforms as T
    import torchvision.transforms.functional as F
    from torchvision.transforms import InterpolationMode

    bilinear = InterpolationMode.BILINEAR
    for line in open(path):
        a = line.rstrip("\n").split("\t")
        if not a[0]:
            continue
        op, src, dst, args = a[0], a[1], a[2], a[3:]
        img = Image.open(src).convert("RGB")
        n = [float(v) for v in args] if op == "normalize" else [int(v) for v in args]
        tensor = None
        if op == "resized_crop":
            out = F.resized_crop(img, n[0], n[1], n[2], n[3], [n[4], n[5]], bilinear)
        elif op == "resize":
            out = F.resize(img, n[0], bilinear)
        elif op == "resize_hw":
            out = F.resize(img, [n[0], n[1]], bilinear)
        elif op == "center_crop":
            out = F.center_crop(img, [n[0], n[1]])
        elif op == "pad_crop":
            out = F.crop(F.pad(img, n[0], fill=0), n[1], n[2], n[3], n[4])
        elif op == "hflip":
            out = F.hflip(img)
        elif op == "to_tensor":
            tensor = T.ToTensor()(img)
        elif op == "normalize":
            tensor = T.Normalize(n[:3], n[3:])(T.ToTensor()(img))
        elif op == "eval":
            tensor = T.Compose([
                T.Resize(n[0]), T.CenterCrop(n[1]), T.ToTensor(),
                T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])(img)
        else:
            raise SystemExit(f"unknown op {op}")
        if tensor is not None:
            tensor.contiguous().numpy().astype(np.float32).tofile(dst)
        else:
            out.save(dst)


def folder(root, out):
    from torchvision.datasets import ImageFolder

    ds = ImageFolder(root)
    with open(out, "w") as f:
        f.write("\t".join(ds.classes) + "\n")
        for path, label in ds.samples:
            f.write(f"{path}\t{label}\n")


def hue(raw, h, w, out, factors):
    import torchvision.transforms.functional as F

    img = Image.fromarray(np.fromfile(raw, dtype=np.uint8).reshape(h, w, 3), "RGB")
    with open(out, "wb") as f:
        for factor in factors:
            f.write(np.asarray(F.adjust_hue(img, factor), dtype=np.uint8).tobytes())


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "images":
        images(sys.argv[2])
    elif cmd == "jobs":
        jobs(sys.argv[2])
    elif cmd == "folder":
        folder(sys.argv[2], sys.argv[3])
    elif cmd == "hue":
        hue(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5],
            [float(v) for v in sys.argv[6:]])
    else:
        raise SystemExit(__doc__)
