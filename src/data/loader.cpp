#include "mgd/data/loader.h"

#include <c10/util/Exception.h>
#include <torch/torch.h>

#include <algorithm>
#include <condition_variable>
#include <cstring>
#include <exception>
#include <map>
#include <mutex>
#include <numeric>
#include <thread>

namespace mgd {
namespace data {
namespace {

// Stream ids for Rng::for_sample that no (epoch >= 0, index >= 0) pair can take.
constexpr int64_t kSubsetEpoch = -1;
constexpr int64_t kShuffleIndex = -1;

// Classification: every sample's image into one B x C x H x W tensor.
Batch build_classification_batch(const Dataset& dataset, uint64_t seed,
                                 c10::ArrayRef<int64_t> order, int64_t epoch, int64_t batch) {
  const int64_t n = static_cast<int64_t>(order.size());
  Batch out;
  out.epoch = epoch;
  out.index = batch;
  out.labels = torch::empty({n}, torch::kInt64);
  out.indices = torch::empty({n}, torch::kInt64);
  int64_t* labels = out.labels.data_ptr<int64_t>();
  int64_t* indices = out.indices.data_ptr<int64_t>();
  std::vector<int64_t> shape;
  for (int64_t k = 0; k < n; ++k) {
    const int64_t index = order[k];
    Rng rng = Rng::for_sample(seed, epoch, index);
    // After the first sample, images go straight into their slot of the batch when the
    // dataset can write them there.
    const torch::Tensor slot = k > 0 ? out.images[k] : torch::Tensor();
    Example ex = k > 0 ? dataset.get_into(index, rng, slot) : dataset.get(index, rng);
    TORCH_CHECK(ex.image.defined() && ex.image.dim() == 3, "Loader: sample ", index,
                " is not a C x H x W image");
    const bool in_place =
        k > 0 && ex.image.data_ptr() == slot.data_ptr() && ex.image.sizes() == slot.sizes();
    if (!in_place) {
      torch::Tensor image = ex.image.to(torch::kFloat32).contiguous();
      if (k == 0) {
        shape = image.sizes().vec();
        out.images = torch::empty({n, shape[0], shape[1], shape[2]}, torch::kFloat32);
      }
      TORCH_CHECK(image.sizes().vec() == shape, "Loader: sample ", index, " has shape ",
                  image.sizes(), " but sample ", order[0], " of the same batch has ", shape,
                  "; a batch needs images of one size (add a crop or resize to the transform)");
      std::memcpy(out.images.data_ptr<float>() + k * image.numel(), image.data_ptr<float>(),
                  static_cast<size_t>(image.numel()) * sizeof(float));
    }
    labels[k] = ex.label;
    indices[k] = index;
  }
  return out;
}

int64_t checked_size(const std::shared_ptr<const Dataset>& dataset) {
  TORCH_CHECK(dataset, "Loader: null dataset");
  return dataset->size();
}

}  // namespace

using detail::LoaderCore;

// One pass over an epoch: its index list and the workers' shared state.
struct LoaderCore::Pass {
  std::vector<int64_t> order;
  int64_t epoch = 0;
  int64_t end = 0;  // number of batches
  int64_t prefetch = 1;

