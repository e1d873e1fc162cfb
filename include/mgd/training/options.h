// Everything a training, distillation or evaluation run is configured by. The CLI only
// fills this struct (from flags and an optional YAML file) and calls the engine.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace mgd::training {

/// What the student learns from besides its labels.
enum class Method {
  kNone,    ///< base training (mgd train)
  kMgd,     ///< MGD feature distillation
  kMgdKd,   ///< MGD + Hinton's KD on the logits
  kKd,      ///< KD alone
};

const char* method_name(Method method);
/// "none", "mgd", "mgd+kd", "kd"; throws c10::Error naming the valid choices otherwise.
Method parse_method(const std::string& name);

struct TrainOptions {
  /// What is learned (tasks/): "classification" (images and labels), "detection"
  /// (RetinaNet-FPN on COCO-format data), "moco" (MoCo v2 self-supervised; tasks-spec B) or
  /// "linear" (the linear protocol on a frozen pretrained body).
  std::string task = "classification";

  // --- models ---
  std::string arch = "resnet20";          ///< the network trained (the student)
  std::string teacher_arch;               ///< distillation: the teacher's architecture
  std::string teacher_checkpoint;         ///< distillation: the trained teacher's weights
  std::string init_checkpoint;            ///< optional initial weights of the trained network

  // --- data ---
  std::string data_format = "fashion-mnist";  ///< fashion-mnist, mnist, cifar10, cifar100, imagefolder
  std::string data_root;                  ///< empty: the format's default location
  int64_t image_size = 224;               ///< ImageFolder crop size
  int64_t train_subset = 0;               ///< > 0: train on this many training images (fixed subset)
  int64_t test_subset = 0;                ///< > 0: evaluate on this many test images (quick checks)
  int64_t workers = 2;                    ///< data loading threads
  bool augment = true;                    ///< training augmentation

  // --- optimization (spec 7) ---
  int64_t epochs = 10;
  int64_t batch_size = 128;
  double lr = 0.1;
  double momentum = 0.9;
  double weight_decay = 1e-4;
  bool nesterov = true;
  /// SGD's update: "one-pass" (one loop over each float parameter, its gradient and momentum;
  /// faster, its own float rounding), "tensor-ops" (LibTorch's ops, the rounding of every
  /// earlier mgd release) or "auto": the task's default (detection one-pass, else tensor-ops).
  std::string sgd_update = "auto";
  std::string lr_schedule = "step";       ///< "step" (multi-step) or "cosine"
  std::vector<int64_t> lr_drop_epochs;    ///< multi-step: epochs where lr *= lr_drop_ratio
  double lr_drop_ratio = 0.1;
  int64_t warmup_epochs = 0;
  int64_t warmup_iters = 0;               ///< or Detectron2's warm-up over N iterations (0: off)
  double warmup_factor = 0.001;           ///< its starting fraction of the rate

  // --- distillation (spec 2-6) ---
  Method method = Method::kNone;
  std::string reducer = "amp";
  /// Matching every N epochs; 0: the task's default (classification 2; detection none: it
  /// re-matches at update_fractions of its steps instead).
  int64_t update_freq = 0;
  std::vector<int64_t> update_epochs;     ///< or before each listed epoch
  int64_t update_iters = 0;               ///< and/or every N iterations (0: off)
  /// And/or after these global steps (step counts; 0 is the pass before training).
  std::vector<int64_t> update_steps;
  /// And/or after these fractions of the run's steps, in [0, 1): the reference's detection
  /// list (0, 5k, 10k, 15k, 31k, 62k of 90k) scaled to any schedule.
  std::vector<double> update_fractions;
  int64_t tracking_images = 20000;        ///< images per tracking pass
  /// Detection: the tracking pass's images with the evaluation transforms ("eval", mgd's
  /// default) or the training ones, augmented as training batches are ("train", the
  /// reference's).
  std::string tracking_transform = "eval";
  /// Detection: whether the zero padding of a batch counts in each channel's normalization
  /// of the matching cost ("include", the reference's) or is left out ("exclude").
  std::string tracking_padding = "exclude";
  double kd_temperature = 1.5;
  double kd_weight = 1.0;
  /// d_loss / batch / loss_factor (spec 6); 0: the task's default (classification 1e4, the
  /// reference's for 224 px images; detection 5e7, the reference's Detectron2 value).
  double loss_factor = 0;
  std::vector<int64_t> ignore_positions;  ///< empty: the pair's default (see engine)
  bool ignore_positions_set = false;      ///< true when the user gave ignore_positions
  std::string shave = "first";            ///< "first" (reference) or "best"
  bool pre_relu = true;

