// The loader: batches from a Dataset, built by worker threads, delivered in order.
//
// Order and randomness are functions of (seed, epoch) alone: the shuffle of an epoch is drawn
// from (seed, epoch), and sample i's augmentation from (seed, epoch, i). Batches therefore
// come out the same with 0, 1 or 8 workers and whatever the timing; workers only decide how
// fast. An epoch's index list is built in this order:
//   1. all samples 0..N-1, or, with max_samples = m < N, a fixed subset of m of them drawn
//      from the seed alone (the same in every epoch: a tracking pass sees the same images each
//      time), kept in ascending order;
//   2. shuffle (per epoch) when `shuffle`;
//   3. shard like torch.utils.data.DistributedSampler: pad to a multiple of world_size by
//      repeating from the front (unless pad is false: then no sample repeats and ranks may
//      differ by one sample, as evaluation and tracking need), then rank r takes every
//      world_size-th index from position r;
//   4. cut into batches of batch_size; drop_last drops a short last batch.
// Resuming inside an epoch is exact: start(i) produces the same batches i, i + 1, ... that an
// uninterrupted epoch would have.
//
//   Loader loader(dataset, LoaderOptions().batch_size(256).workers(8).seed(42));
//   for (int64_t epoch = 0; epoch < epochs; ++epoch) {
//     loader.set_epoch(epoch);
//     for (Batch& batch : loader) train_step(batch.images, batch.labels);
//   }
//
// Workers build whole batches; at most `prefetch` batches are in flight or waiting beyond the
// one the consumer takes next. Stopping early (leaving the loop, destroying the loader, a new
// set_epoch) stops the workers after the sample each is building and joins them. An exception
// in a worker (a corrupt file) is rethrown by next() when its batch is due, message intact;
// the epoch then ends.
//
// All of this lives in BasicLoader<BatchT>, which only leaves building a batch from its indices
// to the caller: Loader stacks a classification Dataset's same-sized images; DetectionLoader
// (detection.h) pads a detection dataset's images of different sizes.
#pragma once

#include <c10/util/ArrayRef.h>
#include <c10/util/Optional.h>
#include <torch/arg.h>
#include <torch/types.h>

#include <cstdint>
#include <functional>
#include <iterator>
#include <memory>
#include <vector>

#include "mgd/data/dataset.h"

namespace mgd {
namespace data {

struct LoaderOptions {
  TORCH_ARG(int64_t, batch_size) = 64;
  /// Reshuffle every epoch (from seed and epoch).
  TORCH_ARG(bool, shuffle) = true;
  /// Drop a last batch smaller than batch_size.
  TORCH_ARG(bool, drop_last) = false;
  /// Worker threads; 0 builds each batch in the thread calling next().
  TORCH_ARG(int64_t, workers) = 0;
  /// Batches built ahead of the consumer (with workers > 0); 0 means 2 x workers.
  TORCH_ARG(int64_t, prefetch) = 0;
  /// Seeds the shuffles, the max_samples subset and every sample's augmentation.
  TORCH_ARG(uint64_t, seed) = 0;
  /// Use a fixed random subset of this many samples (0: all).
  TORCH_ARG(int64_t, max_samples) = 0;
  /// This process's shard: rank in [0, world_size).
  TORCH_ARG(int64_t, rank) = 0;
  TORCH_ARG(int64_t, world_size) = 1;
  /// Pad the order to a multiple of world_size (every rank gets as many samples); false:
  /// every sample exactly once over all ranks.
  TORCH_ARG(bool, pad) = true;
};

struct Batch {
  torch::Tensor images;   ///< float B x C x H x W
  torch::Tensor labels;   ///< int64 B
  torch::Tensor indices;  ///< int64 B: each sample's index in the dataset
  int64_t epoch = 0;
  int64_t index = 0;  ///< the batch's position in its epoch
};

namespace detail {

/// What every loader shares, whatever its batches hold: the epoch's order (subset, shuffle,
/// shards, batches), the worker threads, the prefetch window and the in-order delivery. The
/// batch itself is built by `build` (type-erased: BasicLoader wraps it), from the batch's
/// dataset indices; each sample's Rng is the builder's to derive from (seed, epoch, index).
class LoaderCore {
 public:
  /// Builds the batch at position `batch` of `epoch` from `indices` (dataset indices, in
  /// delivery order). Called from the worker threads: must be thread-safe.
  using BuildFn = std::function<std::shared_ptr<void>(c10::ArrayRef<int64_t> indices, int64_t epoch,
                                                      int64_t batch)>;

  /// Throws c10::Error on invalid options, an empty dataset (`dataset_size` 0), or, with
  /// drop_last, a batch size larger than this rank's samples.
  LoaderCore(int64_t dataset_size, const LoaderOptions& options, BuildFn build);
  ~LoaderCore();
  LoaderCore(const LoaderCore&) = delete;
  LoaderCore& operator=(const LoaderCore&) = delete;

  void set_epoch(int64_t epoch);
  int64_t epoch() const { return epoch_; }
  int64_t num_samples() const { return num_samples_; }
  int64_t num_batches() const;
  std::vector<int64_t> epoch_indices() const;
  void start(int64_t first_batch);
  /// The next batch, or null when the epoch is over (see Loader::next()).
  std::shared_ptr<void> next();
  void stop();
  bool running() const { return state_ == State::kRunning; }
  const LoaderOptions& options() const { return options_; }

