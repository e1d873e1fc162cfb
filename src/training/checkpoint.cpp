#include "mgd/training/checkpoint.h"

#include <torch/torch.h>

#include <set>

#include "mgd/serialize/checkpoint.h"
#include "mgd/serialize/state_dict.h"

namespace mgd::training {

namespace {

using serialize::Dict;
using serialize::Value;

constexpr const char* kFormat = "mgd-checkpoint";
constexpr int64_t kVersion = 1;

bool starts_with_any(const std::string& name, const std::vector<std::string>& prefixes) {
  for (const auto& p : prefixes) {
    if (name.rfind(p, 0) == 0) return true;
  }
  return false;
}

const std::vector<std::string> kDistillerExcluded = {"teacher.", "student."};

bool is_mgd_checkpoint(const Value& v) {
  return v.is_dict() && v.contains("format") && v.at("format").is_string() &&
         v.at("format").to_string() == kFormat;
}

}  // namespace

std::vector<std::pair<std::string, torch::Tensor>> module_state(
    torch::nn::Module& module, const std::vector<std::string>& exclude) {
  std::vector<std::pair<std::string, torch::Tensor>> out;
  for (const auto& item : serialize::module_state_dict(module)) {
    if (!starts_with_any(item.key(), exclude)) out.emplace_back(item.key(), item.value());
  }
  return out;
}

void save_checkpoint(const std::string& path, torch::nn::Module& model,
                     torch::nn::Module* distiller, const std::vector<torch::Tensor>& momentum,
                     const TrainingState& state) {
  Dict ckpt;
  ckpt.insert_or_assign("format", kFormat);
  ckpt.insert_or_assign("version", kVersion);
  ckpt.insert_or_assign("arch", state.arch);
  ckpt.insert_or_assign("teacher_arch", state.teacher_arch);
  ckpt.insert_or_assign("method", state.method);
  ckpt.insert_or_assign("config", state.config);
  ckpt.insert_or_assign("state_dict", serialize::state_dict_value(model));
  if (distiller) {
    Dict own = Dict::ordered_dict();
    for (auto& [name, tensor] : module_state(*distiller, kDistillerExcluded)) {
      own.insert_or_assign(name, tensor.detach());
    }
    ckpt.insert_or_assign("distiller", Value(std::move(own)));
  }
  std::vector<Value> buffers;
  for (const auto& m : momentum) buffers.push_back(m.defined() ? Value(m.detach()) : Value());
  ckpt.insert_or_assign("momentum", Value::list(std::move(buffers)));
  ckpt.insert_or_assign("epoch", state.epoch);
  ckpt.insert_or_assign("global_step", state.global_step);
  ckpt.insert_or_assign("best_top1", state.best_top1);
  ckpt.insert_or_assign("best_top5", state.best_top5);
  ckpt.insert_or_assign("teacher_top1", state.teacher_top1);
  ckpt.insert_or_assign("rng", state.rng_state.defined() ? Value(state.rng_state) : Value());
  ckpt.insert_or_assign("batch", state.batch);
  ckpt.insert_or_assign("task_state", state.task_state);
  ckpt.insert_or_assign("metrics_bytes", state.metrics_bytes);
  serialize::save_file(path, Value(std::move(ckpt)));
}

TrainingState load_checkpoint(const std::string& path, torch::nn::Module& model,
                              torch::nn::Module* distiller, std::vector<torch::Tensor>* momentum) {
  const Value v = serialize::load_file(path);
  TORCH_CHECK(is_mgd_checkpoint(v), "'", path,
              "' is not an mgd training checkpoint (no \"format\": \"mgd-checkpoint\" entry); "
              "to start from plain weights use --init-checkpoint");
  TORCH_CHECK(v.at("version").to_int() == kVersion, "'", path, "': checkpoint version ",
              v.at("version").to_int(), ", this mgd reads version ", kVersion);
  TrainingState s;
  s.arch = v.at("arch").to_string();
  s.teacher_arch = v.at("teacher_arch").to_string();
  s.method = v.at("method").to_string();
  s.config = v.at("config").to_string();
  s.epoch = v.at("epoch").to_int();
  s.global_step = v.at("global_step").to_int();
  s.best_top1 = v.at("best_top1").to_double();
  s.best_top5 = v.at("best_top5").to_double();
  s.teacher_top1 = v.at("teacher_top1").to_double();
  if (v.at("rng").is_tensor()) s.rng_state = v.at("rng").to_tensor();
  if (v.contains("batch")) {  // absent from checkpoints written only at epoch ends
    s.batch = v.at("batch").to_int();
    TORCH_CHECK(s.batch >= 0, "'", path, "': invalid batch ", s.batch);
    // "epoch_meter": checkpoints of classification runs before the task interface.
    if (v.contains("task_state")) s.task_state = v.at("task_state");
    else if (v.contains("epoch_meter")) s.task_state = v.at("epoch_meter");
  }
  if (v.contains("metrics_bytes")) s.metrics_bytes = v.at("metrics_bytes").to_int();
  try {
    serialize::load_state_dict_into(model, serialize::to_state_dict(v.at("state_dict"), {}, path));
  } catch (const c10::Error& e) {
    TORCH_CHECK(false, "'", path, "' does not fit the ", s.arch, " network: ",
                e.what_without_backtrace());
  }
  if (distiller) {
    TORCH_CHECK(v.contains("distiller"), "'", path,
                "' holds no distiller state (it is not a distillation run)");
    // The teacher and student are not stored under "distiller": take them as they are and
    // require every one of the distiller's own entries.
    auto full = serialize::module_state_dict(*distiller);
    const auto stored = serialize::to_state_dict(v.at("distiller"), serialize::LoadStateDictOptions().strip_prefix(""), path);
    std::set<std::string> own;
    for (auto& [name, tensor] : module_state(*distiller, kDistillerExcluded)) own.insert(name);
    std::ostringstream problems;
    for (const auto& item : stored) {
      if (!own.count(item.key())) problems << " unexpected '" << item.key() << "';";
      else full[item.key()] = item.value();
    }
    for (const auto& name : own) {
      if (!stored.contains(name)) problems << " missing '" << name << "';";
    }
    TORCH_CHECK(problems.str().empty(), "'", path,
                "': the distiller state does not fit this teacher/student pair:", problems.str());
    serialize::load_state_dict_into(*distiller, full);
  }
  if (momentum) {
    const auto& items = v.at("momentum").items();
    TORCH_CHECK(items.size() == momentum->size(), "'", path, "' holds ", items.size(),
                " optimizer buffers, this run optimizes ", momentum->size(), " parameters");
    for (size_t i = 0; i < items.size(); ++i) {
      (*momentum)[i] = items[i].is_tensor() ? items[i].to_tensor().clone() : torch::Tensor();
    }
  }
  return s;
}

void load_weights(const std::string& path, torch::nn::Module& model, const std::string& arch) {
  const Value v = serialize::load_file(path);
  if (!arch.empty() && is_mgd_checkpoint(v) && v.contains("arch")) {
    const auto& stored = v.at("arch").to_string();
    TORCH_CHECK(stored == arch, "'", path, "' holds a ", stored, " network, expected ", arch);
  }
  try {
    serialize::load_state_dict_into(model, serialize::to_state_dict(v, {}, path));
  } catch (const c10::Error& e) {
    TORCH_CHECK(false, "'", path, "' does not fit the ", arch.empty() ? "model" : arch,
                " network: ", e.what_without_backtrace());
  }
}

}  // namespace mgd::training
