// Self-supervised training as a task (tasks-spec B): MoCo v2 -- a query encoder learns by
// InfoNCE to pick its key (the momentum encoder's view of the same image) among a queue of
// other images' keys -- alone, or with MGD distilling a MoCo-trained teacher's features into
// the query encoder on the query view (the reference's settings, B2). Evaluated by a kNN
// monitor (k 200, temperature 0.1: the test images' projections voted on by the training
// images', cosine similarity), "knn_acc1"; logged per step: the pretext (1 + K)-way accuracy.
//
// One step (MoCo's moco/builder.py forward, then the optimizer, then its bookkeeping):
//   q = normalize(encoder_q(query view))               BatchNorm over moco_bn_splits groups
//   k = normalize(encoder_k(shuffled key views))       shuffled over every rank's keys, the
//                                                      same groups, then unshuffled
//   loss = cross_entropy([q.k, q.queue] / T, 0) (+ MGD's loss / batch / loss_factor)
//   optimizer step; then the key encoder's momentum step and the keys into the queue
// (after_step: a step the engine skips for a non-finite loss changes neither).
//
// The network (the checkpoint's "state_dict") is the MoCo module: encoder_q, encoder_k, queue
// and queue_ptr under MoCo's names, so a resume is exact and MoCo's own checkpoints load as a
// teacher (--teacher-checkpoint) or an initialization (--init-checkpoint).
#pragma once

#include <memory>

#include "mgd/training/task.h"

namespace mgd::tasks {

/// The MoCo task of `options` (arch: a zoo ResNet; moco_* and knn_* options; with MGD the
/// teacher_arch / teacher_checkpoint of a MoCo-trained encoder and `margins`).
std::unique_ptr<training::Task> make_moco_task(const training::TrainOptions& options,
                                               const training::TaskContext& context);

}  // namespace mgd::tasks
