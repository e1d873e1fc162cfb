// Matrix products for the few places mgd multiplies large float matrices itself (MoCo's
// InfoNCE against its queue, its projection head, the kNN monitor's similarities).
//
// Debian's LibTorch links a reference BLAS (BLAS_INFO=generic): torch::mm runs there at about
// a gigaflop, while the same library's oneDNN convolutions run 5-9x faster. Where ATen has no
// MKL but has oneDNN, a float product on the CPU goes through oneDNN as a 1x1 convolution of
// M one-pixel images with K channels by N filters; elsewhere (CUDA, an official LibTorch
// with MKL, doubles, fewer than 16 rows, where ATen's 1x1 convolution would not use oneDNN
// at one thread) it is torch::mm. Autograd flows through either; the two agree to float
// rounding, not bit for bit.
#pragma once

#include <torch/torch.h>

namespace mgd {
namespace util {

/// a @ b for a: M x K, b: K x N.
torch::Tensor mm(const torch::Tensor& a, const torch::Tensor& b);

/// x @ weight^T + bias (bias may be undefined), as torch::nn::functional::linear, for x: M x K
/// and weight: N x K.
torch::Tensor linear(const torch::Tensor& x, const torch::Tensor& weight,
                     const torch::Tensor& bias = {});

/// Whether a product of these operands takes the oneDNN route.
bool mm_uses_onednn(const torch::Tensor& a, const torch::Tensor& b);

}  // namespace util
}  // namespace mgd
