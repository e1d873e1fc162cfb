#include "mgd/training/sgd.h"

#include <torch/torch.h>

#include <cmath>

namespace mgd::training {

SGD::SGD(std::vector<torch::Tensor> params, SGDOptions options)
    : params_(std::move(params)), buffers_(params_.size()), options_(options) {
  TORCH_CHECK(std::isfinite(options.lr()) && options.lr() >= 0,
              "Invalid learning rate: ", options.lr());
  TORCH_CHECK(options.momentum() >= 0, "Invalid momentum: ", options.momentum());
  TORCH_CHECK(options.weight_decay() >= 0, "Invalid weight decay: ", options.weight_decay());
  TORCH_CHECK(!options.nesterov() || options.momentum() > 0,
              "Nesterov momentum needs momentum > 0");
}

void SGD::zero_grad() {
  for (auto& p : params_) {
    if (p.grad().defined()) {
      p.mutable_grad().detach_();
      p.mutable_grad().zero_();
    }
  }
}

namespace {

// Elements per task when the update runs on several threads.
constexpr int64_t kGrain = 1 << 15;

// One element of the update in float, as the tensor ops below compute it.
template <bool kDecay, bool kFirst, bool kNesterov>
inline void update_one(float& p, float grad, float& buf, float lr, float m, float wd) {
  float d = grad;
  if (kDecay) d = d + wd * p;
  const float b = kFirst ? d : buf * m + d;
  buf = b;
  d = kNesterov ? d + m * b : b;
  p = p + -lr * d;
}

// [begin, end) of p, grad and buf, with the options' branches resolved at compile time and
// blocks of 8 elements the compiler turns into vector code at -O2 already.
template <bool kDecay, bool kFirst, bool kNesterov>
void update(float* __restrict p, const float* __restrict grad, float* __restrict buf, float lr,
            float m, float wd, int64_t begin, int64_t end) {
  constexpr int64_t kBlock = 8;
  int64_t i = begin;
  for (; i + kBlock <= end; i += kBlock) {
    for (int64_t j = 0; j < kBlock; ++j)
      update_one<kDecay, kFirst, kNesterov>(p[i + j], grad[i + j], buf[i + j], lr, m, wd);
  }
  for (; i < end; ++i) update_one<kDecay, kFirst, kNesterov>(p[i], grad[i], buf[i], lr, m, wd);
}

// The update of one contiguous float32 CPU parameter with momentum in a single pass over it,
// its gradient and its momentum buffer (the tensor ops below make about 13 passes and
// allocate two temporaries: ~5% of a detector's training step at one thread). False when the
// tensors or options do not qualify.
bool step_in_one_pass(torch::Tensor& p, const torch::Tensor& grad, torch::Tensor& buf,
                      const SGDOptions& o) {
  const auto is_plain = [&](const torch::Tensor& t) {
    return t.device().is_cpu() && t.layout() == torch::kStrided &&
           t.scalar_type() == torch::kFloat && t.is_contiguous() && t.numel() == p.numel();
  };
  const bool first = !buf.defined();
  if (o.momentum() == 0 || !is_plain(p) || !is_plain(grad) || (!first && !is_plain(buf)))
    return false;
  if (first) buf = torch::empty_like(p, torch::MemoryFormat::Contiguous);
  using Update = void (*)(float*, const float*, float*, float, float, float, int64_t, int64_t);
  static constexpr Update kUpdates[2][2][2] = {
      {{update<false, false, false>, update<false, false, true>},
       {update<false, true, false>, update<false, true, true>}},
      {{update<true, false, false>, update<true, false, true>},
       {update<true, true, false>, update<true, true, true>}}};
  const Update run = kUpdates[o.weight_decay() != 0][first][o.nesterov()];
  float* pp = p.data_ptr<float>();
  const float* gp = grad.data_ptr<float>();
  float* bp = buf.data_ptr<float>();
  const auto lr = static_cast<float>(o.lr()), m = static_cast<float>(o.momentum()),
             wd = static_cast<float>(o.weight_decay());
  at::parallel_for(0, p.numel(), kGrain,
                   [&](int64_t begin, int64_t end) { run(pp, gp, bp, lr, m, wd, begin, end); });
  torch::autograd::impl::bump_version(p);
  torch::autograd::impl::bump_version(buf);
  return true;
}

}  // namespace

void SGD::step() {
  torch::NoGradGuard no_grad;
  const double lr = options_.lr(), momentum = options_.momentum(), wd = options_.weight_decay();
  for (size_t i = 0; i < params_.size(); ++i) {
    auto& p = params_[i];
    if (!p.grad().defined()) continue;
    if (options_.one_pass() && step_in_one_pass(p, p.grad(), buffers_[i], options_)) continue;
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
