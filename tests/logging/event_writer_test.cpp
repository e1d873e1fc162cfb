#include "mgd/logging/event_writer.h"

#include <gtest/gtest.h>
#include <sys/resource.h>
#include <torch/torch.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "logging/logging_testing.h"
#include "mgd/logging/crc32c.h"
#include "mgd/logging/image.h"

namespace {

using mgd::logging::EventWriter;
using mgd::logging::EventWriterOptions;
using mgd::logging::RecordWriter;
using namespace mgd::logging::testing;

// What tests/oracle/read_tfevents.py reads back from `path`.
CommandResult read_events(const std::string& path) {
  return run_oracle("read_tfevents.py", shell_quote(path));
}

TEST(EventWriter, FileNameAndVersionRecord) {
  TempDir dir;
  const std::string run = dir / "runs/a";  // parents are created
  std::string path;
  {
    EventWriter w(run);
    path = w.path();
    // The version record is on disk at once, before any flush.
    EXPECT_EQ(read_events(path).out, "version brain.Event:2\nrecords 1\n");
  }
  char host[256] = {};
  gethostname(host, sizeof host - 1);
  const std::string name = std::filesystem::path(path).filename().string();
  // events.out.tfevents.<10 digits>.<host>
  const std::string prefix = "events.out.tfevents.";
  ASSERT_EQ(name.size(), prefix.size() + 11 + std::strlen(host)) << name;
  EXPECT_EQ(name.substr(0, prefix.size()), prefix);
  EXPECT_TRUE(all_digits(name.substr(prefix.size(), 10))) << name;
  EXPECT_EQ(name.substr(prefix.size() + 10), "." + std::string(host));
  EXPECT_EQ(std::filesystem::path(path).parent_path().string(), run);
}

TEST(EventWriter, ScalarsAndImagesReadBack) {
  TempDir dir;
  std::string path;
  // A 3 x 2 x 4 RGB float image and a 2 x 3 gray uint8 image, both small enough for the reader
  // to print every pixel.
  auto rgb = torch::zeros({3, 2, 4});
  rgb[0][0][0] = 1.0;  // red top-left
  rgb[1][1][3] = 1.0;  // green bottom-right
  rgb[2].fill_(0.5);   // blue everywhere at 128
  auto gray = torch::arange(6, torch::kByte).reshape({2, 3}).mul(40);
  {
    EventWriter w(dir.path());
    path = w.path();
    w.add_scalar("train/loss", 0.5, 0);
    w.add_scalar("train/loss", 0.25, 1);
    w.add_scalar("train/acc1", 87.53, 1);
    w.add_scalar("neg/step", -3.0, -7);                // negative varint
    w.add_scalar("big/step", 1e-3, int64_t{1} << 40);  // multi-byte varint
    w.add_scalars({{"eval/acc1", 71.0}, {"eval/loss", 1.125}}, 10);
    w.add_image("images/rgb", rgb, 2);
    w.add_image("images/gray", gray, 3);
    w.add_image("matching/cost_0", mgd::logging::heat_map(torch::rand({16, 64})), 4);
  }  // the destructor flushes
  const auto r = read_events(path);
  ASSERT_EQ(r.status, 0) << r.out;
  // Scalars are float32 on disk: 87.53 reads back as its float.
  char acc[32];
  std::snprintf(acc, sizeof acc, "%.9g", static_cast<double>(87.53f));
  char small[32];
  std::snprintf(small, sizeof small, "%.9g", static_cast<double>(1e-3f));
  const std::vector<std::string> expected = {
      "version brain.Event:2",
      "scalar train/loss 0 0.5",
      "scalar train/loss 1 0.25",
      std::string("scalar train/acc1 1 ") + acc,
      "scalar neg/step -7 -3",
      "scalar big/step 1099511627776 " + std::string(small),
      "scalar eval/acc1 10 71",
      "scalar eval/loss 10 1.125",
      // width height colorspace, then PIL's view: mode, size, pixels.
      "image images/rgb 2 4 2 3 RGB 4x2 ff0080000080000080000080000080000080000080"
      "00ff80",
      "image images/gray 3 3 2 1 L 3x2 00285078a0c8",
  };
  const auto lines = split_lines(r.out);
  ASSERT_EQ(lines.size(), expected.size() + 2) << r.out;
  for (size_t i = 0; i < expected.size(); ++i) EXPECT_EQ(lines[i], expected[i]);
  const std::string heat = "image matching/cost_0 4 256 64 3 RGB 256x64 sum=";
  EXPECT_EQ(lines[expected.size()].substr(0, heat.size()), heat);
  EXPECT_TRUE(all_digits(lines[expected.size()].substr(heat.size()))) << lines[expected.size()];
  EXPECT_EQ(lines.back(), "records 10");
}

TEST(EventWriter, ReaderRejectsCorruption) {
  // The oracle must actually check the CRCs, or the test above proves little.
  TempDir dir;
  std::string path;
  {
    EventWriter w(dir.path());
    path = w.path();
    w.add_scalar("x", 1.0, 1);
  }
  const std::string good = read_file(path);
  ASSERT_EQ(read_events(path).status, 0);
  for (size_t at : {size_t{3}, size_t{10}, good.size() / 2, good.size() - 1}) {
    std::string bad = good;
    bad[at] = static_cast<char>(bad[at] ^ 0x10);
    write_file(path, bad);
    const auto r = read_events(path);
    EXPECT_EQ(r.status, 1) << "flipped byte " << at << ": " << r.out;
    EXPECT_NE(r.out.find("error"), std::string::npos) << r.out;
  }
  write_file(path, good.substr(0, good.size() - 2));  // truncated
  EXPECT_EQ(read_events(path).status, 1);
}

TEST(EventWriter, FlushesInTheBackground) {
  TempDir dir;
  EventWriter w(dir.path(), EventWriterOptions().flush_secs(0.05));
  const auto before = std::filesystem::file_size(w.path());
  w.add_scalar("x", 1.0, 1);
  EXPECT_EQ(std::filesystem::file_size(w.path()), before);  // buffered
  for (int i = 0; i < 100 && std::filesystem::file_size(w.path()) == before; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_GT(std::filesystem::file_size(w.path()), before);
  EXPECT_EQ(read_events(w.path()).out, "version brain.Event:2\nscalar x 1 1\nrecords 2\n");
}

TEST(EventWriter, ExplicitFlush) {
  TempDir dir;
  EventWriter w(dir.path(), EventWriterOptions().flush_secs(3600));
  w.add_scalar("x", 2.0, 5);
  w.flush();
  EXPECT_EQ(read_events(w.path()).out, "version brain.Event:2\nscalar x 5 2\nrecords 2\n");
}

TEST(EventWriter, TwoWritersInOneDirectory) {
  TempDir dir;
  EventWriter a(dir.path()), b(dir.path(), EventWriterOptions().filename_suffix(".student"));
  EventWriter c(dir.path());  // same second, same host: a distinct name
  EXPECT_NE(a.path(), c.path());
  EXPECT_EQ(b.path().substr(b.path().size() - 8), ".student");
  EXPECT_EQ(event_files(dir.path()).size(), 3u);
}

TEST(EventWriter, Movable) {
  TempDir dir;
  EventWriter a(dir.path());
  a.add_scalar("x", 1.0, 1);
  EventWriter b = std::move(a);
  b.add_scalar("x", 2.0, 2);
  EXPECT_THROW(a.add_scalar("x", 3.0, 3), c10::Error);  // NOLINT(bugprone-use-after-move)
  b.flush();
  EXPECT_EQ(read_events(b.path()).out,
            "version brain.Event:2\nscalar x 1 1\nscalar x 2 2\nrecords 3\n");
}

TEST(EventWriter, UnwritableDirectoryNamesThePath) {
  try {
    EventWriter w("/dev/null/runs");
    FAIL() << "no error";
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what()).find("/dev/null/runs"), std::string::npos) << e.what();
  }
}

