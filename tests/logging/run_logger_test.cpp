#include "mgd/logging/run_logger.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <string>
#include <vector>

#include "logging/logging_testing.h"

namespace {

using mgd::logging::RunLogger;
using mgd::logging::RunLoggerOptions;
using namespace mgd::logging::testing;

TEST(RunLogger, FansOutToJsonlAndTensorBoard) {
  TempDir dir;
  const std::string run = dir / "run";
  {
    RunLogger log(run);
    log.log("train", 1, 100, {{"loss", 0.5}, {"acc1", 75}, {"optimizer", "sgd"}, {"ok", true}});
    log.log("eval", 1, 100, {{"acc1", 70.25f}});
    log.add_image("matching/cost_0", torch::full({2, 2}, 0.5), 100);
  }
  const auto events = event_files(run);
  ASSERT_EQ(events.size(), 1u);
  const auto tb = run_oracle("read_tfevents.py", shell_quote(events[0]));
  ASSERT_EQ(tb.status, 0) << tb.out;
  // Numbers become "<kind>/<name>" scalars; strings and bools stay in metrics.jsonl only.
  EXPECT_EQ(tb.out,
            "version brain.Event:2\n"
            "scalar train/loss 100 0.5\n"
            "scalar train/acc1 100 75\n"
            "scalar eval/acc1 100 70.25\n"
            "image matching/cost_0 100 2 2 1 L 2x2 80808080\n"
            "records 4\n");
  const auto jsonl = run_oracle("read_jsonl.py", shell_quote(run + "/metrics.jsonl"));
  ASSERT_EQ(jsonl.status, 0) << jsonl.out;
  const auto lines = split_lines(jsonl.out);
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_NE(lines[0].find(R"("loss": 0.5, "acc1": 75, "optimizer": "sgd", "ok": true})"),
            std::string::npos)
      << lines[0];
  EXPECT_NE(lines[1].find(R"("kind": "eval")"), std::string::npos) << lines[1];
}

TEST(RunLogger, WithoutTensorBoard) {
  TempDir dir;
  RunLogger log(dir.path(), RunLoggerOptions().tensorboard(false));
  EXPECT_EQ(log.events(), nullptr);
  log.log("train", 0, 0, {{"loss", 1.0}});
  log.add_image("ignored", torch::zeros({2, 2}), 0);
  log.flush();
  EXPECT_TRUE(event_files(dir.path()).empty());
  EXPECT_EQ(split_lines(read_file(dir / "metrics.jsonl")).size(), 1u);
}

TEST(RunLogger, BadNamesReachNeitherFile) {
  TempDir dir;
  RunLogger log(dir.path());
  EXPECT_THROW(log.log("train", 0, 0, {{"step", 1}}), c10::Error);
  log.flush();
  EXPECT_EQ(read_file(dir / "metrics.jsonl"), "");
  EXPECT_EQ(run_oracle("read_tfevents.py", shell_quote(log.events()->path())).out,
            "version brain.Event:2\nrecords 1\n");
}

}  // namespace
