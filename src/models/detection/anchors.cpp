#include "mgd/models/detection/anchors.h"

#include <cmath>

namespace mgd::detection {
namespace {

bool is_torchvision(const AnchorOptions& options) {
  TORCH_CHECK(options.style() == "detectron2" || options.style() == "torchvision",
              "Invalid anchor style '", options.style(),
              "': expected \"detectron2\" or \"torchvision\"");
  return options.style() == "torchvision";
}

void check_options(const AnchorOptions& options) {
  is_torchvision(options);
  TORCH_CHECK(!options.sizes().empty(), "Invalid anchor sizes: no level");
  TORCH_CHECK(!options.aspect_ratios().empty(), "Invalid anchor aspect ratios: none");
  for (const double r : options.aspect_ratios()) {
    TORCH_CHECK(std::isfinite(r) && r > 0, "Invalid anchor aspect ratio: ", r,
                " (expected finite and > 0)");
  }
  const size_t per_level = options.sizes().front().size();
  for (size_t l = 0; l < options.sizes().size(); ++l) {
    const auto& sizes = options.sizes()[l];
    TORCH_CHECK(!sizes.empty() && sizes.size() == per_level, "Invalid anchor sizes of level ", l,
                ": expected ", per_level, " sizes (as level 0), got ", sizes.size());
    for (const double s : sizes) {
      TORCH_CHECK(std::isfinite(s) && s > 0, "Invalid anchor size of level ", l, ": ", s,
                  " (expected finite and > 0)");
    }
  }
  TORCH_CHECK(std::isfinite(options.offset()) && options.offset() >= 0 && options.offset() < 1,
              "Invalid anchor offset: ", options.offset(), " (expected in [0, 1))");
}

}  // namespace

std::vector<std::vector<double>> AnchorOptions::detectron2_sizes() {
  std::vector<std::vector<double>> sizes;
  for (const double s : {32.0, 64.0, 128.0, 256.0, 512.0}) {
    sizes.push_back({s, s * std::pow(2.0, 1.0 / 3.0), s * std::pow(2.0, 2.0 / 3.0)});
  }
  return sizes;
}

AnchorOptions AnchorOptions::torchvision() {
  std::vector<std::vector<double>> sizes;
  for (const int64_t s : {32, 64, 128, 256, 512}) {
    // Python's int() truncates: 32 * 2^(1/3) = 40.3 -> 40.
    sizes.push_back({static_cast<double>(s),
                     static_cast<double>(static_cast<int64_t>(s * std::pow(2.0, 1.0 / 3.0))),
                     static_cast<double>(static_cast<int64_t>(s * std::pow(2.0, 2.0 / 3.0)))});
  }
  return AnchorOptions().sizes(std::move(sizes)).style("torchvision");
}

int64_t anchors_per_location(const AnchorOptions& options) {
  check_options(options);
  return static_cast<int64_t>(options.sizes().front().size() * options.aspect_ratios().size());
}

torch::Tensor cell_anchors(const AnchorOptions& options, size_t level) {
  check_options(options);
  TORCH_CHECK(level < options.sizes().size(), "Invalid anchor level ", level, ": the options have ",
              options.sizes().size(), " levels");
  const auto& sizes = options.sizes()[level];
  const auto& ratios = options.aspect_ratios();
  if (is_torchvision(options)) {
    // In float32, ratio-major, rounded: AnchorGenerator.generate_anchors.
    const auto scales = torch::tensor(sizes, torch::kDouble).to(torch::kFloat);
    const auto h_ratios = torch::sqrt(torch::tensor(ratios, torch::kDouble).to(torch::kFloat));
    const auto w_ratios = torch::reciprocal(h_ratios);
    const auto ws = (w_ratios.unsqueeze(1) * scales.unsqueeze(0)).view(-1);
    const auto hs = (h_ratios.unsqueeze(1) * scales.unsqueeze(0)).view(-1);
    return (torch::stack({-ws, -hs, ws, hs}, 1) / 2).round();
  }
  // In double, size-major, not rounded: DefaultAnchorGenerator.generate_cell_anchors.
  std::vector<double> values;
  for (const double size : sizes) {
    for (const double ratio : ratios) {
      const double w = std::sqrt(size * size / ratio);
      const double h = ratio * w;
      values.insert(values.end(), {-w / 2.0, -h / 2.0, w / 2.0, h / 2.0});
    }
  }
  return torch::tensor(values, torch::kDouble).view({-1, 4});
}

std::vector<torch::Tensor> make_anchors(const AnchorOptions& options,
                                        const std::vector<std::array<int64_t, 2>>& feature_sizes,
                                        std::array<int64_t, 2> padded_image_size,
                                        torch::TensorOptions tensor_options) {
  check_options(options);
  const bool torchvision_style = is_torchvision(options);
  const auto dtype = tensor_options.dtype().toScalarType();
  TORCH_CHECK(at::isFloatingType(dtype), "Invalid anchor dtype: expected floating point, got ",
              dtype);
  TORCH_CHECK(feature_sizes.size() == options.sizes().size(),
              "Invalid feature maps for anchors: ", feature_sizes.size(),
              " levels, but the anchor options have sizes for ", options.sizes().size());
  if (!torchvision_style) {
    TORCH_CHECK(options.strides().size() == feature_sizes.size(),
                "Invalid anchor strides: ", options.strides().size(), " for ", feature_sizes.size(),
                " levels");
  } else {
    TORCH_CHECK(padded_image_size[0] > 0 && padded_image_size[1] > 0,
                "Invalid padded image size for anchors: ", padded_image_size[0], " x ",
                padded_image_size[1]);
  }
  std::vector<torch::Tensor> anchors;
  for (size_t l = 0; l < feature_sizes.size(); ++l) {
    const int64_t height = feature_sizes[l][0], width = feature_sizes[l][1];
    TORCH_CHECK(height >= 0 && width >= 0, "Invalid feature map size of level ", l, ": ", height,
                " x ", width);
    int64_t stride_y = 0, stride_x = 0;
    if (torchvision_style) {
      TORCH_CHECK(height > 0 && width > 0, "Invalid feature map size of level ", l, ": ", height,
                  " x ", width, " (the torchvision style divides the image size by it)");
      stride_y = padded_image_size[0] / height;
      stride_x = padded_image_size[1] / width;
    } else {
      stride_y = stride_x = options.strides()[l];
      TORCH_CHECK(stride_x > 0, "Invalid anchor stride of level ", l, ": ", stride_x);
    }
    const auto cpu = torch::TensorOptions().dtype(dtype);
    const auto cell = cell_anchors(options, l).to(dtype);
    // Shifts are whole multiples of the stride (plus the offset): exact in any float dtype.
    const auto shifts_x =
        ((torch::arange(width, torch::kDouble) + options.offset()) * static_cast<double>(stride_x))
            .to(cpu);
    const auto shifts_y =
        ((torch::arange(height, torch::kDouble) + options.offset()) * static_cast<double>(stride_y))
            .to(cpu);
    const auto grid = torch::meshgrid({shifts_y, shifts_x}, "ij");
    const auto sy = grid[0].reshape(-1), sx = grid[1].reshape(-1);
    const auto shifts = torch::stack({sx, sy, sx, sy}, 1);
    anchors.push_back((shifts.view({-1, 1, 4}) + cell.view({1, -1, 4}))
                          .reshape({-1, 4})
                          .to(tensor_options.device()));
  }
  return anchors;
}

}  // namespace mgd::detection
