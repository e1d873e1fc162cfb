"""Checkpoint fixtures shared by the serialize tests (tests/serialize/*_test.cpp).

The same tensors and values are built in C++ by tests/serialize/serialize_testing.h; keep the
two in step. Values are exact in every dtype, so files must match bit for bit.
"""
import collections
import os

import torch


def tensors():
    """Every dtype, a scalar, an empty tensor, views sharing one storage, a parameter."""
    base = torch.arange(20, dtype=torch.float32).reshape(4, 5)
    return collections.OrderedDict([
        ('f32', (torch.arange(24, dtype=torch.float32) * 0.25 - 3).reshape(2, 3, 4)),
        ('f64', (torch.arange(6, dtype=torch.float64) * 1.5 - 2).reshape(3, 2)),
        ('f16', torch.arange(8, dtype=torch.float16) * 0.5),
        ('bf16', torch.arange(8, dtype=torch.bfloat16) * 0.25),
        ('i64', torch.arange(-5, 5, dtype=torch.int64) * 1000000007),
        ('i32', torch.arange(-3, 3, dtype=torch.int32)),
        ('i16', torch.arange(-3, 3, dtype=torch.int16)),
        ('i8', torch.arange(-4, 4, dtype=torch.int8)),
        ('u8', torch.arange(250, 256).to(torch.uint8)),
        ('bool', torch.arange(6) % 3 == 0),
        ('c64', torch.complex(torch.tensor([1.0, -3.5]), torch.tensor([2.0, 0.0]))),
        ('scalar', torch.tensor(3.5)),
        ('empty', torch.zeros(0, 3)),
        ('base', base),
        ('transposed', base.t()),
        ('sliced', base[1:, ::2]),
        ('row', base[2]),
        ('expanded', torch.tensor([1.0, 2.0]).expand(3, 2)),
        ('param', torch.nn.Parameter(torch.arange(3, dtype=torch.float32))),
    ])


def values():
    """Everything but tensors that a training checkpoint holds."""
    return {
        'epoch': 7,
        'lr': 0.125,
        'name': 'r\u00e9sum\u00e9 \u2713',
        'flags': [True, False, None],
        'pair': (1, (2.5, 'x')),
        'ids': {0: 'a', -7: 'b'},
        'big': 2**40 + 1,
        'neg': -123456789012,
        'raw': b'\x00\x01\xfe\xff',
        'empty_list': [],
        'empty_dict': {},
        'floats': [float('inf'), -0.0, 1e-300],
    }


class Net(torch.nn.Module):
    """Mirrored by NetImpl in serialize_testing.h: same parameter names and shapes."""

    def __init__(self):
        super().__init__()
        self.features = torch.nn.Sequential(
            torch.nn.Conv2d(2, 4, 3, padding=1), torch.nn.BatchNorm2d(4), torch.nn.ReLU())
        self.fc = torch.nn.Linear(4 * 5 * 5, 3)

    def forward(self, x):
        return self.fc(torch.flatten(self.features(x), 1))


def net_input():
    return (torch.arange(2 * 2 * 5 * 5, dtype=torch.float32).reshape(2, 2, 5, 5) % 7) * 0.5 - 1


def trained_net():
    """A Net with non-trivial weights and BatchNorm statistics, in eval mode."""
    torch.manual_seed(0)
    net = Net()
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    for _ in range(2):
        loss = net(net_input()).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net.eval(), opt


def save(obj, path, fmt):
    torch.save(obj, path, _use_new_zipfile_serialization=(fmt == 'zip'))


class Exploit:
    """Pickles as a call to os.system: a loader that executes pickles runs `touch <marker>`."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, ('touch ' + self.marker,))
