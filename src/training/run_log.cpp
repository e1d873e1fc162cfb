#include "mgd/training/run_log.h"

#include <torch/torch.h>

#include <cmath>
#include <chrono>
#include <filesystem>
#include <functional>
#include <iostream>

#include "mgd/logging/image.h"
#include "mgd/logging/progress.h"
#include "mgd/logging/run_logger.h"
#include "mgd/util/messages.h"

namespace mgd::training {

namespace {
double now_seconds() {
  using namespace std::chrono;
  return duration<double>(system_clock::now().time_since_epoch()).count();
}
void add_if_set(logging::Metrics& m, const char* name, double value) {
  if (!std::isnan(value)) m.emplace_back(name, value);
}
}  // namespace

struct RunLog::Impl {
  Impl(const std::string& dir, int64_t print_freq, RunDirMode mode, int64_t metrics_bytes)
      : dir(dir), mode(mode), resumed_metrics_bytes(metrics_bytes),
        progress(logging::ProgressOptions().print_freq(std::max<int64_t>(1, print_freq))),
        print_freq(std::max<int64_t>(1, print_freq)) {}
  // Records go to the files once committed, into `pending` before.
  void emit(std::function<void(logging::RunLogger&)> record) {
    if (logger) record(*logger);
    else pending.push_back(std::move(record));
  }
  std::string dir;
  RunDirMode mode;
  int64_t resumed_metrics_bytes;
  std::unique_ptr<logging::RunLogger> logger;
  std::vector<std::function<void(logging::RunLogger&)>> pending;
  logging::Progress progress;
  int64_t print_freq;
  // Running means over the epoch's steps, for the progress display.
  double loss_sum = 0;
  int64_t steps = 0;
};

RunLog::RunLog(const std::string& dir, int64_t print_freq, RunDirMode mode, int64_t metrics_bytes)
    : impl_(std::make_unique<Impl>(dir, print_freq, mode, metrics_bytes)) {}

RunLog::~RunLog() = default;

void RunLog::commit() {
  if (impl_->logger) return;
  namespace fs = std::filesystem;
  const fs::path dir(impl_->dir);
  const fs::path metrics = dir / "metrics.jsonl";
  std::error_code ec;
  if (impl_->mode == RunDirMode::kOverwrite) {
    // The replaced run's records; its checkpoint and config.yaml are replaced atomically.
    fs::remove(metrics, ec);
    fs::remove(dir / "best.pth", ec);
    for (const auto& entry : fs::directory_iterator(dir, ec)) {
      if (entry.path().filename().string().rfind("events.out.tfevents.", 0) == 0) {
        fs::remove(entry.path(), ec);
      }
    }
  } else if (impl_->mode == RunDirMode::kResume && impl_->resumed_metrics_bytes >= 0 &&
             fs::exists(metrics, ec) &&
             static_cast<int64_t>(fs::file_size(metrics, ec)) > impl_->resumed_metrics_bytes) {
    // Lines written after the checkpoint by the run that was stopped: this run redoes them.
    fs::resize_file(metrics, static_cast<uintmax_t>(impl_->resumed_metrics_bytes), ec);
    TORCH_CHECK(!ec, "Cannot cut '", metrics.string(), "' back to the checkpoint's ",
                impl_->resumed_metrics_bytes, " bytes: ", ec.message());
  }
  impl_->logger = std::make_unique<logging::RunLogger>(impl_->dir);
  for (auto& record : impl_->pending) record(*impl_->logger);
  impl_->pending.clear();
  impl_->logger->flush();
}

bool RunLog::committed() const { return impl_->logger != nullptr; }

int64_t RunLog::metrics_bytes() const {
  if (!impl_->logger) return -1;
  std::error_code ec;
  const auto size = std::filesystem::file_size(std::filesystem::path(impl_->dir) / "metrics.jsonl", ec);
  return ec ? 0 : static_cast<int64_t>(size);
}

void RunLog::begin_epoch(int64_t epoch, int64_t /*epochs*/, int64_t batches) {
  impl_->loss_sum = 0;
  impl_->steps = 0;
  impl_->progress.start(epoch + 1, batches, "train");
}

void RunLog::step(int64_t epoch, int64_t batch, int64_t global_step, int64_t images, double lr,
                  double loss, const NamedValues& parts, const NamedValues& running) {
  impl_->loss_sum += loss;
  ++impl_->steps;
  logging::Metrics shown = {{"loss", impl_->loss_sum / impl_->steps}};
  for (const auto& [name, value] : running) shown.emplace_back(name, value);
  impl_->progress.update(batch + 1, images, shown);
  if (global_step % impl_->print_freq != 0) return;
  logging::Metrics m;
  add_if_set(m, "loss", loss);
  for (const auto& [name, value] : parts) add_if_set(m, name.c_str(), value);
  m.emplace_back("lr", lr);
  for (const auto& [name, value] : running) m.emplace_back(name, value);
  m.emplace_back("images_per_sec", impl_->progress.images_per_sec());
  impl_->emit([=, t = now_seconds()](logging::RunLogger& l) { l.log("train", epoch + 1, global_step, m, t); });
}

void RunLog::end_epoch(int64_t epoch, int64_t global_step, const NamedValues& train,
                       const NamedValues& evaluation, double lr, double elapsed_seconds) {
  const double seconds = impl_->progress.finish();
  logging::Metrics m;
  for (const auto& [name, value] : train) m.emplace_back(name, value);
  for (const auto& [name, value] : evaluation) m.emplace_back(name, value);
  m.emplace_back("lr", lr);
  m.emplace_back("epoch_seconds", seconds);
  m.emplace_back("elapsed_seconds", elapsed_seconds);
  impl_->emit([=, t = now_seconds()](logging::RunLogger& l) {
    l.log("eval", epoch + 1, global_step, m, t);
    l.flush();
  });
  // One line: the training loss, and the evaluation's metrics (not their complements).
  logging::Metrics shown;
  for (const auto& [name, value] : train) {
    if (name.size() >= 4 && name.compare(name.size() - 4, 4, "loss") == 0) shown.emplace_back(name, value);
  }
  for (const auto& [name, value] : evaluation) {
    if (name.rfind("err", 0) != 0 && name != "loss") shown.emplace_back("test_" + name, value);
  }
  std::cerr << logging::epoch_summary(epoch + 1, seconds, shown) << "\n";
}

void RunLog::matching(int64_t epoch, int64_t global_step, Distiller& distiller,
                      const std::vector<double>& mean_costs, double seconds) {
  logging::Metrics m = {{"tracked_images", distiller->tracked_images()}, {"seconds", seconds}};
  for (int64_t i : distiller->guided_positions()) {
    m.emplace_back("cost_" + std::to_string(i), mean_costs[i]);
    impl_->emit([tag = "matching/cost_" + std::to_string(i),
                 image = logging::heat_map(distiller->cost_matrix(i)),
                 global_step](logging::RunLogger& l) { l.add_image(tag, image, global_step); });
  }
  impl_->emit([=, t = now_seconds()](logging::RunLogger& l) { l.log("matching", epoch + 1, global_step, m, t); });
  std::cerr << "matching at step " << global_step << " (epoch " << epoch + 1
            << "): " << distiller->tracked_images()
            << " images tracked, " << seconds << " s; mean matched cost";
  for (int64_t i : distiller->guided_positions()) std::cerr << " [" << i << "] " << mean_costs[i];
  std::cerr << "\n";
}

void RunLog::evaluation(const std::string& who, int64_t epoch, int64_t global_step,
                        const NamedValues& metrics) {
  logging::Metrics m;
  for (const auto& [name, value] : metrics) m.emplace_back(name, value);
  impl_->emit([=, t = now_seconds()](logging::RunLogger& l) { l.log(who, epoch, global_step, m, t); });
  const double top1 = value_of(metrics, "acc1"), top5 = value_of(metrics, "acc5");
  if (!std::isnan(top1) && !std::isnan(top5)) {
    std::cerr << who << ": top-1 " << top1 << "%, top-5 " << top5 << "%\n";
  } else {
    std::cerr << who << ":";
    for (const auto& [name, value] : metrics) std::cerr << " " << name << " " << value;
    std::cerr << "\n";
  }
}

void RunLog::warning(const std::string& message) {
  impl_->emit([=, t = now_seconds()](logging::RunLogger& l) { l.log("warning", -1, -1, {{"message", message}}, t); });
  mgd::warn(message);
}

void RunLog::loss_scale(int64_t epoch, int64_t global_step, const LossScale& scale) {
  logging::Metrics m = {{"task_loss", scale.task_loss},
                        {"loss_factor", scale.loss_factor},
                        {"distill_loss", scale.distill_loss},
                        {"loss_factor_for_task_scale", scale.factor_for(scale.distill_loss)}};
  for (const auto& [position, loss] : scale.positions) {
    m.emplace_back("distill_loss_" + std::to_string(position), loss);
  }
  impl_->emit([=, t = now_seconds()](logging::RunLogger& l) {
    l.log("loss_scale", epoch + 1, global_step, m, t);
  });
  std::cerr << scale.describe();
}

void RunLog::finish(const NamedValues& final_metrics, const std::string& best_metric,
                    double best, double seconds) {
  const logging::Metrics m = {{"final_" + best_metric, value_of(final_metrics, best_metric)},
                              {"best_" + best_metric, best},
                              {"seconds", seconds}};
  impl_->emit([=, t = now_seconds()](logging::RunLogger& l) {
    l.log("summary", -1, -1, m, t);
    l.flush();
  });
}

}  // namespace mgd::training
