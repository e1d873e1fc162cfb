#include "mgd/data/detection_transforms.h"

#include <c10/util/Exception.h>
#include <c10/util/StringUtil.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>

namespace mgd {
namespace data {
namespace detection {
namespace {

void check_boxes(const torch::Tensor& boxes, const char* who) {
  TORCH_CHECK(boxes.defined() && boxes.dim() == 2 && boxes.size(1) == 4 &&
                  boxes.scalar_type() == torch::kFloat64 && boxes.is_contiguous(),
              who, ": expected contiguous double boxes of n x 4, got ",
              boxes.defined() ? boxes.sizes() : c10::IntArrayRef{});
}

// Minimum box side kept after the transforms (Detectron2's filter_empty_instances).
constexpr double kMinBoxSide = 1e-5;

}  // namespace

std::array<int64_t, 2> shortest_edge_size(int64_t height, int64_t width, int64_t short_edge,
                                          int64_t max_size) {
  TORCH_CHECK(height > 0 && width > 0, "shortest_edge_size: invalid image size ", height, "x",
              width);
  TORCH_CHECK(short_edge > 0 && max_size >= 0, "shortest_edge_size: invalid short_edge ",
              short_edge, " or max_size ", max_size);
  const double h = static_cast<double>(height), w = static_cast<double>(width);
  const double size = static_cast<double>(short_edge);
  const double scale = size / std::min(h, w);
  double new_h = h < w ? size : scale * h;
  double new_w = h < w ? scale * w : size;
  if (max_size > 0 && std::max(new_h, new_w) > static_cast<double>(max_size)) {
    const double s = static_cast<double>(max_size) / std::max(new_h, new_w);
    new_h *= s;
    new_w *= s;
  }
  // Python's int(x + 0.5): truncation of a positive number.
  return {std::max<int64_t>(1, static_cast<int64_t>(new_h + 0.5)),
          std::max<int64_t>(1, static_cast<int64_t>(new_w + 0.5))};
}

void resize_with_boxes(Image& image, torch::Tensor& boxes, int64_t height, int64_t width) {
  check_boxes(boxes, "resize_with_boxes");
  TORCH_CHECK(height > 0 && width > 0, "resize_with_boxes: invalid size ", height, "x", width);
  const double sx = static_cast<double>(width) / static_cast<double>(image.width);
  const double sy = static_cast<double>(height) / static_cast<double>(image.height);
  if (height != image.height || width != image.width) {
    ResizePlan plan;
    plan.height = static_cast<double>(image.height);
    plan.width = static_cast<double>(image.width);
    plan.out_height = height;
    plan.out_width = width;
    image = resize_region(image, plan);
  }
  double* b = boxes.data_ptr<double>();
  for (int64_t i = 0; i < boxes.size(0); ++i, b += 4) {
    b[0] *= sx;
    b[1] *= sy;
    b[2] *= sx;
    b[3] *= sy;
  }
}

void hflip_with_boxes(Image& image, torch::Tensor& boxes) {
  check_boxes(boxes, "hflip_with_boxes");
  hflip(image);
  const double w = static_cast<double>(image.width);
  double* b = boxes.data_ptr<double>();
  for (int64_t i = 0; i < boxes.size(0); ++i, b += 4) {
    const double x0 = b[0];
    b[0] = w - b[2];
    b[2] = w - x0;
  }
}

// --- ResizeShortestEdge

ResizeShortestEdge::ResizeShortestEdge(ResizeShortestEdgeOptions options)
    : options_(std::move(options)) {
  TORCH_CHECK(!options_.short_edge_lengths().empty(),
              "ResizeShortestEdge: short_edge_lengths is empty");
  for (int64_t s : options_.short_edge_lengths()) {
    TORCH_CHECK(s > 0, "ResizeShortestEdge: invalid short edge length ", s);
  }
  TORCH_CHECK(options_.max_size() >= 0, "ResizeShortestEdge: invalid max_size ",
              options_.max_size());
}

std::array<int64_t, 2> ResizeShortestEdge::output_size(int64_t height, int64_t width,
                                                       Rng& rng) const {
  const auto& lengths = options_.short_edge_lengths();
  const int64_t n = static_cast<int64_t>(lengths.size());
  const int64_t short_edge = n == 1 ? lengths[0] : lengths[static_cast<size_t>(rng.randint(0, n))];
  return shortest_edge_size(height, width, short_edge, options_.max_size());
}

void ResizeShortestEdge::apply(Image& image, torch::Tensor& boxes, Rng& rng) const {
  const auto size = output_size(image.height, image.width, rng);
  resize_with_boxes(image, boxes, size[0], size[1]);
}

// --- RandomHorizontalFlip

RandomHorizontalFlip::RandomHorizontalFlip(RandomFlipOptions options) : options_(options) {
  TORCH_CHECK(options_.p() >= 0 && options_.p() <= 1, "RandomHorizontalFlip: invalid p ",
              options_.p());
}

void RandomHorizontalFlip::apply(Image& image, torch::Tensor& boxes, Rng& rng) const {
  if (rng.bernoulli(options_.p())) hflip_with_boxes(image, boxes);
}

// --- Compose

Compose::Compose(std::vector<std::shared_ptr<Transform>> steps,
                 c10::optional<NormalizeOptions> normalize)
    : steps_(std::move(steps)), normalize_(std::move(normalize)) {
  for (const auto& s : steps_) TORCH_CHECK(s, "detection::Compose: null step");
}

DetectionSample Compose::operator()(Image image, DetectionTarget target, Rng& rng) const {
  TORCH_CHECK(image.height > 0 && image.width > 0, "detection::Compose: empty image");
  // The steps work in double; the result is rounded to float once, at the end.
  torch::Tensor boxes = target.boxes.defined()
                            ? target.boxes.to(torch::kFloat64).contiguous().clone()
                            : torch::zeros({0, 4}, torch::kFloat64);
  torch::Tensor labels =
      target.labels.defined() ? target.labels.to(torch::kInt64) : torch::zeros({0}, torch::kInt64);
  check_boxes(boxes, "detection::Compose");
  TORCH_CHECK(labels.dim() == 1 && labels.size(0) == boxes.size(0),
              "detection::Compose: ", boxes.size(0), " boxes but labels of shape ", labels.sizes());
  DetectionSample out;
  out.original_size = {image.height, image.width};
  for (const auto& step : steps_) step->apply(image, boxes, rng);
  out.size = {image.height, image.width};
  out.image = normalize_ ? to_tensor(image, *normalize_) : to_tensor(image);
  // Clip to the image, round to float, then drop the boxes left empty.
  const double w = static_cast<double>(image.width), h = static_cast<double>(image.height);
  const double* d = boxes.data_ptr<double>();
  torch::Tensor clipped = torch::empty({boxes.size(0), 4}, torch::kFloat32);
  float* b = clipped.data_ptr<float>();
  std::vector<int64_t> keep;
  for (int64_t i = 0; i < boxes.size(0); ++i, b += 4, d += 4) {
    b[0] = static_cast<float>(std::min(std::max(d[0], 0.0), w));
    b[1] = static_cast<float>(std::min(std::max(d[1], 0.0), h));
    b[2] = static_cast<float>(std::min(std::max(d[2], 0.0), w));
    b[3] = static_cast<float>(std::min(std::max(d[3], 0.0), h));
    if (b[2] - b[0] > kMinBoxSide && b[3] - b[1] > kMinBoxSide) keep.push_back(i);
  }
  boxes = clipped;
  if (static_cast<int64_t>(keep.size()) < boxes.size(0)) {
    const auto index = torch::tensor(keep, torch::kInt64);
    boxes = boxes.index_select(0, index);
    labels = labels.index_select(0, index);
  }
  out.target.boxes = boxes;
  out.target.labels = labels.contiguous();
  return out;
}

std::string Compose::describe() const {
  std::vector<std::string> names;
  for (const auto& s : steps_) names.push_back(s->name());
  names.push_back("ToTensor");
  if (normalize_) names.push_back("Normalize");
  return c10::Join(" -> ", names);
}

Compose train_transform(std::vector<int64_t> short_edges, int64_t max_size,
                        c10::optional<NormalizeOptions> normalize) {
  return Compose({std::make_shared<ResizeShortestEdge>(
                      ResizeShortestEdgeOptions(std::move(short_edges)).max_size(max_size)),
                  std::make_shared<RandomHorizontalFlip>()},
                 std::move(normalize));
}

Compose eval_transform(int64_t short_edge, int64_t max_size,
                       c10::optional<NormalizeOptions> normalize) {
  return Compose({std::make_shared<ResizeShortestEdge>(
                     ResizeShortestEdgeOptions(short_edge).max_size(max_size))},
                 std::move(normalize));
}

}  // namespace detection
}  // namespace data
}  // namespace mgd
