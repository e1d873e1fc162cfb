// Options shared by every model of the zoo.
#pragma once

#include <torch/arg.h>

#include <cstdint>

namespace mgd::models {

struct ModelOptions {
  /// Number of classes of the classifier.
  TORCH_ARG(int64_t, classes) = 1000;
  /// Input image channels (3 for RGB, 1 for Fashion-MNIST).
  TORCH_ARG(int64_t, in_channels) = 3;
};

}  // namespace mgd::models
