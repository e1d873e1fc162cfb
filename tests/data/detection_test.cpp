#include "mgd/data/detection.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <set>

#include "data/data_testing.h"

namespace {

using namespace mgd::data;
namespace dt = mgd::data_testing;

DetectionSample sample(int64_t c, int64_t h, int64_t w, float fill, int64_t id) {
  DetectionSample s;
  s.image = torch::full({c, h, w}, fill);
  s.target.boxes = torch::tensor({{0.f, 0.f, 1.f, 1.f}}) * fill;
  s.target.labels = torch::tensor({id}, torch::kInt64);
  s.image_id = id;
  s.size = {h, w};
  s.original_size = {2 * h, 2 * w};
  return s;
}

TEST(CollateDetection, PadsToTheDivisibilityWithAMask) {
  EXPECT_THROW(collate_detection({}), c10::Error);
  const DetectionBatch b =
      collate_detection({sample(2, 5, 7, 1.f, 10), sample(2, 10, 4, 2.f, 11)}, 4);
  ASSERT_EQ(b.images.sizes(), (std::vector<int64_t>{2, 2, 12, 8}));
  ASSERT_EQ(b.mask.sizes(), (std::vector<int64_t>{2, 12, 8}));
  EXPECT_EQ(b.mask.scalar_type(), torch::kBool);
  auto expected = torch::zeros({2, 2, 12, 8});
  expected[0].narrow(1, 0, 5).narrow(2, 0, 7).fill_(1.f);
  expected[1].narrow(1, 0, 10).narrow(2, 0, 4).fill_(2.f);
  EXPECT_TRUE(torch::equal(b.images, expected));
  EXPECT_TRUE(torch::equal(b.mask, expected.select(1, 0) > 0));
  EXPECT_EQ(b.mask[0].sum().item<int64_t>(), 35);
  EXPECT_EQ(b.image_ids, (std::vector<int64_t>{10, 11}));
  EXPECT_EQ(b.image_sizes, (std::vector<std::array<int64_t, 2>>{{5, 7}, {10, 4}}));
  EXPECT_EQ(b.original_sizes, (std::vector<std::array<int64_t, 2>>{{10, 14}, {20, 8}}));
  ASSERT_EQ(b.targets.size(), 2u);
  EXPECT_TRUE(torch::equal(b.targets[1].boxes, torch::tensor({{0.f, 0.f, 2.f, 2.f}})));
  EXPECT_TRUE(torch::equal(b.targets[1].labels, torch::tensor({11}, torch::kInt64)));
  // Already divisible, or divisibility 1: no padding beyond the largest image.
  EXPECT_EQ(collate_detection({sample(1, 32, 64, 1.f, 0)}, 32).images.sizes(),
            (std::vector<int64_t>{1, 1, 32, 64}));
  EXPECT_EQ(collate_detection({sample(1, 5, 7, 1.f, 0), sample(1, 3, 9, 1.f, 0)}, 1).images.sizes(),
            (std::vector<int64_t>{2, 1, 5, 9}));
  EXPECT_EQ(collate_detection({sample(3, 33, 1, 1.f, 0)}).images.sizes(),
            (std::vector<int64_t>{1, 3, 64, 32}));
  dt::expect_error(
      [] {
        collate_detection({sample(1, 2, 2, 1.f, 0), sample(3, 2, 2, 1.f, 1)});
      },
      {"sample 1 has 3 channels"});
  EXPECT_THROW(collate_detection({sample(1, 2, 2, 1.f, 0)}, 0), c10::Error);
}

// Sample i: a 1 x h x w image of value i, h and w drawn from the sample's Rng; one box whose
// x0 is another draw (so augmentation randomness shows in the batch).
class ToyDetection : public DetectionDataset {
 public:
  explicit ToyDetection(int64_t n) : n_(n) {}
  int64_t size() const override { return n_; }
  DetectionSample get(int64_t index, Rng& rng) const override {
    const int64_t h = rng.randint(3, 9), w = rng.randint(3, 9);
    DetectionSample s;
    s.image = torch::full({1, h, w}, static_cast<float>(index));
    s.target.boxes = torch::tensor({{static_cast<float>(rng.uniform()), 0.f, 2.f, 2.f}});
    s.target.labels = torch::tensor({index % 3}, torch::kInt64);
    s.image_id = 100 + index;
    s.size = s.original_size = {h, w};
    return s;
  }
  int64_t num_classes() const override { return 3; }
  int64_t channels() const override { return 1; }

