"""Checks, in Python, the checkpoints that tests/serialize/save_test.cpp wrote in C++.

usage: check_checkpoints.py DIR
  DIR/tensors.pt  fixtures.tensors() plus fixtures.values() under 'values' (an OrderedDict)
  DIR/state.pt    a state_dict of fixtures.Net
  DIR/io.pt       {'input': x, 'output': the C++ Net's output on x}
  DIR/train.pt    {'state_dict', 'epoch', 'optimizer', 'rng', 'matching'}
Exits non-zero, saying what differs, unless torch.load reads every file with identical contents.
"""
import collections
import math
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fixtures  # noqa: E402

failures = []


def check(cond, what):
    if not cond:
        failures.append(what)


def same_tensor(name, got, want):
    if not isinstance(got, torch.Tensor):
        check(False, f'{name}: {type(got).__name__}, not a Tensor')
        return
    check(got.dtype == want.dtype, f'{name}: dtype {got.dtype} != {want.dtype}')
    check(got.shape == want.shape, f'{name}: shape {tuple(got.shape)} != {tuple(want.shape)}')
    check(got.stride() == want.stride(), f'{name}: stride {got.stride()} != {want.stride()}')
    check(got.storage_offset() == want.storage_offset(),
          f'{name}: offset {got.storage_offset()} != {want.storage_offset()}')
    check(got.requires_grad == want.requires_grad, f'{name}: requires_grad {got.requires_grad}')
    if got.dtype == want.dtype and got.shape == want.shape:
        check(torch.equal(got, want), f'{name}: values differ:\n{got}\n{want}')


def same_value(name, got, want):
    check(type(got) is type(want), f'{name}: {type(got).__name__} != {type(want).__name__}')
    if isinstance(want, dict):
        check(list(got.keys()) == list(want.keys()), f'{name}: keys {list(got)} != {list(want)}')
        for k in want:
            if k in got:
                same_value(f'{name}[{k!r}]', got[k], want[k])
    elif isinstance(want, (list, tuple)):
        check(len(got) == len(want), f'{name}: length {len(got)} != {len(want)}')
        for i, (g, w) in enumerate(zip(got, want)):
            same_value(f'{name}[{i}]', g, w)
    elif isinstance(want, float):
        check(got == want and math.copysign(1, got) == math.copysign(1, want),
              f'{name}: {got!r} != {want!r}')
    else:
        check(got == want, f'{name}: {got!r} != {want!r}')


def main(d):
    got = torch.load(os.path.join(d, 'tensors.pt'))
    check(type(got) is collections.OrderedDict, f'tensors.pt holds a {type(got).__name__}')
    want = fixtures.tensors()
    check(list(got)[:len(want)] == list(want), f'tensors.pt keys {list(got)}')
    for k, w in want.items():
        if k in got:
            same_tensor(k, got[k], w)
    if all(k in got for k in ('base', 'transposed', 'sliced', 'row')):
        ptr = got['base'].storage().data_ptr()
        check(all(got[k].storage().data_ptr() == ptr for k in ('transposed', 'sliced', 'row')),
              'views of one storage were saved as copies')
    same_value('values', got.get('values'), fixtures.values())

    # A state_dict passes the restricted unpickler and loads into the Python twin of the C++ Net.
    state = torch.load(os.path.join(d, 'state.pt'), weights_only=True)
    check(type(state) is collections.OrderedDict, f'state.pt holds a {type(state).__name__}')
    net = fixtures.Net()
    net.load_state_dict(state)  # strict: raises on any missing or unexpected key
    io = torch.load(os.path.join(d, 'io.pt'))
    with torch.no_grad():
        out = net.eval()(io['input'])
    check(torch.allclose(out, io['output'], atol=1e-5), f'outputs differ:\n{out}\n{io["output"]}')

    train = torch.load(os.path.join(d, 'train.pt'))
    check(train['epoch'] == 3, f"epoch {train['epoch']!r}")
    check(train['rng'] == bytes(range(256)), 'rng bytes differ')
    check(train['matching'] == [[0, 2, 1], [1, 0]], f"matching {train['matching']!r}")
    fixtures.Net().load_state_dict(train['state_dict'])
    opt = train['optimizer']
    check(opt['param_groups'][0]['lr'] == 0.1, f'optimizer {opt!r}')
    check(torch.equal(opt['state'][0]['momentum_buffer'], torch.full((2, 3), 0.5)),
          'momentum buffer differs')

    for f in failures:
        print('FAIL', f)
    return 1 if failures else 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1]))
