// Replays the committed fuzz inputs (fuzz/regressions/<target>/: inputs that once crashed a
// reader, and a sample of each target's corpus) through the same target bodies libFuzzer runs
// (fuzz/targets.h): each must be parsed or refused with a c10::Error. Under
// `scripts/test --sanitize` this also checks them with ASan and UBSan.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "fuzz/targets.h"

namespace {

namespace fs = std::filesystem;

void replay(const std::string& target, int (*body)(const uint8_t*, size_t)) {
  mgd_fuzz::init_once();
  const fs::path dir = fs::path(MGD_SOURCE_DIR) / "fuzz" / "regressions" / target;
  ASSERT_TRUE(fs::is_directory(dir)) << dir;
  int inputs = 0;
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (!entry.is_regular_file()) continue;
    std::ifstream in(entry.path(), std::ios::binary);
    const std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    SCOPED_TRACE(entry.path().string());
    EXPECT_NO_THROW(body(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()));
    ++inputs;
  }
  EXPECT_GT(inputs, 0) << "no inputs in " << dir;
}

TEST(FuzzRegressions, Checkpoint) { replay("checkpoint", mgd_fuzz::checkpoint); }
TEST(FuzzRegressions, Image) { replay("image", mgd_fuzz::image); }
TEST(FuzzRegressions, Idx) { replay("idx", mgd_fuzz::idx); }
TEST(FuzzRegressions, Cifar) { replay("cifar", mgd_fuzz::cifar); }
TEST(FuzzRegressions, Coco) { replay("coco", mgd_fuzz::coco); }
TEST(FuzzRegressions, TorchScript) { replay("torchscript", mgd_fuzz::torchscript); }

}  // namespace
