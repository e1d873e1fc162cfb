// Batches of images of different sizes are zero-padded to one size (detection). The padded
// cells of a feature map hold whatever the network makes of zeros, not the image; MGD's
// matching cost normalizes each channel's map over all its cells (distiller.cpp), so padding
// would enter the channel statistics and make them depend on which images share a batch.
// without_padding() zeroes those cells: a zero adds nothing to a channel's norm or to a dot
// product, so the cost is that of the images' own cells (the reference counts the padding;
// --tracking-padding include keeps that).
#pragma once

#include <torch/types.h>

#include <array>
#include <cstdint>
#include <vector>

#include "mgd/distiller/feature_net.h"

namespace mgd {

/// B x 1 x h x w, 1 on the cells of an h x w map (of a padded_h x padded_w input) that cover
/// some pixel of image b of size `sizes[b]` = {H, W}, 0 on the cells covering only padding.
torch::Tensor valid_cells(const std::vector<std::array<int64_t, 2>>& sizes, int64_t padded_h,
                          int64_t padded_w, int64_t h, int64_t w,
                          const torch::TensorOptions& options = {});

/// `features` with every map's padded cells set to zero (pre_relu and post_relu; logits as
/// they are).
Features without_padding(const Features& features, const std::vector<std::array<int64_t, 2>>& sizes,
                         int64_t padded_h, int64_t padded_w);

}  // namespace mgd
