#include "mgd/data/loader.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <atomic>
#include <chrono>
#include <set>
#include <thread>

#include "data/data_testing.h"

namespace {

using namespace mgd::data;
namespace dt = mgd::data_testing;

// Sample i is a 1 x 2 x 2 image holding i in the first pixel and a draw from the sample's Rng
// in the second (so augmentation randomness is visible), label i % 7. Optional random delays
// shake up the workers' timing; `fail_at` makes one index throw.
class ToyDataset : public Dataset {
 public:
  explicit ToyDataset(int64_t n, bool jitter = false, int64_t fail_at = -1)
      : n_(n), jitter_(jitter), fail_at_(fail_at) {}
  int64_t size() const override { return n_; }
  Example get(int64_t index, Rng& rng) const override {
    calls_.fetch_add(1);
    if (jitter_) std::this_thread::sleep_for(std::chrono::microseconds((index * 7919) % 500));
    TORCH_CHECK(index != fail_at_, "boom at sample ", index);
    auto image = torch::zeros({1, 2, 2});
    image[0][0][0] = static_cast<float>(index);
    image[0][0][1] = static_cast<float>(rng.uniform());
    if (odd_shape_ && index == 3) image = torch::zeros({1, 3, 2});
    return {image, index % 7};
  }
  int64_t label(int64_t index) const override { return index % 7; }
  int64_t num_classes() const override { return 7; }
  int64_t channels() const override { return 1; }

  mutable std::atomic<int64_t> calls_{0};
  bool odd_shape_ = false;

 private:
  int64_t n_;
  bool jitter_;
  int64_t fail_at_;
};

std::vector<Batch> run_epoch(Loader& loader) {
  std::vector<Batch> out;
  for (Batch& b : loader) out.push_back(b);
  return out;
}

std::vector<int64_t> indices_of(const std::vector<Batch>& batches) {
  std::vector<int64_t> out;
  for (const auto& b : batches) {
    for (int64_t i = 0; i < b.indices.size(0); ++i) out.push_back(b.indices[i].item<int64_t>());
  }
  return out;
}

void expect_same(const std::vector<Batch>& a, const std::vector<Batch>& b) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].index, b[i].index);
    EXPECT_TRUE(torch::equal(a[i].images, b[i].images)) << "batch " << i;
    EXPECT_TRUE(torch::equal(a[i].labels, b[i].labels)) << "batch " << i;
    EXPECT_TRUE(torch::equal(a[i].indices, b[i].indices)) << "batch " << i;
  }
}

TEST(Loader, BatchCountsAndShapes) {
  auto ds = std::make_shared<ToyDataset>(10);
  Loader keep(ds, LoaderOptions().batch_size(4).shuffle(false));
  EXPECT_EQ(keep.num_samples(), 10);
  EXPECT_EQ(keep.num_batches(), 3);
  const auto batches = run_epoch(keep);
  ASSERT_EQ(batches.size(), 3u);
  EXPECT_EQ(batches[0].images.sizes(), (std::vector<int64_t>{4, 1, 2, 2}));
  EXPECT_EQ(batches[2].images.size(0), 2);
  EXPECT_EQ(batches[2].labels.scalar_type(), torch::kInt64);
  EXPECT_EQ(indices_of(batches), (std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}));
  EXPECT_EQ(batches[1].labels[3].item<int64_t>(), 7 % 7);
  EXPECT_EQ(batches[1].images[2][0][0][0].item<float>(), 6.0f);
  Loader drop(ds, LoaderOptions().batch_size(4).drop_last(true));
  EXPECT_EQ(drop.num_batches(), 2);
  EXPECT_EQ(run_epoch(drop).size(), 2u);
  // After the epoch, next() keeps answering "over" until restarted.
  EXPECT_FALSE(drop.next().has_value());
  EXPECT_FALSE(drop.next().has_value());
  drop.start();
  EXPECT_TRUE(drop.next().has_value());
}

