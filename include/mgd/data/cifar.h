// CIFAR-10 and CIFAR-100 in their binary distribution format (Krizhevsky, 2009).
//
// A file is a sequence of fixed-size records: CIFAR-10 has <label> then 3072 pixel bytes
// (1 + 3072 bytes); CIFAR-100 has <coarse label> <fine label> then 3072 bytes (2 + 3072).
// The pixels are three 32 x 32 planes, red, green, blue, each row-major. Files:
//   CIFAR-10:  data_batch_1.bin .. data_batch_5.bin (train), test_batch.bin (test),
//              in cifar-10-batches-bin/ as the archive unpacks, or directly in the root;
//   CIFAR-100: train.bin, test.bin, in cifar-100-binary/ or the root.
#pragma once

#include <torch/types.h>

#include <cstddef>
#include <cstdint>
#include <string>

namespace mgd {
namespace data {

struct CifarData {
  torch::Tensor images;         ///< uint8 N x 32 x 32 x 3 (HWC, as the transforms take them)
  torch::Tensor labels;         ///< int64 N: the class (CIFAR-100: the fine label)
  torch::Tensor coarse_labels;  ///< int64 N, CIFAR-100's superclass; undefined for CIFAR-10
};

/// Parses one file's bytes; `classes` is 10 or 100. Throws c10::Error naming `name` when the
/// size is not a positive multiple of the record size or a label is out of range.
CifarData parse_cifar(const uint8_t* data, size_t size, int64_t classes,
                      const std::string& name = "<memory>");

/// Reads one file.
CifarData read_cifar_file(const std::string& path, int64_t classes);

/// Loads a split ("train" or "test") from `root` (see the layouts above), concatenating the
/// training batches in order.
CifarData load_cifar(const std::string& root, int64_t classes, const std::string& split);

}  // namespace data
}  // namespace mgd
