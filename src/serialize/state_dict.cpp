#include "mgd/serialize/state_dict.h"

#include <torch/utils.h>

#include <sstream>

#include "mgd/serialize/checkpoint.h"
#include "source.h"

namespace mgd::serialize {
namespace {

using detail::fail;

bool starts_with(const std::string& s, const std::string& prefix) {
  return s.size() >= prefix.size() && s.compare(0, prefix.size(), prefix) == 0;
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Conversions between dtypes of one kind are safe enough for weights; across kinds they are
// almost certainly a mismatched checkpoint.
int dtype_kind(const torch::Tensor& t) {
  if (t.scalar_type() == torch::kBool) return 0;
  if (t.is_complex()) return 3;
  if (t.is_floating_point()) return 2;
  return 1;
}

void collect(const torch::nn::Module& module, const std::string& prefix, StateDict& out) {
  for (const auto& p : module.named_parameters(/*recurse=*/false)) {
    if (p.value().defined()) out.insert(prefix + p.key(), p.value());
  }
  for (const auto& b : module.named_buffers(/*recurse=*/false)) {
    if (b.value().defined()) out.insert(prefix + b.key(), b.value());
  }
  for (const auto& child : module.named_children()) {
    collect(*child.value(), prefix + child.key() + ".", out);
  }
}

std::string shape(const torch::Tensor& t) {
  std::ostringstream s;
  s << t.sizes();
  return s.str();
}

}  // namespace

StateDict to_state_dict(const Value& checkpoint, const LoadStateDictOptions& options,
                        const std::string& name) {
  if (!checkpoint.is_dict()) {
    fail(name, ": expected a state_dict or a training checkpoint (a dict), found a ",
         checkpoint.type_name());
  }
  const Dict* state = &checkpoint.to_dict();
  std::string under;
  for (const std::string& key : options.keys()) {
    const Value* v = state->find(key);
    if (v != nullptr && v->is_dict()) {
      state = &v->to_dict();
      under = key;
      break;
    }
  }
  std::vector<std::string> bad;
  for (const auto& item : *state) {
    std::ostringstream s;
    s << item.first << " (" << item.second.type_name() << ")";
    if (!item.first.is_string() || !item.second.is_tensor()) bad.push_back(s.str());
  }
  if (!bad.empty()) {
    std::ostringstream msg;
    msg << name << ": ";
    if (under.empty()) {
      msg << "no state_dict found: the checkpoint is not a dict of tensors and none of the keys";
      for (const auto& k : options.keys()) msg << " '" << k << "'";
      msg << " holds one; keys that are not str -> Tensor:";
    } else {
      msg << "'" << under << "' is not a state_dict; keys that are not str -> Tensor:";
    }
    for (size_t k = 0; k < bad.size() && k < 20; ++k) msg << " " << bad[k];
    if (bad.size() > 20) msg << " ... (" << bad.size() << " in all)";
    detail::throw_error(msg.str());
  }

  StateDict out;
  out.reserve(state->size());
  const std::string& prefix = options.strip_prefix();
  for (const auto& item : *state) {
    std::string key = item.first.to_string();
    if (!prefix.empty() && starts_with(key, prefix)) key = key.substr(prefix.size());
    if (out.contains(key)) {
      fail(name, ": two weights are named '", key, "' once the prefix '", prefix, "' is removed");
    }
    out.insert(std::move(key), item.second.to_tensor());
  }
  return out;
}

StateDict load_state_dict(const std::string& path, const LoadStateDictOptions& options) {
  return to_state_dict(load_file(path), options, path);
}

void load_state_dict_into(torch::nn::Module& module, const StateDict& state, bool strict) {
  const StateDict own = module_state_dict(module);
  std::vector<std::string> missing, unexpected, mismatched;
  std::vector<std::pair<torch::Tensor, torch::Tensor>> copies;
  std::vector<torch::Tensor> zero;
  for (const auto& item : own) {
    const torch::Tensor& dst = item.value();
    const torch::Tensor* src = state.find(item.key());
    if (src == nullptr) {
      if (ends_with(item.key(), "num_batches_tracked")) {
        zero.push_back(dst);
      } else if (strict) {
        missing.push_back(item.key() + " " + shape(dst));
      }
      continue;
    }
    if (!src->defined()) {
      mismatched.push_back(item.key() + ": undefined tensor in the state dict");
    } else if (src->sizes() != dst.sizes()) {
      mismatched.push_back(item.key() + ": shape " + shape(*src) + " in the state dict, " +
                           shape(dst) + " in the module");
    } else if (dtype_kind(*src) != dtype_kind(dst)) {
      mismatched.push_back(item.key() + ": dtype " +
                           std::string(c10::toString(src->scalar_type())) + " in the state dict, " +
                           c10::toString(dst.scalar_type()) + " in the module");
    } else {
      copies.emplace_back(dst, *src);
    }
  }
  if (strict) {
    for (const auto& item : state) {
      // A BatchNorm's counter, which a FrozenBatchNorm2d does not keep (torchvision's drops it
      // on loading too).
      if (!own.contains(item.key()) && !ends_with(item.key(), "num_batches_tracked")) {
        unexpected.push_back(item.key() + " " +
                             (item.value().defined() ? shape(item.value()) : "undefined"));
      }
    }
  }
  if (!missing.empty() || !unexpected.empty() || !mismatched.empty()) {
    std::ostringstream msg;
    msg << "load_state_dict_into: the state dict does not match the "
        << (module.name().empty() ? "module" : module.name()) << "; nothing was loaded.";
    auto list = [&](const char* what, const std::vector<std::string>& keys) {
      if (keys.empty()) return;
      msg << "\n  " << what << " (" << keys.size() << "):";
      for (const auto& k : keys) msg << "\n    " << k;
    };
    list("missing keys", missing);
    list("unexpected keys", unexpected);
    list("mismatched", mismatched);
    detail::throw_error(msg.str());
  }
  torch::NoGradGuard no_grad;
  for (auto& c : copies) c.first.copy_(c.second);
  for (auto& t : zero) t.zero_();
}

StateDict module_state_dict(const torch::nn::Module& module) {
  StateDict out;
  collect(module, "", out);
  return out;
}

Value state_dict_value(const torch::nn::Module& module) {
  Dict d = Dict::ordered_dict();
  for (const auto& item : module_state_dict(module)) {
    d.insert_or_assign(item.key(), item.value().detach());
  }
  return Value(std::move(d));
}

void save_state_dict(const std::string& path, const torch::nn::Module& module) {
  save_file(path, state_dict_value(module));
}

}  // namespace mgd::serialize
