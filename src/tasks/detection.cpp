#include "mgd/tasks/detection.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <iomanip>
#include <limits>
#include <sstream>

#include "mgd/data/coco.h"
#include "mgd/data/detection.h"
#include "mgd/data/detection_transforms.h"
#include "mgd/data/scenes.h"
#include "mgd/distiller/padding.h"
#include "mgd/distributed/communicator.h"
#include "mgd/evaluation/coco_eval.h"
#include "mgd/models/detection/retinanet.h"
#include "mgd/serialize/state_dict.h"
#include "mgd/training/checkpoint.h"

namespace mgd::tasks {

using training::Evaluation;
using training::Method;
using training::NamedValues;
using training::StepResult;
using training::TaskContext;
using training::TrainOptions;

namespace fs = std::filesystem;

std::string default_scenes_root() {
  if (const char* dir = std::getenv("MGD_DATA_DIR"); dir && *dir) {
    return (fs::path(dir) / "scenes-128").string();
  }
  if (const char* cache = std::getenv("XDG_CACHE_HOME"); cache && *cache) {
    return (fs::path(cache) / "mgd" / "scenes-128").string();
  }
  const char* home = std::getenv("HOME");
  return (fs::path(home && *home ? home : "/tmp") / ".cache" / "mgd" / "scenes-128").string();
}

std::string ensure_default_scenes() {
  const std::string root = default_scenes_root();
  std::error_code ec;
  // write_scenes() writes the JSON files last: both present means a complete set.
  if (fs::exists(fs::path(root) / "annotations" / "instances_train.json", ec) &&
      fs::exists(fs::path(root) / "annotations" / "instances_val.json", ec)) {
    return root;
  }
  std::cerr << "writing the default detection data (synthetic Fashion-MNIST scenes) into '"
            << root << "'\n";
  data::write_scenes(data::ScenesOptions(root));
  return root;
}

namespace {

bool uses_mgd(Method m) { return m == Method::kMgd || m == Method::kMgdKd; }

// Rows of `rows` (n x c, float64, this rank's) from every rank, in rank order.
torch::Tensor gather_rows(const torch::Tensor& rows, distributed::Communicator& comm) {
  if (comm.world_size() == 1) return rows;
  const int64_t world = comm.world_size(), rank = comm.rank(), c = rows.size(1);
  auto counts = torch::zeros({world}, torch::kDouble);
  counts[rank] = static_cast<double>(rows.size(0));
  comm.all_reduce_sum({counts}, "all-reduce of the detection counts");
  const int64_t most = static_cast<int64_t>(counts.max().item<double>());
  auto all = torch::zeros({world, std::max<int64_t>(most, 1), c}, torch::kDouble);
  if (rows.size(0) > 0) all[rank].narrow(0, 0, rows.size(0)).copy_(rows);
  comm.all_reduce_sum({all}, "all-gather of the detections");
  std::vector<torch::Tensor> parts;
  for (int64_t r = 0; r < world; ++r) {
    parts.push_back(all[r].narrow(0, 0, static_cast<int64_t>(counts[r].item<double>())));
  }
  return torch::cat(parts, 0);
}

class DetectionTask : public training::Task {
 public:
  DetectionTask(const TrainOptions& options, const TaskContext& context)
      : o_(options), ctx_(context) {
    TORCH_CHECK(o_.method == Method::kNone || o_.method == Method::kMgd,
                "Detection distils with MGD only (--method mgd), not ",
                training::method_name(o_.method));
    open_data();
    build_models();
  }

  std::string name() const override { return "detection"; }
  torch::nn::Module& network() override { return *student_; }
  Distiller distiller() override { return distiller_; }
  std::vector<torch::Tensor> parameters() override {
    // Frozen stages (freeze_at) are left out: their parameters never change.
    std::vector<torch::Tensor> params;
    for (auto& p : distiller_ ? distiller_->trainable_parameters() : student_->parameters()) {
      if (p.requires_grad()) params.push_back(p);
    }
    return params;
  }
  void train(bool on) override {
    if (distiller_) distiller_->train(on);
    else student_->train(on);
  }