TEST(Loader, SameBatchesWithAnyNumberOfWorkers) {
  auto ds = std::make_shared<ToyDataset>(103, /*jitter=*/true);
  std::vector<std::vector<Batch>> runs;
  for (int64_t workers : {0, 1, 2, 3}) {
    Loader loader(ds, LoaderOptions().batch_size(8).workers(workers).seed(11));
    std::vector<Batch> all;
    for (int64_t epoch : {0, 1}) {
      loader.set_epoch(epoch);
      for (Batch& b : run_epoch(loader)) all.push_back(b);
    }
    runs.push_back(all);
  }
  for (size_t r = 1; r < runs.size(); ++r) expect_same(runs[0], runs[r]);
}

TEST(Loader, ShuffleIsAFunctionOfSeedAndEpoch) {
  auto ds = std::make_shared<ToyDataset>(50);
  Loader a(ds, LoaderOptions().batch_size(5).seed(1));
  Loader b(ds, LoaderOptions().batch_size(5).seed(1));
  Loader c(ds, LoaderOptions().batch_size(5).seed(2));
  const auto ea = a.epoch_indices();
  EXPECT_EQ(ea, b.epoch_indices());
  EXPECT_EQ(ea, indices_of(run_epoch(a)));
  EXPECT_NE(ea, c.epoch_indices());
  std::vector<int64_t> sorted = ea;
  std::sort(sorted.begin(), sorted.end());
  for (int64_t i = 0; i < 50; ++i) ASSERT_EQ(sorted[i], i);  // a permutation
  a.set_epoch(1);
  EXPECT_NE(a.epoch_indices(), ea);
  a.set_epoch(0);
  EXPECT_EQ(a.epoch_indices(), ea);
  // Augmentation randomness follows (seed, epoch, index), not the position in the epoch.
  const auto batches = run_epoch(a);
  a.set_epoch(1);
  const auto next_epoch = run_epoch(a);
  auto draw = [](const std::vector<Batch>& bs, int64_t index) {
    for (const auto& b : bs) {
      for (int64_t i = 0; i < b.indices.size(0); ++i) {
        if (b.indices[i].item<int64_t>() == index) return b.images[i][0][0][1].item<float>();
      }
    }
    return -1.0f;
  };
  Rng expected = Rng::for_sample(1, 0, 17);
  EXPECT_EQ(draw(batches, 17), static_cast<float>(expected.uniform()));
  EXPECT_NE(draw(batches, 17), draw(next_epoch, 17));
}

TEST(Loader, ShardsAreDisjointAndCoverTheSet) {
  auto ds = std::make_shared<ToyDataset>(10);
  const std::vector<int64_t> order = Loader(ds, LoaderOptions().seed(4)).epoch_indices();
  std::multiset<int64_t> seen;
  for (int64_t rank = 0; rank < 3; ++rank) {
    Loader shard(ds, LoaderOptions().batch_size(2).seed(4).rank(rank).world_size(3));
    EXPECT_EQ(shard.num_samples(), 4);  // ceil(10 / 3)
    const auto mine = indices_of(run_epoch(shard));
    ASSERT_EQ(mine.size(), 4u);
    // DistributedSampler: pad the shuffled order by repeating its start, take every 3rd.
    std::vector<int64_t> padded = order;
    padded.push_back(order[0]);
    padded.push_back(order[1]);
    for (size_t k = 0; k < 4; ++k) EXPECT_EQ(mine[k], padded[rank + 3 * k]);
    seen.insert(mine.begin(), mine.end());
  }
  for (int64_t i = 0; i < 10; ++i) EXPECT_GE(seen.count(i), 1u);
  EXPECT_EQ(seen.size(), 12u);  // two padding repeats
  // An even split has no overlap at all.
  std::set<int64_t> both;
  for (int64_t rank = 0; rank < 2; ++rank) {
    for (int64_t i : Loader(ds, LoaderOptions().seed(4).rank(rank).world_size(2)).epoch_indices()) {
      EXPECT_TRUE(both.insert(i).second) << i;
    }
  }
  EXPECT_EQ(both.size(), 10u);
  EXPECT_THROW(Loader(ds, LoaderOptions().rank(2).world_size(2)), c10::Error);
}

