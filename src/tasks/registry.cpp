// make_task: the task a run's options name.
#include <c10/util/Exception.h>

#include "mgd/tasks/classification.h"
#include "mgd/tasks/detection.h"
#include "mgd/tasks/linear.h"
#include "mgd/tasks/moco.h"
#include "mgd/training/task.h"

namespace mgd::training {

void resolve_task_defaults(TrainOptions& o) {
  // One pass over each parameter where rounding differences do not undo an earlier claim: the
  // classification recipes stay bit-identical to the tensor ops (and to the reference).
  if (o.sgd_update == "auto")
    o.sgd_update = o.task == "detection" || o.task == "moco" ? "one-pass" : "tensor-ops";
  if (o.task == "detection") {
    // The classification default names no detection data: COCO-format is the detector's.
    if (o.data_format == "fashion-mnist") o.data_format = "coco";
    // The reference's Detectron2 project (tasks-spec A2): 5e7 per image, and matchings at
    // iterations 0, 5k, 10k, 15k, 31k, 62k of 90k -- as fractions, for any schedule.
    if (o.loss_factor == 0) o.loss_factor = 5e7;
    const bool schedule_given = o.update_freq != 0 || !o.update_epochs.empty() ||
                                o.update_iters != 0 || !o.update_steps.empty() ||
                                !o.update_fractions.empty();
    if (!schedule_given) {
      for (double k : {0.0, 5.0, 10.0, 15.0, 31.0, 62.0}) o.update_fractions.push_back(k / 90.0);
    }
  } else {
    if (o.loss_factor == 0) o.loss_factor = 1e4;  // the reference's, for 224 px images
    if (o.update_freq == 0) o.update_freq = 2;
  }
}

std::unique_ptr<Task> make_task(const TrainOptions& options, const TaskContext& context) {
  if (options.task == "classification") return tasks::make_classification_task(options, context);
  if (options.task == "detection") return tasks::make_detection_task(options, context);
  if (options.task == "moco") return tasks::make_moco_task(options, context);
  if (options.task == "linear") return tasks::make_linear_task(options, context);
  TORCH_CHECK(false, "Unknown task '", options.task,
              "' (expected one of: classification, detection, moco, linear)");
}

}  // namespace mgd::training