  // --- run ---
  uint64_t seed = 0;
  std::string device = "cpu";
  int threads = 0;                        ///< 0: every core
  std::string output_dir = "runs/latest";
  std::string resume;                     ///< checkpoint to continue from
  bool overwrite = false;                 ///< replace another run's files in output_dir
  int64_t checkpoint_every = 0;           ///< also checkpoint every N steps (0: at epoch ends only)
  bool evaluate_only = false;
  int64_t print_freq = 50;
  bool skip_nonfinite = false;            ///< skip a step with a non-finite loss instead of stopping

  // --- detection (task "detection"; tasks-spec A) ---
  std::vector<int64_t> min_sizes;         ///< training shorter sides, one drawn per image
                                          ///< (empty: 640..800 step 32 for COCO, 128 for scenes)
  int64_t max_size = 1333;                ///< longer-side cap of the resize
  int64_t test_size = 0;                  ///< evaluation shorter side (0: 800 COCO, 128 scenes)
  int64_t size_divisibility = 32;         ///< batches padded to a multiple of this
  std::vector<int64_t> anchor_sizes;      ///< base anchor size per FPN level, x 2^{0,1/3,2/3}
                                          ///< (empty: Detectron2's 32, 64, 128, 256, 512)
  double score_thresh = 0.05;             ///< inference: detections kept above this score
  double nms_thresh = 0.5;                ///< inference: IoU of the per-class NMS
  int64_t topk_candidates = 1000;         ///< inference: candidates per level before NMS
  int64_t detections_per_image = 100;     ///< inference: detections kept per image
  int64_t fpn_channels = 256;             ///< FPN and head width
  int64_t head_convs = 4;                 ///< 3x3 convolutions of each head before its output
  /// Backbone norms: "frozen_batch" (Detectron2's, for a backbone from trained weights),
  /// "batch" (trainable, for training from scratch) or "auto": frozen_batch when the network
  /// starts from trained weights (--init-backbone, --init-checkpoint), batch otherwise.
  std::string backbone_norm = "auto";
  /// Detectron2's FREEZE_AT (0: nothing frozen, 1: the stem, 2: also res2); -1: 2 when the
  /// network starts from trained weights, 0 otherwise.
  int64_t freeze_at = -1;
  std::string init_backbone;              ///< a classifier's weights for the backbone
  bool student_group_norm = true;         ///< distilled student: GroupNorm in each stage's last
                                          ///< block (the reference's)

  // --- self-supervised (task "moco"; tasks-spec B). Defaults are MoCo v2's. ---
  int64_t moco_dim = 128;                 ///< output width of the projection head
  int64_t moco_k = 65536;                 ///< queue size: negative keys (smaller for small sets)
  double moco_m = 0.999;                  ///< momentum of the key encoder's update
  double moco_t = 0.2;                    ///< InfoNCE temperature
  bool moco_mlp = true;                   ///< MoCo v2's 2-layer MLP head (false: v1's linear)
  /// BatchNorm groups of each process's batch (shuffled for the keys): MoCo's per-GPU BN of
  /// 8 GPUs, emulated in one process as its CIFAR demo does. 1: the whole batch is one group.
  int64_t moco_bn_splits = 8;
  int64_t knn_k = 200;                    ///< kNN monitor: neighbours that vote
  double knn_t = 0.1;                     ///< kNN monitor: temperature of the vote weights
  /// MoCo + MGD: "teacher" (margins from the loaded teacher's BatchNorms) or "reference" (the
  /// reference's defect: every margin that of a fresh BatchNorm, -sqrt(2/pi)).
  std::string margins = "teacher";

  // --- data-parallel training (spec 8); the world comes from the environment (torchrun,
  // SLURM, Open MPI or `mgd launch`, see mgd/distributed/environment.h). batch_size is per rank.
  double dist_timeout = 300;              ///< seconds a rank waits for the others before failing
  int64_t bucket_mb = 25;                 ///< gradient all-reduce bucket size (MiB)
};

/// Sets the defaults of `task` in `options` (call before applying a config file and flags,
/// which then override them): "moco" gets MoCo v2's recipe (batch 256, lr 0.03, cosine
/// decay, plain momentum SGD, weight decay 1e-4, 200 epochs; with MGD a ResNet-50 teacher and
/// the reference's logspace matching epochs), "linear" MoCo's linear protocol (batch 256,
/// lr 30, x0.1 at 60 and 80 of 100 epochs, no weight decay); other tasks keep the struct's.
void apply_task_defaults(TrainOptions& options, const std::string& task);

}  // namespace mgd::training
