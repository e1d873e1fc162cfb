// Image classification as a training task (spec 7): a classifier trained on its labels by
// cross-entropy -- alone, with MGD feature distillation from a teacher, MGD + KD, or KD alone
// -- and evaluated by top-1 / top-5 accuracy on the test split.
#pragma once

#include <memory>

#include "mgd/training/task.h"

namespace mgd::tasks {

/// The classification task of `options` (arch, teacher, method, data format, ...).
std::unique_ptr<training::Task> make_classification_task(const training::TrainOptions& options,
                                                         const training::TaskContext& context);

}  // namespace mgd::tasks
