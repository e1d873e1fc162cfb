#include "mgd/training/sgd.h"

#include <torch/torch.h>

#include <cmath>

namespace mgd::training {

SGD::SGD(std::vector<torch::Tensor> params, SGDOptions options)
    : params_(std::move(params)), buffers_(params_.size()), options_(options) {
  TORCH_CHECK(std::isfinite(options.lr()) && options.lr() >= 0, "Invalid learning rate: ",
              options.lr());
  TORCH_CHECK(options.momentum() >= 0, "Invalid momentum: ", options.momentum());
  TORCH_CHECK(options.weight_decay() >= 0, "Invalid weight decay: ", options.weight_decay());
  TORCH_CHECK(!options.nesterov() || options.momentum() > 0, "Nesterov momentum needs momentum > 0");
}

void SGD::zero_grad() {
  for (auto& p : params_) {
    if (p.grad().defined()) {
      p.mutable_grad().detach_();
      p.mutable_grad().zero_();
    }
  }
}

void SGD::step() {
  torch::NoGradGuard no_grad;
  const double lr = options_.lr(), momentum = options_.momentum(), wd = options_.weight_decay();
  for (size_t i = 0; i < params_.size(); ++i) {
    auto& p = params_[i];
    if (!p.grad().defined()) continue;
    auto d = p.grad();
    if (wd != 0) d = d.add(p, wd);
    if (momentum != 0) {
      auto& buf = buffers_[i];
      if (!buf.defined()) {
        buf = d.clone();
      } else {
        buf.mul_(momentum).add_(d);
      }
      d = options_.nesterov() ? d.add(buf, momentum) : buf;
    }
    p.add_(d, -lr);
  }
}

}  // namespace mgd::training
