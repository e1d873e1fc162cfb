// Tracking with a batch's padding left out (padding.h): which cells are padding, and that the
// matching cost then equals the cost of the images' own cells.
#include "mgd/distiller/padding.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "mgd/distiller/distiller.h"
#include "support/toy_nets.h"

namespace {

using mgd::Distiller;
using mgd::Features;
using mgd::testing::FixedFeatures;

TEST(Padding, NoImagesNoCells) {
  auto m = mgd::valid_cells({}, 64, 64, 8, 8);
  EXPECT_EQ(m.sizes(), (std::vector<int64_t>{0, 1, 8, 8}));
}

TEST(Padding, HandCountedCells) {
  // 64 x 96 input, a stride-8 map of 8 x 12: a 40 x 96 image covers rows 0..4 (5 rows), all
  // 12 columns; a 41 x 9 image covers 6 rows (row 5 holds pixel row 40) and 2 columns.
  auto m = mgd::valid_cells({{40, 96}, {41, 9}, {64, 96}}, 64, 96, 8, 12);
  ASSERT_EQ(m.sizes(), (std::vector<int64_t>{3, 1, 8, 12}));
  EXPECT_EQ(m[0].sum().item<double>(), 5 * 12);
  EXPECT_EQ(m[0][0][4][11].item<double>(), 1);
  EXPECT_EQ(m[0][0][5][0].item<double>(), 0);
  EXPECT_EQ(m[1].sum().item<double>(), 6 * 2);
  EXPECT_EQ(m[1][0][5][1].item<double>(), 1);
  EXPECT_EQ(m[1][0][5][2].item<double>(), 0);
  EXPECT_EQ(m[2].sum().item<double>(), 8 * 12);  // unpadded: every cell
  // A coarse map (stride 128 on 64 px): the one cell covers the image.
  EXPECT_EQ(mgd::valid_cells({{1, 1}}, 64, 96, 1, 1).sum().item<double>(), 1);
}

TEST(Padding, ImagesLargerThanTheInputAreRefused) {
  try {
    mgd::valid_cells({{65, 10}}, 64, 64, 8, 8);
    FAIL() << "accepted an image larger than the padded input";
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what_without_backtrace()).find("65 x 10"), std::string::npos);
  }
}

Distiller one_position_distiller(FixedFeatures& teacher, FixedFeatures& student) {
  return Distiller(teacher, student);
}

TEST(Padding, UnpaddedBatchesTrackExactlyAsWithoutMasking) {
  torch::manual_seed(3);
  FixedFeatures teacher(std::vector<int64_t>{6}), student(std::vector<int64_t>{3});
  auto t = torch::randn({4, 6, 5, 7}), s = torch::randn({4, 3, 5, 7});
  Features tf{{t}, {t.relu()}, {}}, sf{{s}, {s.relu()}, {}};
  auto plain = one_position_distiller(teacher, student);
  plain->reset_tracking();
  plain->track_features(tf, sf);
  auto masked = one_position_distiller(teacher, student);
  masked->reset_tracking();
  const std::vector<std::array<int64_t, 2>> full(4, {40, 56});
  masked->track_features(mgd::without_padding(tf, full, 40, 56),
                         mgd::without_padding(sf, full, 40, 56));
  EXPECT_TRUE(torch::equal(plain->cost_sum(0), masked->cost_sum(0)));
}

TEST(Padding, PaddedBatchesTrackTheImagesOwnCells) {
  // Two images padded to 40 x 56 (maps 5 x 7): the cost equals the one tracked from each
  // image's own cells alone, whatever the padding holds.
  torch::manual_seed(4);
  FixedFeatures teacher(std::vector<int64_t>{6}), student(std::vector<int64_t>{3});
  auto t = torch::randn({2, 6, 5, 7}), s = torch::randn({2, 3, 5, 7});
  const std::vector<std::array<int64_t, 2>> sizes = {{24, 56}, {40, 17}};  // 3 x 7, 5 x 3 cells
  auto masked = one_position_distiller(teacher, student);
  masked->reset_tracking();
  masked->track_features(mgd::without_padding(Features{{t}, {t}, {}}, sizes, 40, 56),
                         mgd::without_padding(Features{{s}, {s}, {}}, sizes, 40, 56));
  auto cropped = one_position_distiller(teacher, student);
  cropped->reset_tracking();
  auto crop = [](const torch::Tensor& x, int64_t b, int64_t h, int64_t w) {
    return x.narrow(0, b, 1).narrow(2, 0, h).narrow(3, 0, w).contiguous();
  };
  for (auto [b, h, w] : {std::array<int64_t, 3>{0, 3, 7}, std::array<int64_t, 3>{1, 5, 3}}) {
    auto tb = crop(t, b, h, w), sb = crop(s, b, h, w);
    cropped->track_features(Features{{tb}, {tb}, {}}, Features{{sb}, {sb}, {}});
  }
  EXPECT_TRUE(torch::allclose(masked->cost_sum(0), cropped->cost_sum(0), 1e-6, 1e-5))
      << masked->cost_sum(0) << cropped->cost_sum(0);
  // Counting the padding (the reference's) gives another cost.
  auto counted = one_position_distiller(teacher, student);
  counted->reset_tracking();
  counted->track_features(Features{{t}, {t}, {}}, Features{{s}, {s}, {}});
  EXPECT_FALSE(torch::allclose(counted->cost_sum(0), cropped->cost_sum(0), 1e-3, 1e-3));
  // Whatever is in the padded cells leaves the masked cost as it was.
  auto t2 = t.clone(), s2 = s.clone();
  t2[0].narrow(1, 3, 2).fill_(100.0);
  s2[1].narrow(2, 3, 4).normal_();
  auto again = one_position_distiller(teacher, student);
  again->reset_tracking();
  again->track_features(mgd::without_padding(Features{{t2}, {t2}, {}}, sizes, 40, 56),
                        mgd::without_padding(Features{{s2}, {s2}, {}}, sizes, 40, 56));
  EXPECT_TRUE(torch::equal(again->cost_sum(0), masked->cost_sum(0)));
}

}  // namespace
