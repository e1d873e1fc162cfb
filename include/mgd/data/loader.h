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
#pragma once

#include <c10/util/Optional.h>
#include <torch/arg.h>
#include <torch/types.h>

#include <cstdint>
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

class Loader {
 public:
  /// Throws c10::Error on invalid options, an empty dataset, or, with drop_last, a batch size
  /// larger than this rank's samples (the epoch would have no batch).
  Loader(std::shared_ptr<const Dataset> dataset, LoaderOptions options = {});
  ~Loader();
  Loader(const Loader&) = delete;
  Loader& operator=(const Loader&) = delete;

  /// Selects the epoch the next pass produces (stops a pass in progress). Starts at 0.
  void set_epoch(int64_t epoch);
  int64_t epoch() const { return epoch_; }
  /// Samples per epoch on this rank (after max_samples and sharding, before drop_last).
  int64_t num_samples() const { return num_samples_; }
  /// Batches per epoch on this rank.
  int64_t num_batches() const;
  /// This rank's dataset indices for the current epoch, in delivery order.
  std::vector<int64_t> epoch_indices() const;

  /// Starts (or restarts) the current epoch at batch `first_batch` (0 <= first_batch <=
  /// num_batches()).
  void start(int64_t first_batch = 0);
  /// The next batch, or nullopt when the epoch is over. Starts the epoch at batch 0 if no pass
  /// is in progress and none has finished since set_epoch(); after the last batch it keeps
  /// returning nullopt until start() or set_epoch().
  c10::optional<Batch> next();
  /// Abandons the pass in progress; joins the workers.
  void stop();

  /// Input iterator over the batches of a pass: `for (Batch& b : loader)`.
  class Iterator {
   public:
    using iterator_category = std::input_iterator_tag;
    using value_type = Batch;
    using difference_type = std::ptrdiff_t;
    using pointer = Batch*;
    using reference = Batch&;

    Iterator() = default;
    explicit Iterator(Loader* loader) : loader_(loader) { ++*this; }
    Batch& operator*() { return *current_; }
    Batch* operator->() { return &*current_; }
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
    Loader* loader_ = nullptr;
    c10::optional<Batch> current_;
  };
  /// Continues a pass in progress (after start(i), or a loop left early); otherwise starts the
  /// current epoch at batch 0.
  Iterator begin();
  Iterator end() { return Iterator(); }

  const LoaderOptions& options() const { return options_; }
  const Dataset& dataset() const { return *dataset_; }

 private:
  struct Pass;
  enum class State { kIdle, kRunning, kDone };

  std::vector<int64_t> compute_order(int64_t epoch) const;
  Batch build_batch(const std::vector<int64_t>& order, int64_t epoch, int64_t batch) const;
  void worker_loop(Pass* pass) const;

  std::shared_ptr<const Dataset> dataset_;
  LoaderOptions options_;
  std::vector<int64_t> subset_;  // step 1 of the order
  int64_t num_samples_ = 0;
  int64_t epoch_ = 0;
  State state_ = State::kIdle;
  std::unique_ptr<Pass> pass_;
};

}  // namespace data
}  // namespace mgd
