// The distiller's per-position loss in one operation: the student's map through the
// student-side BatchNorm (spec 6), then the margin loss against the reduced teacher map,
//
//   margin_loss(bn(student), teacher, margin)
//
// with bn's running statistics updated as bn->forward(student) updates them. On the CPU (float
// or double, BatchNorm with running statistics and a momentum) it takes two passes over the
// map forward and two backward, where BatchNorm and the loss apart take ten: ATen's BatchNorm
// reduces each channel with a scalar loop and writes its output, which the loss reads again.
// Values: the same formulas, not the same rounding -- statistics are accumulated in double
// (8 lanes at a time, so in another order), the normalized map in float; loss and gradients
// agree with the composed form to float rounding (tests/loss/normalized_margin_loss_test.cpp).
// Elsewhere (CUDA, GroupNorm, other BatchNorm options) it is the composed form.
#pragma once

#include <torch/nn/modules/batchnorm.h>
#include <torch/types.h>

namespace mgd {
namespace functional {

/// margin_loss(bn(student), teacher, margin): a 0-dim sum whose gradient flows into
/// `student` and into bn's weight and bias. In training mode bn's running mean and variance
/// and its batch count are updated as bn->forward would; in eval mode its running statistics
/// normalize. Shapes as margin_loss: B x C x H x W maps of equal shape, C margins.
torch::Tensor normalized_margin_loss(torch::nn::BatchNorm2d& bn, const torch::Tensor& student,
                                     const torch::Tensor& teacher, const torch::Tensor& margin);

/// The same against the AMP reduction of the full teacher map (B x t x H x W) over the groups
/// of `index` (k x C) -- amp_reduce(teacher, margins, index), its margins included -- without
/// materializing the reduced map: on the CPU the selection happens inside the loss's pass.
/// With k = 1 this is sparse matching's selection (sm_reduce).
torch::Tensor normalized_margin_loss_amp(torch::nn::BatchNorm2d& bn, const torch::Tensor& student,
                                         const torch::Tensor& teacher,
                                         const torch::Tensor& margins,
                                         const torch::Tensor& index);

}  // namespace functional
}  // namespace mgd
