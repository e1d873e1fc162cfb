// MoCo v2 (He et al., "Momentum Contrast for Unsupervised Visual Representation Learning",
// CVPR 2020; Chen et al., "Improved Baselines with Momentum Contrastive Learning", 2020):
// a query encoder trained by InfoNCE against its momentum-averaged twin's keys and a queue of
// earlier keys (tasks-spec B1).
//
// Names follow MoCo's builder (facebookresearch/moco, moco/builder.py), so its training
// checkpoints load by name once DistributedDataParallel's "module." is stripped:
//   encoder_q.conv1.weight ... encoder_q.layer4.1.bn2.bias  (a torchvision-named ResNet body)
//   encoder_q.fc.0.{weight,bias}, encoder_q.fc.2.{weight,bias}  (v2's MLP head; v1: fc.*)
//   encoder_k.*                                               (the same, momentum copy)
//   queue (dim x K), queue_ptr (1, int64)
//
// The math lives in free functions (mgd::functional::moco_logits, momentum_update, enqueue,
// knn_scores, grouped_extract); the modules own the networks and the buffers, so a
// checkpoint of MoCo holds the key encoder and the queue and a resume is exact.
//
//   MoCo moco(MoCoOptions("resnet18").in_channels(1).queue_size(4096));
//   auto q = normalize(moco->encoder_q->extract(im_q).logits);
//   auto k = normalize(moco->encoder_k->extract(im_k).logits);   // no grad
//   auto loss = cross_entropy(functional::moco_logits(q, k, moco->queue(), 0.2), zeros);
//   ... optimizer step on encoder_q ...
//   moco->momentum_update(); moco->enqueue(k);
#pragma once

#include <torch/arg.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/pimpl.h>
#include <torch/types.h>

#include <string>
#include <vector>

#include "mgd/distiller/feature_net.h"
#include "mgd/models/resnet.h"

namespace mgd {
namespace functional {

/// MoCo's logits: [q.k, q.queue] / temperature, B x (1 + K); column 0 is the positive.
/// `q` and `k` are B x d (L2-normalized), `queue` is d x K; the keys and the queue carry no
/// gradient. InfoNCE is cross_entropy(logits, zeros(B)).
torch::Tensor moco_logits(const torch::Tensor& q, const torch::Tensor& k,
                          const torch::Tensor& queue, double temperature);

/// key = key * m + query * (1 - m) for each pair, in place and without autograd, as MoCo's
/// _momentum_update_key_encoder. The lists pair up by position and must agree in shapes.
void momentum_update(const std::vector<torch::Tensor>& key, const std::vector<torch::Tensor>& query,
                     double m);

/// Writes `keys` (B x d) as columns ptr, ptr + 1, ... of `queue` (d x K), wrapping around at
/// K; returns the new pointer (ptr + B) % K. B may exceed K (only the last K keys remain).
int64_t enqueue(torch::Tensor& queue, const torch::Tensor& keys, int64_t ptr);

/// The weighted kNN vote of Wu et al. (InstDisc, 2018) as MoCo's monitor computes it: for
/// each row of `features` (B x d, normalized) the k most similar rows of `bank` (N x d,
/// normalized) vote for their label in `bank_labels` (N, int64) with weight
/// exp(similarity / temperature). Returns the B x classes scores (argmax: the prediction).
torch::Tensor knn_scores(const torch::Tensor& features, const torch::Tensor& bank,
                         const torch::Tensor& bank_labels, int64_t classes, int64_t k,
                         double temperature);

/// `net`'s features of `x` with BatchNorm over `splits` equal groups of the batch instead of
/// the whole batch: the groups' passes concatenated (MoCo's per-GPU BatchNorm, emulated in one
/// process). B must be a multiple of splits; splits = 1 is one pass.
Features grouped_extract(FeatureNetImpl& net, const torch::Tensor& x, int64_t splits);

/// One rank's part of MoCo's shuffled BatchNorm (_batch_shuffle_ddp): of `images`, every
/// rank's key views (N = world x n rows, in rank order), the rows perm[rank n .. (rank + 1) n)
/// encoded by `net` in `splits` BatchNorm groups; the logits, in that order. `perm` is a
/// permutation of 0..N-1, the same on every rank.
torch::Tensor encode_shuffled_share(FeatureNetImpl& net, const torch::Tensor& images,
                                    const torch::Tensor& perm, int64_t rank, int64_t world,
                                    int64_t splits);

/// _batch_unshuffle_ddp: `encoded` (every rank's share, N rows in perm order) back in the
/// images' order: out[perm[j]] = encoded[j].
torch::Tensor unshuffle(const torch::Tensor& encoded, const torch::Tensor& perm);

}  // namespace functional

namespace models {

/// A zoo ResNet body with MoCo's projection head in place of its classifier.
struct MoCoEncoderOptions {
  /* implicit */ MoCoEncoderOptions(std::string arch) : arch_(std::move(arch)) {}
  /// A zoo ResNet (resnet18 ... resnet152, resnet20, resnet56, resnet8x4, resnet32x4).
  TORCH_ARG(std::string, arch);
  /// Input image channels (1 for Fashion-MNIST).
  TORCH_ARG(int64_t, in_channels) = 3;
  /// Output width of the head (MoCo's dim).
  TORCH_ARG(int64_t, dim) = 128;
  /// MoCo v2's head: Linear(w, w), ReLU, Linear(w, dim) as fc.0 / fc.2; false: v1's
  /// Linear(w, dim) as fc.
  TORCH_ARG(bool, mlp) = true;
};

/// The encoder is distillable: its positions are the ResNet's (each stage's output, before
/// and after the last ReLU); Features::logits is the head's output (not normalized).
class MoCoEncoderImpl : public FeatureNetImpl {
 public:
  explicit MoCoEncoderImpl(const MoCoEncoderOptions& options);
  Features extract(const torch::Tensor& input) override;
  /// The body's frozen program (models/frozen.h) and the head: a MoCo teacher's forward.
  Features extract_frozen(const torch::Tensor& input) override;
  /// Also the body's own mode (its modules are this module's children, the body is not).
  void train(bool on = true) override {
    FeatureNetImpl::train(on);
    body_->train(on);
  }
  std::vector<NormAffine> feature_affines() override { return body_->feature_affines(); }
  std::vector<int64_t> feature_channels() override { return body_->feature_channels(); }
  /// The pooled body features (B x w): what a linear classifier reads.
  torch::Tensor pooled(const torch::Tensor& input);
  /// w: the body's output width.
  int64_t width() const { return width_; }
  const MoCoEncoderOptions& options() const { return options_; }