  int64_t start_epoch(int64_t epoch, int64_t first_batch) override {
    if (!loader_) {
      loader_ = std::make_unique<data::DetectionLoader>(
          train_set_,
          shard(/*pad=*/true)
              .batch_size(o_.batch_size)
              .shuffle(true)
              .drop_last(true)
              .workers(o_.workers)
              .seed(o_.seed)
              .max_samples(o_.train_subset),
          o_.size_divisibility);
    }
    const int64_t batches = training::start_epoch_at(*loader_, epoch, first_batch, o_.resume);
    if (first_batch == 0) images_ = 0, loss_sum_ = 0;
    return batches;
  }
  bool next_batch() override { return training::next_batch_of(*loader_, batch_); }
  int64_t batch_index() const override { return batch_.index; }

  StepResult step() override {
    auto images = batch_.images.to(ctx_.device);
    std::vector<detection::Target> targets;
    for (const auto& t : batch_.targets) {
      targets.push_back({t.boxes.to(ctx_.device), t.labels.to(ctx_.device)});
    }
    auto out = student_->forward(images);
    auto losses = student_->losses(out, targets, normalizer_);
    StepResult r;
    r.images = images.size(0);
    r.loss = losses.loss_cls + losses.loss_box_reg;
    r.parts.emplace_back("task_loss", r.loss.item<double>());
    if (distiller_) {
      Features teacher = teacher_->extract_frozen(images, distill_levels_);
      Features student;
      student.pre_relu = out.taps;
      for (size_t i = 0; i < out.taps.size(); ++i) {
        student.post_relu.push_back(static_cast<int64_t>(i) < student_->num_stage_taps()
                                        ? torch::relu(out.taps[i])
                                        : out.taps[i]);
      }
      auto d = distiller_->forward_features(teacher, student);
      training::add_distillation(r, d, 1.0 / static_cast<double>(r.images) / o_.loss_factor);
    }
    r.parts.emplace_back("loss_cls", losses.loss_cls.item<double>());
    r.parts.emplace_back("loss_box_reg", losses.loss_box_reg.item<double>());
    r.parts.emplace_back("foreground", static_cast<double>(losses.num_foreground));
    return r;
  }

  void after_step(const StepResult& r) override {
    images_ += r.images;
    loss_sum_ += r.loss.item<double>() * static_cast<double>(r.images);
  }
  NamedValues epoch_metrics() const override {
    return {{"train_loss", images_ ? loss_sum_ / static_cast<double>(images_) : 0.0}};
  }

  Evaluation evaluate(bool interruptible) override { return evaluate_net(*student_, interruptible); }
  bool has_teacher() const override { return !teacher_.is_empty(); }
  Evaluation evaluate_teacher(bool interruptible) override {
    return evaluate_net(*teacher_, interruptible);
  }
  std::string best_metric() const override { return "AP"; }

  void track(uint64_t seed, bool interruptible,
             const std::function<bool(const c10::Error&, int64_t)>& on_error) override {
    // mgd's default (tasks-spec A3, "better"): training images with the evaluation
    // transforms, a deterministic shuffled subset, each rank its shard, padding left out of
    // the channel statistics. --tracking-transform train --tracking-padding include is the
    // reference's (augmented training batches, padding counted).
    data::DetectionLoader loader(
        tracking_set_,
        shard(/*pad=*/false)
            .batch_size(o_.batch_size)
            .shuffle(true)
            .workers(o_.workers)
            .seed(seed)
            .max_samples(std::min(o_.tracking_images, tracking_set_->size())),
        o_.size_divisibility);
    const bool exclude_padding = o_.tracking_padding == "exclude";
    training::track_batches<data::DetectionBatch>(
        loader, ctx_, interruptible, on_error, [&](const data::DetectionBatch& b) {
          torch::NoGradGuard no_grad;
          auto images = b.images.to(ctx_.device);
          const bool student_training = student_->is_training();
          student_->eval();
          Features teacher = teacher_->extract_frozen(images, distill_levels_),
                   student = student_->extract(images, distill_levels_);
          student_->train(student_training);
          if (exclude_padding) {
            const int64_t h = images.size(2), w = images.size(3);
            teacher = without_padding(teacher, b.image_sizes, h, w);
            student = without_padding(student, b.image_sizes, h, w);
          }
          distiller_->track_features(teacher, student);
        });
  }

