// PyTorch checkpoints without Python: read what `torch.save` writes, write what `torch.load`
// reads.
//
// Reading understands both containers of `torch.save`:
//  - the zip format (the default since PyTorch 1.6): `<archive>/data.pkl`, a pickle, plus one
//    `<archive>/data/<key>` record of raw bytes per tensor storage;
//  - the legacy format (`_use_new_zipfile_serialization=False`, and everything before 1.6,
//    e.g. torchvision's published ImageNet weights): five pickles in a row (magic number,
//    protocol version, system info, the object, its storage keys), then each storage's bytes
//    after an 8-byte element count.
// The pickle is interpreted, never executed: it may only name the callables checkpoints use
// (collections.OrderedDict, torch._utils._rebuild_tensor_v2 / _rebuild_parameter, the
// torch.*Storage classes, _codecs.encode for bytes, ...); any other global, such as a class of
// the training script or `os.system`, is an error naming it. Every size and offset is checked
// against the file, so corrupt, truncated or hostile files give an error naming the file and
// the problem, never a crash or a huge allocation.
//
// Writing produces the zip format with a protocol-2 pickle made of the opcodes and globals
// `torch.save` itself uses, so any PyTorch >= 1.6 loads it; state_dicts also pass
// `torch.load(..., weights_only=True)`. Writes are atomic.
//
//   Value ckpt = mgd::serialize::load_file("resnet18-5c106cde.pth");
//   mgd::serialize::save_file("copy.pt", ckpt);   // Python: torch.load("copy.pt")
//
// (torch::pickle_save/pickle_load were not enough: pickle_load rejects OrderedDicts, and
// pickle_save wraps containers in torch.jit._pickle type tags that weights_only loads reject.)
#pragma once

#include <cstddef>
#include <string>

#include "mgd/serialize/value.h"

namespace mgd::serialize {

/// Reads a checkpoint written by Python's `torch.save` (either container) or by save_file().
/// Tensors are loaded on the CPU whatever device they were saved from; tensors that were views
/// of one storage are views of one storage again; `requires_grad` is kept. Throws c10::Error
/// whose message starts with `path` when the file is missing, corrupt, truncated, or holds
/// anything but None, bool, int, float, str, bytes, tensors, lists, tuples and dicts.
Value load_file(const std::string& path);

/// load_file() for a checkpoint held in memory; `name` stands for the file in error messages.
Value load_bytes(const void* data, size_t size, const std::string& name = "<memory>");

/// Writes `value` to `path` in torch.save's zip format. Tensors are saved with their dtype,
/// shape, strides and storage sharing, as if from the CPU; supported dtypes are those with a
/// torch.*Storage class (float, double, half, bfloat16, int8/16/32/64, uint8, bool, complex).
/// Atomic: the file is written under a temporary name in the same directory, flushed to disk
/// and renamed over `path`; on failure the temporary file is removed, an existing file at
/// `path` is left as it was, and the c10::Error names `path`.
void save_file(const std::string& path, const Value& value);

/// Atomically makes `to` hold the file `from` (a checkpoint just written): a hard link when
/// the filesystem allows, a copy otherwise; either way under a temporary name first, then
/// renamed over `to`, which is left as it was on failure (a c10::Error names it).
void link_or_copy_file(const std::string& from, const std::string& to);

/// Writes `bytes` to `path` atomically, as save_file() does (a c10::Error names `path`).
void write_file_atomically(const std::string& path, const std::string& bytes);

/// The bytes save_file() would write.
std::string save_bytes(const Value& value);

}  // namespace mgd::serialize
