// Stochastic gradient descent with momentum, Nesterov and weight decay — PyTorch's
// torch.optim.SGD update, with its state (one momentum buffer per parameter) in plain view
// so checkpoints can store and restore it exactly.
//
//   d = grad + weight_decay * p
//   buf = d                          (first step)
//   buf = momentum * buf + d         (later steps; no dampening)
//   d = d + momentum * buf  if nesterov, else d = buf
//   p -= lr * d
#pragma once

#include <torch/arg.h>
#include <torch/types.h>

#include <vector>

namespace mgd::training {

struct SGDOptions {
  SGDOptions(double lr) : lr_(lr) {}  // NOLINT: implicit from a learning rate, like torch's
  TORCH_ARG(double, lr);
  /// Momentum factor.
  TORCH_ARG(double, momentum) = 0.9;
  /// L2 penalty added to the gradient.
  TORCH_ARG(double, weight_decay) = 1e-4;
  /// Nesterov momentum (spec 7: on).
  TORCH_ARG(bool, nesterov) = true;
  /// Float32 CPU parameters updated in one pass over parameter, gradient and momentum buffer
  /// (like torch.optim.SGD(fused=True)): the same update with a different float rounding
  /// than the tensor ops' (no fused multiply-adds), so off where results must reproduce
  /// earlier runs bit for bit. Other parameters always take the tensor ops.
  TORCH_ARG(bool, one_pass) = false;
};

class SGD {
 public:
  SGD(std::vector<torch::Tensor> params, SGDOptions options);
  /// Applies one update from the parameters' gradients (parameters without one are skipped).
  void step();
  void zero_grad();
  void set_lr(double lr) { options_.lr(lr); }
  double lr() const { return options_.lr(); }
  const std::vector<torch::Tensor>& params() const { return params_; }
  /// Momentum buffers, one per parameter (undefined until the parameter's first update).
  std::vector<torch::Tensor>& momentum_buffers() { return buffers_; }

 private:
  std::vector<torch::Tensor> params_;
  std::vector<torch::Tensor> buffers_;
  SGDOptions options_;
};

}  // namespace mgd::training
