#include "mgd/logging/progress.h"

#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <sstream>
#include <string>

namespace {

using mgd::logging::epoch_summary;
using mgd::logging::format_duration;
using mgd::logging::format_value;
using mgd::logging::Progress;
using mgd::logging::ProgressOptions;
using mgd::logging::ProgressStyle;

// Options whose clock reads *now, so that rates and ETAs are exact.
ProgressOptions fixed_clock(const std::shared_ptr<double>& now) {
  return ProgressOptions().clock([now] { return *now; });
}

bool only_printable_lines(const std::string& s) {
  for (char c : s) {
    if (c != '\n' && (static_cast<unsigned char>(c) < 0x20 || c == 0x7f)) return false;
  }
  return true;
}

TEST(Progress, PlainLinesEveryPrintFreq) {
  auto now = std::make_shared<double>(100.0);
  std::ostringstream out;
  Progress p(out, fixed_clock(now).print_freq(2));
  EXPECT_FALSE(p.bar());  // a stream is not a terminal
  p.start(3, 5);
  for (int i = 1; i <= 5; ++i) {
    *now += 0.5;
    p.update(i, 10, {{"loss", 1.0 / i}, {"acc1", 87.53}, {"arch", "r18"}});
  }
  EXPECT_DOUBLE_EQ(p.finish(), 2.5);
  EXPECT_EQ(out.str(),
            "epoch 3 train [2/5]  20.0 img/s  eta 0:00:02  loss 0.5  acc1 87.53  arch r18\n"
            "epoch 3 train [4/5]  20.0 img/s  eta 0:00:01  loss 0.25  acc1 87.53  arch r18\n"
            "epoch 3 train [5/5]  20.0 img/s  eta 0:00:00  loss 0.2  acc1 87.53  arch r18\n");
  EXPECT_TRUE(only_printable_lines(out.str()));
}

TEST(Progress, PlainLinesPadTheCountAndShowUnknownTotals) {
  auto now = std::make_shared<double>(0.0);
  std::ostringstream out;
  Progress p(out, fixed_clock(now).print_freq(5));
  p.start(0, 120, "eval");
  for (int i = 1; i <= 5; ++i) {
    *now += 0.25;
    p.update(i, 64);
  }
  p.finish();
  // Unknown length: no ETA; finish() shows the last batch that no line showed.
  p.start(1, 0);
  for (int i = 1; i <= 7; ++i) {
    *now += 1.0;
    p.update(i, 2, {{"loss", 1234567.0}});
  }
  p.finish();
  EXPECT_EQ(out.str(),
            "epoch 0 eval [  5/120]  256.0 img/s  eta 0:00:29\n"
            "epoch 1 train [5]  2.0 img/s  loss 1234567\n"
            "epoch 1 train [7]  2.0 img/s  loss 1234567\n");
}

TEST(Progress, BarRedrawsInPlaceAndIsThrottled) {
  auto now = std::make_shared<double>(0.0);
  std::ostringstream out;
  Progress p(out, fixed_clock(now).style(ProgressStyle::kBar).bar_width(10).redraw_secs(0.1));
  EXPECT_TRUE(p.bar());
  p.start(1, 200);
  for (int i = 1; i <= 200; ++i) {
    *now += 0.005;  // 1 s in all: about 10 redraws, not 200
    p.update(i, 1, {{"loss", 0.5}});
  }
  p.finish();
  const std::string s = out.str();
  const auto draws = std::count(s.begin(), s.end(), '\r');
  EXPECT_GE(draws, 9);
  EXPECT_LE(draws, 12);
  EXPECT_EQ(std::count(s.begin(), s.end(), '\n'), 1);
  EXPECT_EQ(s.back(), '\n');
  // The last draw, complete.
  EXPECT_NE(s.find("\repoch 1 train 100% [==========] 200/200  200.0 img/s  eta 0:00:00  "
                   "loss 0.5\x1b[K\n"),
            std::string::npos)
      << s;
}

TEST(Progress, BarShape) {
  auto now = std::make_shared<double>(0.0);
  std::ostringstream out;
  Progress p(out, fixed_clock(now).style(ProgressStyle::kBar).bar_width(10));
  p.start(2, 10);
  *now += 5.0;
  p.update(5, 50);
  EXPECT_EQ(out.str(), "\repoch 2 train  50% [====>     ] 5/10  10.0 img/s  eta 0:00:05\x1b[K");
}

TEST(Progress, DestructorEndsAnOpenBarLine) {
  std::ostringstream out;
  {
    Progress p(out, ProgressOptions().style(ProgressStyle::kBar));
    p.start(0, 10);
    p.update(1, 1);
  }
  EXPECT_EQ(out.str().back(), '\n');
}

TEST(Progress, RejectsMisuse) {
  std::ostringstream out;
  Progress p(out);
  EXPECT_THROW(p.update(1, 1), c10::Error);  // before start()
  p.start(0, 4);
  EXPECT_THROW(p.update(0, 1), c10::Error);
  EXPECT_THROW(p.update(5, 1), c10::Error);
  EXPECT_THROW(p.update(1, -1), c10::Error);
  EXPECT_THROW(Progress(out, ProgressOptions().print_freq(0)), c10::Error);
  EXPECT_THROW(p.start(0, -1), c10::Error);
}

TEST(Progress, Formatting) {
  EXPECT_EQ(format_duration(0), "0:00:00");
  EXPECT_EQ(format_duration(59.6), "0:01:00");
  EXPECT_EQ(format_duration(3661), "1:01:01");
  EXPECT_EQ(format_duration(100000), "27:46:40");
  EXPECT_EQ(format_duration(-1), "?");
  EXPECT_EQ(format_duration(NAN), "?");
  EXPECT_EQ(format_value(0.41234), "0.4123");
  EXPECT_EQ(format_value(87.5), "87.5");
  EXPECT_EQ(format_value(12345.6), "12346");
  EXPECT_EQ(format_value(0.000123456), "0.0001235");
  EXPECT_EQ(format_value(1e20), "1e+20");
  EXPECT_EQ(format_value(NAN), "nan");
  EXPECT_EQ(format_value(-INFINITY), "-inf");
  EXPECT_EQ(format_value(5), "5");
  EXPECT_EQ(format_value("sgd"), "sgd");
  EXPECT_EQ(epoch_summary(3, 105.2, {{"loss", 0.4123}, {"val_acc1", 85.1f}}),
            "epoch 3 done in 0:01:45  loss 0.4123  val_acc1 85.1");
}

}  // namespace
