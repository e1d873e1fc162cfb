#include "mgd/training/engine.h"

#include <torch/torch.h>

#include <cerrno>
#include <csignal>
#include <chrono>
#include <cstring>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <limits>
#include <memory>
#include <sstream>

#include "mgd/data/dataset.h"
#include "mgd/data/loader.h"
#include "mgd/distiller/distiller.h"
#include "mgd/distributed/communicator.h"
#include "mgd/distributed/data_parallel.h"
#include "mgd/distributed/environment.h"
#include "mgd/loss/loss.h"
#include "mgd/models/registry.h"
#include "mgd/serialize/checkpoint.h"
#include "mgd/training/checkpoint.h"
#include "mgd/training/interrupt.h"
#include "mgd/training/metrics.h"
#include "mgd/training/run_log.h"
#include "mgd/training/schedule.h"
#include "mgd/training/sgd.h"
#include "mgd/util/memory.h"
#include "mgd/util/threads.h"

namespace mgd::training {

const char* method_name(Method method) {
  switch (method) {
    case Method::kNone: return "none";
    case Method::kMgd: return "mgd";
    case Method::kMgdKd: return "mgd+kd";
    case Method::kKd: return "kd";
  }
  return "?";
}

Method parse_method(const std::string& name) {
  if (name == "none") return Method::kNone;
  if (name == "mgd") return Method::kMgd;
  if (name == "mgd+kd") return Method::kMgdKd;
  if (name == "kd") return Method::kKd;
  TORCH_CHECK(false, "Unknown distillation method '", name,
              "' (expected one of: none, mgd, mgd+kd, kd)");
}

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

// Thrown inside evaluation and tracking passes to abandon them for a requested stop.
struct StopNow {};

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

torch::Device parse_device(const std::string& name) {
  c10::optional<torch::Device> device;
  try {
    device = torch::Device(name);
  } catch (const c10::Error&) {
    TORCH_CHECK(false, "Invalid device '", name, "' (expected cpu, cuda or cuda:N)");
  }
  TORCH_CHECK(!device->is_cuda() || torch::cuda::is_available(), "Device '", name,
              "' requested but this LibTorch has no usable CUDA device");
  return *device;
}

bool uses_teacher(Method m) { return m != Method::kNone; }
bool uses_mgd(Method m) { return m == Method::kMgd || m == Method::kMgdKd; }
bool uses_kd(Method m) { return m == Method::kKd || m == Method::kMgdKd; }

// The reference does not distill the first position of these students (spec 1).
std::vector<int64_t> default_ignored_positions(const std::string& student) {
  if (student.rfind("mobilenet_v2", 0) == 0 || student.rfind("shufflenet_v2", 0) == 0) return {0};
  return {};
}

uint64_t mix_seed(uint64_t seed, uint64_t salt) {
  uint64_t z = seed + 0x9E3779B97F4A7C15ULL * (salt + 1);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

void validate(const TrainOptions& o) {
  TORCH_CHECK(o.epochs >= 1, "Invalid epochs: ", o.epochs, " (expected >= 1)");
  TORCH_CHECK(o.batch_size >= 1, "Invalid batch size: ", o.batch_size, " (expected >= 1)");
  TORCH_CHECK(std::isfinite(o.lr) && o.lr > 0, "Invalid learning rate: ", o.lr);
  TORCH_CHECK(o.lr_schedule == "step" || o.lr_schedule == "cosine", "Unknown lr schedule '",
              o.lr_schedule, "' (expected step or cosine)");
  TORCH_CHECK(o.shave == "first" || o.shave == "best", "Unknown shave rule '", o.shave,
              "' (expected first or best)");
  TORCH_CHECK(o.update_freq >= 1, "Invalid update frequency: ", o.update_freq, " (epochs, >= 1)");
  TORCH_CHECK(o.tracking_images >= 1, "Invalid tracking images: ", o.tracking_images);
  TORCH_CHECK(o.loss_factor > 0 && std::isfinite(o.loss_factor), "Invalid loss factor: ",
              o.loss_factor);
  TORCH_CHECK(o.workers >= 0, "Invalid workers: ", o.workers);
  TORCH_CHECK(o.checkpoint_every >= 0, "Invalid checkpoint interval: ", o.checkpoint_every,
              " steps (expected >= 0; 0: at epoch ends only)");
  TORCH_CHECK(o.train_subset >= 0 && o.test_subset >= 0, "Invalid subset size: train ",
              o.train_subset, ", test ", o.test_subset, " (expected >= 0; 0 means all)");
  TORCH_CHECK(std::isfinite(o.dist_timeout) && o.dist_timeout > 0, "Invalid distributed timeout: ",
              o.dist_timeout, " s (expected > 0)");
  TORCH_CHECK(o.bucket_mb >= 1, "Invalid gradient bucket size: ", o.bucket_mb, " MiB (expected >= 1)");
  TORCH_CHECK(!uses_teacher(o.method) || !o.teacher_arch.empty(),
              "Distillation (", method_name(o.method), ") needs a teacher architecture (--teacher-arch)");
  TORCH_CHECK(!uses_teacher(o.method) || !o.teacher_checkpoint.empty(),
              "Distillation (", method_name(o.method),
              ") needs the trained teacher's weights (--teacher-checkpoint)");
}

class Engine {
 public:
  explicit Engine(TrainOptions options) : o_(std::move(options)) {
    validate(o_);
    threads_ = set_num_threads(o_.threads);
    keep_freed_memory();  // no page faults on the tensors every step allocates again
    // Denormal floats slow CPU kernels by orders of magnitude; they carry no information here.
    at::globalContext().setFlushDenormal(true);
    device_ = parse_device(o_.device);
    // Data-parallel when a launcher set the environment (spec 8); a world of one otherwise.
    comm_ = distributed::Communicator::create(
        distributed::detect_world(),
        distributed::CommunicatorOptions().timeout_seconds(o_.dist_timeout).device(device_));
    torch::manual_seed(o_.seed);
    open_data();
    build_models();
  }

  RunSummary train();
  /// `interruptible`: abandon the pass (throw StopNow) when a stop is requested.
  EvalResult evaluate(FeatureNetImpl& net, bool interruptible = false);
  FeatureNet student() { return student_; }

 private:
  void open_data();
  void build_models();
  void matching_pass(int64_t epoch, int64_t step, bool interruptible);
  void write_checkpoint(bool is_best);
  void prepare_output_dir();
  [[noreturn]] void stop(int64_t batches);
  // A stop requested now can be honoured inside a pass (one process: no collective to keep).
  bool stop_inside_pass(bool interruptible) const {
    return interruptible && comm_->world_size() == 1 && stop_requested();
  }
  std::string config_text() const;

  // Loader options sharded over the ranks; `pad` false gives every sample exactly once.
  data::LoaderOptions shard(bool pad) const {
    return data::LoaderOptions().rank(comm_->rank()).world_size(comm_->world_size()).pad(pad);
  }

  TrainOptions o_;
  std::shared_ptr<distributed::Communicator> comm_;
  int threads_ = 1;
  torch::Device device_{torch::kCPU};
  std::shared_ptr<data::Dataset> train_set_, test_set_, tracking_set_;
  FeatureNet student_, teacher_;
  Distiller distiller_{nullptr};
  std::unique_ptr<SGD> sgd_;
  std::unique_ptr<RunLog> log_;
  TrainingState state_;
  std::string last_saved_;  // the state in the last checkpoint written by this process
};

void Engine::open_data() {
  auto opts = [&](const std::string& split, bool augment) {
    return data::DatasetOptions(o_.data_format, o_.data_root)
        .split(split)
        .augment(augment)
        .image_size(o_.image_size);
  };
  test_set_ = data::make_dataset(opts("test", false));
  if (!o_.evaluate_only) {
    train_set_ = data::make_dataset(opts("train", o_.augment));
    if (uses_mgd(o_.method)) tracking_set_ = data::make_dataset(opts("train", false));
    const int64_t n = o_.train_subset > 0 ? std::min(o_.train_subset, train_set_->size())
                                          : train_set_->size();
    const std::string root = o_.data_root.empty() ? data::default_root(o_.data_format) : o_.data_root;
    TORCH_CHECK(o_.batch_size <= n, "Batch size ", o_.batch_size, " is larger than the ", n,
                " training images of ", o_.data_format,
                root.empty() ? std::string() : " at '" + root + "'",
                " (every epoch would be empty)");
  }
}

void Engine::build_models() {
  const auto classes = test_set_->num_classes();
  const auto channels = test_set_->channels();
  auto model_opts = models::ModelOptions().classes(classes).in_channels(channels);
  student_ = models::make_model(o_.arch, model_opts);
  if (!o_.init_checkpoint.empty()) load_weights(o_.init_checkpoint, *student_, o_.arch);
  if (uses_teacher(o_.method)) {
    teacher_ = models::make_model(o_.teacher_arch, model_opts);
    load_weights(o_.teacher_checkpoint, *teacher_, o_.teacher_arch);
    teacher_->eval();
    for (auto& p : teacher_->parameters()) p.requires_grad_(false);
  }
  if (uses_mgd(o_.method)) {
    auto ignore = o_.ignore_positions_set ? o_.ignore_positions : default_ignored_positions(o_.arch);
    distiller_ = Distiller(teacher_, student_,
                           DistillerOptions()
                               .reducer(o_.reducer)
                               .ignore_positions(ignore)
                               .pre_relu(o_.pre_relu)
                               .shave(o_.shave == "best" ? ShaveRule::kBest : ShaveRule::kFirst)
                               .with_kd(uses_kd(o_.method))
                               .kd_temperature(o_.kd_temperature));
    distiller_->to(device_);
  } else {
    student_->to(device_);
    if (teacher_) teacher_->to(device_);
  }
}

EvalResult Engine::evaluate(FeatureNetImpl& net, bool interruptible) {
  torch::NoGradGuard no_grad;
  const bool was_training = net.is_training();
  net.eval();
  // Every rank evaluates its own test images, none twice; the counts are summed.
  data::Loader loader(test_set_, shard(/*pad=*/false)
                                     .batch_size(o_.batch_size)
                                     .shuffle(false)
                                     .workers(o_.workers)
                                     // the same test subset whatever the run's seed
                                     .seed(0)
                                     .max_samples(o_.test_subset));
  AccuracyMeter meter;
  for (auto& batch : loader) {
    if (stop_inside_pass(interruptible)) throw StopNow{};
    auto x = batch.images.to(device_);
    auto y = batch.labels.to(device_);
    auto logits = net.forward(x);
    auto loss = torch::nn::functional::cross_entropy(
        logits, y, torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum));
    meter.add(logits, y, loss.item<double>());
  }
  if (comm_->world_size() > 1) {
    auto totals = torch::tensor({static_cast<double>(meter.count), static_cast<double>(meter.top1),
                                 static_cast<double>(meter.top5), meter.loss_sum},
                                torch::kDouble);
    comm_->all_reduce_sum({totals}, "all-reduce of the evaluation counts");
    meter.count = static_cast<int64_t>(totals[0].item<double>());
    meter.top1 = static_cast<int64_t>(totals[1].item<double>());
    meter.top5 = static_cast<int64_t>(totals[2].item<double>());
    meter.loss_sum = totals[3].item<double>();
  }
  net.train(was_training);
  return {meter.top1_percent(), meter.top5_percent(), meter.mean_loss(), meter.count};
}

void Engine::matching_pass(int64_t epoch, int64_t step, bool interruptible) {
  const auto t0 = Clock::now();
  // A deterministic, shuffled, un-augmented view of the training set, capped at
  // tracking_images; a different subset for every pass, derived from the seed and the
  // point in training, so a resumed run sees the same images. Each rank tracks its own
  // shard of them; their statistics are summed before rank 0 solves (spec 8).
  data::Loader loader(tracking_set_,
                      shard(/*pad=*/false)
                          .batch_size(o_.batch_size)
                          .shuffle(true)
                          .workers(o_.workers)
                          .seed(mix_seed(o_.seed, static_cast<uint64_t>(epoch * 1000003 + step)))
                          .max_samples(std::min(o_.tracking_images, tracking_set_->size())));
  distiller_->reset_tracking();
  int64_t skipped = 0;
  for (auto& batch : loader) {
    if (stop_inside_pass(interruptible)) throw StopNow{};
    try {
      distiller_->track(batch.images.to(device_));
    } catch (const c10::Error& e) {
      // Where the cost matrix first turns non-finite: the pass, the batch and the position.
      const std::string what = e.what_without_backtrace();
      std::ostringstream where;
      // Passes before an epoch are the interruptible ones; the others follow a step.
      if (interruptible) where << "Tracking pass before epoch " << epoch + 1;
      else where << "Tracking pass after step " << step << " (epoch " << epoch + 1 << ")";
      where << ", tracking batch " << batch.index + 1 << ": " << what;
      const bool nonfinite = what.find("non-finite") != std::string::npos;
      if (nonfinite && o_.skip_nonfinite) {
        ++skipped;
        if (log_) log_->warning(where.str() + "; batch skipped (--skip-nonfinite)");
        continue;
      }
      TORCH_CHECK(false, where.str(),
                  nonfinite ? ". No checkpoint was written from this state; pass --skip-nonfinite "
                              "to skip such batches"
                            : "");
    }
  }
  TORCH_CHECK(distiller_->tracked_images() > 0, "Tracking pass in epoch ", epoch + 1,
              ": every tracking batch was skipped (", skipped, " non-finite)");
  auto costs = distributed::synchronize_matching(distiller_, *comm_);
  const double seconds = seconds_since(t0);
  if (log_) log_->matching(epoch, step, distiller_, costs, seconds);
}

std::string Engine::config_text() const {
  // Keys are those of `mgd train` / `mgd distill --config`, so this file reproduces the run.
  std::ostringstream s;
  auto list = [](const std::vector<int64_t>& v) {
    std::ostringstream l;
    l << "[";
    for (size_t i = 0; i < v.size(); ++i) l << (i ? ", " : "") << v[i];
    l << "]";
    return l.str();
  };
  auto text = [](const std::string& v) { return v.empty() ? std::string("null") : v; };
  auto flag = [](bool v) { return v ? "true" : "false"; };
  s << std::setprecision(17);
  s << "arch: " << o_.arch << "\n";
  if (uses_teacher(o_.method)) {
    s << "teacher_arch: " << o_.teacher_arch << "\n"
      << "teacher_checkpoint: " << o_.teacher_checkpoint << "\n"
      << "method: " << method_name(o_.method) << "\n";
  }
  s << "init_checkpoint: " << text(o_.init_checkpoint) << "\n"
    << "data_format: " << o_.data_format << "\n"
    << "data_root: " << text(o_.data_root) << "\n"
    << "image_size: " << o_.image_size << "\n"
    << "train_subset: " << o_.train_subset << "\n"
    << "test_subset: " << o_.test_subset << "\n"
    << "workers: " << o_.workers << "\n"
    << "augment: " << flag(o_.augment) << "\n"
    << "epochs: " << o_.epochs << "\n"
    << "batch_size: " << o_.batch_size << "\n"
    << "lr: " << o_.lr << "\n"
    << "momentum: " << o_.momentum << "\n"
    << "weight_decay: " << o_.weight_decay << "\n"
    << "nesterov: " << flag(o_.nesterov) << "\n"
    << "lr_schedule: " << o_.lr_schedule << "\n"
    << "lr_drop_epochs: " << list(o_.lr_drop_epochs) << "\n"
    << "lr_drop_ratio: " << o_.lr_drop_ratio << "\n"
    << "warmup_epochs: " << o_.warmup_epochs << "\n";
  if (uses_mgd(o_.method)) {
    s << "reducer: " << o_.reducer << "\n"
      << "update_freq: " << o_.update_freq << "\n"
      << "update_epochs: " << list(o_.update_epochs) << "\n"
      << "update_iters: " << o_.update_iters << "\n"
      << "tracking_images: " << o_.tracking_images << "\n"
      << "loss_factor: " << o_.loss_factor << "\n"
      << "ignore_positions: "
      << list(o_.ignore_positions_set ? o_.ignore_positions : default_ignored_positions(o_.arch))
      << "\n"
      << "shave: " << o_.shave << "\n"
      << "pre_relu: " << flag(o_.pre_relu) << "\n";
  }
  if (uses_kd(o_.method)) {
    s << "kd_temperature: " << o_.kd_temperature << "\n"
      << "kd_weight: " << o_.kd_weight << "\n";
  }
  s << "seed: " << o_.seed << "\n"
    << "device: " << o_.device << "\n"
    << "threads: " << threads_ << "\n"
    << "output_dir: " << o_.output_dir << "\n"

    << "print_freq: " << o_.print_freq << "\n"
    << "checkpoint_every: " << o_.checkpoint_every << "\n"
    << "skip_nonfinite: " << flag(o_.skip_nonfinite) << "\n"
    << "dist_timeout: " << o_.dist_timeout << "\n"
    << "bucket_mb: " << o_.bucket_mb << "\n";
  return s.str();
}

void Engine::write_checkpoint(bool is_best) {
  if (!comm_->is_main()) return;  // every rank holds the same state; rank 0 writes it
  const auto path = (fs::path(o_.output_dir) / "checkpoint.pth").string();
  state_.rng_state = at::detail::getDefaultCPUGenerator().get_state();
  torch::nn::Module* d = distiller_ ? distiller_.ptr().get() : nullptr;
  std::string target = path;
  try {
    if (!log_->committed()) {
      // The run's first checkpoint: from now on the directory is this run's. Until here it
      // was left as it was, so a run failing earlier destroys nothing.
      target = (fs::path(o_.output_dir) / "config.yaml").string();
      serialize::write_file_atomically(target, state_.config);
      log_->commit();
      target = path;
    }
    state_.metrics_bytes = log_->metrics_bytes();
    save_checkpoint(path, *student_, d, sgd_->momentum_buffers(), state_);
    std::ostringstream saved;
    saved << "epoch " << state_.epoch + (state_.batch > 0 ? 1 : 0);
    if (state_.batch > 0) saved << ", batch " << state_.batch;
    else saved << " complete";
    saved << ", step " << state_.global_step;
    last_saved_ = saved.str();
    if (is_best) {
      // The same bytes: a second name for the file just written (a copy where links fail).
      target = (fs::path(o_.output_dir) / "best.pth").string();
      serialize::link_or_copy_file(path, target);
    }
  } catch (const c10::Error& e) {
    // The writer never replaces a file it could not write completely.
    std::ostringstream what;
    what << "Cannot write the checkpoint '" << target << "' (" << e.what_without_backtrace()
         << "). ";
    if (!last_saved_.empty()) {
      what << "The previous checkpoint '" << path << "' (" << last_saved_ << ") is intact";
    } else if (!o_.resume.empty()) {
      what << "The checkpoint this run resumed from, '" << o_.resume << "', is intact";
    } else {
      what << "No checkpoint of this run was written before";
    }
    what << "; free some space or fix the directory, then resume with --resume " << path;
    TORCH_CHECK(false, what.str());
  }
}

// The files by which a directory is known to hold a run.
std::vector<std::string> run_files_in(const fs::path& dir) {
  std::vector<std::string> found;
  std::error_code ec;
  for (const char* name : {"checkpoint.pth", "best.pth", "config.yaml", "metrics.jsonl"}) {
    if (fs::exists(dir / name, ec)) found.emplace_back(name);
  }
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    const auto name = entry.path().filename().string();
    if (name.rfind("events.out.tfevents.", 0) == 0) {
      found.emplace_back("TensorBoard events");
      break;
    }
  }
  return found;
}

