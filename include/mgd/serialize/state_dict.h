// Moving model weights between PyTorch (Python) and torch::nn modules by parameter name.
//
// A state_dict maps each parameter and buffer of a module tree to its dotted name
// ("layer1.0.bn1.running_mean"); modules whose C++ names equal the Python ones (as mgd's
// models do) exchange weights through it:
//
//   // Python: torch.save(model.state_dict(), "w.pt"), or a training checkpoint
//   // {'state_dict': ..., 'epoch': ..., 'optimizer': ...}, possibly from DataParallel.
//   auto state = mgd::serialize::load_state_dict("w.pt");
//   mgd::serialize::load_state_dict_into(*model, state);   // strict: names and shapes match
//   mgd::serialize::save_state_dict("out.pt", *model);     // Python:
//   model.load_state_dict(torch.load("out.pt"))
#pragma once

#include <torch/arg.h>
#include <torch/nn/module.h>
#include <torch/ordered_dict.h>
#include <torch/types.h>

#include <string>
#include <vector>

#include "mgd/serialize/value.h"

namespace mgd::serialize {

/// Parameter and buffer name -> tensor, in the checkpoint's order, names unique.
using StateDict = torch::OrderedDict<std::string, torch::Tensor>;

/// How load_state_dict() finds the weights in a checkpoint.
struct LoadStateDictOptions {
  /// Keys under which a training checkpoint (a dict of weights, epoch, optimizer state, ...)
  /// keeps the model's weights, tried in order. A checkpoint that is itself a dict of tensors
  /// is used as it is.
  TORCH_ARG(std::vector<std::string>, keys) = {"state_dict", "model"};
  /// Removed from the start of every name that has it: torch.nn.DataParallel and
  /// DistributedDataParallel save their model's weights under `module.`. Empty: names are
  /// kept as they are.
  TORCH_ARG(std::string, strip_prefix) = "module.";
};

/// Reads the model weights from a checkpoint file (see load_file() in checkpoint.h for the
/// formats). Throws c10::Error naming the file when there is no state_dict in it, a name is not
/// a str, a value is not a tensor, or two names collide once the prefix is stripped.
StateDict load_state_dict(const std::string& path,
                          const LoadStateDictOptions& options = LoadStateDictOptions());

/// The same for a checkpoint already loaded; `name` stands for it in error messages.
StateDict to_state_dict(const Value& checkpoint,
                        const LoadStateDictOptions& options = LoadStateDictOptions(),
                        const std::string& name = "checkpoint");

/// Copies `state` into the parameters and buffers of `module` and its submodules, by name,
/// without recording gradients. Values are converted to the module's dtype and device when
/// that is safe (floating to floating, integer to integer, complex to complex). A missing
/// `...num_batches_tracked` (checkpoints from before PyTorch 0.4.1, such as torchvision's
/// ImageNet weights) is set to 0, as Python's BatchNorm does. With `strict`, every name must
/// match both ways; shapes and dtype kinds must always match. All problems are reported in one
/// c10::Error listing every offending name with its shapes, and then nothing is copied.
void load_state_dict_into(torch::nn::Module& module, const StateDict& state, bool strict = true);

/// The parameters and buffers of `module` in the order and with the names Python's
/// `Module.state_dict()` gives them, as an OrderedDict Value (tensors detached, not copied):
/// save it with save_file(), alone or inside a training checkpoint.
Value state_dict_value(const torch::nn::Module& module);

/// The parameters and buffers of `module` as a StateDict, named as in state_dict_value().
StateDict module_state_dict(const torch::nn::Module& module);

/// save_file(path, state_dict_value(module)): a file that Python loads with
/// `model.load_state_dict(torch.load(path))`.
void save_state_dict(const std::string& path, const torch::nn::Module& module);

}  // namespace mgd::serialize