TEST(EventWriter, BadArguments) {
  TempDir dir;
  EXPECT_THROW(EventWriter(dir.path(), EventWriterOptions().flush_secs(0)), c10::Error);
  EXPECT_THROW(EventWriter(""), c10::Error);
  EventWriter w(dir.path());
  EXPECT_THROW(w.add_scalar("", 1.0, 1), c10::Error);
  EXPECT_THROW(w.add_image("img", torch::zeros({2, 4, 4}), 1), c10::Error);
}

// Caps the size of every file this process writes (RLIMIT_FSIZE), so that writing an event
// file fails like a full disk; restores the limit and SIGXFSZ's disposition on destruction.
class FileSizeLimit {
 public:
  explicit FileSizeLimit(rlim_t bytes) {
    old_handler_ = std::signal(SIGXFSZ, SIG_IGN);  // else the kernel kills the process
    getrlimit(RLIMIT_FSIZE, &old_);
    rlimit cap = old_;
    cap.rlim_cur = bytes;
    setrlimit(RLIMIT_FSIZE, &cap);
  }
  ~FileSizeLimit() {
    setrlimit(RLIMIT_FSIZE, &old_);
    std::signal(SIGXFSZ, old_handler_);
  }

 private:
  rlimit old_{};
  void (*old_handler_)(int) = nullptr;
};