void Engine::prepare_output_dir() {
  const fs::path dir(o_.output_dir);
  std::error_code ec;
  if (o_.resume.empty() && !o_.overwrite && fs::is_directory(dir, ec)) {
    // Never clobber another run: its weights may be all that is left of days of training.
    const auto found = run_files_in(dir);
    TORCH_CHECK(found.empty(), "The output directory '", o_.output_dir, "' holds another run (",
                c10::Join(", ", found), "). Continue it with --resume ",
                (dir / "checkpoint.pth").string(),
                ", or pass --overwrite to replace it (or choose another --output-dir)");
  }
  fs::create_directories(dir, ec);
  TORCH_CHECK(!ec, "Cannot create the output directory '", o_.output_dir, "': ", ec.message());
  // Fail now, not after an epoch, when checkpoints cannot be written there.
  const fs::path probe = dir / (".mgd-write-test." + std::to_string(::getpid()));
  {
    std::ofstream out(probe, std::ios::binary);
    out << "mgd";
    out.close();
    const int err = errno;
    if (!out) {
      fs::remove(probe, ec);
      TORCH_CHECK(false, "The output directory '", o_.output_dir, "' is not writable (",
                  std::strerror(err), "); choose another --output-dir or fix its permissions");
    }
  }
  fs::remove(probe, ec);
  // Temporary files of checkpoint writes that a killed process left behind.
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    const auto name = entry.path().filename().string();
    if (name.rfind(".checkpoint.pth.tmp.", 0) == 0 || name.rfind(".best.pth.tmp.", 0) == 0 ||
        name.rfind(".config.yaml.tmp.", 0) == 0) {
      fs::remove(entry.path(), ec);
    }
  }
}

