// Margins of the teacher's pre-ReLU responses (MGD spec section 2; Heo et al., ICCV 2019).
//
// Each teacher channel's pre-ReLU response is modelled as N(m, sigma^2), with m the bias
// (beta) and sigma = |gamma| of the BatchNorm that produces it. Its margin is the expected
// value of the response given that it is negative:
//
//   if Phi(-m/sigma) > 0.001:  margin = m - sigma * phi(m/sigma) / Phi(-m/sigma)
//   else:                      margin = -3 sigma
//
// sigma = 0 (a constant channel) is the limit of that rule as sigma -> 0: for m < 0 the
// channel is always m, so margin = m; for m >= 0 the channel never goes negative and the
// rule's else-branch gives -3 * 0 = 0, so margin = 0. Never NaN or infinite for finite input.
#pragma once

#include <torch/types.h>

namespace mgd {

/// The margin of one channel with pre-ReLU mean `mean` (BN beta) and scale `std` (BN gamma;
/// its sign is ignored). Throws c10::Error on a non-finite argument.
double channel_margin(double mean, double std);

/// Margins for every channel of a BatchNorm with affine `weight` (gamma) and `bias` (beta),
/// both 1-D of the same length. Returns a float tensor of that length on the same device.
torch::Tensor margins_from_bn(const torch::Tensor& weight, const torch::Tensor& bias);

}  // namespace mgd
