#include "mgd/logging/metrics_log.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "logging/logging_testing.h"

namespace {

using mgd::logging::json_string;
using mgd::logging::json_value;
using mgd::logging::metrics_json_line;
using mgd::logging::MetricsLog;
using mgd::logging::MetricValue;
using namespace mgd::logging::testing;

TEST(Json, StringEscapes) {
  EXPECT_EQ(json_string(""), "\"\"");
  EXPECT_EQ(json_string("plain text / 100%"), "\"plain text / 100%\"");
  EXPECT_EQ(json_string("a\"b\\c"), R"("a\"b\\c")");
  EXPECT_EQ(json_string("\n\r\t\b\f"), R"("\n\r\t\b\f")");
  EXPECT_EQ(json_string(std::string("\x01\x1f\x7f", 3)), "\"\\u0001\\u001f\x7f\"");
  EXPECT_EQ(json_string(std::string("nul\0here", 8)), R"("nul\u0000here")");
}

TEST(Json, Utf8IsKeptAndInvalidBytesReplaced) {
  // Valid UTF-8 of 2, 3 and 4 bytes passes through.
  EXPECT_EQ(json_string("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"),
            "\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"");
  EXPECT_EQ(json_string("\xff"), R"("\ufffd")");                                // never valid
  EXPECT_EQ(json_string("\xc0\xaf"), R"("\ufffd\ufffd")");                      // overlong '/'
  EXPECT_EQ(json_string("\xed\xa0\x80"), R"("\ufffd\ufffd\ufffd")");            // a surrogate
  EXPECT_EQ(json_string("\xe2\x82"), R"("\ufffd\ufffd")");                      // truncated
  EXPECT_EQ(json_string("\xf4\x90\x80\x80"), R"("\ufffd\ufffd\ufffd\ufffd")");  // > U+10FFFF
  EXPECT_EQ(json_string("a\x80z"), R"("a\ufffdz")");  // stray continuation
}

TEST(Json, Numbers) {
  EXPECT_EQ(json_value(0.1), "0.1");
  EXPECT_EQ(json_value(0.1f), "0.1");  // float precision, not 0.10000000149011612
  EXPECT_EQ(json_value(3.0), "3.0");
  EXPECT_EQ(json_value(-2.5e-5), "-2.5e-05");
  EXPECT_EQ(json_value(1e300), "1e+300");
  EXPECT_EQ(json_value(0.0), "0.0");
  EXPECT_EQ(json_value(42), "42");
  EXPECT_EQ(json_value(-7L), "-7");
  EXPECT_EQ(json_value(size_t{123}), "123");
  EXPECT_EQ(json_value(std::numeric_limits<int64_t>::max()), "9223372036854775807");
  EXPECT_EQ(json_value(true), "true");
  EXPECT_EQ(json_value(false), "false");
  EXPECT_EQ(json_value("resnet18"), "\"resnet18\"");  // a string, not a bool
  EXPECT_EQ(json_value(std::string("a\"b")), R"("a\"b")");
}

TEST(Json, NonFiniteIsNull) {
  EXPECT_EQ(json_value(std::nan("")), "null");
  EXPECT_EQ(json_value(std::numeric_limits<double>::infinity()), "null");
  EXPECT_EQ(json_value(-std::numeric_limits<double>::infinity()), "null");
  EXPECT_EQ(json_value(std::numeric_limits<float>::quiet_NaN()), "null");
  EXPECT_EQ(json_value(torch::tensor(NAN)), "null");
}

TEST(Json, ShortestFormRoundTrips) {
  std::mt19937_64 gen(3);
  std::uniform_real_distribution<double> mantissa(-1, 1);
  std::uniform_int_distribution<int> exponent(-300, 300);
  for (int i = 0; i < 2000; ++i) {
    const double x = std::ldexp(mantissa(gen), exponent(gen));
    const std::string s = json_value(x);
    EXPECT_EQ(std::stod(s), x) << s;
    const float f = static_cast<float>(mantissa(gen));
    EXPECT_EQ(std::stof(json_value(f)), f);
  }
}

TEST(Json, TensorValues) {
  EXPECT_EQ(json_value(torch::tensor(0.1f)), "0.1");
  EXPECT_EQ(json_value(torch::tensor(0.1, torch::kDouble)), "0.1");
  EXPECT_EQ(json_value(torch::tensor(int64_t{7})), "7");
  EXPECT_EQ(json_value(torch::tensor(true)), "true");
  EXPECT_EQ(json_value(torch::ones({1, 1}) * 2), "2.0");
  EXPECT_THROW(MetricValue(torch::ones({2})), c10::Error);
  EXPECT_THROW(MetricValue(torch::Tensor()), c10::Error);
}

TEST(Json, Line) {
  EXPECT_EQ(metrics_json_line("train", 1, 100, 1718000000.125,
                              {{"loss", 0.5}, {"arch", "resnet18"}, {"nan", NAN}}),
            R"({"kind": "train", "epoch": 1, "step": 100, "time": 1718000000.125, )"
            R"("loss": 0.5, "arch": "resnet18", "nan": null})");
  EXPECT_EQ(metrics_json_line("eval", 0, 0, 1.0, {}),
            R"({"kind": "eval", "epoch": 0, "step": 0, "time": 1.0})");
  EXPECT_THROW(metrics_json_line("train", 0, 0, 0, {{"epoch", 1}}), c10::Error);
  EXPECT_THROW(metrics_json_line("train", 0, 0, 0, {{"time", 1}}), c10::Error);
  EXPECT_THROW(metrics_json_line("train", 0, 0, 0, {{"a", 1}, {"a", 2}}), c10::Error);
  EXPECT_THROW(metrics_json_line("train", 0, 0, 0, {{"", 1}}), c10::Error);
}

TEST(MetricsLog, LinesParseAsJson) {
  TempDir dir;
  {
    MetricsLog log(dir / "run");
    EXPECT_EQ(log.path(), dir / "run/metrics.jsonl");
    log.write("train", 1, 10, {{"loss", 0.25}, {"acc1", 87.5f}, {"lr", 0.1}});
    log.write("eval", 1, 10, {{"acc1", NAN}, {"top5", INFINITY}, {"ok", true}});
    log.write("matching", 2, 20,
              {{"position", 3},
               {"note", "quote \" backslash \\ newline \n tab \t \x01 caf\xc3\xa9"},
               {"bad utf8", "\xff\xfe"}});
  }
  const auto r = run_oracle("read_jsonl.py", shell_quote(dir / "run/metrics.jsonl"));
  ASSERT_EQ(r.status, 0) << r.out;
  // The time stamps vary: check they are now, then replace them by T.
  const double now =
      std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  const std::string key = "\"time\": ";
  std::vector<std::string> lines;
  for (auto& line : split_lines(r.out)) {
    const size_t at = line.find(key);
    if (at != std::string::npos) {
      const size_t from = at + key.size(), to = line.find(',', from);
      ASSERT_NE(to, std::string::npos) << line;
      EXPECT_NEAR(std::stod(line.substr(from, to - from)), now, 60.0) << line;
      line.replace(from, to - from, "T");
    }
    lines.push_back(line);
  }
  const std::vector<std::string> expected = {
      R"({"kind": "train", "epoch": 1, "step": 10, "time": T, "loss": 0.25, "acc1": 87.5, "lr": 0.1})",
      R"({"kind": "eval", "epoch": 1, "step": 10, "time": T, "acc1": null, "top5": null, "ok": true})",
      R"({"kind": "matching", "epoch": 2, "step": 20, "time": T, "position": 3, )"
      R"("note": "quote \" backslash \\ newline \n tab \t \u0001 caf\u00e9", )"
      R"("bad utf8": "\ufffd\ufffd"})",
      "lines 3",
  };
  EXPECT_EQ(lines, expected);
}

TEST(MetricsLog, EveryLineIsOnDiskWhenWriteReturns) {
  // Nothing is buffered in the process, so a run killed at any point keeps its lines.
  TempDir dir;
  MetricsLog log(dir.path());
  for (int i = 1; i <= 3; ++i) {
    log.write("train", 0, i, {{"loss", 1.0 / i}});
    const std::string text = read_file(log.path());
    EXPECT_EQ(split_lines(text).size(), static_cast<size_t>(i));
    EXPECT_EQ(text.back(), '\n');
  }
}

TEST(MetricsLog, ResumeAppendsAndRepairsAPartialLine) {
  TempDir dir;
  { MetricsLog(dir.path()).write("train", 0, 1, {}); }
  // A crash in the middle of a line.
  {
    std::ofstream out(dir / "metrics.jsonl", std::ios::app);
    out << R"({"kind": "tra)";
  }
  { MetricsLog(dir.path()).write("train", 0, 2, {}); }
  const auto lines = split_lines(read_file(dir / "metrics.jsonl"));
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(lines[0].rfind(R"({"kind": "train", "epoch": 0, "step": 1,)", 0), 0u) << lines[0];
  EXPECT_EQ(lines[1], R"({"kind": "tra)");
  EXPECT_EQ(lines[2].rfind(R"({"kind": "train", "epoch": 0, "step": 2,)", 0), 0u) << lines[2];
}

TEST(MetricsLog, DiskFullIsReportedOnceWithThePath) {
  if (!std::filesystem::exists("/dev/full")) GTEST_SKIP() << "no /dev/full";
  TempDir dir;
  std::filesystem::create_symlink("/dev/full", dir / "metrics.jsonl");
  MetricsLog log(dir.path());
  try {
    log.write("train", 0, 1, {{"loss", 1.0}});
    FAIL() << "no error";
  } catch (const c10::Error& e) {
    const std::string what = e.what_without_backtrace();
    EXPECT_NE(what.find(dir / "metrics.jsonl"), std::string::npos) << what;
    EXPECT_NE(what.find("No space left on device"), std::string::npos) << what;
  }
  EXPECT_TRUE(log.failed());
  EXPECT_NO_THROW(log.write("train", 0, 2, {{"loss", 1.0}}));
}

TEST(MetricsLog, UnwritableDirectoryNamesThePath) {
  try {
    MetricsLog log("/dev/null/run");
    FAIL() << "no error";
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what()).find("/dev/null/run"), std::string::npos) << e.what();
  }
}

}  // namespace
