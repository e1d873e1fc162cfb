#include "mgd/training/engine.h"

#include <torch/torch.h>

#include <cerrno>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <limits>
#include <memory>
#include <sstream>

#include "mgd/data/rng.h"
#include "mgd/distiller/distiller.h"
#include "mgd/distributed/communicator.h"
#include "mgd/distributed/data_parallel.h"
#include "mgd/distributed/environment.h"
#include "mgd/models/registry.h"
#include "mgd/serialize/checkpoint.h"
#include "mgd/training/checkpoint.h"
#include "mgd/training/interrupt.h"
#include "mgd/training/run_log.h"
#include "mgd/training/schedule.h"
#include "mgd/training/sgd.h"
#include "mgd/training/task.h"
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

std::string yaml_list(const std::vector<int64_t>& values) {
  std::ostringstream l;
  l << "[";
  for (size_t i = 0; i < values.size(); ++i) l << (i ? ", " : "") << values[i];
  l << "]";
  return l.str();
}

std::string yaml_list(const std::vector<double>& values) {
  std::ostringstream l;
  l << std::setprecision(17) << "[";
  for (size_t i = 0; i < values.size(); ++i) l << (i ? ", " : "") << values[i];
  l << "]";
  return l.str();
}

double value_of(const NamedValues& values, const std::string& name) {
  for (const auto& [key, value] : values) {
    if (key == name) return value;
  }
  return std::numeric_limits<double>::quiet_NaN();
}

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

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

void validate(const TrainOptions& o) {
  TORCH_CHECK(o.epochs >= 1, "Invalid epochs: ", o.epochs, " (expected >= 1)");
  TORCH_CHECK(o.batch_size >= 1, "Invalid batch size: ", o.batch_size, " (expected >= 1)");
  TORCH_CHECK(std::isfinite(o.lr) && o.lr > 0, "Invalid learning rate: ", o.lr);
  TORCH_CHECK(o.lr_schedule == "step" || o.lr_schedule == "cosine", "Unknown lr schedule '",
              o.lr_schedule, "' (expected step or cosine)");
  TORCH_CHECK(o.shave == "first" || o.shave == "best", "Unknown shave rule '", o.shave,
              "' (expected first or best)");
  TORCH_CHECK(o.update_freq >= 0, "Invalid update frequency: ", o.update_freq,
              " (epochs, >= 1; 0: none)");
  TORCH_CHECK(o.warmup_epochs >= 0 && o.warmup_iters >= 0, "Invalid warm-up: ", o.warmup_epochs,
              " epochs, ", o.warmup_iters, " iterations (expected >= 0)");
  TORCH_CHECK(!(o.warmup_epochs > 0 && o.warmup_iters > 0),
              "Give the warm-up in epochs (--warmup-epochs) or in iterations (--warmup-iters), "
              "not both");
  TORCH_CHECK(std::isfinite(o.warmup_factor) && o.warmup_factor >= 0 && o.warmup_factor <= 1,
              "Invalid warm-up factor: ", o.warmup_factor, " (expected in [0, 1])");
  TORCH_CHECK(o.sgd_update == "auto" || o.sgd_update == "one-pass" || o.sgd_update == "tensor-ops",
              "Invalid SGD update '", o.sgd_update, "' (expected auto, one-pass or tensor-ops)");
  TORCH_CHECK(o.update_iters >= 0, "Invalid update interval: ", o.update_iters,
              " (iterations, >= 1; 0: none)");
  for (int64_t s : o.update_steps) {
    TORCH_CHECK(s >= 0, "Invalid update step ", s, " (expected step counts >= 0)");
  }
  for (double f : o.update_fractions) {
    TORCH_CHECK(f >= 0 && f < 1, "Invalid update fraction ", f,
                " (expected fractions of the run's steps in [0, 1))");
  }
  TORCH_CHECK(o.tracking_transform == "eval" || o.tracking_transform == "train",
              "Unknown tracking transform '", o.tracking_transform, "' (expected eval or train)");
  TORCH_CHECK(o.tracking_padding == "exclude" || o.tracking_padding == "include",
              "Unknown tracking padding '", o.tracking_padding,
              "' (expected exclude or include)");
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
  TORCH_CHECK(!uses_teacher(o.method) || !o.teacher_checkpoint.empty() ||
                  models::is_torchscript_name(o.teacher_arch),
              "Distillation (", method_name(o.method),
              ") needs the trained teacher's weights (--teacher-checkpoint; a torchscript: "
              "teacher carries its own)");
}

