#include "mgd/models/moco.h"

#include <torch/torch.h>

#include <algorithm>

#include "mgd/serialize/state_dict.h"
#include "mgd/util/matmul.h"

namespace mgd {
namespace functional {

torch::Tensor moco_logits(const torch::Tensor& q, const torch::Tensor& k,
                          const torch::Tensor& queue, double temperature) {
  TORCH_CHECK(q.dim() == 2 && k.sizes() == q.sizes(),
              "moco_logits: expected queries and keys of B x d, got ", q.sizes(), " and ",
              k.sizes());
  TORCH_CHECK(queue.dim() == 2 && queue.size(0) == q.size(1), "moco_logits: expected a queue of ",
              q.size(1), " x K, got ", queue.sizes());
  TORCH_CHECK(temperature > 0, "moco_logits: invalid temperature ", temperature);
  // MoCo: l_pos = einsum('nc,nc->n'), l_neg = einsum('nc,ck->nk'), cat, then /= T.
  auto l_pos = (q * k.detach()).sum(1, /*keepdim=*/true);
  auto l_neg = util::mm(q, queue.detach());
  return torch::cat({l_pos, l_neg}, 1) / temperature;
}

namespace {

// key = key * m + query * (1 - m) over contiguous float32 CPU tensors in one pass (the tensor
// expression makes three passes and allocates two temporaries), with the expression's three
// roundings: each product rounded to float, then their sum (this file is compiled with
// -ffp-contract=off, so no multiply-add fuses them). False when the tensors do not qualify.
bool momentum_in_one_pass(torch::Tensor& key, const torch::Tensor& query, double m) {
  const auto is_plain = [&](const torch::Tensor& t) {
    return t.device().is_cpu() && t.layout() == torch::kStrided &&
           t.scalar_type() == torch::kFloat && t.is_contiguous() && t.numel() == key.numel();
  };
  if (!is_plain(key) || !is_plain(query)) return false;
  // As ATen computes `tensor * double` on float tensors: the scalar converted to float first.
  const auto a = static_cast<float>(m), b = static_cast<float>(1.0 - m);
  float* __restrict kp = key.data_ptr<float>();
  const float* __restrict qp = query.data_ptr<float>();
  at::parallel_for(0, key.numel(), 1 << 15, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const float x = kp[i] * a;
      const float y = qp[i] * b;
      kp[i] = x + y;
    }
  });
  torch::autograd::impl::bump_version(key);
  return true;
}

}  // namespace

void momentum_update(const std::vector<torch::Tensor>& key, const std::vector<torch::Tensor>& query,
                     double m) {
  TORCH_CHECK(key.size() == query.size(), "momentum_update: ", key.size(), " key tensors but ",
              query.size(), " query tensors");
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < key.size(); ++i) {
    TORCH_CHECK(key[i].sizes() == query[i].sizes(), "momentum_update: tensor ", i, " has shape ",
                key[i].sizes(), " in the key encoder and ", query[i].sizes(),
                " in the query encoder");
    // param_k * m + param_q * (1 - m): the same three roundings as MoCo's expression.
    auto k = key[i];
    if (momentum_in_one_pass(k, query[i], m)) continue;
    auto next = key[i] * m + query[i] * (1.0 - m);
    key[i].copy_(next);
  }
}

int64_t enqueue(torch::Tensor& queue, const torch::Tensor& keys, int64_t ptr) {
  TORCH_CHECK(keys.dim() == 2 && queue.dim() == 2 && keys.size(1) == queue.size(0),
              "enqueue: expected keys of B x ", queue.size(0), ", got ", keys.sizes());
  const int64_t capacity = queue.size(1), b = keys.size(0);
  TORCH_CHECK(ptr >= 0 && ptr < capacity, "enqueue: pointer ", ptr, " outside the queue of ",
              capacity);
  torch::NoGradGuard no_grad;
  auto k = keys.detach().to(queue.dtype());
  int64_t first = 0;
  if (b > capacity) {  // only the last `capacity` keys survive, at the slots they would reach
    first = b - capacity;
    ptr = (ptr + first) % capacity;
  }
  for (int64_t i = first; i < b;) {
    const int64_t n = std::min(b - i, capacity - ptr);
    queue.narrow(1, ptr, n).copy_(k.narrow(0, i, n).t());
    i += n;
    ptr = (ptr + n) % capacity;
  }
  return ptr;
}

