// The linear protocol of self-supervised learning (MoCo's main_lincls.py; tasks-spec B2) as a
// task: a zoo ResNet whose body comes from a MoCo checkpoint and stays frozen -- its weights and
// its BatchNorm statistics (the network is kept in evaluation mode) -- and whose new
// classifier `fc` (normal(0, 0.01) weights, zero bias) alone is trained on the labels.
// MoCo's settings are the defaults of --task linear: lr 30, batch 256, 100 epochs, drops at 60
// and 80, no weight decay. Evaluated like a classifier: acc1 / acc5 on the test split.
//
//   mgd train --task linear --arch resnet18 --init-backbone runs/moco/checkpoint.pth -o runs/lin
//   mgd eval  --task linear --arch resnet18 --checkpoint runs/lin/best.pth
//
// The checkpoint's state_dict is a plain torchvision-named ResNet (body and classifier), so
// `mgd export` writes it as one.
#pragma once

#include <memory>
#include <string>

#include "mgd/distiller/feature_net.h"
#include "mgd/training/task.h"

namespace mgd::tasks {

/// The linear-evaluation task of `options` (arch: a zoo ResNet; init_backbone: the MoCo
/// checkpoint, or init_checkpoint: a linear run's own).
std::unique_ptr<training::Task> make_linear_task(const training::TrainOptions& options,
                                                 const training::TaskContext& context);

/// Loads the body of `net` (every parameter and buffer but fc.*) from `path`: a MoCo
/// checkpoint (its "module.encoder_q." / "encoder_q." weights, the projection head left out) or
/// a plain ResNet state_dict. Every body weight must be there; throws c10::Error naming the
/// file and the missing names otherwise.
void load_backbone(const std::string& path, torch::nn::Module& net);

}  // namespace mgd::tasks
