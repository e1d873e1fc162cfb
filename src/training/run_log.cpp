#include "mgd/training/run_log.h"

#include <torch/torch.h>

#include <cmath>
#include <filesystem>
#include <iostream>

#include "mgd/logging/image.h"
#include "mgd/logging/progress.h"
#include "mgd/logging/run_logger.h"

namespace mgd::training {

namespace {
void add_if_set(logging::Metrics& m, const char* name, double value) {
  if (!std::isnan(value)) m.emplace_back(name, value);
}
}  // namespace

struct RunLog::Impl {
  Impl(const std::string& dir, int64_t print_freq)
      : logger(dir), progress(logging::ProgressOptions().print_freq(std::max<int64_t>(1, print_freq))),
        print_freq(std::max<int64_t>(1, print_freq)) {}
  logging::RunLogger logger;
  logging::Progress progress;
  int64_t print_freq;
  // Running means over the epoch's steps, for the progress display.
  double loss_sum = 0;
  int64_t steps = 0;
};

RunLog::RunLog(const std::string& dir, int64_t print_freq, bool append) {
  if (!append) std::filesystem::remove(std::filesystem::path(dir) / "metrics.jsonl");
  impl_ = std::make_unique<Impl>(dir, print_freq);
}

RunLog::~RunLog() = default;

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
  impl_->logger.log("train", epoch + 1, global_step, m);
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
  impl_->logger.log("eval", epoch + 1, global_step, m);
  impl_->logger.flush();
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
    impl_->logger.add_image("matching/cost_" + std::to_string(i),
                            logging::heat_map(distiller->cost_matrix(i)), global_step);
  }
  impl_->logger.log("matching", epoch + 1, global_step, m);
  std::cerr << "matching before epoch " << epoch + 1 << ": " << distiller->tracked_images()
            << " images tracked, " << seconds << " s; mean matched cost";
  for (int64_t i : distiller->guided_positions()) std::cerr << " [" << i << "] " << mean_costs[i];
  std::cerr << "\n";
}

void RunLog::evaluation(const std::string& who, int64_t epoch, int64_t global_step, double top1,
                        double top5, double loss) {
  impl_->logger.log(who, epoch, global_step,
                    {{"acc1", top1}, {"acc5", top5}, {"err1", 100 - top1}, {"loss", loss}});
  std::cerr << who << ": top-1 " << top1 << "%, top-5 " << top5 << "%\n";
}

void RunLog::warning(const std::string& message) {
  impl_->logger.log("warning", -1, -1, {{"message", message}});
  std::cerr << "warning: " << message << "\n";
}

void RunLog::finish(double final_top1, double best_top1, double seconds) {
  impl_->logger.log("summary", -1, -1,
                    {{"final_acc1", final_top1}, {"best_acc1", best_top1}, {"seconds", seconds}});
  impl_->logger.flush();
}

}  // namespace mgd::training