torch::Tensor knn_scores(const torch::Tensor& features, const torch::Tensor& bank,
                         const torch::Tensor& bank_labels, int64_t classes, int64_t k,
                         double temperature) {
  TORCH_CHECK(features.dim() == 2 && bank.dim() == 2 && bank.size(1) == features.size(1),
              "knn_scores: expected features of B x d and a bank of N x d, got ", features.sizes(),
              " and ", bank.sizes());
  TORCH_CHECK(bank_labels.dim() == 1 && bank_labels.size(0) == bank.size(0),
              "knn_scores: expected ", bank.size(0), " bank labels, got ", bank_labels.sizes());
  TORCH_CHECK(k >= 1 && classes >= 1 && temperature > 0, "knn_scores: invalid k ", k, ", classes ",
              classes, " or temperature ", temperature);
  TORCH_CHECK(bank.size(0) > 0, "knn_scores: the feature bank is empty");
  const int64_t b = features.size(0), kk = std::min(k, bank.size(0));
  auto sim = util::mm(features, bank.t());
  auto [weight, index] = sim.topk(kk, /*dim=*/-1);
  auto labels = bank_labels.to(torch::kLong).unsqueeze(0).expand({b, -1}).gather(-1, index);
  weight = (weight / temperature).exp();
  auto one_hot = torch::zeros({b * kk, classes}, features.options())
                     .scatter_(-1, labels.reshape({-1, 1}), 1.0);
  return (one_hot.view({b, kk, classes}) * weight.unsqueeze(-1)).sum(1);
}

Features grouped_extract(FeatureNetImpl& net, const torch::Tensor& x, int64_t splits) {
  TORCH_CHECK(splits >= 1 && x.size(0) % splits == 0, "BatchNorm groups: a batch of ", x.size(0),
              " images does not split into ", splits,
              " equal groups (choose --batch-size a multiple of --moco-bn-splits)");
  if (splits == 1) return net.extract(x);
  std::vector<Features> parts;
  for (auto& chunk : x.chunk(splits, 0)) parts.push_back(net.extract(chunk));
  auto cat = [&](auto get) {
    std::vector<torch::Tensor> ts;
    for (auto& p : parts) ts.push_back(get(p));
    return torch::cat(ts, 0);
  };
  Features out;
  for (size_t i = 0; i < parts.front().pre_relu.size(); ++i) {
    out.pre_relu.push_back(cat([i](Features& f) { return f.pre_relu[i]; }));
    out.post_relu.push_back(cat([i](Features& f) { return f.post_relu[i]; }));
  }
  if (parts.front().logits.defined()) out.logits = cat([](Features& f) { return f.logits; });
  return out;
}

torch::Tensor encode_shuffled_share(FeatureNetImpl& net, const torch::Tensor& images,
                                    const torch::Tensor& perm, int64_t rank, int64_t world,
                                    int64_t splits) {
  const int64_t total = images.size(0);
  TORCH_CHECK(world >= 1 && rank >= 0 && rank < world && total % world == 0,
              "encode_shuffled_share: ", total, " images do not split over ", world,
              " ranks (rank ", rank, ")");
  TORCH_CHECK(perm.dim() == 1 && perm.size(0) == total, "encode_shuffled_share: expected a ",
              "permutation of ", total, " rows, got ", perm.sizes());
  const int64_t n = total / world;
  auto mine = perm.narrow(0, rank * n, n).to(images.device());
  return grouped_extract(net, images.index_select(0, mine), splits).logits;
}

torch::Tensor unshuffle(const torch::Tensor& encoded, const torch::Tensor& perm) {
  TORCH_CHECK(perm.dim() == 1 && perm.size(0) == encoded.size(0), "unshuffle: expected a ",
              "permutation of ", encoded.size(0), " rows, got ", perm.sizes());
  return torch::empty_like(encoded).index_copy_(0, perm.to(encoded.device()), encoded);
}

}  // namespace functional

