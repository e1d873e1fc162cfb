// Pooling layers of the zoo's networks.
#pragma once
#include <torch/types.h>

namespace mgd::models::detail {

/// max_pool2d(x, 3, 2, 1) (the ImageNet stem's), the same values as ATen's. Without a graph
/// to record (no grad mode, or x not requiring grad) on contiguous float CPU maps it runs as
/// two separable passes the compiler vectorizes: ATen 1.13's kernel, which also computes the
/// indices a backward needs, takes ~8% of a frozen ResNet-50's forward at 112 px and one
/// thread. NaN propagates as in ATen; of equal values (+0 and -0) either may be kept.
torch::Tensor max_pool_3x3_s2(const torch::Tensor& x);

}  // namespace mgd::models::detail
