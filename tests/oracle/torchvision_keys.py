#!/usr/bin/python3
"""Prints 'name shape' for every state_dict entry of a torchvision model, one per line.

Usage: /usr/bin/python3 tests/oracle/torchvision_keys.py resnet18 [classes]
"""
import sys

import torchvision

name = sys.argv[1]
classes = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
model = getattr(torchvision.models, name)(num_classes=classes)
for key, value in model.state_dict().items():
    print(key, "x".join(str(d) for d in value.shape))