  serialize::Value state() const override {
    // The running loss of the epoch, and Detectron2's moving foreground count (it carries
    // over epochs: every checkpoint holds it).
    return serialize::Value::list({serialize::Value(images_), serialize::Value(loss_sum_),
                                   serialize::Value(normalizer_)});
  }
  void load_state(const serialize::Value& state) override {
    TORCH_CHECK(state.is_list() && state.items().size() == 3,
                "the checkpoint's detection state is not a list of 3 numbers");
    const auto& v = state.items();
    images_ = v[0].to_int();
    loss_sum_ = v[1].to_double();
    normalizer_ = v[2].to_double();
  }

  std::string config_text() const override {
    std::ostringstream s;
    s << std::setprecision(17);
    auto list = [](const auto& v) { return training::yaml_list(v); };
    s << "min_sizes: " << list(train_sizes_) << "\n"
      << "max_size: " << o_.max_size << "\n"
      << "test_size: " << test_size_ << "\n"
      << "size_divisibility: " << o_.size_divisibility << "\n"
      << "anchor_sizes: " << list(o_.anchor_sizes) << "\n"
      << "score_thresh: " << o_.score_thresh << "\n"
      << "nms_thresh: " << o_.nms_thresh << "\n"
      << "topk_candidates: " << o_.topk_candidates << "\n"
      << "detections_per_image: " << o_.detections_per_image << "\n"
      << "fpn_channels: " << o_.fpn_channels << "\n"
      << "head_convs: " << o_.head_convs << "\n"
      << "freeze_at: " << o_.freeze_at << "\n"
      << "backbone_norm: " << o_.backbone_norm << "\n"
      << "init_backbone: " << (o_.init_backbone.empty() ? "null" : o_.init_backbone) << "\n";
    if (uses_mgd(o_.method)) {
      s << "tracking_transform: " << o_.tracking_transform << "\n"
        << "tracking_padding: " << o_.tracking_padding << "\n"
        << "student_group_norm: " << (o_.student_group_norm ? "true" : "false") << "\n";
    }
    return s.str();
  }

 private:
  void open_data();
  void build_models();
  detection::RetinaNetOptions retinanet_options(bool student) const;
  Evaluation evaluate_net(detection::RetinaNetImpl& net, bool interruptible);
  data::LoaderOptions shard(bool pad) const { return training::shard_options(ctx_, pad); }