 private:
  int64_t n_;
};

std::vector<DetectionBatch> run_epoch(DetectionLoader& loader) {
  std::vector<DetectionBatch> out;
  for (DetectionBatch& b : loader) out.push_back(b);
  return out;
}

void expect_same(const std::vector<DetectionBatch>& a, const std::vector<DetectionBatch>& b) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].index, b[i].index);
    EXPECT_TRUE(torch::equal(a[i].images, b[i].images)) << "batch " << i;
    EXPECT_TRUE(torch::equal(a[i].mask, b[i].mask)) << "batch " << i;
    EXPECT_TRUE(torch::equal(a[i].indices, b[i].indices)) << "batch " << i;
    EXPECT_EQ(a[i].image_ids, b[i].image_ids);
    ASSERT_EQ(a[i].targets.size(), b[i].targets.size());
    for (size_t k = 0; k < a[i].targets.size(); ++k) {
      EXPECT_TRUE(torch::equal(a[i].targets[k].boxes, b[i].targets[k].boxes));
    }
  }
}

TEST(DetectionLoader, SameMachineryAsTheClassificationLoader) {
  auto ds = std::make_shared<ToyDetection>(23);
  DetectionLoader serial(ds, LoaderOptions().batch_size(4).seed(3), 4);
  DetectionLoader threaded(ds, LoaderOptions().batch_size(4).seed(3).workers(3), 4);
  EXPECT_EQ(serial.num_batches(), 6);
  serial.set_epoch(2);
  threaded.set_epoch(2);
  const auto batches = run_epoch(serial);
  expect_same(batches, run_epoch(threaded));
  // Every sample once, each padded to a multiple of 4, ids and indices in step.
  std::set<int64_t> seen;
  for (const auto& b : batches) {
    EXPECT_EQ(b.epoch, 2);
    EXPECT_EQ(b.images.size(2) % 4, 0);
    EXPECT_EQ(b.images.size(3) % 4, 0);
    for (int64_t k = 0; k < b.indices.size(0); ++k) {
      const int64_t i = b.indices[k].item<int64_t>();
      seen.insert(i);
      EXPECT_EQ(b.image_ids[static_cast<size_t>(k)], 100 + i);
      // The sample's own Rng: its size is what get() draws from (seed, epoch, i).
      Rng rng = Rng::for_sample(3, 2, i);
      const auto s = ds->get(i, rng);
      EXPECT_EQ(b.image_sizes[static_cast<size_t>(k)], s.size);
      EXPECT_TRUE(torch::equal(b.targets[static_cast<size_t>(k)].boxes, s.target.boxes));
      EXPECT_EQ(b.mask[k].sum().item<int64_t>(), s.size[0] * s.size[1]);
    }
  }
  EXPECT_EQ(seen.size(), 23u);
  // Resuming mid-epoch gives the same remaining batches.
  threaded.start(4);
  const auto rest = run_epoch(threaded);
  expect_same(rest, std::vector<DetectionBatch>(batches.begin() + 4, batches.end()));
  // Shards are disjoint and cover the set.
  std::set<int64_t> shards;
  for (int64_t r = 0; r < 2; ++r) {
    DetectionLoader part(ds, LoaderOptions().batch_size(5).rank(r).world_size(2).pad(false));
    for (const auto& b : run_epoch(part)) {
      for (int64_t k = 0; k < b.indices.size(0); ++k) {
        EXPECT_TRUE(shards.insert(b.indices[k].item<int64_t>()).second);
      }
    }
  }
  EXPECT_EQ(shards.size(), 23u);
  EXPECT_THROW(DetectionLoader(nullptr), c10::Error);
  EXPECT_THROW(DetectionLoader(ds, LoaderOptions(), 0), c10::Error);
}

}  // namespace
