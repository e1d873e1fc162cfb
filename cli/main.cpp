// The `mgd` command line: parses flags (and an optional YAML config) into TrainOptions and
// calls the library's training engine. No hyper-parameter lives here.
#include <CLI/CLI.hpp>
#include <torch/torch.h>

#include <cstdio>
#include <iomanip>
#include <iostream>
#include <sstream>
#include <string>

#include "mgd/data/scenes.h"
#include "mgd/distributed/environment.h"
#include "mgd/distributed/launch.h"
#include "mgd/models/moco.h"
#include "mgd/models/registry.h"
#include "mgd/models/torchscript.h"
#include "mgd/training/interrupt.h"
#include "mgd/reducers/reducer.h"
#include "mgd/serialize/checkpoint.h"
#include "mgd/serialize/state_dict.h"
#include "mgd/tasks/linear.h"
#include "mgd/training/checkpoint.h"
#include "mgd/training/engine.h"
#include "mgd/util/messages.h"
#include "mgd/version.h"
#include "options_binding.h"

namespace {

using mgd::training::TrainOptions;

constexpr const char* kDescription =
    "mgd: Matching Guided Distillation (Yue, Deng, Zhou, ECCV 2020) on LibTorch -- not the\n"
    "Masked Generative Distillation that some detection toolkits also call MGD.\n"
    "\n"
    "Typical use:\n"
    "  mgd train   --arch resnet56 --data fashion-mnist --epochs 10 -o runs/teacher\n"
    "  mgd distill --arch resnet20 --teacher-arch resnet56 \\\n"
    "              --teacher-checkpoint runs/teacher/best.pth -o runs/mgd\n"
    "  mgd eval    --arch resnet20 --checkpoint runs/mgd/best.pth\n"
    "  mgd train   --task detection --arch retinanet_resnet18_fpn -o runs/det\n"
    "              (COCO-format data via --data-root; default: synthetic scenes, see\n"
    "              `mgd data scenes`)\n"
    "  mgd distill --task detection --arch retinanet_resnet18_fpn \\\n"
    "              --teacher-arch retinanet_resnet50_fpn --teacher-checkpoint T.pth -o runs/d\n"
    "  mgd train   --task moco --arch resnet18 --moco-k 4096 -o runs/moco   (MoCo v2; kNN\n"
    "              monitor; MoCo v2's recipe by default)\n"
    "  mgd distill --task moco --arch resnet18 --teacher-arch resnet50 \\\n"
    "              --teacher-checkpoint moco_v2_200ep.pth.tar -o runs/moco-mgd\n"
    "  mgd train   --task linear --arch resnet18 --init-backbone runs/moco/best.pth -o runs/lin\n"
    "              (the linear protocol: frozen body, MoCo's settings by default)\n"
    "  mgd launch  --nproc-per-node 2 -- train --arch resnet20 ...   (data-parallel; torchrun,\n"
    "              srun and mpirun work too: batch sizes are per process)\n"
    "Every command takes --config FILE.yaml (keys are the long flag names); flags given on\n"
    "the command line override the file. See recipes/ for the reference settings.";

// The value of --config in argv, if any (read before the flags, which override it).
std::string find_config(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--config" && i + 1 < argc) return argv[i + 1];
    if (a.rfind("--config=", 0) == 0) return a.substr(9);
  }
  return "";
}

void print_eval(const std::string& who, const mgd::training::EvalResult& r) {
  if (r.metrics.empty() || r.metrics.front().first != "acc1") {  // not a classifier
    std::cout << std::fixed << std::setprecision(2) << who << ":";
    for (const auto& [name, value] : r.metrics) std::cout << " " << name << " " << value;
    std::cout << " on " << r.images << " images\n";
    return;
  }
  std::cout << std::fixed << std::setprecision(2) << who << ": top-1 " << r.top1 << "% (error "
            << 100 - r.top1 << "%), top-5 " << r.top5 << "% (error " << 100 - r.top5
            << "%), loss " << std::setprecision(4) << r.loss << " on " << r.images
            << " test images\n";
}

