// make_task: the task a run's options name.
#include <c10/util/Exception.h>

#include "mgd/tasks/classification.h"
#include "mgd/tasks/detection.h"
#include "mgd/tasks/linear.h"
#include "mgd/tasks/moco.h"
#include "mgd/training/task.h"

namespace mgd::training {

std::unique_ptr<Task> make_task(const TrainOptions& options, const TaskContext& context) {
  if (options.task == "classification") return tasks::make_classification_task(options, context);
  if (options.task == "detection") return tasks::make_detection_task(options, context);
  if (options.task == "moco") return tasks::make_moco_task(options, context);
  if (options.task == "linear") return tasks::make_linear_task(options, context);
  TORCH_CHECK(false, "Unknown task '", options.task,
              "' (expected one of: classification, detection, moco, linear)");
}

}  // namespace mgd::training