// The files by which a directory is known to hold a run.
std::vector<std::string> run_files_in(const fs::path& dir) {
  std::vector<std::string> found;
  std::error_code ec;
  for (const char* name : {"checkpoint.pth", "best.pth", "config.yaml", "metrics.jsonl"}) {
    if (fs::exists(dir / name, ec)) found.emplace_back(name);
  }
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    if (entry.path().filename().string().rfind("events.out.tfevents.", 0) == 0) {
      found.emplace_back("TensorBoard events");
      break;
    }
  }
  return found;
}

class Engine {
 public:
  explicit Engine(TrainOptions options) : o_(std::move(options)) {
    resolve_task_defaults(o_);
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
    TaskContext context;
    context.comm = comm_;
    context.device = device_;
    // A pass is abandoned for a stop only in one process (no collective to keep in step).
    context.stop_requested = [comm = comm_] { return comm->world_size() == 1 && stop_requested(); };
    task_ = make_task(o_, context);
    distiller_ = task_->distiller();
  }

  RunSummary train();
  Evaluation evaluate() { return task_->evaluate(/*interruptible=*/false); }

 private:
  void matching_pass(int64_t epoch, int64_t step, bool interruptible);
  void write_checkpoint(bool is_best);
  void commit_run_dir();
  void prepare_output_dir();
  [[noreturn]] void stop(int64_t batches);
  std::string config_text() const;

  TrainOptions o_;
  std::shared_ptr<distributed::Communicator> comm_;
  int threads_ = 1;
  torch::Device device_{torch::kCPU};
  std::unique_ptr<Task> task_;
  Distiller distiller_{nullptr};
  std::unique_ptr<SGD> sgd_;
  std::unique_ptr<RunLog> log_;
  TrainingState state_;
  std::string last_saved_;  // the state in the last checkpoint written by this process
};

void Engine::matching_pass(int64_t epoch, int64_t step, bool interruptible) {
  const auto t0 = Clock::now();
  // The student's running statistics are rank 0's on every rank while it tracks.
  distributed::broadcast_buffers(task_->network(), *comm_);
  distiller_->reset_tracking();
  int64_t skipped = 0;
  // A different subset for every pass, derived from the seed and the point in training, so a
  // resumed run sees the same images.
  const uint64_t seed =
      data::mix_seed(o_.seed, static_cast<uint64_t>(epoch * 1000003 + step));
  task_->track(seed, interruptible, [&](const c10::Error& e, int64_t batch) {
    // Where the cost matrix first turns non-finite: the pass, the batch and the position.
    const std::string what = e.what_without_backtrace();
    std::ostringstream where;
    // Passes before an epoch are the interruptible ones; the others follow a step.
    if (interruptible) where << "Tracking pass before epoch " << epoch + 1;
    else where << "Tracking pass after step " << step << " (epoch " << epoch + 1 << ")";
    where << ", tracking batch " << batch + 1 << ": " << what;
    const bool nonfinite = what.find("non-finite") != std::string::npos;
    if (nonfinite && o_.skip_nonfinite) {
      ++skipped;
      if (log_) log_->warning(where.str() + "; batch skipped (--skip-nonfinite)");
      return true;
    }
    TORCH_CHECK(false, where.str(),
                nonfinite ? ". No checkpoint was written from this state; pass --skip-nonfinite "
                            "to skip such batches"
                          : "");
  });
  TORCH_CHECK(distiller_->tracked_images() > 0, "Tracking pass in epoch ", epoch + 1,
              ": every tracking batch was skipped (", skipped, " non-finite)");
  auto costs = distributed::synchronize_matching(distiller_, *comm_);
  const double seconds = seconds_since(t0);
  if (log_) log_->matching(epoch, step, distiller_, costs, seconds);
}

