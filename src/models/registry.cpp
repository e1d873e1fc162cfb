#include "mgd/models/registry.h"

#include <torch/torch.h>

#include <functional>
#include <map>
#include <mutex>
#include <sstream>

#include "mgd/models/mobilenet.h"
#include "mgd/models/resnet.h"
#include "mgd/models/shufflenet.h"
#include "mgd/models/torchscript.h"
#include "mgd/models/wrn.h"

namespace mgd::models {
namespace {

using Factory = std::function<FeatureNet(const ModelOptions&)>;

template <typename Holder>
Factory wrap(Holder (*make)(const ModelOptions&)) {
  return [make](const ModelOptions& o) { return FeatureNet(make(o).ptr()); };
}

std::mutex& registry_mutex() {
  static std::mutex mutex;
  return mutex;
}

std::map<std::string, Factory>& registry() {
  static std::map<std::string, Factory> kRegistry = {
      {"resnet10", wrap(&resnet10)},
      {"resnet18", wrap(&resnet18)},
      {"resnet34", wrap(&resnet34)},
      {"resnet50", wrap(&resnet50)},
      {"resnet101", wrap(&resnet101)},
      {"resnet152", wrap(&resnet152)},
      {"resnet20", wrap(&resnet20)},
      {"resnet56", wrap(&resnet56)},
      {"resnet8x4", wrap(&resnet8x4)},
      {"resnet32x4", wrap(&resnet32x4)},
      {"wrn_16_2", wrap(&wrn_16_2)},
      {"wrn_40_2", wrap(&wrn_40_2)},
      {"mobilenet_v1", wrap(&mobilenet_v1)},
      {"mobilenet_v2", wrap(&mobilenet_v2)},
      {"mobilenet_v2_mgd", wrap(&mobilenet_v2_mgd)},
      {"shufflenet_v2_x0_5", wrap(&shufflenet_v2_x0_5)},
      {"shufflenet_v2_x1_0", wrap(&shufflenet_v2_x1_0)},
  };
  return kRegistry;
}

}  // namespace

void register_model(const std::string& name, Factory factory) {
  TORCH_CHECK(!name.empty() && factory, "register_model: needs a name and a factory");
  std::lock_guard<std::mutex> lock(registry_mutex());
  registry()[name] = std::move(factory);
}

std::vector<std::string> model_names() {
  std::lock_guard<std::mutex> lock(registry_mutex());
  std::vector<std::string> names;
  for (const auto& entry : registry()) names.push_back(entry.first);
  return names;
}

FeatureNet make_model(const std::string& name, const ModelOptions& options) {
  std::string script;
  if (is_torchscript_name(name, &script)) {
    auto net = std::make_shared<TorchScriptNetImpl>(script);
    check_torchscript_fits(*net, options);
    return net;
  }
  Factory factory;
  {
    std::lock_guard<std::mutex> lock(registry_mutex());
    auto it = registry().find(name);
    if (it != registry().end()) factory = it->second;
  }
  if (!factory) {
    std::ostringstream known;
    for (const auto& n : model_names()) known << (known.tellp() > 0 ? ", " : "") << n;
    TORCH_CHECK(false, "Unknown model '", name, "' (expected one of: ", known.str(), ")");
  }
  TORCH_CHECK(options.classes() >= 1 && options.in_channels() >= 1, "Model '", name,
              "': classes and input channels must be >= 1, got ", options.classes(), " and ",
              options.in_channels());
  return factory(options);
}

}  // namespace mgd::models