 private:
  struct Pass;
  enum class State { kIdle, kRunning, kDone };

  std::vector<int64_t> compute_order(int64_t epoch) const;
  std::shared_ptr<void> build_batch(const std::vector<int64_t>& order, int64_t epoch,
                                    int64_t batch) const;
  void worker_loop(Pass* pass) const;

  LoaderOptions options_;
  BuildFn build_;
  std::vector<int64_t> subset_;  // step 1 of the order
  int64_t num_samples_ = 0;
  int64_t epoch_ = 0;
  State state_ = State::kIdle;
  std::unique_ptr<Pass> pass_;
};

}  // namespace detail

/// The loader's machinery for any batch type: `BatchT` needs an `int64_t index` (its
/// position in the epoch), which the iterator compares. Loader (classification) and
/// DetectionLoader (detection.h) are this with their own batch builders, so both have the same
/// order, shards, per-sample randomness, workers and exact mid-epoch resume.
template <typename BatchT>
class BasicLoader {
 public:
  /// Builds the batch at position `batch` of `epoch` from `indices` (dataset indices in
  /// delivery order). Called from worker threads.
  using BuildFn =
      std::function<BatchT(c10::ArrayRef<int64_t> indices, int64_t epoch, int64_t batch)>;

  BasicLoader(int64_t dataset_size, const LoaderOptions& options, BuildFn build)
      : core_(dataset_size, options,
              [build = std::move(build)](c10::ArrayRef<int64_t> indices, int64_t epoch,
                                         int64_t batch) -> std::shared_ptr<void> {
                return std::make_shared<BatchT>(build(indices, epoch, batch));
              }) {}
  virtual ~BasicLoader() = default;
  BasicLoader(const BasicLoader&) = delete;
  BasicLoader& operator=(const BasicLoader&) = delete;

  /// Selects the epoch the next pass produces (stops a pass in progress). Starts at 0.
  void set_epoch(int64_t epoch) { core_.set_epoch(epoch); }
  int64_t epoch() const { return core_.epoch(); }
  /// Samples per epoch on this rank (after max_samples and sharding, before drop_last).
  int64_t num_samples() const { return core_.num_samples(); }
  /// Batches per epoch on this rank.
  int64_t num_batches() const { return core_.num_batches(); }
  /// This rank's dataset indices for the current epoch, in delivery order.
  std::vector<int64_t> epoch_indices() const { return core_.epoch_indices(); }

  /// Starts (or restarts) the current epoch at batch `first_batch` (0 <= first_batch <=
  /// num_batches()).
  void start(int64_t first_batch = 0) { core_.start(first_batch); }
  /// The next batch, or nullopt when the epoch is over. Starts the epoch at batch 0 if no pass
  /// is in progress and none has finished since set_epoch(); after the last batch it keeps
  /// returning nullopt until start() or set_epoch().
  c10::optional<BatchT> next() {
    std::shared_ptr<void> batch = core_.next();
    if (!batch) return c10::nullopt;
    return std::move(*static_cast<BatchT*>(batch.get()));
  }
  /// Abandons the pass in progress; joins the workers.
  void stop() { core_.stop(); }

  /// Input iterator over the batches of a pass: `for (Batch& b : loader)`.
  class Iterator {
   public:
    using iterator_category = std::input_iterator_tag;
    using value_type = BatchT;
    using difference_type = std::ptrdiff_t;
    using pointer = BatchT*;
    using reference = BatchT&;

    Iterator() = default;
    explicit Iterator(BasicLoader* loader) : loader_(loader) { ++*this; }
    BatchT& operator*() { return *current_; }
    BatchT* operator->() { return &*current_; }
    Iterator& operator++() {
      current_ = loader_->next();
      return *this;
    }
    bool operator==(const Iterator& other) const {
      return current_.has_value() == other.current_.has_value() &&
             (!current_ || current_->index == other.current_->index);
    }
    bool operator!=(const Iterator& other) const { return !(*this == other); }

   private:
    BasicLoader* loader_ = nullptr;
    c10::optional<BatchT> current_;
  };
  /// Continues a pass in progress (after start(i), or a loop left early); otherwise starts the
  /// current epoch at batch 0.
  Iterator begin() {
    if (!core_.running()) core_.start(0);
    return Iterator(this);
  }
  Iterator end() { return Iterator(); }

  const LoaderOptions& options() const { return core_.options(); }

 private:
  detail::LoaderCore core_;
};

/// Batches of a classification Dataset: images of one size stacked, with their labels.
class Loader : public BasicLoader<Batch> {
 public:
  /// Throws c10::Error on invalid options, an empty dataset, or, with drop_last, a batch size
  /// larger than this rank's samples (the epoch would have no batch).
  Loader(std::shared_ptr<const Dataset> dataset, LoaderOptions options = {});

  const Dataset& dataset() const { return *dataset_; }

 private:
  std::shared_ptr<const Dataset> dataset_;
};

}  // namespace data
}  // namespace mgd
