// Networks written in Python, distilled without rewriting them: a TorchScript file made by
// tools/mgd_script.py (any nn.Module plus a list of taps, or a model with the MGD reference's
// interface) loaded as a distillable network.
//
// The file's root module holds the user's model as `net` and returns, from one forward pass,
// the pre-activation map of every position, the map after its activation and the logits (or
// None); its attributes record the positions, the norm producing each pre-activation map (a
// module path inside `net`), their channels and the number of logits. The network here
// registers the very tensors of `net` as its parameters and buffers under their original
// names, so the optimizer, checkpoints, exact resume, data-parallel broadcasts and
// `.to(device)` act on the weights the scripted code computes with, and the weights it saves
// (serialize::save_state_dict) load into the original Python model.
//
// In the registry: make_model("torchscript:FILE.pt") (the CLI's --arch / --teacher-arch;
// is_torchscript_name() in models/registry.h).
#pragma once

#include <torch/script.h>

#include <cstdint>
#include <string>
#include <vector>

#include "mgd/distiller/feature_net.h"
#include "mgd/models/options.h"

namespace mgd::models {

class TorchScriptNetImpl : public FeatureNetImpl {
 public:
  /// Loads and checks `path`; throws one c10::Error naming the file and what was expected
  /// when it is not a readable TorchScript archive or not one written by tools/mgd_script.py.
  explicit TorchScriptNetImpl(const std::string& path);

  Features extract(const torch::Tensor& input) override;
  std::vector<NormAffine> feature_affines() override;
  std::vector<int64_t> feature_channels() override { return channels_; }
  /// Train / eval mode of this module and of the scripted one (BatchNorm's behaviour).
  void train(bool on = true) override;

  const std::string& path() const { return path_; }
  /// Each position's name (the tap's module path, or "position<i>" for a reference model).
  const std::vector<std::string>& positions() const { return positions_; }
  /// Each position's norm, a module path inside the model.
  const std::vector<std::string>& norm_paths() const { return norms_; }
  /// Number of logits; 0 for a network without a classifier.
  int64_t num_logits() const { return logits_; }
  /// The input (C, H, W) the file was checked with when it was written.
  const std::vector<int64_t>& checked_input() const { return input_; }
  /// The scripted root module (its `net` is the user's model).
  torch::jit::Module& scripted() { return module_; }

 private:
  std::string path_;
  torch::jit::Module module_;
  std::vector<std::string> positions_, norms_;
  std::vector<int64_t> channels_, input_;
  int64_t logits_ = 0;
  std::vector<NormAffine> affines_;
};
TORCH_MODULE(TorchScriptNet);

/// Throws naming the file when `net` has logits but not options.classes() of them, or was
/// checked with other than options.in_channels() input channels (a run's data set decides
/// both; make_model calls it).
void check_torchscript_fits(const TorchScriptNetImpl& net, const ModelOptions& options);

}  // namespace mgd::models
