// MoCo v2's augmentations and the two-view dataset (mgd/data/contrastive.h).
#include "mgd/data/contrastive.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <array>
#include <fstream>
#include <iterator>
#include <sstream>

#include "data/data_testing.h"
#include "support/temp_dir.h"

namespace {

using namespace mgd::data;
namespace dt = mgd::data_testing;

Image gray(std::vector<uint8_t> values, int64_t h, int64_t w) {
  Image im(h, w, 1);
  im.data = std::move(values);
  return im;
}

TEST(ContrastiveColor, BrightnessAndContrastHandSolved) {
  auto im = gray({0, 100, 200, 250}, 2, 2);
  adjust_brightness(im, 1.2);
  EXPECT_EQ(im.data, (std::vector<uint8_t>{0, 120, 240, 255}));  // clipped at 255
  im = gray({0, 100, 200, 100}, 2, 2);                           // mean 100
  adjust_contrast(im, 0.5);
  EXPECT_EQ(im.data, (std::vector<uint8_t>{50, 100, 150, 100}));
  adjust_contrast(im, 1.0);
  EXPECT_EQ(im.data, (std::vector<uint8_t>{50, 100, 150, 100}));
}

TEST(ContrastiveColor, HueEqualsTorchvisionsAdjustHueOnPilImagesBitForBit) {
  MGD_REQUIRE_ORACLE();
  // Every kind of pixel: random colours, grays (no hue), pure and near-pure primaries, and
  // the extremes; factors of both signs, the limits, ones that truncate (0.037 * 255 = 9.4).
  const int64_t h = 24, w = 32;
  Image rgb(h, w, 3);
  torch::manual_seed(5);
  auto random = torch::randint(0, 256, {h * w * 3}, torch::kUInt8);
  rgb.data.assign(random.data_ptr<uint8_t>(), random.data_ptr<uint8_t>() + h * w * 3);
  const std::vector<std::array<uint8_t, 3>> special = {
      {0, 0, 0},     {255, 255, 255}, {128, 128, 128}, {255, 0, 0},   {0, 255, 0},
      {0, 0, 255},   {255, 255, 0},   {0, 255, 255},   {255, 0, 255}, {254, 255, 255},
      {1, 0, 0},     {200, 100, 100}, {100, 200, 100}, {100, 100, 200}, {3, 2, 1}};
  for (size_t i = 0; i < special.size(); ++i) std::copy(special[i].begin(), special[i].end(), rgb.data.begin() + 3 * i);
  const std::vector<double> factors = {-0.5, -0.1, -0.037, 0.0, 0.02, 0.1, 0.25, 0.5};
  mgd::testing::TempDir dir("mgd-hue-oracle");
  {
    std::ofstream raw(dir / "in.raw", std::ios::binary);
    raw.write(reinterpret_cast<const char*>(rgb.data.data()), static_cast<std::streamsize>(rgb.data.size()));
  }
  std::ostringstream args;
  args << dt::oracle_script() << " hue " << (dir / "in.raw") << " " << h << " " << w << " "
       << (dir / "out.raw");
  for (double f : factors) args << " " << f;
  ASSERT_EQ(dt::run_python(args.str()), 0);
  std::ifstream in(dir / "out.raw", std::ios::binary);
  std::vector<uint8_t> expected((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  ASSERT_EQ(expected.size(), factors.size() * rgb.data.size());
  for (size_t k = 0; k < factors.size(); ++k) {
    Image ours = rgb;
    adjust_hue(ours, factors[k]);
    const std::vector<uint8_t> theirs(expected.begin() + static_cast<std::ptrdiff_t>(k * rgb.data.size()),
                                      expected.begin() + static_cast<std::ptrdiff_t>((k + 1) * rgb.data.size()));
    size_t differing = 0;
    for (size_t i = 0; i < theirs.size(); ++i) differing += ours.data[i] != theirs[i];
    EXPECT_EQ(differing, 0u) << "factor " << factors[k];
    if (factors[k] != 0) EXPECT_NE(ours.data, rgb.data) << "factor " << factors[k];
  }
  // One channel: nothing to rotate. Out of range: refused.
  auto one = gray({10, 20, 30, 40}, 2, 2);
  adjust_hue(one, 0.3);
  EXPECT_EQ(one.data, (std::vector<uint8_t>{10, 20, 30, 40}));
  EXPECT_THROW(adjust_hue(rgb, 0.6), c10::Error);
  EXPECT_THROW(ColorJitter(ColorJitterOptions().hue(0.7)), c10::Error);
}

TEST(ContrastiveColor, SaturationAndGrayscaleTouchOnlyColourImages) {
  auto one = gray({10, 20, 30, 40}, 2, 2);
  adjust_saturation(one, 0.0);
  EXPECT_EQ(one.data, (std::vector<uint8_t>{10, 20, 30, 40}));
  Image rgb(1, 1, 3);
  rgb.data = {255, 0, 0};
  adjust_saturation(rgb, 0.0);  // fully desaturated: the luma 0.299 * 255 = 76.2
  EXPECT_EQ(rgb.data, (std::vector<uint8_t>{76, 76, 76}));
  rgb.data = {0, 255, 0};
  Rng rng(1);
  RandomGrayscale(1.0).apply(rgb, rng);
  EXPECT_EQ(rgb.data, (std::vector<uint8_t>{150, 150, 150}));
}

TEST(ContrastiveBlur, KeepsAFlatImageAndSpreadsAnImpulse) {
  auto flat = gray(std::vector<uint8_t>(25, 77), 5, 5);
  gaussian_blur(flat, 1.5);
  EXPECT_EQ(flat.data, std::vector<uint8_t>(25, 77));
  std::vector<uint8_t> v(25, 0);
  v[12] = 250;
  auto impulse = gray(v, 5, 5);
  gaussian_blur(impulse, 1.0);
  EXPECT_LT(impulse.data[12], 250);
  EXPECT_GT(impulse.data[11], 0);
  EXPECT_EQ(impulse.data[11], impulse.data[13]);  // symmetric
  EXPECT_THROW(gaussian_blur(impulse, 0.0), c10::Error);
}

TEST(ContrastivePipeline, OneChannelStepsAndTwoIndependentViews) {
  auto t = moco_v2_transform("fashion-mnist", 1, 28);
  EXPECT_EQ(t.describe(),
            "RandomResizedCrop -> RandomApply(ColorJitter) -> RandomApply(GaussianBlur) -> "
            "RandomHorizontalFlip -> ToTensor -> Normalize");
  auto t3 = moco_v2_transform("cifar10", 3, 32);
  EXPECT_NE(t3.describe().find("RandomGrayscale"), std::string::npos) << t3.describe();

  torch::manual_seed(0);
  auto images = torch::randint(0, 256, {4, 28, 28}, torch::kUInt8);
  auto base = std::make_shared<TensorImageDataset>(images, torch::tensor({0, 1, 2, 3}), 4, t);
  TwoViewDataset views(base);
  EXPECT_EQ(views.channels(), 2);
  Rng a = Rng::for_sample(5, 0, 2), b = Rng::for_sample(5, 0, 2);
  auto x = views.get(2, a), y = views.get(2, b);
  EXPECT_EQ(x.image.sizes(), (std::vector<int64_t>{2, 28, 28}));
  EXPECT_EQ(x.label, 2);
  EXPECT_TRUE(torch::equal(x.image, y.image));         // a function of the sample's Rng
  EXPECT_FALSE(torch::equal(x.image[0], x.image[1]));  // two different views
}

}  // namespace
