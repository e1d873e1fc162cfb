// Per-task defaults of TrainOptions (options.h).
#include "mgd/training/options.h"

namespace mgd::training {

void apply_task_defaults(TrainOptions& options, const std::string& task) {
  options.task = task;
  if (task == "moco") {
    // MoCo v2 (moco/main_moco.py with --mlp --aug-plus --cos; tasks-spec B1): batch 256,
    // lr 0.03, cosine decay, SGD momentum 0.9 without Nesterov, weight decay 1e-4, 200 epochs.
    options.arch = "resnet50";
    options.batch_size = 256;
    options.lr = 0.03;
    options.lr_schedule = "cosine";
    options.nesterov = false;
    options.momentum = 0.9;
    options.weight_decay = 1e-4;
    options.epochs = 200;
    // MoCo + MGD (tasks-spec B2, main_moco_mgd.py): a ResNet-50 teacher, matching before
    // training and before the 0-based epochs e in ceil(logspace(0, 2.1, 10)) (the reference
    // re-matches after the epochs e - 1).
    options.teacher_arch = "resnet50";
    options.update_epochs = {1, 2, 3, 6, 9, 15, 26, 43, 74, 126};
  } else if (task == "linear") {
    // MoCo's linear protocol (moco/main_lincls.py): lr 30, batch 256, 100 epochs, x0.1 at 60
    // and 80, SGD momentum 0.9, no weight decay.
    options.arch = "resnet50";
    options.batch_size = 256;
    options.lr = 30;
    options.lr_schedule = "step";
    options.lr_drop_epochs = {60, 80};
    options.lr_drop_ratio = 0.1;
    options.nesterov = false;
    options.momentum = 0.9;
    options.weight_decay = 0;
    options.epochs = 100;
  }
}

}  // namespace mgd::training
