#include "options_binding.h"

#include <algorithm>
#include <sstream>
#include <type_traits>
#include <stdexcept>

#include "mgd/data/dataset.h"
#include "mgd/models/registry.h"
#include "mgd/reducers/reducer.h"

namespace mgd::cli {

std::string OptionBinder::key(const std::string& long_name) {
  std::string k = long_name;
  while (!k.empty() && k[0] == '-') k.erase(0, 1);
  std::replace(k.begin(), k.end(), '-', '_');
  return k;
}

CLI::Option* OptionBinder::flag(const std::string& flags, bool& field, const std::string& help,
                                const std::string& yaml_key) {
  auto* opt = app_->add_flag(flags, field, help);
  yaml_[yaml_key] = [&field](const YAML::Node& n) { field = n.as<bool>(); };
  return opt;
}

CLI::Option* OptionBinder::action_flag(const std::string& flags, const std::string& help,
                                       const std::string& yaml_key, std::function<void()> on) {
  auto* opt = app_->add_flag_callback(flags, on, help);
  yaml_[yaml_key] = [on](const YAML::Node& n) {
    if (n.as<bool>()) on();
  };
  return opt;
}

CLI::Option* OptionBinder::custom(const std::string& flags, const std::string& help,
                                  std::function<void(const std::string&)> apply) {
  auto* opt = app_->add_option_function<std::string>(flags, apply, help);
  yaml_[key(opt->get_name())] = [apply](const YAML::Node& n) {
    if (n.IsSequence()) {
      std::ostringstream s;
      for (size_t i = 0; i < n.size(); ++i) s << (i ? "," : "") << n[i].as<std::string>();
      apply(s.str());
    } else {
      apply(n.as<std::string>());
    }
  };
  return opt;
}

void OptionBinder::apply_yaml(const std::string& path) const {
  YAML::Node root;
  try {
    root = YAML::LoadFile(path);
  } catch (const YAML::BadFile&) {
    throw std::runtime_error("cannot read config file '" + path + "'");
  } catch (const YAML::Exception& e) {
    throw std::runtime_error("config file '" + path + "' is not valid YAML: " + e.what());
  }
  if (root.IsNull()) return;
  if (!root.IsMap()) throw std::runtime_error("config file '" + path + "': expected a mapping of option: value");
  for (const auto& entry : root) {
    const auto name = key(entry.first.as<std::string>());
    if (entry.second.IsNull()) continue;  // "key: null" (or empty): not set
    auto it = yaml_.find(name);
    if (it == yaml_.end()) {
      std::ostringstream known;
      for (const auto& k : yaml_) known << (known.tellp() > 0 ? ", " : "") << k.first;
      throw std::runtime_error("config file '" + path + "': unknown option '" + name +
                               "' for this command (known: " + known.str() + ")");
    }
    try {
      it->second(entry.second);
    } catch (const YAML::Exception& e) {
      throw std::runtime_error("config file '" + path + "': option '" + name +
                               "' has a value of the wrong type (" + e.what() + ")");
    } catch (const std::exception& e) {
      throw std::runtime_error("config file '" + path + "': option '" + name + "': " + e.what());
    }
  }
}

namespace {

std::string joined(const std::vector<std::string>& v) {
  std::ostringstream s;
  for (size_t i = 0; i < v.size(); ++i) s << (i ? ", " : "") << v[i];
  return s.str();
}

// "a, b, c" or "[a, b, c]" as integers (T = int64_t) or reals (T = double).
template <typename T>
std::vector<T> parse_values(const std::string& text) {
  std::vector<T> out;
  std::string item;
  std::istringstream in(text);
  while (std::getline(in, item, ',')) {
    item.erase(std::remove_if(item.begin(), item.end(), [](char c) { return c == ' ' || c == '[' || c == ']'; }),
               item.end());
    if (item.empty()) continue;
    size_t used = 0;
    T v = 0;
    try {
      if constexpr (std::is_integral_v<T>) v = std::stoll(item, &used);
      else v = std::stod(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != item.size()) {
      throw std::runtime_error(std::string("expected a comma-separated list of ") +
                               (std::is_integral_v<T> ? "integers" : "numbers") + ", got '" +
                               text + "'");
    }
    out.push_back(v);
  }
  return out;
}
std::vector<int64_t> parse_list(const std::string& text) { return parse_values<int64_t>(text); }
std::vector<double> parse_real_list(const std::string& text) { return parse_values<double>(text); }

}  // namespace

void add_data_options(OptionBinder& b, training::TrainOptions& o) {
  b.add("--data", o.data_format, "Dataset format: " + joined(data::dataset_formats()),
        "data_format")
      ->group("Data");
  b.add("--data-root", o.data_root,
        "Dataset directory (default: the format's standard location, e.g. "
        "/usr/share/datasets/fashion-mnist)")
      ->group("Data");
  b.add("--image-size", o.image_size, "Crop size for image folders (evaluation resizes to 8/7 of it first)")
      ->group("Data");
  b.add("-j,--workers", o.workers, "Data loading threads")->group("Data");
  b.add("-b,--batch-size", o.batch_size, "Images per batch")->group("Data");
}

void add_training_options(OptionBinder& b, training::TrainOptions& o) {
  b.add("--train-subset", o.train_subset, "Train on a fixed random subset of this many images (0: all)")
      ->group("Training");
  b.add("--test-subset", o.test_subset,
        "Evaluate on a fixed random subset of this many test images (0: all; for quick checks)")
      ->group("Training");
  b.add("--epochs", o.epochs, "Training epochs")->group("Training");
  b.add("--lr", o.lr, "Initial learning rate")->group("Training");
  b.add("--momentum", o.momentum, "SGD momentum")->group("Training");
  b.add("--weight-decay,--wd", o.weight_decay, "Weight decay (L2)")->group("Training");
  b.custom("--nesterov", "Nesterov momentum: true or false (default true)",
           [&o](const std::string& v) {
             if (v == "true" || v == "1") o.nesterov = true;
             else if (v == "false" || v == "0") o.nesterov = false;
             else throw std::runtime_error("--nesterov expects true or false, got '" + v + "'");
           })
      ->group("Training");
  b.add("--sgd-update", o.sgd_update,
        "SGD's update: one-pass (one loop per float parameter, faster, its own float rounding), "
        "tensor-ops (LibTorch's ops, earlier releases' rounding) or auto (detection and moco "
        "one-pass, else tensor-ops)")
      ->check(CLI::IsMember({"auto", "one-pass", "tensor-ops"}))
      ->group("Training");
  b.add("--lr-schedule", o.lr_schedule, "step (multi-step drops) or cosine")
      ->check(CLI::IsMember({"step", "cosine"}))
      ->group("Training");
  b.custom("--lr-drop-epochs", "Epochs at which the rate drops (comma-separated, e.g. 30,60,90)",
           [&o](const std::string& v) { o.lr_drop_epochs = parse_list(v); })
      ->group("Training");
  b.add("--lr-drop-ratio", o.lr_drop_ratio, "Factor applied at each drop")->group("Training");
  b.add("--warmup-epochs", o.warmup_epochs, "Linear learning-rate warm-up epochs")->group("Training");
  b.add("--warmup-iters", o.warmup_iters,
        "Or Detectron2's warm-up: the rate rises linearly over N iterations from "
        "--warmup-factor times its value")
      ->group("Training");
  b.add("--warmup-factor", o.warmup_factor, "Starting fraction of the --warmup-iters warm-up")
      ->group("Training");
  b.action_flag("--no-augment", "Train without data augmentation", "no_augment",
                [&o] { o.augment = false; })
      ->group("Training");
  b.flag("--augment", o.augment, "(YAML key augment: true/false)", "augment")->group("");
  b.flag("--skip-nonfinite", o.skip_nonfinite,
         "Skip a step whose loss is NaN/inf instead of stopping the run", "skip_nonfinite")
      ->group("Training");
  b.add("--init-checkpoint,--student-checkpoint", o.init_checkpoint,
        "Initial weights of the trained network (mgd or PyTorch checkpoint)")
      ->group("Training");
}

void add_distillation_options(OptionBinder& b, training::TrainOptions& o) {
  o.method = training::Method::kMgd;
  b.add("--teacher-arch", o.teacher_arch, "Teacher architecture (see `mgd models`; torchscript:FILE.pt for a PyTorch model)")->group("Distillation");
  b.add("--teacher-checkpoint", o.teacher_checkpoint,
        "Trained teacher weights (mgd checkpoint, or a PyTorch state_dict / training checkpoint)")
      ->group("Distillation");
  b.custom("--method", "mgd (default), mgd+kd, or kd (logit distillation alone)",
           [&o](const std::string& v) { o.method = training::parse_method(v); })
      ->group("Distillation");
  b.action_flag("--with-kd", "Add KD to MGD (same as --method mgd+kd)", "with_kd",
                [&o] { o.method = training::Method::kMgdKd; })
      ->group("Distillation");
  b.add("--reducer", o.reducer, "Channel reducer: " + joined(reducer_names()))
      ->check(CLI::IsMember(reducer_names()))
      ->group("Distillation");
  b.add("--update-freq", o.update_freq,
        "Re-match every N epochs (the matching always runs before epoch 1); 0: the task's "
        "default (classification 2, detection none: it uses --update-fractions)")
      ->group("Distillation");
  b.custom("--update-epochs", "Re-match before these epochs instead (comma-separated, 0-based)",
           [&o](const std::string& v) { o.update_epochs = parse_list(v); })
      ->group("Distillation");
  b.add("--update-iters", o.update_iters, "Also re-match every N iterations (0: off)")->group("Distillation");
  b.custom("--update-steps", "Also re-match after these global steps (comma-separated step counts)",
           [&o](const std::string& v) { o.update_steps = parse_list(v); })
      ->group("Distillation");
  b.custom("--update-fractions",
           "Also re-match after these fractions of the run's steps (comma-separated, in [0, 1); "
           "detection's default: the reference's 0, 5k, 10k, 15k, 31k, 62k of 90k iterations)",
           [&o](const std::string& v) { o.update_fractions = parse_real_list(v); })
      ->group("Distillation");
  b.add("--tracking-transform", o.tracking_transform,
        "Detection: tracking images with the evaluation transforms (eval) or augmented like "
        "training batches (train, the reference's)")
      ->check(CLI::IsMember({"eval", "train"}))
      ->group("Distillation");
  b.add("--tracking-padding", o.tracking_padding,
        "Detection: leave a batch's zero padding out of the matching cost (exclude) or count it "
        "(include, the reference's)")
      ->check(CLI::IsMember({"exclude", "include"}))
      ->group("Distillation");
  b.add("--tracking-images", o.tracking_images, "Training images per tracking pass")->group("Distillation");
  b.add("--kd-temperature,-T", o.kd_temperature, "KD temperature")->group("Distillation");
  b.add("--kd-weight", o.kd_weight, "Weight of the KD loss")->group("Distillation");
  b.add("--loss-factor", o.loss_factor,
        "Distillation loss divisor: loss += d_loss / batch / loss-factor; 0: the task's default "
        "(classification 1e4, for 224 px inputs; detection 5e7). The first step prints the "
        "scale of each position's loss next to the task loss")
      ->group("Distillation");
  b.custom("--ignore-positions",
           "Feature positions not distilled (comma-separated, 0-based; default: the reference's "
           "for the student, e.g. 0 for MobileNet-V2 and ShuffleNet-V2)",
           [&o](const std::string& v) {
             o.ignore_positions = parse_list(v);
             o.ignore_positions_set = true;
           })
      ->group("Distillation");
  b.add("--shave", o.shave,
        "When t % s != 0: first (the reference: only the first k*s teacher channels) or best "
        "(the solver picks the best k*s)")
      ->check(CLI::IsMember({"first", "best"}))
      ->group("Distillation");
  b.action_flag("--post-relu", "Distill features after the ReLU (default: before)", "post_relu",
                [&o] { o.pre_relu = false; })
      ->group("Distillation");
  b.flag("--pre-relu", o.pre_relu, "(YAML key pre_relu: true/false)", "pre_relu")->group("");
}

void add_detection_options(OptionBinder& b, training::TrainOptions& o) {
  b.custom("--min-sizes",
           "Detection: training shorter sides, one drawn per image (comma-separated; default "
           "640,672,...,800 for COCO, 128 for the synthetic scenes)",
           [&o](const std::string& v) { o.min_sizes = parse_list(v); })
      ->group("Detection");
  b.add("--max-size", o.max_size, "Detection: longer-side cap of the resize")->group("Detection");
  b.add("--test-size", o.test_size,
        "Detection: evaluation shorter side (0: 800 for COCO, 128 for the scenes)")
      ->group("Detection");
  b.add("--size-divisibility", o.size_divisibility,
        "Detection: batches are padded to a multiple of this")
      ->group("Detection");
  b.custom("--anchor-sizes",
           "Detection: base anchor size per FPN level, each times 2^0, 2^(1/3), 2^(2/3) "
           "(default 32,64,128,256,512)",
           [&o](const std::string& v) { o.anchor_sizes = parse_list(v); })
      ->group("Detection");
  b.add("--score-thresh", o.score_thresh, "Detection: inference score threshold")
      ->group("Detection");
  b.add("--nms-thresh", o.nms_thresh, "Detection: IoU threshold of the per-class NMS")
      ->group("Detection");
  b.add("--topk-candidates", o.topk_candidates,
        "Detection: candidates per FPN level before NMS")
      ->group("Detection");
  b.add("--detections-per-image", o.detections_per_image,
        "Detection: detections kept per image (Detectron2 100, torchvision 300)")
      ->group("Detection");
  b.add("--fpn-channels", o.fpn_channels, "Detection: width of the FPN and the heads")
      ->group("Detection");
  b.add("--head-convs", o.head_convs, "Detection: 3x3 convolutions of each head")
      ->group("Detection");
  b.add("--freeze-at", o.freeze_at,
        "Detection: frozen backbone stages (Detectron2's FREEZE_AT: 0 none, 1 the stem, 2 also "
        "res2; -1: 2 from trained weights, 0 from scratch)")
      ->group("Detection");
  b.add("--backbone-norm", o.backbone_norm,
        "Detection: frozen_batch, batch, or auto (frozen_batch from trained weights, batch from "
        "scratch)")
      ->check(CLI::IsMember({"auto", "frozen_batch", "batch"}))
      ->group("Detection");
  b.add("--init-backbone", o.init_backbone,
        "Detection: a classifier's weights (zoo or torchvision ResNet) for the backbone; "
        "linear: the MoCo checkpoint whose encoder is the frozen body")
      ->group("Detection");
  b.action_flag("--no-student-group-norm",
                "Detection distillation: keep the student's own norms in each stage's last block "
                "(the reference trains GroupNorm there)",
                "no_student_group_norm", [&o] { o.student_group_norm = false; })
      ->group("Detection");
  b.flag("--student-group-norm", o.student_group_norm, "(YAML key student_group_norm: true/false)",
         "student_group_norm")
      ->group("");
}

void add_moco_options(OptionBinder& b, training::TrainOptions& o) {
  b.add("--moco-dim", o.moco_dim, "MoCo: output width of the projection head")->group("MoCo");
  b.add("--moco-k", o.moco_k, "MoCo: queue size (negative keys)")->group("MoCo");
  b.add("--moco-m", o.moco_m, "MoCo: momentum of the key encoder")->group("MoCo");
  b.add("--moco-t", o.moco_t, "MoCo: InfoNCE temperature")->group("MoCo");
  b.custom("--moco-mlp", "MoCo: v2's 2-layer MLP head, true or false (false: v1's linear head)",
           [&o](const std::string& v) {
             if (v == "true" || v == "1") o.moco_mlp = true;
             else if (v == "false" || v == "0") o.moco_mlp = false;
             else throw std::runtime_error("--moco-mlp expects true or false, got '" + v + "'");
           })
      ->group("MoCo");
  b.add("--moco-bn-splits", o.moco_bn_splits,
        "MoCo: BatchNorm groups per process (MoCo's per-GPU BatchNorm; the keys are shuffled "
        "across them)")
      ->group("MoCo");
  b.add("--knn-k", o.knn_k, "MoCo: neighbours of the kNN monitor")->group("MoCo");
  b.add("--knn-t", o.knn_t, "MoCo: temperature of the kNN monitor's vote")->group("MoCo");
}

void add_moco_distillation_options(OptionBinder& b, training::TrainOptions& o) {
  b.add("--margins", o.margins,
        "MoCo + MGD: teacher (margins from the loaded teacher) or reference (the reference's "
        "constant -sqrt(2/pi), computed before its teacher was loaded)")
      ->check(CLI::IsMember({"teacher", "reference"}))
      ->group("MoCo");
}

void add_run_options(OptionBinder& b, training::TrainOptions& o) {
  b.add("--task", o.task, "classification, detection, moco or linear")
      ->check(CLI::IsMember({"classification", "detection", "moco", "linear"}))
      ->group("Run");
  b.add("-a,--arch", o.arch, "Architecture to train or evaluate (see `mgd models`; torchscript:FILE.pt for a PyTorch model)")->group("Run");
  b.add("--seed", o.seed, "Random seed (initialization, shuffling, augmentation)")->group("Run");
  b.add("--device", o.device, "cpu, cuda or cuda:N")->group("Run");
  b.add("--threads", o.threads, "CPU threads for LibTorch (0: every core)")->group("Run");
  b.add("-o,--output-dir", o.output_dir, "Where checkpoints, metrics and TensorBoard events go")
      ->group("Run");
  b.add("--resume", o.resume, "Continue the run saved in this checkpoint")->group("Run");
  b.flag("--overwrite", o.overwrite,
         "Start a new run in an output directory that holds another run's files, replacing them "
         "(at the new run's first checkpoint)",
         "overwrite")
      ->group("Run");
  b.add("--checkpoint-every", o.checkpoint_every,
        "Also write the checkpoint every N steps, to resume inside an epoch (0: at epoch ends only)")
      ->group("Run");
  b.add("-p,--print-freq", o.print_freq, "Progress line every N batches when not on a terminal")
      ->group("Run");
  b.add("--dist-timeout", o.dist_timeout,
        "Data-parallel (under torchrun, srun, mpirun or `mgd launch`): seconds a rank waits "
        "for the others before failing")
      ->group("Distributed");
  b.add("--bucket-mb", o.bucket_mb, "Data-parallel: gradient all-reduce bucket size (MiB)")
      ->group("Distributed");
}

}  // namespace mgd::cli