namespace models {

MoCoEncoderImpl::MoCoEncoderImpl(const MoCoEncoderOptions& options) : options_(options) {
  TORCH_CHECK(options.dim() >= 1, "MoCo encoder: invalid dim ", options.dim());
  ResNetConfig config;
  try {
    config = resnet_config(options.arch());
  } catch (const c10::Error&) {
    TORCH_CHECK(false, "MoCo encoder: '", options.arch(),
                "' is not a zoo ResNet (expected resnet18, resnet34, resnet50, resnet101, "
                "resnet152, resnet20, resnet56, resnet8x4 or resnet32x4)");
  }
  config.classifier = false;
  body_ = ResNet(config, ModelOptions().in_channels(options.in_channels()));
  // The body's modules under this module's own names, as torchvision's ResNet with its fc
  // replaced (MoCo's encoder_q.conv1, encoder_q.layer1, ..., encoder_q.fc).
  for (const auto& child : body_->named_children()) register_module(child.key(), child.value());
  width_ = body_->feature_channels().back();
  head_ = torch::nn::Sequential();
  if (options.mlp()) {
    head_->push_back(torch::nn::Linear(width_, width_));
    head_->push_back(torch::nn::Functional([](const torch::Tensor& x) { return torch::relu(x); }));
    head_->push_back(torch::nn::Linear(width_, options.dim()));
    register_module("fc", head_);
  } else {
    head_->push_back(torch::nn::Linear(width_, options.dim()));
    register_module("fc", head_->ptr<torch::nn::LinearImpl>(0));
  }
}

Features MoCoEncoderImpl::extract(const torch::Tensor& input) {
  Features f = body_->extract(input);
  f.logits = head(f.post_relu.back().mean({2, 3}));
  return f;
}

Features MoCoEncoderImpl::extract_frozen(const torch::Tensor& input) {
  Features f = body_->extract_frozen(input);
  torch::NoGradGuard no_grad;
  f.logits = head(f.post_relu.back().mean({2, 3}));
  return f;
}

// The head's Linear layers through util::linear (oneDNN where ATen's BLAS is slow).
torch::Tensor MoCoEncoderImpl::head(torch::Tensor x) {
  for (size_t i = 0; i < head_->size(); ++i) {
    if (auto* fc = head_[i]->as<torch::nn::LinearImpl>()) {
      x = util::linear(x, fc->weight, fc->bias);
    } else {
      x = head_[i]->as<torch::nn::FunctionalImpl>()->forward(x);
    }
  }
  return x;
}

torch::Tensor MoCoEncoderImpl::pooled(const torch::Tensor& input) {
  return body_->extract(input).post_relu.back().mean({2, 3});
}

MoCoImpl::MoCoImpl(const MoCoOptions& options) : options_(options) {
  TORCH_CHECK(options.queue_size() >= 1, "MoCo: invalid queue size ", options.queue_size());
  TORCH_CHECK(options.momentum() >= 0 && options.momentum() <= 1, "MoCo: invalid momentum ",
              options.momentum(), " (expected 0..1)");
  TORCH_CHECK(options.temperature() > 0, "MoCo: invalid temperature ", options.temperature());
  auto encoder = MoCoEncoderOptions(options.arch())
                     .in_channels(options.in_channels())
                     .dim(options.dim())
                     .mlp(options.mlp());
  encoder_q = register_module("encoder_q", MoCoEncoder(encoder));
  encoder_k = register_module("encoder_k", MoCoEncoder(encoder));
  {
    torch::NoGradGuard no_grad;
    auto q = encoder_q->named_parameters(), k = encoder_k->named_parameters();
    for (const auto& p : q) k[p.key()].copy_(p.value());
    auto qb = encoder_q->named_buffers(), kb = encoder_k->named_buffers();
    for (const auto& b : qb) kb[b.key()].copy_(b.value());
  }
  for (auto& p : encoder_k->parameters()) p.set_requires_grad(false);
  queue_ = register_buffer("queue", torch::nn::functional::normalize(
                                        torch::randn({options.dim(), options.queue_size()}),
                                        torch::nn::functional::NormalizeFuncOptions().dim(0)));
  queue_ptr_ = register_buffer("queue_ptr", torch::zeros({1}, torch::kLong));
}

torch::Tensor MoCoImpl::logits(const torch::Tensor& q, const torch::Tensor& k) const {
  return functional::moco_logits(q, k, queue_, options_.temperature());
}

void MoCoImpl::momentum_update() {
  functional::momentum_update(encoder_k->parameters(), encoder_q->parameters(),
                              options_.momentum());
}

void MoCoImpl::enqueue(const torch::Tensor& keys) {
  const int64_t ptr = functional::enqueue(queue_, keys, queue_ptr());
  queue_ptr_.fill_(ptr);
}

void load_moco_encoder(const std::string& path, MoCoEncoderImpl& encoder) {
  serialize::StateDict state;
  try {
    state = serialize::load_state_dict(path);
  } catch (const c10::Error& e) {
    TORCH_CHECK(false, "Cannot read the encoder weights '", path,
                "': ", e.what_without_backtrace());
  }
  const std::string prefix = "encoder_q.";
  serialize::StateDict encoder_state;
  for (const auto& item : state) {
    if (item.key().rfind(prefix, 0) == 0) {
      encoder_state.insert(item.key().substr(prefix.size()), item.value());
    }
  }
  // No encoder_q.* names: a plain encoder state_dict (e.g. one exported from a MoCo run).
  if (encoder_state.is_empty()) encoder_state = state;
  try {
    serialize::load_state_dict_into(encoder, encoder_state, /*strict=*/true);
  } catch (const c10::Error& e) {
    TORCH_CHECK(false, "Cannot load '", path, "' as a MoCo ", encoder.options().arch(),
                " encoder (dim ", encoder.options().dim(), ", ",
                encoder.options().mlp() ? "MLP" : "linear", " head): ", e.what_without_backtrace());
  }
}

}  // namespace models
}  // namespace mgd
