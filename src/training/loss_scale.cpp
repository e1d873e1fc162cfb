#include "mgd/training/loss_scale.h"

#include <cmath>
#include <cstdio>
#include <sstream>

namespace mgd::training {

double LossScale::factor_for(double loss) const {
  // loss = d / loss_factor; d / f' = task_loss  =>  f' = loss_factor * loss / task_loss.
  if (!(task_loss > 0) || !std::isfinite(loss)) return std::nan("");
  return loss_factor * loss / task_loss;
}

std::string LossScale::describe() const {
  std::ostringstream s;
  char line[160];
  std::snprintf(line, sizeof(line),
                "distillation loss at the first step (loss factor %g; task loss %.4g):\n",
                loss_factor, task_loss);
  s << line;
  std::snprintf(line, sizeof(line), "  %-10s %14s %12s %22s\n", "position", "distill loss",
                "/ task loss", "factor for 1x task");
  s << line;
  auto row = [&](const std::string& name, double loss) {
    std::snprintf(line, sizeof(line), "  %-10s %14.4g %12.4g %22.3g\n", name.c_str(), loss,
                  task_loss > 0 ? loss / task_loss : std::nan(""), factor_for(loss));
    s << line;
  };
  for (const auto& [position, loss] : positions) row(std::to_string(position), loss);
  row("all", distill_loss);
  const double ratio = task_loss > 0 ? distill_loss / task_loss : std::nan("");
  if (std::isfinite(ratio) && (ratio > 3 || ratio < 0.03)) {
    std::snprintf(line, sizeof(line),
                  "  the distillation loss is %.3gx the task loss; --loss-factor %.3g would make "
                  "them equal\n",
                  ratio, factor_for(distill_loss));
    s << line;
  }
  return s.str();
}

LossScale loss_scale_of(const NamedValues& parts, double loss_factor) {
  LossScale scale;
  scale.loss_factor = loss_factor;
  const std::string prefix = "distill_loss_";
  for (const auto& [name, value] : parts) {
    if (name == "task_loss") scale.task_loss = value;
    if (name.rfind(prefix, 0) == 0 && name.size() > prefix.size()) {
      scale.positions.emplace_back(std::stoll(name.substr(prefix.size())), value);
      scale.distill_loss += value;
    }
  }
  return scale;
}

}  // namespace mgd::training
