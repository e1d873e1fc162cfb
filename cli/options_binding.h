// Binds the fields of TrainOptions to command-line flags (CLI11) and to the keys of a YAML
// config file, from one declaration per option, so the two can never disagree.
#pragma once

#include <CLI/CLI.hpp>
#include <yaml-cpp/yaml.h>

#include <functional>
#include <map>
#include <string>

#include "mgd/training/options.h"

namespace mgd::cli {

class OptionBinder {
 public:
  explicit OptionBinder(CLI::App* app) : app_(app) {}

  /// A flag "--name" (and its YAML key "name" / "name_with_underscores") bound to `field`.
  /// Every long name is a YAML key, and so is `yaml_alias` when given (the key under which
  /// the engine's saved config.yaml writes the field, so that file is a valid --config).
  template <typename T>
  CLI::Option* add(const std::string& flags, T& field, const std::string& help,
                   const std::string& yaml_alias = "") {
    auto* opt = app_->add_option(flags, field, help)->capture_default_str();
    auto set = [&field](const YAML::Node& n) { field = n.as<T>(); };
    for (const auto& name : opt->get_lnames()) yaml_[key(name)] = set;
    if (!yaml_alias.empty()) yaml_[yaml_alias] = set;
    return opt;
  }
  /// A boolean flag bound to `field`. `yaml_key` is the field's YAML key (for a negated flag
  /// such as "--no-augment{false}" the positive name, "augment").
  CLI::Option* flag(const std::string& flags, bool& field, const std::string& help,
                    const std::string& yaml_key);
  /// A value-less flag "--name" that calls `on` when given (YAML: `yaml_key: true` calls it).
  CLI::Option* action_flag(const std::string& flags, const std::string& help,
                           const std::string& yaml_key, std::function<void()> on);
  /// A free-form option whose parsed value goes through `apply` (CLI and YAML both; a YAML
  /// list is passed as "a,b,c").
  CLI::Option* custom(const std::string& flags, const std::string& help,
                      std::function<void(const std::string&)> apply);

  /// Applies a YAML mapping (the config file) to the bound fields. Throws std::runtime_error
  /// naming the file and key on an unknown key or a value of the wrong type.
  void apply_yaml(const std::string& path) const;

 private:
  static std::string key(const std::string& long_name);
  CLI::App* app_;
  std::map<std::string, std::function<void(const YAML::Node&)>> yaml_;
};

/// Registers the flags of `mgd train` / `mgd distill` / `mgd eval` on `app`.
void add_data_options(OptionBinder& b, training::TrainOptions& o);
void add_training_options(OptionBinder& b, training::TrainOptions& o);
void add_distillation_options(OptionBinder& b, training::TrainOptions& o);
void add_run_options(OptionBinder& b, training::TrainOptions& o);
void add_detection_options(OptionBinder& b, training::TrainOptions& o);
void add_moco_options(OptionBinder& b, training::TrainOptions& o);
void add_moco_distillation_options(OptionBinder& b, training::TrainOptions& o);

}  // namespace mgd::cli