void print_summary(const mgd::training::RunSummary& s) {
  std::cout << std::fixed << std::setprecision(2);
  if (s.best_metric != "acc1") {  // not a classifier
    if (s.teacher_top1 >= 0) std::cout << "teacher " << s.best_metric << ": " << s.teacher_top1 << "\n";
    std::cout << "final:";
    for (const auto& [name, value] : s.final_eval.metrics) std::cout << " " << name << " " << value;
    std::cout << "  best " << s.best_metric << ": " << s.best_top1 << "  (" << s.epochs_done
              << " epochs, " << std::setprecision(1) << s.train_seconds << " s)\n"
              << "checkpoints: " << s.checkpoint << ", " << s.best_checkpoint << "\n"
              << "metrics: " << s.output_dir << "/metrics.jsonl (TensorBoard: tensorboard --logdir "
              << s.output_dir << ")\n";
    return;
  }
  if (s.teacher_top1 >= 0) std::cout << "teacher top-1: " << s.teacher_top1 << "%\n";
  std::cout << "final top-1: " << s.final_eval.top1 << "%  top-5: " << s.final_eval.top5
            << "%  best top-1: " << s.best_top1 << "%  (" << s.epochs_done << " epochs, "
            << std::setprecision(1) << s.train_seconds << " s)\n"
            << "checkpoints: " << s.checkpoint << ", " << s.best_checkpoint << "\n"
            << "metrics: " << s.output_dir << "/metrics.jsonl (TensorBoard: tensorboard --logdir "
            << s.output_dir << ")\n";
}

}  // namespace

// The task named by --task in argv, else by the config file's `task` key, else "".
static std::string find_task(int argc, char** argv, const std::string& config_path) {
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--task" && i + 1 < argc) return argv[i + 1];
    if (a.rfind("--task=", 0) == 0) return a.substr(7);
  }
  if (config_path.empty()) return "";
  try {
    const YAML::Node root = YAML::LoadFile(config_path);
    if (root.IsMap() && root["task"] && root["task"].IsScalar())
      return root["task"].as<std::string>();
  } catch (const YAML::Exception&) {
    // apply_yaml() reports a bad file
  }
  return "";
}

