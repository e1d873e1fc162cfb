// Object detection as a training task (tasks-spec A): a RetinaNet-FPN (models/detection)
// trained on a COCO-format data set by its focal and box losses -- alone, or distilled by MGD
// from a teacher RetinaNet on the backbone's stage outputs C2-C5 -- and evaluated by COCO's
// bbox protocol (evaluation/coco_eval.h): AP, AP50, AP75, APs/m/l, AR1/10/100, in percent.
//
// Data: --data-root names a folder in COCO's layout (annotations/instances_{train,val}.json
// with train/ and val/, or COCO 2017's names). Without one the task uses the synthetic
// Fashion-MNIST scenes (data/scenes.h), written once into default_scenes_root().
#pragma once

#include <memory>
#include <string>

#include "mgd/training/task.h"

namespace mgd::tasks {

/// The detection task of `options` (arch: a RetinaNet name such as retinanet_resnet18_fpn).
std::unique_ptr<training::Task> make_detection_task(const training::TrainOptions& options,
                                                    const training::TaskContext& context);

/// Where the default synthetic scenes live: $MGD_DATA_DIR/scenes-128 when MGD_DATA_DIR is set,
/// else $XDG_CACHE_HOME/mgd/scenes-128 or ~/.cache/mgd/scenes-128.
std::string default_scenes_root();

/// default_scenes_root(), written first (4000 training and 500 validation canvases of 128 px,
/// seed 0) when it holds no complete set.
std::string ensure_default_scenes();

}  // namespace mgd::tasks
