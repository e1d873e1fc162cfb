#include "mgd/models/torchscript.h"

#include <torch/csrc/jit/runtime/graph_executor.h>
#include <torch/torch.h>

#include <map>
#include <memory>
#include <sstream>

#include "mgd/models/registry.h"
#include "mgd/serialize/archive.h"

namespace mgd::models {
namespace {

constexpr int64_t kFormatVersion = 1;  // tools/mgd_script.py's FORMAT_VERSION

[[noreturn]] void fail_file(const std::string& path, const std::string& what) {
  TORCH_CHECK(false, "TorchScript model '", path, "': ", what);
}

// An attribute of the root, with the type tools/mgd_script.py gives it.
c10::IValue attribute(const torch::jit::Module& m, const std::string& path, const char* name) {
  if (!m.hasattr(name)) {
    fail_file(path, std::string("a TorchScript file, but not one written by tools/mgd_script.py "
                                "(no attribute '") + name + "')");
  }
  return m.attr(name);
}

std::vector<std::string> string_list(const torch::jit::Module& m, const std::string& path,
                                     const char* name) {
  const auto v = attribute(m, path, name);
  if (!v.isList()) fail_file(path, std::string("attribute ") + name + " is not a list");
  std::vector<std::string> out;
  for (const auto& item : v.toListRef()) {
    if (!item.isString()) fail_file(path, std::string("attribute ") + name + " holds a non-string");
    out.push_back(item.toStringRef());
  }
  return out;
}

std::vector<int64_t> int_list(const torch::jit::Module& m, const std::string& path,
                              const char* name) {
  const auto v = attribute(m, path, name);
  if (!v.isList()) fail_file(path, std::string("attribute ") + name + " is not a list");
  std::vector<int64_t> out;
  for (const auto& item : v.toListRef()) {
    if (!item.isInt()) fail_file(path, std::string("attribute ") + name + " holds a non-integer");
    out.push_back(item.toInt());
  }
  return out;
}

// The submodule at a dotted path of `root`, or nullopt.
c10::optional<torch::jit::Module> submodule(const torch::jit::Module& root,
                                            const std::string& dotted) {
  torch::jit::Module m = root;
  std::stringstream ss(dotted);
  std::string part;
  while (std::getline(ss, part, '.')) {
    if (part.empty() || !m.hasattr(part)) return c10::nullopt;
    const auto v = m.attr(part);
    if (!v.isModule()) return c10::nullopt;
    m = v.toModule();
  }
  return m;
}

// The tensor attribute `name` of `m`, or an undefined tensor.
torch::Tensor tensor_attr(const torch::jit::Module& m, const char* name) {
  if (!m.hasattr(name)) return {};
  const auto v = m.attr(name);
  return v.isTensor() ? v.toTensor() : torch::Tensor();
}

}  // namespace

bool is_torchscript_name(const std::string& name, std::string* path) {
  const std::string prefix = kTorchScriptPrefix;
  if (name.compare(0, prefix.size(), prefix) != 0) return false;
  if (path) *path = name.substr(prefix.size());
  return true;
}

void check_torchscript_fits(const TorchScriptNetImpl& net, const ModelOptions& options) {
  TORCH_CHECK(net.num_logits() == 0 || net.num_logits() == options.classes(),
              "TorchScript model '", net.path(), "' has ", net.num_logits(),
              " logits, but the run needs ", options.classes(),
              " classes (script the model with that many outputs)");
  TORCH_CHECK(net.checked_input().empty() || net.checked_input()[0] == options.in_channels(),
              "TorchScript model '", net.path(), "' takes ", net.checked_input()[0],
              "-channel images, but the run's data has ", options.in_channels(),
              " channels (--input-shape when scripting it)");
}


TorchScriptNetImpl::TorchScriptNetImpl(const std::string& path) : path_(path) {
  TORCH_CHECK(!path.empty(), "TorchScript model: no file given (expected torchscript:FILE.pt)");
  serialize::check_torchscript_archive(path);
  try {
    module_ = torch::jit::load(path, torch::kCPU);
  } catch (const c10::Error& e) {
    std::string msg = e.what_without_backtrace();
    fail_file(path, "not a TorchScript file LibTorch can load: " + msg.substr(0, msg.find('\n')));
  }
  const auto version = attribute(module_, path, "mgd_format");
  if (!version.isInt() || version.toInt() < 1 || version.toInt() > kFormatVersion) {
    fail_file(path, "its mgd_format is " +
                        (version.isInt() ? std::to_string(version.toInt()) : "not a number") +
                        "; this mgd reads format 1 (a newer tools/mgd_script.py wrote it?)");
  }
  positions_ = string_list(module_, path, "mgd_positions");
  norms_ = string_list(module_, path, "mgd_norms");
  channels_ = int_list(module_, path, "mgd_channels");
  input_ = int_list(module_, path, "mgd_input");
  const auto logits = attribute(module_, path, "mgd_logits");
  if (!logits.isInt() || logits.toInt() < 0) fail_file(path, "attribute mgd_logits is not a count");
  logits_ = logits.toInt();
  if (positions_.empty() || norms_.size() != positions_.size() ||
      channels_.size() != positions_.size()) {
    fail_file(path, "expected one norm and one channel count per position, got " +
                        std::to_string(positions_.size()) + " positions, " +
                        std::to_string(norms_.size()) + " norms, " +
                        std::to_string(channels_.size()) + " channel counts");
  }
  auto net = submodule(module_, "net");
  if (!net) fail_file(path, "no submodule 'net' (the model) in the file");
  if (!module_.find_method("forward")) fail_file(path, "no forward method");

  // The norms' affines, checked against the recorded channel counts.
  for (size_t i = 0; i < norms_.size(); ++i) {
    auto norm = submodule(*net, norms_[i]);
    if (!norm) fail_file(path, "position " + positions_[i] + ": no norm module '" + norms_[i] + "'");
    NormAffine affine{tensor_attr(*norm, "weight"), tensor_attr(*norm, "bias")};
    if (!affine.weight.defined() || !affine.bias.defined() || affine.weight.dim() != 1 ||
        affine.weight.numel() != channels_[i] || affine.bias.sizes() != affine.weight.sizes()) {
      fail_file(path, "position " + positions_[i] + ": norm '" + norms_[i] +
                          "' has no weight and bias of " + std::to_string(channels_[i]) +
                          " channels");
    }
    affines_.push_back(affine);
  }

  // The model's tensors as this module's parameters and buffers, under their own names:
  // one plain submodule per path component.
  std::map<std::string, std::shared_ptr<torch::nn::Module>> made;
  auto owner = [&](const std::string& full, std::string* leaf) -> torch::nn::Module& {
    torch::nn::Module* m = this;
    std::string prefix;
    size_t start = 0;
    for (size_t dot = full.find('.'); dot != std::string::npos; dot = full.find('.', start)) {
      const std::string part = full.substr(start, dot - start);
      prefix += (prefix.empty() ? "" : ".") + part;
      auto it = made.find(prefix);
      if (it == made.end()) {
        auto child = std::make_shared<torch::nn::Module>(part);
        m->register_module(part, child);
        it = made.emplace(prefix, child).first;
      }
      m = it->second.get();
      start = dot + 1;
    }
    *leaf = full.substr(start);
    return *m;
  };
  // Tied weights (one tensor, or one memory, under two names) would be updated twice.
  std::map<const void*, std::string> seen;
  for (const auto& p : net->named_parameters(/*recurse=*/true)) {
    const auto [it, fresh] = seen.emplace(p.value.data_ptr(), p.name);
    if (!fresh && p.value.numel() > 0) {
      fail_file(path, "parameters '" + it->second + "' and '" + p.name +
                          "' are one tensor (tied weights), which mgd's optimizer and "
                          "checkpoints do not support yet");
    }
    std::string leaf;
    auto& m = owner(p.name, &leaf);
    m.register_parameter(leaf, p.value, p.value.requires_grad());
  }
  for (const auto& b : net->named_buffers(/*recurse=*/true)) {
    std::string leaf;
    auto& m = owner(b.name, &leaf);
    m.register_buffer(leaf, b.value);
  }
  TORCH_CHECK(!parameters().empty(), "TorchScript model '", path, "': the model has no parameters");
  train(true);
}

void TorchScriptNetImpl::train(bool on) {
  FeatureNetImpl::train(on);
  module_.train(on);
}

Features TorchScriptNetImpl::extract(const torch::Tensor& input) {
  if (!input_.empty()) {
    TORCH_CHECK(input.dim() == 4 && input.size(1) == input_[0], "TorchScript model '", path_,
                "': expected a batch of ", input_[0], "-channel images (N x ", input_[0],
                " x H x W), got ", input.sizes());
  }
  // The interpreter runs the graph as written: the same ATen kernels and autograd as eager
  // PyTorch, on every call (the profiling executor would switch to a differently optimized
  // graph after a few calls -- other roundings, and a resumed run would not repeat them).
  torch::jit::GraphOptimizerEnabledGuard plain(false);
  const auto out = module_.forward({input});
  const auto fail_out = [&](const char* why) {
    fail_file(path_, std::string("forward must return (pre-activation maps, post-activation "
                                 "maps, logits or None): ") + why);
  };
  if (!out.isTuple() || out.toTupleRef().elements().size() != 3) fail_out("not a 3-tuple");
  const auto& items = out.toTupleRef().elements();
  Features f;
  for (int k = 0; k < 2; ++k) {
    if (!items[k].isTensorList()) fail_out("a map list is not a list of tensors");
    auto& dst = k == 0 ? f.pre_relu : f.post_relu;
    for (const auto& t : items[k].toTensorVector()) dst.push_back(t);
    if (dst.size() != positions_.size()) fail_out("a map list has the wrong length");
  }
  if (items[2].isTensor()) {
    f.logits = items[2].toTensor();
  } else if (!items[2].isNone()) {
    fail_out("the logits are neither a tensor nor None");
  }
  for (size_t i = 0; i < positions_.size(); ++i) {
    if (f.pre_relu[i].dim() != 4 || f.pre_relu[i].size(1) != channels_[i]) {
      TORCH_CHECK(false, "TorchScript model '", path_, "': position ", positions_[i],
                  " gave a map of ", f.pre_relu[i].sizes(), ", expected N x ", channels_[i],
                  " x H x W");
    }
  }
  return f;
}

std::vector<NormAffine> TorchScriptNetImpl::feature_affines() { return affines_; }

}  // namespace mgd::models
