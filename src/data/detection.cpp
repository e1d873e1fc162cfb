#include "mgd/data/detection.h"

#include <c10/util/Exception.h>
#include <torch/torch.h>

#include <algorithm>

namespace mgd {
namespace data {
namespace {

int64_t checked_size(const std::shared_ptr<const DetectionDataset>& dataset) {
  TORCH_CHECK(dataset, "DetectionLoader: null dataset");
  return dataset->size();
}

}  // namespace

DetectionBatch collate_detection(std::vector<DetectionSample> samples, int64_t size_divisibility) {
  TORCH_CHECK(!samples.empty(), "collate_detection: no samples");
  TORCH_CHECK(size_divisibility >= 1, "collate_detection: invalid size_divisibility ",
              size_divisibility);
  const int64_t n = static_cast<int64_t>(samples.size());
  int64_t channels = -1, max_h = 0, max_w = 0;
  for (int64_t k = 0; k < n; ++k) {
    const torch::Tensor& image = samples[k].image;
    TORCH_CHECK(image.defined() && image.dim() == 3, "collate_detection: sample ", k,
                " is not a C x H x W image");
    if (channels < 0) channels = image.size(0);
    TORCH_CHECK(image.size(0) == channels, "collate_detection: sample ", k, " has ", image.size(0),
                " channels, sample 0 has ", channels);
    max_h = std::max(max_h, image.size(1));
    max_w = std::max(max_w, image.size(2));
  }
  const int64_t d = size_divisibility;
  const int64_t hp = (max_h + d - 1) / d * d, wp = (max_w + d - 1) / d * d;
  DetectionBatch out;
  out.images = torch::zeros({n, channels, hp, wp}, torch::kFloat32);
  out.mask = torch::zeros({n, hp, wp}, torch::kBool);
  out.targets.reserve(samples.size());
  for (int64_t k = 0; k < n; ++k) {
    DetectionSample& s = samples[k];
    const int64_t h = s.image.size(1), w = s.image.size(2);
    out.images[k].narrow(1, 0, h).narrow(2, 0, w).copy_(s.image);
    out.mask[k].narrow(0, 0, h).narrow(1, 0, w).fill_(true);
    out.targets.push_back(std::move(s.target));
    out.image_ids.push_back(s.image_id);
    out.image_sizes.push_back({h, w});
    out.original_sizes.push_back(s.original_size);
  }
  return out;
}

DetectionLoader::DetectionLoader(std::shared_ptr<const DetectionDataset> dataset,
                                 LoaderOptions options, int64_t size_divisibility)
    : BasicLoader<DetectionBatch>(
          checked_size(dataset), options,
          [dataset, seed = options.seed(), size_divisibility](c10::ArrayRef<int64_t> indices,
                                                              int64_t epoch, int64_t batch) {
            std::vector<DetectionSample> samples;
            samples.reserve(indices.size());
            for (int64_t index : indices) {
              Rng rng = Rng::for_sample(seed, epoch, index);
              samples.push_back(dataset->get(index, rng));
            }
            DetectionBatch out = collate_detection(std::move(samples), size_divisibility);
            out.indices = torch::tensor(indices.vec(), torch::kInt64);
            out.epoch = epoch;
            out.index = batch;
            return out;
          }),
      dataset_(std::move(dataset)),
      size_divisibility_(size_divisibility) {
  TORCH_CHECK(size_divisibility >= 1, "DetectionLoader: invalid size_divisibility ",
              size_divisibility);
}

}  // namespace data
}  // namespace mgd