std::string Engine::config_text() const {
  // Keys are those of `mgd train` / `mgd distill --config`, so this file reproduces the run.
  std::ostringstream s;
  auto list = [](const auto& v) { return yaml_list(v); };
  auto text = [](const std::string& v) { return v.empty() ? std::string("null") : v; };
  auto flag = [](bool v) { return v ? "true" : "false"; };
  s << std::setprecision(17);
  if (o_.task != "classification") s << "task: " << o_.task << "\n";
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
    << "nesterov: " << flag(o_.nesterov) << "\n";
  // Only when not the tensor ops, so classification's config text is what it always was.
  if (o_.sgd_update != "tensor-ops") s << "sgd_update: " << o_.sgd_update << "\n";
  s << "lr_schedule: " << o_.lr_schedule << "\n"
    << "lr_drop_epochs: " << list(o_.lr_drop_epochs) << "\n"
    << "lr_drop_ratio: " << o_.lr_drop_ratio << "\n"
    << "warmup_epochs: " << o_.warmup_epochs << "\n";
  if (o_.warmup_iters > 0) {
    s << "warmup_iters: " << o_.warmup_iters << "\n"
      << "warmup_factor: " << o_.warmup_factor << "\n";
  }
  if (uses_mgd(o_.method)) {
    s << "reducer: " << o_.reducer << "\n"
      << "update_freq: " << o_.update_freq << "\n"
      << "update_epochs: " << list(o_.update_epochs) << "\n"
      << "update_iters: " << o_.update_iters << "\n";
    if (!o_.update_steps.empty()) s << "update_steps: " << list(o_.update_steps) << "\n";
    if (!o_.update_fractions.empty()) {
      s << "update_fractions: " << list(o_.update_fractions) << "\n";
    }
    s << "tracking_images: " << o_.tracking_images << "\n"
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
  s << task_->config_text();
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

void Engine::commit_run_dir() {
  // The run's first checkpoint (or the end of a run resumed when finished): from now on the
  // directory is this run's. Until here it was left as it was, so a run failing earlier
  // destroys nothing.
  serialize::write_file_atomically((fs::path(o_.output_dir) / "config.yaml").string(),
                                   state_.config);
  log_->commit();
}

void Engine::write_checkpoint(bool is_best) {
  if (!comm_->is_main()) return;  // every rank holds the same state; rank 0 writes it
  const auto path = (fs::path(o_.output_dir) / "checkpoint.pth").string();
  state_.rng_state = at::detail::getDefaultCPUGenerator().get_state();
  state_.task_state = task_->state();
  torch::nn::Module* d = distiller_ ? distiller_.ptr().get() : nullptr;
  std::string target = path;
  try {
    if (!log_->committed()) {
      target = (fs::path(o_.output_dir) / "config.yaml").string();
      commit_run_dir();
      target = path;
    }
    state_.metrics_bytes = log_->metrics_bytes();
    save_checkpoint(path, task_->network(), d, sgd_->momentum_buffers(), state_);
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

EvalResult to_eval_result(const Evaluation& e) {
  EvalResult r;
  r.metrics = e.metrics;
  r.images = e.images;
  const double top1 = value_of(e.metrics, "acc1"), top5 = value_of(e.metrics, "acc5"),
               loss = value_of(e.metrics, "loss");
  r.top1 = std::isnan(top1) ? 0 : top1;
  r.top5 = std::isnan(top5) ? 0 : top5;
  r.loss = std::isnan(loss) ? 0 : loss;
  return r;
}

RunSummary Engine::train() {
  const bool main_rank = comm_->is_main();
  if (main_rank) prepare_output_dir();
  state_.arch = o_.arch;
  state_.teacher_arch = o_.teacher_arch;
  state_.method = method_name(o_.method);
  state_.config = config_text();

  auto params = task_->parameters();
  sgd_ = std::make_unique<SGD>(params, SGDOptions(o_.lr)
                                           .momentum(o_.momentum)
                                           .weight_decay(o_.weight_decay)
                                           .nesterov(o_.nesterov)
                                           .one_pass(o_.sgd_update == "one-pass"));
  if (!o_.resume.empty()) {
    torch::nn::Module* d = distiller_ ? distiller_.ptr().get() : nullptr;
    auto restored = load_checkpoint(o_.resume, task_->network(), d, &sgd_->momentum_buffers());
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
    if (!state_.task_state.is_none()) {
      try {
        task_->load_state(state_.task_state);
      } catch (const c10::Error& e) {
        TORCH_CHECK(false, "Cannot resume '", o_.resume, "': ", e.what_without_backtrace());
      }
    }
  }
  // Every rank starts from rank 0's weights (they agree already when seeded alike).
  distributed::broadcast_module(distiller_ ? static_cast<torch::nn::Module&>(*distiller_)
                                           : task_->network(),
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
  lr.warmup_iters = o_.warmup_iters;
  lr.warmup_factor = o_.warmup_factor;
  lr.epochs = o_.epochs;
  MatchingSchedule matching;
  matching.every_epochs = o_.update_freq;
  matching.epochs = o_.update_epochs;
  matching.every_iters = o_.update_iters;
  matching.steps = o_.update_steps;
  bool fractions_added = o_.update_fractions.empty();

  RunSummary summary;
  summary.output_dir = o_.output_dir;
  summary.best_metric = task_->best_metric();
  const auto t_start = Clock::now();
  int64_t batches = 0;  // of the current epoch, for the stop message
  try {
    if (task_->has_teacher() && state_.teacher_top1 < 0) {
      auto t = task_->evaluate_teacher(/*interruptible=*/true);
      state_.teacher_top1 = value_of(t.metrics, task_->best_metric());
      if (log_) log_->evaluation("teacher", state_.epoch, state_.global_step, t.metrics);
    }

    for (int64_t epoch = state_.epoch; epoch < o_.epochs; ++epoch) {
      // > 0 when resuming a checkpoint written inside this epoch: continue at that batch, with
      // the matching it holds (the pass due before the epoch is done already).
      const int64_t first_batch = state_.batch;
      if (distiller_ && first_batch == 0 && matching.due_before_epoch(epoch)) {
        matching_pass(epoch, state_.global_step, /*interruptible=*/true);
      }
      task_->train(true);
      batches = task_->start_epoch(epoch, first_batch);
      if (!fractions_added) {  // every epoch has as many batches as this one
        matching.add_fractions(o_.update_fractions, batches * o_.epochs);
        fractions_added = true;
      }
      if (log_) log_->begin_epoch(epoch, o_.epochs, batches);
      bool stop_now = false;
      while (task_->next_batch()) {
        const int64_t index = task_->batch_index();
        const double rate = lr.at(epoch, index, batches);
        sgd_->set_lr(rate);
        StepResult result = task_->step();
        const double total = result.loss.item<double>();
        bool nonfinite = !std::isfinite(total);
        stop_now = stop_requested();
        if (comm_->world_size() > 1) {  // every rank must skip (or stop) together
          auto flag = torch::tensor({nonfinite ? 1.0 : 0.0, stop_now ? 1.0 : 0.0}, torch::kDouble);
          comm_->all_reduce_sum({flag}, "all-reduce of the loss check");
          nonfinite = flag[0].item<double>() > 0;
          stop_now = flag[1].item<double>() > 0;
        }
        if (nonfinite) {
          std::ostringstream what;
          if (std::isfinite(total)) what << "On another rank: ";
          what << "Non-finite loss at epoch " << epoch + 1 << ", batch " << index + 1
               << " (step " << state_.global_step + 1 << "):";
          for (size_t i = 0; i < result.parts.size(); ++i) {
            what << (i ? ", " : " ") << result.parts[i].first << " " << result.parts[i].second;
          }
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
        if (log_ && distiller_ && state_.global_step == 0) {
          log_->loss_scale(epoch, 0, loss_scale_of(result.parts, o_.loss_factor));
        }
        sgd_->zero_grad();
        result.loss.backward();
        averager.average();
        sgd_->step();
        ++state_.global_step;
        task_->after_step(result);
        if (log_) {
          log_->step(epoch, index, state_.global_step, result.images, rate, total, result.parts,
                     task_->step_metrics());
        }
        if (distiller_ && matching.due_after_step(state_.global_step)) {
          matching_pass(epoch, state_.global_step, /*interruptible=*/false);
          task_->train(true);
        }
        state_.batch = index + 1;
        if (comm_->world_size() == 1) stop_now = stop_requested();
        if (stop_now) stop(batches);
        if (o_.checkpoint_every > 0 && state_.global_step % o_.checkpoint_every == 0) {
          write_checkpoint(/*is_best=*/false);
        }
      }
      const NamedValues train_metrics = task_->epoch_metrics();
      // Every rank evaluates its shard with rank 0's running statistics: the checkpoint's.
      distributed::broadcast_buffers(task_->network(), *comm_);
      auto eval = task_->evaluate(/*interruptible=*/true);
      state_.epoch = epoch + 1;
      state_.batch = 0;
      const double value = value_of(eval.metrics, task_->best_metric());
      const bool is_best = value > state_.best_top1 || epoch == 0;
      if (is_best) {
        state_.best_top1 = value;
        const double top5 = value_of(eval.metrics, "acc5");
        state_.best_top5 = std::isnan(top5) ? 0 : top5;
      }
      if (log_) {
        log_->end_epoch(epoch, state_.global_step, train_metrics, eval.metrics, sgd_->lr(),
                        seconds_since(t_start));
      }
      write_checkpoint(is_best);
      summary.final_eval = to_eval_result(eval);
    }
  } catch (const PassAbandoned&) {
    stop(batches);
  }
  summary.best_top1 = state_.best_top1;
  summary.teacher_top1 = state_.teacher_top1;
  summary.train_seconds = seconds_since(t_start);
  summary.epochs_done = state_.epoch;
  summary.checkpoint = (fs::path(o_.output_dir) / "checkpoint.pth").string();
  summary.best_checkpoint = (fs::path(o_.output_dir) / "best.pth").string();
  if (state_.epoch == o_.epochs && summary.final_eval.images == 0) {
    summary.final_eval = to_eval_result(evaluate());  // resumed a finished run
  }
  if (log_) {
    if (!log_->committed()) commit_run_dir();  // resumed a finished run: nothing else written
    log_->finish(summary.final_eval.metrics, task_->best_metric(), state_.best_top1,
                 summary.train_seconds);
  }
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
  return to_eval_result(engine.evaluate());
}

}  // namespace mgd::training
