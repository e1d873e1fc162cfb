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
                  const StepLosses& losses, double train_top1) {
  impl_->loss_sum += losses.total;
  ++impl_->steps;
  logging::Metrics shown = {{"loss", impl_->loss_sum / impl_->steps}, {"acc1", train_top1}};
  impl_->progress.update(batch + 1, images, shown);
  if (global_step % impl_->print_freq != 0) return;
  logging::Metrics m;
  add_if_set(m, "loss", losses.total);
  add_if_set(m, "task_loss", losses.task);
  add_if_set(m, "distill_loss", losses.distill);
  add_if_set(m, "kd_loss", losses.kd);
  for (size_t i = 0; i < losses.positions.size(); ++i) {
    if (!std::isnan(losses.positions[i])) {
      m.emplace_back("distill_loss_" + std::to_string(i), losses.positions[i]);
    }
  }
  m.emplace_back("lr", lr);
  m.emplace_back("acc1", train_top1);
  m.emplace_back("images_per_sec", impl_->progress.images_per_sec());
  impl_->emit([=, t = now_seconds()](logging::RunLogger& l) { l.log("train", epoch + 1, global_step, m, t); });
}

void RunLog::end_epoch(int64_t epoch, int64_t global_step, double train_top1, double train_loss,
                       double top1, double top5, double test_loss, double lr,
                       double elapsed_seconds) {
  const double seconds = impl_->progress.finish();
  logging::Metrics m = {{"train_loss", train_loss}, {"train_acc1", train_top1},
                        {"acc1", top1},             {"acc5", top5},
                        {"err1", 100.0 - top1},     {"err5", 100.0 - top5},
                        {"loss", test_loss},        {"lr", lr},
                        {"epoch_seconds", seconds}, {"elapsed_seconds", elapsed_seconds}};
  impl_->emit([=, t = now_seconds()](logging::RunLogger& l) {
    l.log("eval", epoch + 1, global_step, m, t);
    l.flush();
  });
  std::cerr << logging::epoch_summary(epoch + 1, seconds,
                                      {{"train_loss", train_loss},
                                       {"test_acc1", top1},
                                       {"test_acc5", top5}})
            << "\n";
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
  std::cerr << "matching before epoch " << epoch + 1 << ": " << distiller->tracked_images()
            << " images tracked, " << seconds << " s; mean matched cost";
  for (int64_t i : distiller->guided_positions()) std::cerr << " [" << i << "] " << mean_costs[i];
  std::cerr << "\n";
}

void RunLog::evaluation(const std::string& who, int64_t epoch, int64_t global_step, double top1,
                        double top5, double loss) {
  impl_->emit([=, t = now_seconds()](logging::RunLogger& l) {
    l.log(who, epoch, global_step,
          {{"acc1", top1}, {"acc5", top5}, {"err1", 100 - top1}, {"loss", loss}}, t);
  });
  std::cerr << who << ": top-1 " << top1 << "%, top-5 " << top5 << "%\n";
}

void RunLog::warning(const std::string& message) {
  impl_->emit([=, t = now_seconds()](logging::RunLogger& l) { l.log("warning", -1, -1, {{"message", message}}, t); });
  mgd::warn(message);
}

void RunLog::finish(double final_top1, double best_top1, double seconds) {
  impl_->emit([=, t = now_seconds()](logging::RunLogger& l) {
    l.log("summary", -1, -1,
          {{"final_acc1", final_top1}, {"best_acc1", best_top1}, {"seconds", seconds}}, t);
    l.flush();
  });
}

}  // namespace mgd::training