TEST(Loader, MaxSamplesIsAFixedRandomSubset) {
  auto ds = std::make_shared<ToyDataset>(100);
  Loader loader(ds, LoaderOptions().batch_size(8).max_samples(20).seed(9));
  EXPECT_EQ(loader.num_samples(), 20);
  EXPECT_EQ(loader.num_batches(), 3);
  const auto e0 = loader.epoch_indices();
  loader.set_epoch(1);
  const auto e1 = loader.epoch_indices();
  EXPECT_NE(e0, e1);  // reshuffled
  EXPECT_EQ(std::set<int64_t>(e0.begin(), e0.end()), std::set<int64_t>(e1.begin(), e1.end()));
  EXPECT_EQ(std::set<int64_t>(e0.begin(), e0.end()).size(), 20u);
  EXPECT_GT(*std::max_element(e0.begin(), e0.end()), 19);  // not just the first 20
  // Unshuffled: the same subset in ascending order.
  Loader ordered(ds, LoaderOptions().max_samples(20).seed(9).shuffle(false));
  auto sorted = e0;
  std::sort(sorted.begin(), sorted.end());
  EXPECT_EQ(ordered.epoch_indices(), sorted);
  // Sharded tracking pass: each rank takes its part of the subset.
  Loader r0(ds, LoaderOptions().max_samples(20).seed(9).world_size(2).rank(0));
  Loader r1(ds, LoaderOptions().max_samples(20).seed(9).world_size(2).rank(1));
  std::set<int64_t> parts;
  for (int64_t i : r0.epoch_indices()) parts.insert(i);
  for (int64_t i : r1.epoch_indices()) parts.insert(i);
  EXPECT_EQ(parts, std::set<int64_t>(e0.begin(), e0.end()));
  // A cap above the size is no cap.
  EXPECT_EQ(Loader(ds, LoaderOptions().max_samples(1000)).num_samples(), 100);
}

TEST(Loader, ResumesMidEpochExactly) {
  auto ds = std::make_shared<ToyDataset>(37, true);
  Loader full(ds, LoaderOptions().batch_size(5).seed(3).workers(2));
  full.set_epoch(2);
  const auto all = run_epoch(full);
  ASSERT_EQ(all.size(), 8u);
  for (int64_t workers : {0, 2}) {
    Loader resumed(ds, LoaderOptions().batch_size(5).seed(3).workers(workers));
    resumed.set_epoch(2);
    resumed.start(5);
    const auto rest = run_epoch(resumed);
    expect_same(std::vector<Batch>(all.begin() + 5, all.end()), rest);
    resumed.start(8);  // at the end: nothing left
    EXPECT_FALSE(resumed.next().has_value());
    EXPECT_THROW(resumed.start(9), c10::Error);
  }
}

TEST(Loader, RejectsImpossibleConfigurations) {
  auto ds = std::make_shared<ToyDataset>(10);
  try {
    Loader(ds, LoaderOptions().batch_size(11).drop_last(true));
    FAIL();
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what()).find("batch_size 11 is larger than the 10 samples"),
              std::string::npos)
        << e.what();
  }
  EXPECT_EQ(Loader(ds, LoaderOptions().batch_size(11)).num_batches(), 1);  // one short batch
  EXPECT_THROW(Loader(ds, LoaderOptions().batch_size(0)), c10::Error);
  EXPECT_THROW(Loader(ds, LoaderOptions().workers(-1)), c10::Error);
  EXPECT_THROW(Loader(ds, LoaderOptions().max_samples(-1)), c10::Error);
  EXPECT_THROW(Loader(nullptr), c10::Error);
  EXPECT_THROW(Loader(std::make_shared<ToyDataset>(0)), c10::Error);
  Loader l(ds);
  EXPECT_THROW(l.set_epoch(-1), c10::Error);
}

