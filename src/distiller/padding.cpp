#include "mgd/distiller/padding.h"

#include <c10/util/Exception.h>
#include <torch/torch.h>

namespace mgd {

torch::Tensor valid_cells(const std::vector<std::array<int64_t, 2>>& sizes, int64_t padded_h,
                          int64_t padded_w, int64_t h, int64_t w,
                          const torch::TensorOptions& options) {
  TORCH_CHECK(padded_h > 0 && padded_w > 0 && h > 0 && w > 0,
              "valid_cells: empty input or map (input ", padded_h, " x ", padded_w, ", map ", h,
              " x ", w, ")");
  const int64_t b = static_cast<int64_t>(sizes.size());
  auto mask = torch::zeros({b, 1, h, w}, options);
  for (int64_t i = 0; i < b; ++i) {
    const auto& [ih, iw] = sizes[static_cast<size_t>(i)];
    TORCH_CHECK(ih > 0 && iw > 0 && ih <= padded_h && iw <= padded_w, "valid_cells: image ", i,
                " of size ", ih, " x ", iw, " does not fit the padded input ", padded_h, " x ",
                padded_w);
    // Cell r covers input rows [r Hp / h, (r + 1) Hp / h): some row < ih when r < ih h / Hp.
    const int64_t rows = std::min(h, (ih * h + padded_h - 1) / padded_h);
    const int64_t cols = std::min(w, (iw * w + padded_w - 1) / padded_w);
    mask[i].narrow(1, 0, rows).narrow(2, 0, cols).fill_(1);
  }
  return mask;
}

Features without_padding(const Features& features, const std::vector<std::array<int64_t, 2>>& sizes,
                         int64_t padded_h, int64_t padded_w) {
  auto masked = [&](const std::vector<torch::Tensor>& maps) {
    std::vector<torch::Tensor> out;
    out.reserve(maps.size());
    for (const auto& m : maps) {
      if (!m.defined()) {
        out.push_back(m);
        continue;
      }
      TORCH_CHECK(m.dim() == 4 && m.size(0) == static_cast<int64_t>(sizes.size()),
                  "without_padding: expected B x C x H x W maps of ", sizes.size(), " images, got ",
                  m.sizes());
      out.push_back(m * valid_cells(sizes, padded_h, padded_w, m.size(2), m.size(3), m.options()));
    }
    return out;
  };
  Features out;
  out.pre_relu = masked(features.pre_relu);
  out.post_relu = masked(features.post_relu);
  out.logits = features.logits;
  return out;
}

}  // namespace mgd
