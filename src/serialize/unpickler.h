// Internal: a restricted unpickler for the Python objects that `torch.save` checkpoints hold.
//
// It interprets the pickle opcodes of protocols 2-5 (and the text opcodes of 0-1 that carry
// numbers) without executing anything: GLOBAL may only name the callables of the allow-list in
// unpickler.cpp (collections.OrderedDict, torch._utils._rebuild_tensor_v2, the storage classes,
// ...), each interpreted by C++ code; any other global is rejected by name. Objects live in an
// arena while the pickle runs, so shared and even self-referencing objects cost nothing and
// leak nothing; the result is then copied into a Value tree with bounded depth and size.
// Every length is checked against the input before anything is allocated.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/Storage.h>

#include <cstdint>
#include <functional>
#include <string>

#include "mgd/serialize/value.h"
#include "source.h"

namespace mgd::serialize::detail {

/// Objects nested deeper than this are rejected (by the reader and by the writer).
constexpr int kMaxDepth = 200;

/// Returns the storage a persistent id ('storage', <dtype>Storage, key, location, numel)
/// refers to, holding at least numel elements of dtype; the same key gives the same storage.
using StorageLoader =
    std::function<c10::Storage(const std::string& key, c10::ScalarType dtype, int64_t numel)>;

/// Runs the pickle at the cursor up to its STOP opcode and returns the object it built.
/// `loader` resolves persistent ids (tensor storages); when empty they are an error.
Value unpickle(Cursor& in, const StorageLoader& loader);

/// Runs a pickle whose result must be an integer (of any size) and returns it as minimal
/// little-endian two's-complement bytes.
std::string unpickle_integer(Cursor& in);

/// The element size of a dtype the reader and writer know a storage class for, or 0.
size_t storage_element_size(c10::ScalarType dtype);

}  // namespace mgd::serialize::detail
