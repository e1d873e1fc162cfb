"""Writes the checkpoints the C++ reader is tested on, in both torch.save formats.

usage: write_checkpoints.py OUT_DIR
For FMT in zip and legacy it writes:
  tensors_FMT.pt   fixtures.tensors() plus fixtures.values() under 'values'
  state_FMT.pt     a bare state_dict (an OrderedDict with _metadata) of a trained fixtures.Net
  train_FMT.pt     {'state_dict' (DataParallel 'module.' names), 'epoch', 'optimizer'}
  small_FMT.pt     a tiny state_dict, the seed of the mutation test
  exploit_FMT.pt   a pickle calling os.system('touch OUT_DIR/exploited')
and io.pt, {'input': x, 'output': net(x)} of the trained Net, and the records of small_zip.pt
as files small_zip/data.pkl, small_zip/data/0, ... (to rebuild it around a mutated pickle).
"""
import collections
import os
import sys
import zipfile

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fixtures  # noqa: E402


def main(out):
    net, opt = fixtures.trained_net()
    with torch.no_grad():
        torch.save({'input': fixtures.net_input(), 'output': net(fixtures.net_input())},
                   os.path.join(out, 'io.pt'))
    state = net.state_dict()
    assert hasattr(state, '_metadata')
    wrapped = torch.nn.DataParallel(net).state_dict()
    assert all(k.startswith('module.') for k in wrapped)
    small = collections.OrderedDict(
        [('w', torch.arange(6, dtype=torch.float32).reshape(2, 3)), ('n', torch.tensor(4))])
    for fmt in ('zip', 'legacy'):
        everything = fixtures.tensors()
        everything['values'] = fixtures.values()
        fixtures.save(everything, os.path.join(out, f'tensors_{fmt}.pt'), fmt)
        fixtures.save(state, os.path.join(out, f'state_{fmt}.pt'), fmt)
        fixtures.save({'state_dict': wrapped, 'epoch': 12, 'optimizer': opt.state_dict()},
                      os.path.join(out, f'train_{fmt}.pt'), fmt)
        fixtures.save(small, os.path.join(out, f'small_{fmt}.pt'), fmt)
        fixtures.save({'w': fixtures.Exploit(os.path.join(out, 'exploited'))},
                      os.path.join(out, f'exploit_{fmt}.pt'), fmt)
    with zipfile.ZipFile(os.path.join(out, 'small_zip.pt')) as z:
        for name in z.namelist():
            target = os.path.join(out, 'small_zip', name.split('/', 1)[1])
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with open(target, 'wb') as f:
                f.write(z.read(name))


if __name__ == '__main__':
    main(sys.argv[1])