 private:
  MoCoEncoderOptions options_;
  ResNet body_{nullptr};  // its modules are registered as this module's own (flat names)
  torch::Tensor head(torch::Tensor pooled);
  torch::nn::Sequential head_{nullptr};
  int64_t width_ = 0;
};
TORCH_MODULE(MoCoEncoder);

struct MoCoOptions {
  /* implicit */ MoCoOptions(std::string arch) : arch_(std::move(arch)) {}
  /// The encoders' zoo ResNet.
  TORCH_ARG(std::string, arch);
  /// Input image channels.
  TORCH_ARG(int64_t, in_channels) = 3;
  /// Feature dimension of the keys (MoCo's --moco-dim).
  TORCH_ARG(int64_t, dim) = 128;
  /// Queue size K: negative keys (MoCo's --moco-k).
  TORCH_ARG(int64_t, queue_size) = 65536;
  /// Momentum of the key encoder (MoCo's --moco-m).
  TORCH_ARG(double, momentum) = 0.999;
  /// Softmax temperature (MoCo v2's --moco-t 0.2; v1 0.07).
  TORCH_ARG(double, temperature) = 0.2;
  /// MoCo v2's MLP head (--mlp).
  TORCH_ARG(bool, mlp) = true;
};

class MoCoImpl : public torch::nn::Module {
 public:
  /// Builds both encoders (the key encoder a copy of the query encoder, without gradients) and
  /// a queue of random unit keys, drawn from the global generator as MoCo does.
  explicit MoCoImpl(const MoCoOptions& options);
  /// MoCo's logits of normalized queries and keys against the queue (moco_logits).
  torch::Tensor logits(const torch::Tensor& q, const torch::Tensor& k) const;
  /// The key encoder's momentum step towards the query encoder (after an optimizer step).
  void momentum_update();
  /// Enqueues normalized keys (B x dim) and advances queue_ptr.
  void enqueue(const torch::Tensor& keys);

  MoCoEncoder encoder_q{nullptr}, encoder_k{nullptr};
  const torch::Tensor& queue() const { return queue_; }
  int64_t queue_ptr() const { return queue_ptr_.item<int64_t>(); }
  const MoCoOptions& options() const { return options_; }

 private:
  MoCoOptions options_;
  torch::Tensor queue_, queue_ptr_;
};
TORCH_MODULE(MoCo);

/// The encoder weights in a checkpoint: MoCo's (a "state_dict" whose names start with
/// "module.encoder_q." -- zip or legacy torch.save), an mgd MoCo run's (encoder_q.*), or a
/// plain encoder state_dict; loaded strictly into `encoder`. Throws c10::Error naming the file.
void load_moco_encoder(const std::string& path, MoCoEncoderImpl& encoder);

}  // namespace models
}  // namespace mgd
