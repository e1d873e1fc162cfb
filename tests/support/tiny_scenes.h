// The tiny synthetic detection set and RetinaNet that the detection task tests share: 24 + 8
// scenes of 64 px, an R18 body with a 32-channel FPN and one conv per head, one thread.
#pragma once

#include <c10/util/Exception.h>

#include <string>
#include <vector>

#include "mgd/data/scenes.h"

namespace mgd::testing {

/// Writes the scenes into `dir`; returns "" or why they cannot be written (no Fashion-MNIST).
inline std::string write_tiny_scenes(const std::string& dir) {
  try {
    mgd::data::write_scenes(
        mgd::data::ScenesOptions(dir).train(24).val(8).size(64).max_object_size(32));
  } catch (const c10::Error& e) {
    return std::string("no Fashion-MNIST for the scenes: ") + e.what_without_backtrace();
  }
  return "";
}

/// `mgd COMMAND` of the tiny detector on the scenes in `data`, followed by `more`.
inline std::vector<std::string> tiny_detector(const std::string& command, const std::string& data,
                                              const std::vector<std::string>& more) {
  std::vector<std::string> a = {MGD_CLI,        command,          "--task",
                                "detection",    "--arch",         "retinanet_resnet18_fpn",
                                "--data-root",  data,             "--fpn-channels",
                                "32",           "--head-convs",   "1",
                                "--test-size",  "64",             "--anchor-sizes",
                                "16,32,64,128,256",               "--threads",
                                "1"};
  a.insert(a.end(), more.begin(), more.end());
  return a;
}

/// The training options of the tests' runs (6 steps per epoch of batch 4), into `out`.
inline std::vector<std::string> tiny_training(const std::string& out, int epochs) {
  return {"--epochs",     std::to_string(epochs), "--batch-size", "4",  "--lr", "0.01",
          "--min-sizes",  "56,64",                "--workers",    "0",  "--seed", "7",
          "--print-freq", "1",                    "-o",           out};
}

}  // namespace mgd::testing
