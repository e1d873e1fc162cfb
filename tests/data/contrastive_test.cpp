// MoCo v2's augmentations and the two-view dataset (mgd/data/contrastive.h).
#include "mgd/data/contrastive.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

namespace {

using namespace mgd::data;

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