  TrainOptions o_;
  TaskContext ctx_;
  std::string root_;
  bool scenes_ = false;
  std::vector<int64_t> train_sizes_;
  int64_t test_size_ = 0;
  std::shared_ptr<data::CocoDataset> train_set_, val_set_, tracking_set_;
  detection::RetinaNet student_{nullptr}, teacher_{nullptr};
  Distiller distiller_{nullptr};
  /// Whether an FPN level is distilled: if not, the teacher's FPN never runs (nor the
  /// student's in tracking passes).
  bool distill_levels_ = false;
  std::unique_ptr<data::DetectionLoader> loader_;
  data::DetectionBatch batch_;
  int64_t images_ = 0;
  double loss_sum_ = 0;
  double normalizer_ = detection::kInitialLossNormalizer;
};

void DetectionTask::open_data() {
  TORCH_CHECK(o_.data_format == "coco", "The detection task reads COCO-format data (--data coco), "
              "not '", o_.data_format, "'");
  scenes_ = o_.data_root.empty();
  root_ = scenes_ ? ensure_default_scenes() : o_.data_root;
  // The synthetic scenes are 128 px canvases; COCO's sizes otherwise (Detectron2 1x).
  train_sizes_ = !o_.min_sizes.empty() ? o_.min_sizes
                 : scenes_ ? std::vector<int64_t>{128}
                           : std::vector<int64_t>{640, 672, 704, 736, 768, 800};
  test_size_ = o_.test_size > 0 ? o_.test_size : scenes_ ? 128 : 800;
  auto split = [&](const std::string& name, bool filter_empty) {
    return data::coco_split(root_, name).filter_empty(filter_empty).channels(3);
  };
  namespace dt = data::detection;
  const auto eval_transform = dt::eval_transform(test_size_, o_.max_size);
  val_set_ = std::make_shared<data::CocoDataset>(split("val", false), eval_transform);
  if (!o_.evaluate_only) {
    train_set_ = std::make_shared<data::CocoDataset>(
        split("train", true),
        o_.augment ? dt::train_transform(train_sizes_, o_.max_size)
                   : dt::eval_transform(train_sizes_.front(), o_.max_size));
    if (uses_mgd(o_.method)) {
      tracking_set_ = o_.tracking_transform == "train"
                          ? train_set_
                          : std::make_shared<data::CocoDataset>(split("train", true),
                                                                eval_transform);
    }
    const int64_t n = o_.train_subset > 0 ? std::min(o_.train_subset, train_set_->size())
                                          : train_set_->size();
    TORCH_CHECK(o_.batch_size <= n, "Batch size ", o_.batch_size, " is larger than the ", n,
                " training images (with objects) of '", root_, "' (every epoch would be empty)");
  }
}

detection::RetinaNetOptions DetectionTask::retinanet_options(bool student) const {
  auto ro = detection::RetinaNetOptions()
                .num_classes(val_set_->num_classes())
                .in_channels(val_set_->channels())
                .fpn_channels(o_.fpn_channels)
                .head_convs(o_.head_convs);
  ro.postprocess(ro.postprocess()
                     .score_thresh(o_.score_thresh)
                     .nms_thresh(o_.nms_thresh)
                     .topk_candidates(o_.topk_candidates)
                     .detections_per_img(o_.detections_per_image));
  // A backbone from trained weights gets Detectron2's frozen norms and stages; one trained
  // from scratch needs trainable ones. The teacher, frozen and in eval mode, takes BatchNorm
  // (the same computation as FrozenBatchNorm there) so either kind of checkpoint loads.
  const bool pretrained = !o_.init_backbone.empty() || !o_.init_checkpoint.empty();
  if (student) {
    ro.norm(o_.backbone_norm != "auto" ? o_.backbone_norm
            : pretrained              ? "frozen_batch"
                                      : "batch");
    ro.freeze_at(o_.freeze_at >= 0 ? o_.freeze_at : pretrained ? 2 : 0);
  } else {
    ro.norm("batch").freeze_at(0);
  }
  // The scenes' objects are 16-64 px: anchors from 16 px unless given.
  const std::vector<int64_t> anchor_sizes =
      !o_.anchor_sizes.empty() ? o_.anchor_sizes
      : scenes_              ? std::vector<int64_t>{16, 32, 64, 128, 256}
                             : std::vector<int64_t>{};
  if (!anchor_sizes.empty()) {
    auto anchors = ro.anchors();
    std::vector<std::vector<double>> sizes;
    for (int64_t base : anchor_sizes) {
      std::vector<double> level;
      for (double octave : {0.0, 1.0 / 3.0, 2.0 / 3.0}) {
        level.push_back(static_cast<double>(base) * std::pow(2.0, octave));
      }
      sizes.push_back(level);
    }
    anchors.sizes(sizes);
    ro.anchors(anchors);
  }
  // The MGD student (tasks-spec A1): trainable GroupNorm in every stage's last block.
  if (student && uses_mgd(o_.method) && o_.student_group_norm) ro.group_norm_last_block(true);
  return ro;
}

void DetectionTask::build_models() {
  student_ = detection::make_retinanet(o_.arch, retinanet_options(/*student=*/true));
  if (!o_.init_backbone.empty()) {
    try {
      student_->load_backbone_from_classifier(serialize::load_state_dict(o_.init_backbone));
    } catch (const c10::Error& e) {
      TORCH_CHECK(false, "Cannot initialize the backbone from '", o_.init_backbone, "': ",
                  e.what_without_backtrace());
    }
  }
  if (!o_.init_checkpoint.empty()) training::load_weights(o_.init_checkpoint, *student_, o_.arch);
  if (uses_mgd(o_.method)) {
    teacher_ = detection::make_retinanet(o_.teacher_arch, retinanet_options(/*student=*/false));
    training::load_weights(o_.teacher_checkpoint, *teacher_, o_.teacher_arch);
    teacher_->eval();
    for (auto& p : teacher_->parameters()) p.requires_grad_(false);
    // Reference settings (tasks-spec A2-A3): C2-C5 distilled, P3-P7 not; divisors
    // [1, 1, 0.1, 0.1] x 5e7 (given as the loss factor, per image); GroupNorm(32, s) on the
    // student side where s allows it.
    const int64_t stages = student_->num_stage_taps();
    std::vector<int64_t> ignore = o_.ignore_positions;
    if (!o_.ignore_positions_set) {
      ignore.clear();
      for (int64_t i = stages; i < stages + student_->num_levels(); ++i) ignore.push_back(i);
    }
    std::vector<double> divisors(static_cast<size_t>(stages + student_->num_levels()), 1.0);
    for (int64_t i = 2; i < stages; ++i) divisors[static_cast<size_t>(i)] = 0.1;
    bool group = true;
    for (int64_t s : student_->tap_channels()) group = group && s % 32 == 0;
    distiller_ = Distiller(teacher_.ptr(), student_.ptr(),
                           DistillerOptions()
                               .reducer(o_.reducer)
                               .ignore_positions(ignore)
                               .loss_divisors(divisors)
                               .pre_relu(o_.pre_relu)
                               .group_norm(group)
                               .shave(o_.shave == "best" ? ShaveRule::kBest : ShaveRule::kFirst));
    distiller_->to(ctx_.device);
    for (int64_t i : distiller_->guided_positions()) distill_levels_ = distill_levels_ || i >= stages;
  } else {
    student_->to(ctx_.device);
  }
}

Evaluation DetectionTask::evaluate_net(detection::RetinaNetImpl& net, bool interruptible) {
  torch::NoGradGuard no_grad;
  const bool was_training = net.is_training();
  net.eval();
  data::DetectionLoader loader(val_set_,
                               shard(/*pad=*/false)
                                   .batch_size(o_.batch_size)
                                   .shuffle(false)
                                   .workers(o_.workers)
                                   .seed(0)
                                   .max_samples(o_.test_subset),
                               o_.size_divisibility);
  const auto& instances = val_set_->instances();
  // Rows: image id, category id, x, y, w, h, score -- in the file's pixels.
  std::vector<torch::Tensor> rows;
  std::vector<int64_t> evaluated;
  for (auto& batch : loader) {
    if (interruptible && ctx_.stop_requested()) throw training::PassAbandoned{};
    auto out = net.forward(batch.images.to(ctx_.device));
    auto detections = net.detect(out, batch.image_sizes);
    for (size_t b = 0; b < detections.size(); ++b) {
      const auto& d = detections[b];
      evaluated.push_back(batch.image_ids[b]);
      const int64_t n = d.boxes.size(0);
      if (n == 0) continue;
      auto boxes = d.boxes.to(torch::kCPU, torch::kDouble);
      const double sy = static_cast<double>(batch.original_sizes[b][0]) / batch.image_sizes[b][0];
      const double sx = static_cast<double>(batch.original_sizes[b][1]) / batch.image_sizes[b][1];
      auto x0 = boxes.select(1, 0) * sx, y0 = boxes.select(1, 1) * sy;
      auto x1 = boxes.select(1, 2) * sx, y1 = boxes.select(1, 3) * sy;
      auto labels = d.labels.to(torch::kCPU, torch::kLong);
      auto categories = torch::empty({n}, torch::kDouble);
      for (int64_t i = 0; i < n; ++i) {
        categories[i] = static_cast<double>(instances.category_id(labels[i].item<int64_t>()));
      }
      rows.push_back(torch::stack({torch::full({n}, static_cast<double>(batch.image_ids[b]),
                                               torch::kDouble),
                                   categories, x0, y0, x1 - x0, y1 - y0,
                                   d.scores.to(torch::kCPU, torch::kDouble)},
                                  1));
    }
  }
  net.train(was_training);
  auto mine = rows.empty() ? torch::zeros({0, 7}, torch::kDouble) : torch::cat(rows, 0);
  auto all = gather_rows(mine, *ctx_.comm);
  auto ids = gather_rows(
      torch::tensor(std::vector<double>(evaluated.begin(), evaluated.end()), torch::kDouble)
          .reshape({-1, 1}),
      *ctx_.comm);

  std::vector<evaluation::Detection> dets;
  auto a = all.accessor<double, 2>();
  for (int64_t i = 0; i < all.size(0); ++i) {
    dets.push_back({static_cast<int64_t>(a[i][0]), static_cast<int64_t>(a[i][1]),
                    {a[i][2], a[i][3], a[i][4], a[i][5]}, a[i][6]});
  }
  std::vector<int64_t> image_ids;
  for (int64_t i = 0; i < ids.size(0); ++i) image_ids.push_back(static_cast<int64_t>(ids[i][0].item<double>()));
  std::vector<evaluation::GroundTruth> gts;
  for (const auto& ann : instances.annotations) {
    gts.push_back({ann.image_id, ann.category_id, ann.bbox, ann.area, ann.iscrowd});
  }
  std::vector<int64_t> category_ids;
  std::vector<std::string> names;
  for (const auto& c : instances.categories) {
    category_ids.push_back(c.id);
    names.push_back(c.name);
  }
  const auto result = evaluation::evaluate_bbox(gts, dets, image_ids, category_ids);
  if (o_.evaluate_only && ctx_.comm->is_main()) {
    std::cout << evaluation::format_table(result, names);
    const auto path = (fs::path(o_.output_dir) / "coco_instances_results.json").string();
    std::error_code ec;
    fs::create_directories(o_.output_dir, ec);
    evaluation::write_results_json(path, dets);
    std::cout << "detections in COCO's results format: " << path << "\n";
  }
  auto percent = [](double v) { return v < 0 ? v : 100.0 * v; };
  return {{{"AP", percent(result.ap)},
           {"AP50", percent(result.ap50)},
           {"AP75", percent(result.ap75)},
           {"APs", percent(result.ap_small)},
           {"APm", percent(result.ap_medium)},
           {"APl", percent(result.ap_large)},
           {"AR1", percent(result.ar1)},
           {"AR10", percent(result.ar10)},
           {"AR100", percent(result.ar100)}},
          static_cast<int64_t>(image_ids.size())};
}

}  // namespace

std::unique_ptr<training::Task> make_detection_task(const TrainOptions& options,
                                                    const TaskContext& context) {
  return std::make_unique<DetectionTask>(options, context);
}

}  // namespace mgd::tasks
