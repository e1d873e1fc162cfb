// The model zoo by name, so the CLI and library users pick networks by string.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "mgd/distiller/feature_net.h"
#include "mgd/models/options.h"

namespace mgd::models {

/// The network registered under `name` (e.g. "resnet50", "mobilenet_v1", "wrn_40_2"), or
/// the TorchScript file of "torchscript:FILE.pt" (models/torchscript.h; its logits and input
/// channels checked against `options`); throws c10::Error listing the known names otherwise.
FeatureNet make_model(const std::string& name, const ModelOptions& options = {});
/// The registry prefix naming a TorchScript file: "torchscript:PATH".
inline constexpr const char* kTorchScriptPrefix = "torchscript:";
/// Whether `name` is "torchscript:PATH" (then `*path`, if given, receives PATH).
bool is_torchscript_name(const std::string& name, std::string* path = nullptr);

/// Every registered name, sorted.
std::vector<std::string> model_names();
/// Adds (or replaces) `name` in the zoo, so make_model, the training engine and the CLI
/// build a network of your own by name.
void register_model(const std::string& name,
                    std::function<FeatureNet(const ModelOptions&)> factory);

}  // namespace mgd::models