int main(int argc, char** argv) {
  mgd::install_warning_handler();  // "mgd: warning: ...", no logging banner
  CLI::App app(kDescription, "mgd");
  app.require_subcommand(1);
  // A callback: the text asks LibTorch about CUDA, which only --version should do.
  app.set_version_flag("--version", [] { return mgd::version_text(); });

  TrainOptions train_opts, distill_opts, eval_opts;
  std::string config;

  auto* train = app.add_subcommand("train", "Train a network on its labels (e.g. the teacher)");
  mgd::cli::OptionBinder tb(train);
  train->add_option("--config", config, "YAML file of options (flags override it)");
  mgd::cli::add_run_options(tb, train_opts);
  mgd::cli::add_data_options(tb, train_opts);
  mgd::cli::add_training_options(tb, train_opts);
  mgd::cli::add_detection_options(tb, train_opts);
  mgd::cli::add_moco_options(tb, train_opts);
  tb.flag("-e,--evaluate", train_opts.evaluate_only,
          "Only evaluate the --init-checkpoint or --resume weights", "evaluate");

  auto* distill = app.add_subcommand(
      "distill", "Train a student with MGD (or MGD+KD, or KD) from a trained teacher");
  mgd::cli::OptionBinder db(distill);
  distill->add_option("--config", config, "YAML file of options (flags override it)");
  mgd::cli::add_run_options(db, distill_opts);
  mgd::cli::add_data_options(db, distill_opts);
  mgd::cli::add_training_options(db, distill_opts);
  mgd::cli::add_distillation_options(db, distill_opts);
  mgd::cli::add_detection_options(db, distill_opts);
  mgd::cli::add_moco_options(db, distill_opts);
  mgd::cli::add_moco_distillation_options(db, distill_opts);
  db.flag("-e,--evaluate", distill_opts.evaluate_only,
          "Only evaluate the teacher and the student's weights", "evaluate");

  auto* eval = app.add_subcommand("eval", "Evaluate a checkpoint on the test split");
  mgd::cli::OptionBinder eb(eval);
  eval->add_option("--config", config, "YAML file of options (flags override it)");
  eb.add("-a,--arch", eval_opts.arch, "Architecture of the checkpoint (see `mgd models`)");
  eb.add("--checkpoint", eval_opts.init_checkpoint, "Weights to evaluate (mgd or PyTorch)")->required();
  eb.add("--device", eval_opts.device, "cpu, cuda or cuda:N");
  eb.add("--threads", eval_opts.threads, "CPU threads (0: every core)");
  eb.add("--task", eval_opts.task,
         "classification, detection, moco (kNN monitor) or linear (a linear-protocol run)")
      ->check(CLI::IsMember({"classification", "detection", "moco", "linear"}));
  eb.add("-o,--output-dir", eval_opts.output_dir,
         "Detection: where coco_instances_results.json is written");
  mgd::cli::add_data_options(eb, eval_opts);
  mgd::cli::add_detection_options(eb, eval_opts);
  mgd::cli::add_moco_options(eb, eval_opts);
  eb.add("--train-subset", eval_opts.train_subset,
         "MoCo: the kNN monitor's bank from this many training images (0: all)");
  eb.add("--seed", eval_opts.seed,
         "MoCo: the run's seed (it chose the --train-subset images that form the kNN bank)");
  eb.add("--test-subset", eval_opts.test_subset,
         "Evaluate on a fixed random subset of this many test images (0: all)");

  auto* models = app.add_subcommand("models", "List the model zoo and the reducers");

  std::string export_arch, export_in, export_out;
  int64_t export_classes = 10, export_channels = 3;
  auto* exporter = app.add_subcommand(
      "export", "Write a checkpoint's weights as a plain PyTorch state_dict (torch.load-able)");
  exporter->add_option("-a,--arch", export_arch, "Architecture of the checkpoint")->required();
  exporter->add_option("--checkpoint", export_in, "mgd or PyTorch checkpoint to read")->required();
  exporter->add_option("-o,--output", export_out, "state_dict file to write")->required();
  exporter->add_option("--classes", export_classes, "Classes of the network")->capture_default_str();
  std::string export_task = "classification";
  exporter
      ->add_option("--task", export_task,
                   "classification (the whole network) or moco (a MoCo checkpoint's query "
                   "encoder body: torchvision names, no fc)")
      ->check(CLI::IsMember({"classification", "moco"}))
      ->capture_default_str();
  exporter->add_option("--in-channels", export_channels, "Input channels of the network")
      ->capture_default_str();
  bool export_head = false;
  int64_t export_dim = 128;
  exporter->add_flag("--head", export_head,
                     "With --task moco: the whole query encoder, its projection head included "
                     "(MoCo's encoder_q names without the prefix): a teacher for `mgd distill "
                     "--task moco`");
  exporter->add_option("--moco-dim", export_dim, "With --head: output width of the head")
      ->capture_default_str();

  mgd::distributed::LaunchOptions launch_opts;
  std::vector<std::string> launch_command;
  int64_t nproc = 1;
  int master_port = 0;
  std::string master_addr = "127.0.0.1";
  auto* launch = app.add_subcommand(
      "launch", "Run a data-parallel job on this machine (like torchrun --nproc-per-node)");
  launch->add_option("--nproc-per-node", nproc, "Processes to start")->required();
  launch->add_option("--master-port", master_port, "Rendezvous port (0: a free one)")
      ->capture_default_str();
  launch->add_option("--master-addr", master_addr, "Rendezvous address")->capture_default_str();
  launch->add_option("command", launch_command,
                     "After --: the command each process runs (`train ...`, `distill ...` run "
                     "this mgd)")
      ->required();
  launch->positionals_at_end();

  // `mgd data scenes`: the synthetic detection set (mgd/data/scenes.h).
  mgd::data::ScenesOptions scenes_opts("");
  std::string scenes_dir;
  int64_t scenes_train = scenes_opts.train(), scenes_val = scenes_opts.val();
  int64_t scenes_size = scenes_opts.size();
  uint64_t scenes_seed = scenes_opts.seed();
  auto* data_cmd = app.add_subcommand("data", "Write data sets");
  data_cmd->require_subcommand(1);
  auto* scenes = data_cmd->add_subcommand(
      "scenes",
      "Write the synthetic detection set (Fashion-MNIST objects on canvases, COCO layout)");
  scenes->add_option("-o,--output", scenes_dir, "Directory to write")->required();
  scenes->add_option("--train", scenes_train, "Training images")->capture_default_str();
  scenes->add_option("--val", scenes_val, "Validation images")->capture_default_str();
  scenes->add_option("--size", scenes_size, "Canvas side in pixels")->capture_default_str();
  scenes->add_option("--seed", scenes_seed, "Random seed")->capture_default_str();

  // Config first, flags second: CLI11 only writes options given on the command line.
  const std::string config_path = find_config(argc, argv);
  try {
    // A task's own defaults (MoCo v2's recipe for --task moco) before the config and flags.
    const std::string task = find_task(argc, argv, config_path);
    if (!task.empty()) {
      for (TrainOptions* o : {&train_opts, &distill_opts, &eval_opts}) {
        mgd::training::apply_task_defaults(*o, task);
      }
    }
    if (!config_path.empty()) {
      std::string cmd = argc > 1 ? argv[1] : "";
      if (cmd == "train") tb.apply_yaml(config_path);
      if (cmd == "distill") db.apply_yaml(config_path);
      if (cmd == "eval") eb.apply_yaml(config_path);
    }
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return code == 0 ? 0 : 2;
  } catch (const std::exception& e) {
    std::cerr << "mgd: error: " << e.what() << "\n";
    return 2;
  }

  try {
    if (launch->parsed()) {
      // `launch -- train ...` runs this very binary.
      const auto& first = launch_command.front();
      if (first == "train" || first == "distill" || first == "eval") {
        launch_command.insert(launch_command.begin(), "/proc/self/exe");
      }
      launch_opts.nproc_per_node(nproc).master_port(master_port).master_addr(master_addr);
      return mgd::distributed::launch(launch_opts, launch_command);
    }
    if (exporter->parsed()) {
      if (export_task == "moco" && export_head) {
        mgd::models::MoCoEncoder encoder(mgd::models::MoCoEncoderOptions(export_arch)
                                             .in_channels(export_channels)
                                             .dim(export_dim));
        mgd::models::load_moco_encoder(export_in, *encoder);
        mgd::serialize::save_state_dict(export_out, *encoder);
        std::cout << "wrote " << export_out << " (" << export_arch
                  << " MoCo query encoder state_dict, head included)\n";
        return 0;
      }
      TORCH_CHECK(!export_head, "--head is for --task moco only");
      // A scripted model knows its classes and channels.
      std::string script;
      auto net = mgd::models::is_torchscript_name(export_arch, &script)
                     ? mgd::FeatureNet(mgd::models::TorchScriptNet(script).ptr())
                     : mgd::models::make_model(export_arch, mgd::models::ModelOptions()
                                                                .classes(export_classes)
                                                                .in_channels(export_channels));
      if (export_task == "moco") {
        // MoCo's encoder without its projection head, as main_lincls.py loads it into a
        // torchvision ResNet (strict=False: fc is the classifier still to train).
        mgd::tasks::load_backbone(export_in, *net);
        auto state = mgd::serialize::state_dict_value(*net);
        state.to_dict().erase("fc.weight");
        state.to_dict().erase("fc.bias");
        mgd::serialize::save_file(export_out, state);
        std::cout << "wrote " << export_out << " (" << export_arch
                  << " body state_dict of the MoCo query encoder, without fc)\n";
        return 0;
      }
      mgd::training::load_weights(export_in, *net, export_arch);
      mgd::serialize::save_state_dict(export_out, *net);
      std::cout << "wrote " << export_out << " (" << export_arch << " state_dict)\n";
      return 0;
    }
    if (models->parsed()) {
      std::cout << "models:";
      for (const auto& n : mgd::models::model_names()) std::cout << " " << n;
      std::cout << "\n        torchscript:FILE.pt (a PyTorch model scripted by tools/mgd_script.py)";
      std::cout << "\nreducers:";
      for (const auto& n : mgd::reducer_names()) std::cout << " " << n;
      std::cout << "\n";
      return 0;
    }
    if (scenes->parsed()) {
      const auto s = mgd::data::write_scenes(scenes_opts.output(scenes_dir)
                                                 .train(scenes_train)
                                                 .val(scenes_val)
                                                 .size(scenes_size)
                                                 .seed(scenes_seed));
      std::cout << "wrote " << s.train_images << " train images (" << s.train_objects
                << " objects) and " << s.val_images << " val images (" << s.val_objects
                << " objects): " << s.train_annotations << ", " << s.val_annotations << "\n";
      return 0;
    }
    const bool main_rank = mgd::distributed::detect_world().rank == 0;
    if (eval->parsed()) {
      const auto r = mgd::training::run_evaluation(eval_opts);
      if (main_rank) print_eval(eval_opts.arch, r);
      return 0;
    }
    TrainOptions& o = train->parsed() ? train_opts : distill_opts;
    if (o.evaluate_only) {
      if (distill->parsed()) {
        TrainOptions t = o;
        t.arch = o.teacher_arch;
        t.init_checkpoint = o.teacher_checkpoint;
        t.resume.clear();
        const auto r = mgd::training::run_evaluation(t);
        if (main_rank) print_eval("teacher " + t.arch, r);
      }
      const auto r = mgd::training::run_evaluation(o);
      if (main_rank) print_eval(o.arch, r);
      return 0;
    }
    // The first SIGINT/SIGTERM stops at the next step with a checkpoint; a second one kills.
    mgd::training::install_stop_handlers();
    const auto summary = mgd::training::run_training(o);
    if (main_rank) print_summary(summary);
    return 0;
  } catch (const mgd::training::Interrupted& e) {
    std::cerr << "mgd: " << e.what() << "\n";
    return e.exit_code();
  } catch (const c10::Error& e) {
    std::cerr << "mgd: error: " << e.what_without_backtrace() << "\n";
  } catch (const std::exception& e) {
    std::cerr << "mgd: error: " << e.what() << "\n";
  }
  return 1;
}
