// A frozen program's 3x3 convolutions by Winograd's minimal filtering, F(4x4, 3x3).
//
// oneDNN (LibTorch 1.13's and 2.x's) has Winograd convolutions only for AVX-512 CPUs; on AVX2
// ones it runs 3x3 convolutions directly, at ~80 % of the FMA peak already. F(4x4, 3x3) needs
// 36 multiplies per 16 outputs and input channel where a direct convolution needs 144: each
// 6 x 6 input tile is transformed (B^T d B), multiplied channel-wise with the transformed
// weights (G g G^T, once per program) as 36 small matrix products, and the products transformed
// back (A^T m A). The results differ from a direct convolution's by float rounding only (the
// transforms' exact coefficients, 1/24 .. 8, grow it: measured 3e-6 to 1e-5 of a layer's
// largest output from 16 to 256 channels, 2e-5 at 512).
//
// Used for stride-1, zero-padded-by-1 3x3 convolutions of NHWC (channels-last) float CPU
// tensors whose channel counts are multiples of 8, on CPUs with AVX2 and FMA, unless
// MGD_WINOGRAD=0 (read whenever a program is built; FoldedConv leaves maps of 2 x 2 or 1 x n,
// too small for whole 4 x 4 tiles to pay, to oneDNN). The bias, a residual and a ReLU are
// applied in the output transform.
#pragma once

#include <torch/types.h>

#include <cstdint>

namespace mgd::models::detail {

class WinogradConv {
 public:
  WinogradConv() = default;
  /// `weight`: out x in x 3 x 3, `bias`: out (folded norm included). Call only where
  /// applies(in, out) holds.
  WinogradConv(const torch::Tensor& weight, const torch::Tensor& bias);

  /// Whether this CPU and these channel counts can use it (MGD_WINOGRAD not "0").
  static bool applies(int64_t in_channels, int64_t out_channels);

  /// conv(x) + bias (+ residual), then ReLU when `relu`: x and `residual` (may be undefined)
  /// channels-last float tensors of B x in x H x W and B x out x H x W; the result is
  /// channels-last.
  torch::Tensor operator()(const torch::Tensor& x, bool relu = false,
                           const torch::Tensor& residual = {}) const;

  bool defined() const { return u_.defined(); }

 private:
  torch::Tensor u_;     ///< the transformed weights: 36 x (in x out, in panels of 16 outputs)
  torch::Tensor bias_;  ///< out
  int64_t in_ = 0, out_ = 0;
};

}  // namespace mgd::models::detail