void Engine::stop(int64_t batches) {
  write_checkpoint(/*is_best=*/false);
  comm_->barrier();
  const int signal = stop_signal();
  const auto path = (fs::path(o_.output_dir) / "checkpoint.pth").string();
  std::ostringstream what;
  what << "Stopped";
  if (signal == SIGINT) what << " by SIGINT";
  else if (signal == SIGTERM) what << " by SIGTERM";
  else if (signal > 0) what << " by signal " << signal;
  what << " in epoch " << std::min(state_.epoch + 1, o_.epochs) << "/" << o_.epochs;
  if (state_.batch > 0) what << " after batch " << state_.batch << "/" << batches;
  what << " (step " << state_.global_step << "); the state reached is saved in '" << path
       << "'. Resume with: mgd " << (uses_teacher(o_.method) ? "distill" : "train") << " --config "
       << (fs::path(o_.output_dir) / "config.yaml").string() << " --resume " << path;
  throw Interrupted(what.str(), signal, comm_->is_main() ? path : std::string());
}

RunSummary Engine::train() {
  const bool main_rank = comm_->is_main();
  if (main_rank) prepare_output_dir();
  state_.arch = o_.arch;
  state_.teacher_arch = o_.teacher_arch;
  state_.method = method_name(o_.method);
  state_.config = config_text();

  auto params = distiller_ ? distiller_->trainable_parameters() : student_->parameters();
  sgd_ = std::make_unique<SGD>(params, SGDOptions(o_.lr)
                                           .momentum(o_.momentum)
                                           .weight_decay(o_.weight_decay)
                                           .nesterov(o_.nesterov));
  if (!o_.resume.empty()) {
    torch::nn::Module* d = distiller_ ? distiller_.ptr().get() : nullptr;
    auto restored = load_checkpoint(o_.resume, *student_, d, &sgd_->momentum_buffers());
    TORCH_CHECK(restored.arch == o_.arch && restored.method == state_.method,
                "Cannot resume '", o_.resume, "': it is a ", restored.method, " run of ",
                restored.arch, ", this is a ", state_.method, " run of ", o_.arch);
    restored.config = state_.config;
    restored.arch = state_.arch;
    restored.teacher_arch = state_.teacher_arch;
    state_ = restored;
    if (state_.rng_state.defined()) {
      auto gen = at::detail::getDefaultCPUGenerator();
      gen.set_state(state_.rng_state);
    }
    for (auto& b : sgd_->momentum_buffers()) {
      if (b.defined()) b = b.to(device_);
    }
  }
  // Every rank starts from rank 0's weights (they agree already when seeded alike).
  distributed::broadcast_module(distiller_ ? static_cast<torch::nn::Module&>(*distiller_)
                                           : static_cast<torch::nn::Module&>(*student_),
                                *comm_);
  distributed::GradientAverager averager(params, comm_, o_.bucket_mb << 20);
  // Logging, metrics, progress and checkpoints: rank 0 only.
  if (main_rank) {
    const RunDirMode mode = !o_.resume.empty() ? RunDirMode::kResume
                            : o_.overwrite     ? RunDirMode::kOverwrite
                                               : RunDirMode::kNew;
    log_ = std::make_unique<RunLog>(o_.output_dir, o_.print_freq, mode, state_.metrics_bytes);
    if (!o_.resume.empty()) {
      std::cerr << "resuming '" << o_.resume << "' at epoch " << state_.epoch + 1;
      if (state_.batch > 0) std::cerr << ", batch " << state_.batch + 1;
      std::cerr << " (" << state_.global_step << " steps done)\n";
    }
  }

  LrSchedule lr;
  lr.kind = o_.lr_schedule == "cosine" ? LrSchedule::Kind::kCosine : LrSchedule::Kind::kMultiStep;
  lr.base_lr = o_.lr;
  lr.drop_epochs = o_.lr_drop_epochs;
  lr.drop_ratio = o_.lr_drop_ratio;
  lr.warmup_epochs = o_.warmup_epochs;
  lr.epochs = o_.epochs;
  MatchingSchedule matching;
  matching.every_epochs = o_.update_freq;
  matching.epochs = o_.update_epochs;
  matching.every_iters = o_.update_iters;

  data::Loader loader(train_set_, shard(/*pad=*/true)
                                      .batch_size(o_.batch_size)
                                      .shuffle(true)
                                      .drop_last(true)
                                      .workers(o_.workers)
                                      .seed(o_.seed)
                                      .max_samples(o_.train_subset));
  RunSummary summary;
  summary.output_dir = o_.output_dir;
  const auto t_start = Clock::now();
  int64_t batches = 0;  // of the current epoch, for the stop message
  try {
    if (teacher_ && state_.teacher_top1 < 0) {
      auto t = evaluate(*teacher_, /*interruptible=*/true);
      state_.teacher_top1 = t.top1;
      if (log_) log_->evaluation("teacher", state_.epoch, state_.global_step, t.top1, t.top5, t.loss);
    }

    auto ce_opts = torch::nn::functional::CrossEntropyFuncOptions();
    for (int64_t epoch = state_.epoch; epoch < o_.epochs; ++epoch) {
      // > 0 when resuming a checkpoint written inside this epoch: continue at that batch, with
      // the matching it holds (the pass due before the epoch is done already).
      const int64_t first_batch = state_.batch;
      if (distiller_ && first_batch == 0 && matching.due_before_epoch(epoch)) {
        matching_pass(epoch, state_.global_step, /*interruptible=*/true);
      }
      if (distiller_) distiller_->train(); else student_->train();
      loader.set_epoch(epoch);
      batches = loader.num_batches();
      TORCH_CHECK(first_batch <= batches, "Cannot resume '", o_.resume, "' at batch ", first_batch,
                  " of epoch ", epoch + 1, ": this run's epochs have ", batches,
                  " batches (the data, subset or batch size differ from the checkpoint's run)");
      loader.start(first_batch);
      if (log_) log_->begin_epoch(epoch, o_.epochs, batches);
      AccuracyMeter train_meter = state_.epoch_meter;
      bool stop_now = false;
      for (auto& batch : loader) {
        const double rate = lr.at(epoch, batch.index, batches);
        sgd_->set_lr(rate);
        auto x = batch.images.to(device_);
        auto y = batch.labels.to(device_);
        StepLosses parts;
        std::vector<bool> distilled;  // per position: a NaN there is a loss, not "not distilled"
        torch::Tensor logits, loss;
        if (distiller_) {
          auto out = distiller_->forward(x);
          logits = out.logits;
          auto ce = torch::nn::functional::cross_entropy(logits, y, ce_opts);
          auto d = out.loss / static_cast<double>(x.size(0)) / o_.loss_factor;
          loss = ce + d;
          parts.task = ce.item<double>();
          parts.distill = d.item<double>();
          for (size_t i = 0; i < out.position_losses.size(); ++i) {
            distilled.push_back(out.position_losses[i].defined());
            parts.positions.push_back(out.position_losses[i].defined()
                                          ? out.position_losses[i].item<double>() /
                                                static_cast<double>(x.size(0)) / o_.loss_factor
                                          : std::numeric_limits<double>::quiet_NaN());
          }
          if (out.kd_loss.defined()) {
            loss = loss + o_.kd_weight * out.kd_loss;
            parts.kd = out.kd_loss.item<double>();
          }
        } else {
          logits = student_->forward(x);
          auto ce = torch::nn::functional::cross_entropy(logits, y, ce_opts);
          loss = ce;
          parts.task = ce.item<double>();
          if (teacher_) {  // KD alone
            torch::Tensor teacher_logits;
            {
              torch::NoGradGuard no_grad;
              teacher_logits = teacher_->forward(x);
            }
            auto kd = functional::kd_loss(logits, teacher_logits, o_.kd_temperature);
            loss = loss + o_.kd_weight * kd;
            parts.kd = kd.item<double>();
          }
        }
        parts.total = loss.item<double>();
        bool nonfinite = !std::isfinite(parts.total);
        stop_now = stop_requested();
        if (comm_->world_size() > 1) {  // every rank must skip (or stop) together
          auto flag = torch::tensor({nonfinite ? 1.0 : 0.0, stop_now ? 1.0 : 0.0}, torch::kDouble);
          comm_->all_reduce_sum({flag}, "all-reduce of the loss check");
          nonfinite = flag[0].item<double>() > 0;
          stop_now = flag[1].item<double>() > 0;
        }
        if (nonfinite) {
          std::ostringstream what;
          if (std::isfinite(parts.total)) what << "On another rank: ";
          what << "Non-finite loss at epoch " << epoch + 1 << ", batch " << batch.index + 1
               << " (step " << state_.global_step + 1 << "): task " << parts.task;
          if (distiller_) {
            what << ", distillation " << parts.distill;
            for (size_t i = 0; i < parts.positions.size(); ++i) {
              if (distilled[i]) {
                what << ", position " << i << " " << parts.positions[i];
              }
            }
          }
          if (teacher_ && !std::isnan(parts.kd)) what << ", kd " << parts.kd;
          if (o_.skip_nonfinite) {
            if (log_) log_->warning(what.str() + "; step skipped (--skip-nonfinite)");
            continue;
          }
          what << ". ";
          if (!last_saved_.empty()) {
            what << "The last good checkpoint (" << last_saved_ << ") is kept in '"
                 << o_.output_dir << "'";
          } else if (!o_.resume.empty()) {
            what << "No checkpoint was written since '" << o_.resume
                 << "', which is kept as it was";
          } else {
            what << "No checkpoint was written; '" << o_.output_dir << "' is left as it was";
          }
          TORCH_CHECK(false, what.str(), "; lower the learning rate or pass --skip-nonfinite.");
        }
        sgd_->zero_grad();
        loss.backward();
        averager.average();
        sgd_->step();
        ++state_.global_step;
        train_meter.add(logits.detach(), y, parts.total * x.size(0));
        if (log_) log_->step(epoch, batch.index, state_.global_step, x.size(0), rate, parts,
                   train_meter.top1_percent());
        if (distiller_ && matching.due_after_step(state_.global_step)) {
          matching_pass(epoch, state_.global_step, /*interruptible=*/false);
          distiller_->train();
        }
        state_.batch = batch.index + 1;
        state_.epoch_meter = train_meter;
        if (comm_->world_size() == 1) stop_now = stop_requested();
        if (stop_now) stop(batches);
        if (o_.checkpoint_every > 0 && state_.global_step % o_.checkpoint_every == 0) {
          write_checkpoint(/*is_best=*/false);
        }
      }
      auto eval = evaluate(*student_, /*interruptible=*/true);
      state_.epoch = epoch + 1;
      state_.batch = 0;
      state_.epoch_meter = AccuracyMeter();
      const bool is_best = eval.top1 > state_.best_top1 || epoch == 0;
      if (is_best) {
        state_.best_top1 = eval.top1;
        state_.best_top5 = eval.top5;
      }
      if (log_) log_->end_epoch(epoch, state_.global_step, train_meter.top1_percent(), train_meter.mean_loss(),
                      eval.top1, eval.top5, eval.loss, sgd_->lr(), seconds_since(t_start));
      write_checkpoint(is_best);
      summary.final_eval = eval;
    }
  } catch (const StopNow&) {
    stop(batches);
  }
  summary.best_top1 = state_.best_top1;
  summary.teacher_top1 = state_.teacher_top1;
  summary.train_seconds = seconds_since(t_start);
  summary.epochs_done = state_.epoch;
  summary.checkpoint = (fs::path(o_.output_dir) / "checkpoint.pth").string();
  summary.best_checkpoint = (fs::path(o_.output_dir) / "best.pth").string();
  if (state_.epoch == o_.epochs && summary.final_eval.images == 0) {
    summary.final_eval = evaluate(*student_);  // resumed a finished run
  }
  if (log_) log_->finish(summary.final_eval.top1, state_.best_top1, summary.train_seconds);
  comm_->barrier();  // no rank leaves before rank 0 has written the last checkpoint
  return summary;
}

}  // namespace

RunSummary run_training(const TrainOptions& options) {
  TORCH_CHECK(!options.evaluate_only, "run_training: evaluate_only is set; use run_evaluation");
  Engine engine(options);
  return engine.train();
}

EvalResult run_evaluation(const TrainOptions& options) {
  TrainOptions o = options;
  o.evaluate_only = true;
  if (o.init_checkpoint.empty()) o.init_checkpoint = o.resume;
  TORCH_CHECK(!o.init_checkpoint.empty(),
              "Evaluation needs weights: pass a checkpoint (--checkpoint or --resume)");
  o.method = Method::kNone;
  Engine engine(o);
  return engine.evaluate(*engine.student());
}

}  // namespace mgd::training
