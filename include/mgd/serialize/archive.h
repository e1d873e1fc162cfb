// Checks on a TorchScript archive before LibTorch's own reader sees it (models/torchscript.h).
#pragma once

#include <cstddef>
#include <string>

namespace mgd::serialize {

/// Checks that the file at `path` is a TorchScript archive as torch.jit.save writes it: a zip
/// of records inside one folder (tensors stored, code deflated to at most 256 MiB), every
/// record's offset, size and CRC-32 correct, with code/, data.pkl and constants.pkl records.
/// LibTorch's reader trusts the sizes a record claims (a hostile file could make it allocate
/// terabytes); after this check it sees a consistent archive. Throws one c10::Error naming
/// the file otherwise.
void check_torchscript_archive(const std::string& path);
/// The same for `size` bytes in memory; `name` stands for them in messages.
void check_torchscript_archive(const void* bytes, size_t size, const std::string& name);

}  // namespace mgd::serialize
