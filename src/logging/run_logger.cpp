#include "mgd/logging/run_logger.h"

#include <torch/torch.h>

#include <utility>
#include <vector>

namespace mgd::logging {

RunLogger::RunLogger(std::string run_dir, RunLoggerOptions options)
    : run_dir_(std::move(run_dir)), metrics_(std::make_unique<MetricsLog>(run_dir_)) {
  if (options.tensorboard()) events_ = std::make_unique<EventWriter>(run_dir_, options.events());
}

void RunLogger::log(const std::string& kind, int64_t epoch, int64_t step, const Metrics& values,
                    double time) {
  // The JSON line first: it validates the names, and it is the record that must not be lost
  // if TensorBoard output fails.
  metrics_->write(kind, epoch, step, values, time);
  if (!events_) return;
  std::vector<std::pair<std::string, double>> scalars;
  for (const auto& [name, value] : values) {
    if (value.is_number()) scalars.emplace_back(kind + "/" + name, value.to_double());
  }
  events_->add_scalars(scalars, step);
}

void RunLogger::add_image(const std::string& tag, const torch::Tensor& image, int64_t step) {
  if (events_) events_->add_image(tag, image, step);
}

void RunLogger::flush() {
  if (events_) events_->flush();
}

}  // namespace mgd::logging