TEST(EventWriter, BackgroundWriteFailureIsThrownOnceWithThePath) {
  TempDir dir;
  EventWriter w(dir.path(), EventWriterOptions().flush_secs(0.02));
  EXPECT_FALSE(w.failed());
  std::string message;
  {
    FileSizeLimit limit(4096);
    for (int i = 0; i < 200; ++i) w.add_scalar("loss", 1.0, i);  // ~5 KB: past the limit
    // The background thread meets the error; the next call on this thread reports it.
    for (int i = 0; i < 200 && !w.failed(); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    ASSERT_TRUE(w.failed());
    try {
      w.add_scalar("loss", 1.0, 200);
      ADD_FAILURE() << "no error";
    } catch (const c10::Error& e) {
      message = e.what_without_backtrace();
    }
    // Once: later events are dropped quietly.
    EXPECT_NO_THROW(w.add_scalar("loss", 1.0, 201));
    EXPECT_NO_THROW(w.flush());
  }
  EXPECT_NE(message.find("'" + w.path() + "'"), std::string::npos) << message;
  EXPECT_NE(message.find("File too large"), std::string::npos) << message;
}

TEST(RecordWriter, DiskFullIsReportedOnceWithThePath) {
  if (!std::filesystem::exists("/dev/full")) GTEST_SKIP() << "no /dev/full";
  RecordWriter w("/dev/full");
  w.write("a record");
  try {
    w.flush();
    FAIL() << "no error";
  } catch (const c10::Error& e) {
    const std::string what = e.what_without_backtrace();
    EXPECT_NE(what.find("'/dev/full'"), std::string::npos) << what;
    EXPECT_NE(what.find("No space left on device"), std::string::npos) << what;
  }
  EXPECT_TRUE(w.failed());
  // Once: later records are dropped without another error.
  w.write("another");
  EXPECT_NO_THROW(w.flush());
  EXPECT_EQ(w.buffered(), 0u);
}

TEST(RecordWriter, Framing) {
  const std::string data = "hello";
  const std::string r = mgd::logging::frame_record(data);
  ASSERT_EQ(r.size(), 8 + 4 + data.size() + 4);
  auto u32 = [&](size_t at) {
    uint32_t v = 0;
    for (int i = 3; i >= 0; --i) v = (v << 8) | static_cast<uint8_t>(r[at + i]);
    return v;
  };
  EXPECT_EQ(static_cast<uint8_t>(r[0]), 5);  // little-endian length
  for (int i = 1; i < 8; ++i) EXPECT_EQ(r[i], '\0');
  EXPECT_EQ(u32(8), mgd::logging::masked_crc32c(r.data(), 8));
  EXPECT_EQ(r.substr(12, 5), data);
  EXPECT_EQ(u32(17), mgd::logging::masked_crc32c(data.data(), data.size()));
}

TEST(RecordWriter, FlushesPastOneMebibyte) {
  TempDir dir;
  RecordWriter w(dir / "big.tfrecord");
  const std::string chunk(300 * 1024, 'x');
  for (int i = 0; i < 3; ++i) w.write(chunk);
  EXPECT_EQ(std::filesystem::file_size(dir / "big.tfrecord"), 0u);
  w.write(chunk);  // past 1 MiB
  EXPECT_EQ(w.buffered(), 0u);
  EXPECT_EQ(std::filesystem::file_size(dir / "big.tfrecord"), 4 * (chunk.size() + 16));
}

TEST(RecordWriter, ExclusiveRefusesAnExistingFile) {
  TempDir dir;
  write_file(dir / "f", "x");
  EXPECT_THROW(RecordWriter(dir / "f", /*exclusive=*/true), c10::Error);
  EXPECT_NO_THROW(RecordWriter(dir / "f"));
}

}  // namespace