TEST(Loader, WorkerErrorsReachTheConsumer) {
  auto ds = std::make_shared<ToyDataset>(40, false, /*fail_at=*/13);
  for (int64_t workers : {0, 2}) {
    Loader loader(ds, LoaderOptions().batch_size(4).shuffle(false).workers(workers));
    int delivered = 0;
    try {
      for (Batch& b : loader) {
        (void)b;
        ++delivered;
      }
      FAIL() << "expected the worker's error";
    } catch (const c10::Error& e) {
      EXPECT_NE(std::string(e.what()).find("boom at sample 13"), std::string::npos) << e.what();
    }
    EXPECT_EQ(delivered, 3);  // batches 0..2 came first, in order
    EXPECT_FALSE(loader.next().has_value());
  }
}

TEST(Loader, StopsEarlyWithoutHanging) {
  auto ds = std::make_shared<ToyDataset>(2000, true);
  const auto t0 = std::chrono::steady_clock::now();
  for (int rep = 0; rep < 5; ++rep) {
    Loader loader(ds, LoaderOptions().batch_size(16).workers(3));
    for (Batch& b : loader) {
      (void)b;
      break;
    }
    loader.set_epoch(1);  // abandons the pass
    auto b = loader.next();
    ASSERT_TRUE(b.has_value());
    EXPECT_EQ(b->epoch, 1);
  }  // destructors join the workers
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(20));
}

TEST(Loader, PrefetchIsBounded) {
  auto ds = std::make_shared<ToyDataset>(400);
  Loader loader(ds, LoaderOptions().batch_size(4).workers(2).prefetch(2));
  ASSERT_TRUE(loader.next().has_value());
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  // Holding batch 0, the workers may have built batches 1 and 2 only.
  EXPECT_LE(ds->calls_.load(), 3 * 4);
  EXPECT_GE(ds->calls_.load(), 2 * 4);
}

TEST(Loader, MismatchedSampleShapesAreAnError) {
  auto ds = std::make_shared<ToyDataset>(8);
  ds->odd_shape_ = true;
  Loader loader(ds, LoaderOptions().batch_size(8).shuffle(false));
  try {
    loader.next();
    FAIL();
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what()).find("sample 3 has shape [1, 3, 2]"), std::string::npos)
        << e.what();
  }
}

TEST(Loader, BatchesOfARealDataset) {
  const auto images = torch::randint(0, 256, {50, 12, 12, 3}, torch::kUInt8);
  const auto labels = torch::arange(50) % 5;
  auto ds = std::make_shared<TensorImageDataset>(
      images, labels, 5,
      Compose({std::make_shared<RandomCrop>(RandomCropOptions(10).padding(1)),
               std::make_shared<RandomHorizontalFlip>()},
              NormalizeOptions({0.5, 0.5, 0.5}, {0.25, 0.25, 0.25})));
  Loader a(ds, LoaderOptions().batch_size(16).workers(2).seed(5));
  Loader b(ds, LoaderOptions().batch_size(16).workers(0).seed(5));
  const auto ra = run_epoch(a), rb = run_epoch(b);
  expect_same(ra, rb);
  ASSERT_EQ(ra.size(), 4u);
  EXPECT_EQ(ra[0].images.sizes(), (std::vector<int64_t>{16, 3, 10, 10}));
  for (const auto& batch : ra) {
    for (int64_t i = 0; i < batch.indices.size(0); ++i) {
      EXPECT_EQ(batch.labels[i].item<int64_t>(), batch.indices[i].item<int64_t>() % 5);
    }
  }
  // Looping again over the same epoch gives the same batches.
  expect_same(ra, run_epoch(a));
}

}  // namespace