  std::mutex mutex;
  std::condition_variable work_cv;   // workers wait for room in the window (or stop)
  std::condition_variable ready_cv;  // the consumer waits for its batch
  int64_t next_claim = 0;
  int64_t next_deliver = 0;
  bool stopping = false;
  struct Result {
    std::shared_ptr<void> batch;
    std::exception_ptr error;
  };
  std::map<int64_t, Result> ready;
  std::vector<std::thread> threads;
};

LoaderCore::LoaderCore(int64_t dataset_size, const LoaderOptions& options, BuildFn build)
    : options_(options), build_(std::move(build)) {
  const auto& o = options_;
  TORCH_CHECK(o.batch_size() >= 1, "Invalid LoaderOptions::batch_size: ", o.batch_size());
  TORCH_CHECK(o.workers() >= 0, "Invalid LoaderOptions::workers: ", o.workers());
  TORCH_CHECK(o.prefetch() >= 0, "Invalid LoaderOptions::prefetch: ", o.prefetch());
  TORCH_CHECK(o.max_samples() >= 0, "Invalid LoaderOptions::max_samples: ", o.max_samples());
  TORCH_CHECK(o.world_size() >= 1 && o.rank() >= 0 && o.rank() < o.world_size(),
              "Invalid LoaderOptions shard: rank ", o.rank(), " of world_size ", o.world_size());
  const int64_t n = dataset_size;
  TORCH_CHECK(n > 0, "Loader: the dataset is empty");
  if (o.max_samples() > 0 && o.max_samples() < n) {
    Rng rng = Rng::for_sample(o.seed(), kSubsetEpoch, kShuffleIndex);
    subset_ = random_permutation(n, rng);
    subset_.resize(static_cast<size_t>(o.max_samples()));
    std::sort(subset_.begin(), subset_.end());
  } else {
    subset_.resize(static_cast<size_t>(n));
    std::iota(subset_.begin(), subset_.end(), int64_t{0});
  }
  const int64_t total = static_cast<int64_t>(subset_.size());
  num_samples_ = o.pad() ? (total + o.world_size() - 1) / o.world_size()
                         : (total - o.rank() + o.world_size() - 1) / o.world_size();
  TORCH_CHECK(!o.drop_last() || o.batch_size() <= num_samples_, "Loader: batch_size ",
              o.batch_size(), " is larger than the ", num_samples_, " samples",
              o.world_size() > 1 ? " of this rank" : "",
              " and drop_last is set: an epoch would have no batch");
}

LoaderCore::~LoaderCore() {
  stop();
}

int64_t LoaderCore::num_batches() const {
  const int64_t b = options_.batch_size();
  return options_.drop_last() ? num_samples_ / b : (num_samples_ + b - 1) / b;
}

void LoaderCore::set_epoch(int64_t epoch) {
  TORCH_CHECK(epoch >= 0, "Loader::set_epoch: invalid epoch ", epoch);
  stop();
  epoch_ = epoch;
}

std::vector<int64_t> LoaderCore::compute_order(int64_t epoch) const {
  std::vector<int64_t> order = subset_;
  if (options_.shuffle()) {
    Rng rng = Rng::for_sample(options_.seed(), epoch, kShuffleIndex);
    const auto perm = random_permutation(static_cast<int64_t>(order.size()), rng);
    std::vector<int64_t> shuffled(order.size());
    for (size_t i = 0; i < perm.size(); ++i) shuffled[i] = order[perm[i]];
    order.swap(shuffled);
  }
  const int64_t w = options_.world_size();
  if (w == 1) return order;
  // DistributedSampler: pad by repeating from the front, then every w-th from the rank.
  const size_t n = order.size();
  const size_t total = options_.pad() ? static_cast<size_t>(num_samples_ * w) : n;
  for (size_t i = n; i < total; ++i) order.push_back(order[(i - n) % n]);
  std::vector<int64_t> mine;
  mine.reserve(static_cast<size_t>(num_samples_));
  for (size_t i = static_cast<size_t>(options_.rank()); i < total; i += static_cast<size_t>(w)) {
    mine.push_back(order[i]);
  }
  return mine;
}

std::vector<int64_t> LoaderCore::epoch_indices() const {
  return compute_order(epoch_);
}

std::shared_ptr<void> LoaderCore::build_batch(const std::vector<int64_t>& order, int64_t epoch,
                                              int64_t batch) const {
  const int64_t begin = batch * options_.batch_size();
  const int64_t end =
      std::min<int64_t>(begin + options_.batch_size(), static_cast<int64_t>(order.size()));
  return build_(c10::ArrayRef<int64_t>(order.data() + begin, static_cast<size_t>(end - begin)),
                epoch, batch);
}

void LoaderCore::worker_loop(Pass* pass) const {
  std::unique_lock<std::mutex> lock(pass->mutex);
  while (true) {
    pass->work_cv.wait(lock, [&] {
      return pass->stopping || pass->next_claim >= pass->end ||
             pass->next_claim < pass->next_deliver + pass->prefetch;
    });
    if (pass->stopping || pass->next_claim >= pass->end) return;
    const int64_t b = pass->next_claim++;
    lock.unlock();
    Pass::Result result;
    try {
      result.batch = build_batch(pass->order, pass->epoch, b);
    } catch (...) {
      result.error = std::current_exception();
    }
    lock.lock();
    pass->ready.emplace(b, std::move(result));
    pass->ready_cv.notify_all();
  }
}

void LoaderCore::start(int64_t first_batch) {
  TORCH_CHECK(first_batch >= 0 && first_batch <= num_batches(), "Loader::start: batch ",
              first_batch, " out of range (the epoch has ", num_batches(), " batches)");
  stop();
  auto pass = std::make_unique<Pass>();
  pass->order = compute_order(epoch_);
  pass->epoch = epoch_;
  pass->end = num_batches();
  pass->next_claim = first_batch;
  pass->next_deliver = first_batch;
  const int64_t workers = options_.workers();
  pass->prefetch =
      options_.prefetch() > 0 ? options_.prefetch() : std::max<int64_t>(1, 2 * workers);
  Pass* raw = pass.get();
  pass_ = std::move(pass);
  state_ = State::kRunning;
  for (int64_t i = 0; i < workers && i < pass_->end - first_batch; ++i) {
    raw->threads.emplace_back([this, raw] { worker_loop(raw); });
  }
}

std::shared_ptr<void> LoaderCore::next() {
  if (state_ == State::kIdle) start(0);
  if (state_ == State::kDone) return nullptr;
  Pass* pass = pass_.get();
  if (pass->next_deliver >= pass->end) {
    stop();
    state_ = State::kDone;
    return nullptr;
  }
  Pass::Result result;
  if (pass->threads.empty()) {
    try {
      result.batch = build_batch(pass->order, pass->epoch, pass->next_deliver);
    } catch (...) {
      result.error = std::current_exception();
    }
    ++pass->next_deliver;
  } else {
    std::unique_lock<std::mutex> lock(pass->mutex);
    pass->ready_cv.wait(lock, [&] { return pass->ready.count(pass->next_deliver) > 0; });
    auto it = pass->ready.find(pass->next_deliver);
    result = std::move(it->second);
    pass->ready.erase(it);
    ++pass->next_deliver;
    pass->work_cv.notify_all();
  }
  if (result.error) {
    stop();
    state_ = State::kDone;
    std::rethrow_exception(result.error);
  }
  return std::move(result.batch);
}

void LoaderCore::stop() {
  if (pass_) {
    {
      std::lock_guard<std::mutex> lock(pass_->mutex);
      pass_->stopping = true;
    }
    pass_->work_cv.notify_all();
    for (auto& t : pass_->threads) t.join();
    pass_.reset();
  }
  state_ = State::kIdle;
}

Loader::Loader(std::shared_ptr<const Dataset> dataset, LoaderOptions options)
    : BasicLoader<Batch>(checked_size(dataset), options,
                         [dataset, seed = options.seed()](c10::ArrayRef<int64_t> indices,
                                                          int64_t epoch, int64_t batch) {
                           return build_classification_batch(*dataset, seed, indices, epoch, batch);
                         }),
      dataset_(std::move(dataset)) {}

}  // namespace data
}  // namespace mgd
