#include "mgd/data/transforms.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <fstream>
#include <sstream>

#include "data/data_testing.h"

namespace {

using namespace mgd::data;
namespace dt = mgd::data_testing;
using dt::TempDir;

Image transpose(const Image& src) {
  Image out(src.width, src.height, src.channels);
  for (int64_t y = 0; y < src.height; ++y) {
    for (int64_t x = 0; x < src.width; ++x) {
      for (int64_t c = 0; c < src.channels; ++c) {
        out.row(x)[y * src.channels + c] = src.row(y)[x * src.channels + c];
      }
    }
  }
  return out;
}

TEST(Transforms, ShorterSideSize) {
  // torchvision: int(size * long / short), truncated.
  EXPECT_EQ(shorter_side_size(375, 500, 256), (std::array<int64_t, 2>{256, 341}));
  EXPECT_EQ(shorter_side_size(500, 375, 256), (std::array<int64_t, 2>{341, 256}));
  EXPECT_EQ(shorter_side_size(100, 100, 30), (std::array<int64_t, 2>{30, 30}));
  EXPECT_EQ(shorter_side_size(3, 7, 2), (std::array<int64_t, 2>{2, 4}));
  EXPECT_THROW(shorter_side_size(3, 7, 0), c10::Error);
}

TEST(Transforms, ResizeRegionIdentityAndConstant) {
  const Image src = dt::synthetic_image(20, 30, 3, 1);
  ResizePlan p;
  p.height = 20;
  p.width = 30;
  p.out_height = 20;
  p.out_width = 30;
  EXPECT_EQ(dt::max_abs_diff(resize_region(src, p), src), 0);
  // A constant image stays constant at any scale (the weights sum to one).
  Image flat(17, 23, 3);
  std::fill(flat.data.begin(), flat.data.end(), 200);
  for (auto [h, w] : std::vector<std::pair<int64_t, int64_t>>{{5, 7}, {40, 3}, {17, 100}}) {
    ResizePlan q;
    q.height = 17;
    q.width = 23;
    q.out_height = h;
    q.out_width = w;
    const Image out = resize_region(flat, q);
    ASSERT_EQ(out.height, h);
    for (uint8_t v : out.data) ASSERT_EQ(v, 200);
  }
  // A pure crop copies.
  ResizePlan c;
  c.top = 3;
  c.left = 4;
  c.height = 5;
  c.width = 6;
  c.out_height = 5;
  c.out_width = 6;
  const Image cropped = resize_region(src, c);
  for (int64_t y = 0; y < 5; ++y) {
    for (int64_t x = 0; x < 18; ++x) ASSERT_EQ(cropped.row(y)[x], src.row(3 + y)[12 + x]);
  }
  c.left = 25;  // box past the right edge
  EXPECT_THROW(resize_region(src, c), c10::Error);
}

TEST(Transforms, WindowsAndOriginsGiveTheSamePixels) {
  // Computing only a window of the output, from an image holding only the source pixels that
  // window needs, gives exactly the window of the full resize.
  const Image src = dt::synthetic_image(97, 131, 3, 4);
  Rng rng(8);
  for (int trial = 0; trial < 200; ++trial) {
    ResizePlan p;
    p.height = 1 + rng.uniform() * 96;
    p.width = 1 + rng.uniform() * 130;
    p.top = rng.uniform() * (97 - p.height);
    p.left = rng.uniform() * (131 - p.width);
    if (trial % 2 == 0) {  // integral boxes too
      p.top = std::floor(p.top);
      p.left = std::floor(p.left);
      p.height = std::floor(p.height);
      p.width = std::floor(p.width);
    }
    p.out_height = rng.randint(1, 150);
    p.out_width = rng.randint(1, 150);
    if (trial % 5 == 0) {  // sizes that leave an axis unresampled
      p.out_height = static_cast<int64_t>(p.height);
      p.out_width = static_cast<int64_t>(p.width);
    }
    const Image full = resize_region(src, p);
    Region w;
    w.height = rng.randint(1, p.out_height + 1);
    w.width = rng.randint(1, p.out_width + 1);
    w.top = rng.randint(0, p.out_height - w.height + 1);
    w.left = rng.randint(0, p.out_width - w.width + 1);
    ResizePlan pw = p;
    pw.window = w;
    const Region need = resize_source(pw);
    ASSERT_GE(need.top, 0);
    ASSERT_GE(need.left, 0);
    ASSERT_LE(need.top + need.height, 97);
    ASSERT_LE(need.left + need.width, 131);
    const Image part = resize_region(crop(src, need), pw, need.top, need.left);
    EXPECT_EQ(dt::max_abs_diff(part, crop(full, w)), 0) << "trial " << trial;
    // One pixel short of what it needs is an error, not a read out of bounds.
    if (need.height > 1) {
      Region less = need;
      less.height -= 1;
      EXPECT_THROW(resize_region(crop(src, less), pw, less.top, less.left), c10::Error);
    }
  }
}

TEST(Transforms, MirroredResizeIsResizeThenFlip) {
  // ResizePlan::mirror reverses the horizontal pass's outputs: exactly hflip() of the result,
  // windows, partial images, unresampled axes, pixels at the buffer's end and any channel
  // count included.
  for (const int64_t channels : {1, 3, 4}) {
    const Image src = dt::synthetic_image(53, 71, channels, 9 + channels);
    Rng rng(10 + static_cast<uint64_t>(channels));
    for (int trial = 0; trial < 150; ++trial) {
      ResizePlan p;
      p.height = 1 + rng.uniform() * 52;
      p.width = 1 + rng.uniform() * 70;
      p.top = rng.uniform() * (53 - p.height);
      p.left = rng.uniform() * (71 - p.width);
      if (trial % 2 == 0) {
        p.top = std::floor(p.top);
        p.left = std::floor(p.left);
        p.height = std::floor(p.height);
        p.width = std::floor(p.width);
      }
      if (trial % 7 == 0) {  // the box's last pixel is the image's
        p.top = 53 - p.height;
        p.left = 71 - p.width;
      }
      p.out_height = rng.randint(1, 90);
      p.out_width = rng.randint(1, 90);
      if (trial % 5 == 0) p.out_height = static_cast<int64_t>(p.height);
      if (trial % 3 == 0) p.out_width = static_cast<int64_t>(p.width);
      if (trial % 4 == 1) {
        Region w;
        w.height = rng.randint(1, p.out_height + 1);
        w.width = rng.randint(1, p.out_width + 1);
        w.top = rng.randint(0, p.out_height - w.height + 1);
        w.left = rng.randint(0, p.out_width - w.width + 1);
        p.window = w;
      }
      Image expected = resize_region(src, p);
      hflip(expected);
      ResizePlan m = p;
      m.mirror = true;
      EXPECT_EQ(dt::max_abs_diff(resize_region(src, m), expected), 0)
          << "channels " << channels << " trial " << trial;
      const Region need = resize_source(m);
      EXPECT_EQ(dt::max_abs_diff(resize_region(crop(src, need), m, need.top, need.left), expected),
                0)
          << "channels " << channels << " trial " << trial << " (partial image)";
    }
  }
  // A RandomHorizontalFlip's mirror() draws what apply() draws and answers what it does.
  const RandomHorizontalFlip flip;
  const Image img = dt::synthetic_image(4, 6, 3, 1);
  for (uint64_t seed = 0; seed < 40; ++seed) {
    Rng a(seed), b(seed);
    Image applied = img;
    flip.apply(applied, a);
    const c10::optional<bool> m = flip.mirror(b);
    ASSERT_TRUE(m.has_value());
    Image expected = img;
    if (*m) hflip(expected);
    EXPECT_EQ(dt::max_abs_diff(applied, expected), 0);
    EXPECT_EQ(a.next_u64(), b.next_u64());
  }
  Rng rng(0);
  EXPECT_FALSE(CenterCrop(CenterCropOptions(2)).mirror(rng).has_value());
}

TEST(Transforms, ResizeThenCenterCropIsFolded) {
  // Compose resamples only the centre crop; the result is that of the two steps in turn.
  const Image src = dt::synthetic_image(375, 500, 3, 5);
  for (const auto& [resize, crop_size] :
       std::vector<std::pair<int64_t, int64_t>>{{256, 224}, {224, 224}, {100, 120}, {300, 61}}) {
    const Compose both({std::make_shared<Resize>(ResizeOptions(resize)),
                        std::make_shared<CenterCrop>(CenterCropOptions(crop_size))});
    Rng rng(0);
    Image folded = src;
    both.apply_steps(folded, rng);
    Image stepwise = src;
    Resize(ResizeOptions(resize)).apply(stepwise, rng);
    CenterCrop(CenterCropOptions(crop_size)).apply(stepwise, rng);
    EXPECT_EQ(dt::max_abs_diff(folded, stepwise), 0) << resize << " " << crop_size;
  }
}

TEST(Transforms, CropPadsWithZeros) {
  const Image src = dt::synthetic_image(4, 5, 1, 3);
  const Image out = crop(src, Region{-1, -2, 6, 9});
  ASSERT_EQ(out.height, 6);
  ASSERT_EQ(out.width, 9);
  for (int64_t y = 0; y < 6; ++y) {
    for (int64_t x = 0; x < 9; ++x) {
      const int64_t sy = y - 1, sx = x - 2;
      const bool inside = sy >= 0 && sy < 4 && sx >= 0 && sx < 5;
      EXPECT_EQ(out.row(y)[x], inside ? src.row(sy)[sx] : 0);
    }
  }
}

TEST(Transforms, HorizontalFlip) {
  const Image src = dt::synthetic_image(3, 5, 3, 4);
  Image flipped = src;
  hflip(flipped);
  for (int64_t y = 0; y < 3; ++y) {
    for (int64_t x = 0; x < 5; ++x) {
      for (int c = 0; c < 3; ++c) EXPECT_EQ(flipped.row(y)[x * 3 + c], src.row(y)[(4 - x) * 3 + c]);
    }
  }
  Rng rng(1);
  Image never = src, always = src;
  RandomHorizontalFlip(RandomHorizontalFlipOptions().p(0)).apply(never, rng);
  RandomHorizontalFlip(RandomHorizontalFlipOptions().p(1)).apply(always, rng);
  EXPECT_EQ(dt::max_abs_diff(never, src), 0);
  EXPECT_EQ(dt::max_abs_diff(always, flipped), 0);
  // p = 0.5 flips about half the time.
  RandomHorizontalFlip half;
  int flips = 0;
  for (int i = 0; i < 2000; ++i) {
    Image img = src;
    half.apply(img, rng);
    flips += dt::max_abs_diff(img, flipped) == 0;
  }
  EXPECT_NEAR(flips, 1000, 120);
  EXPECT_THROW(RandomHorizontalFlip(RandomHorizontalFlipOptions().p(1.5)), c10::Error);
}

TEST(Transforms, RandomResizedCropParameters) {
  RandomResizedCrop rrc(RandomResizedCropOptions(224));
  Rng rng(5);
  int fallbacks = 0;
  for (int i = 0; i < 2000; ++i) {
    const int64_t h = 50 + rng.randint(0, 400), w = 50 + rng.randint(0, 400);
    const Region r = rrc.get_params(h, w, rng);
    ASSERT_GE(r.top, 0);
    ASSERT_GE(r.left, 0);
    ASSERT_GT(r.height, 0);
    ASSERT_GT(r.width, 0);
    ASSERT_LE(r.top + r.height, h);
    ASSERT_LE(r.left + r.width, w);
    const double area = static_cast<double>(r.height * r.width) / static_cast<double>(h * w);
    const double ratio = static_cast<double>(r.width) / static_cast<double>(r.height);
    // Rounding to whole pixels moves area and ratio a little past the bounds.
    EXPECT_GT(area, 0.06);
    EXPECT_LE(area, 1.0);
    if (area < 0.999) {
      EXPECT_GT(ratio, 0.75 * 0.9);
      EXPECT_LT(ratio, 4.0 / 3.0 * 1.1);
    } else {
      ++fallbacks;
    }
  }
  EXPECT_LT(fallbacks, 100);
  // No box of ~all the area with ratio 1 fits a 10 x 1000 image: the fallback is the central
  // box of the largest allowed ratio.
  RandomResizedCrop square(RandomResizedCropOptions(8).scale({0.99, 1.0}).ratio({1.0, 1.0}));
  const Region f = square.get_params(10, 1000, rng);
  EXPECT_EQ(f.height, 10);
  EXPECT_EQ(f.width, 10);
  EXPECT_EQ(f.top, 0);
  EXPECT_EQ(f.left, 495);
  // Tall image: width kept, height = round(w / min ratio) = round(10 / 0.75) = 13.
  RandomResizedCrop wide(RandomResizedCropOptions(8).scale({0.99, 1.0}));
  const Region t = wide.get_params(1000, 10, rng);
  EXPECT_EQ(t.width, 10);
  EXPECT_EQ(t.height, 13);
  EXPECT_EQ(t.top, (1000 - 13) / 2);
  EXPECT_THROW(RandomResizedCrop(RandomResizedCropOptions(8).scale({0.5, 0.2})), c10::Error);
  EXPECT_THROW(RandomResizedCrop(RandomResizedCropOptions(8).ratio({1.0})), c10::Error);
  EXPECT_THROW(RandomResizedCrop(RandomResizedCropOptions(0)), c10::Error);
}

TEST(Transforms, PlanDrawsWhatApplyDraws) {
  // The decoder's shortcut relies on plan() consuming exactly the randomness apply() does.
  const Image src = dt::synthetic_image(90, 120, 3, 9);
  RandomResizedCrop rrc(RandomResizedCropOptions(32, 48));
  for (uint64_t seed = 0; seed < 20; ++seed) {
    Rng a(seed), b(seed);
    Image img = src;
    rrc.apply(img, a);
    const ResizePlan p = *rrc.plan(90, 120, b);
    EXPECT_EQ(dt::max_abs_diff(resize_region(src, p), img), 0);
    EXPECT_EQ(a.next_u64(), b.next_u64());
  }
}

TEST(Transforms, CenterCropOffsets) {
  const Image src = dt::synthetic_image(7, 10, 1, 2);
  Rng rng(0);
  Image img = src;
  // Offsets round((7 - 4) / 2) = round(1.5) = 2 (half to even) and round((10 - 3) / 2) = 4.
  CenterCrop(CenterCropOptions(4, 3)).apply(img, rng);
  ASSERT_EQ(img.height, 4);
  ASSERT_EQ(img.width, 3);
  for (int64_t y = 0; y < 4; ++y) {
    for (int64_t x = 0; x < 3; ++x) EXPECT_EQ(img.row(y)[x], src.row(2 + y)[4 + x]);
  }
  // Larger than the image: zero-padded, (crop - size) // 2 before.
  Image padded = src;
  CenterCrop(CenterCropOptions(10, 13)).apply(padded, rng);
  ASSERT_EQ(padded.height, 10);
  EXPECT_EQ(padded.row(0)[0], 0);
  EXPECT_EQ(padded.row(1)[1], src.row(0)[0]);
}

TEST(Transforms, RandomCropWithPadding) {
  const Image src = dt::synthetic_image(8, 8, 3, 6);
  RandomCrop rc(RandomCropOptions(8).padding(2));
  int with_border = 0;
  for (uint64_t seed = 0; seed < 50; ++seed) {
    Rng rng(seed), replay(seed);
    Image img = src;
    rc.apply(img, rng);
    ASSERT_EQ(img.height, 8);
    ASSERT_EQ(img.width, 8);
    const int64_t top = replay.randint(0, 5), left = replay.randint(0, 5);
    EXPECT_EQ(dt::max_abs_diff(img, crop(src, Region{top - 2, left - 2, 8, 8})), 0);
    with_border += top != 2 || left != 2;
  }
  EXPECT_GT(with_border, 30);
  // No padding and the same size: unchanged, no randomness drawn (as torchvision).
  Rng rng(3), untouched(3);
  Image same = src;
  RandomCrop(RandomCropOptions(8)).apply(same, rng);
  EXPECT_EQ(dt::max_abs_diff(same, src), 0);
  EXPECT_EQ(rng.next_u64(), untouched.next_u64());
  Image small = src;
  EXPECT_THROW(RandomCrop(RandomCropOptions(13)).apply(small, rng), c10::Error);
}

TEST(Transforms, ToTensorAndNormalize) {
  Image img(1, 2, 3);
  img.data = {0, 128, 255, 10, 20, 30};
  const torch::Tensor t = to_tensor(img);
  ASSERT_EQ(t.sizes(), (std::vector<int64_t>{3, 1, 2}));
  EXPECT_FLOAT_EQ(t[0][0][0].item<float>(), 0.0f);
  EXPECT_FLOAT_EQ(t[1][0][0].item<float>(), 128.0f / 255.0f);
  EXPECT_FLOAT_EQ(t[2][0][0].item<float>(), 1.0f);
  EXPECT_FLOAT_EQ(t[0][0][1].item<float>(), 10.0f / 255.0f);
  const NormalizeOptions n({0.5, 0.25, 0.0}, {0.5, 0.5, 2.0});
  const torch::Tensor fused = to_tensor(img, n);
  EXPECT_FLOAT_EQ(fused[0][0][0].item<float>(), -1.0f);
  EXPECT_FLOAT_EQ(fused[2][0][0].item<float>(), 0.5f);
  EXPECT_TRUE(torch::equal(fused, normalize(t, n)));
  EXPECT_THROW(to_tensor(img, NormalizeOptions({0.5}, {0.5})), c10::Error);
  EXPECT_THROW(to_tensor(img, NormalizeOptions({0, 0, 0}, {1, 0, 1})), c10::Error);
}

TEST(Transforms, ComposeAndStandardPipelines) {
  const Image src = dt::synthetic_image(375, 500, 3, 8);
  Rng rng(1);
  const Compose train = imagenet_train_transform();
  EXPECT_EQ(train.describe(), "RandomResizedCrop -> RandomHorizontalFlip -> ToTensor -> Normalize");
  const torch::Tensor a = train(src, rng);
  EXPECT_EQ(a.sizes(), (std::vector<int64_t>{3, 224, 224}));
  Rng r1(7), r2(7), r3(8);
  EXPECT_TRUE(torch::equal(train(src, r1), train(src, r2)));
  EXPECT_FALSE(torch::equal(train(src, r1), train(src, r3)));
  const Compose eval = imagenet_eval_transform();
  EXPECT_EQ(eval.describe(), "Resize -> CenterCrop -> ToTensor -> Normalize");
  EXPECT_EQ(eval(src, rng).sizes(), (std::vector<int64_t>{3, 224, 224}));
  // Normalised with ImageNet's statistics: roughly centred.
  EXPECT_LT(std::abs(eval(src, rng).mean().item<double>()), 1.0);
  EXPECT_EQ(Compose().describe(), "ToTensor");
  EXPECT_THROW(Compose({nullptr}), c10::Error);
}

// Against torchvision on PIL images: every geometric op must match to the bit.
TEST(Transforms, MatchTorchvision) {
  MGD_REQUIRE_ORACLE();
  TempDir dir;
  const Image small = dt::synthetic_image(61, 83, 3, 1);
  const Image big = dt::synthetic_image(375, 500, 3, 2);
  const Image tall = transpose(big);
  const std::vector<std::pair<std::string, const Image*>> inputs = {
      {"small", &small}, {"big", &big}, {"tall", &tall}};
  for (const auto& [name, img] : inputs) write_file(dir / (name + ".png"), encode_png(*img));

  struct Job {
    std::string line;
    Image expected;  // from mgd
    std::vector<float> tensor;
  };
  std::vector<Job> jobs;
  auto add = [&](const std::string& op, const std::string& in, const std::string& args,
                 Image mine) {
    const std::string out = dir / ("out" + std::to_string(jobs.size()) + ".png");
    std::string line = op + "\t" + (dir / (in + ".png")) + "\t" + out;
    std::istringstream fields(args);
    for (std::string f; fields >> f;) line += "\t" + f;
    jobs.push_back({line, std::move(mine), {}});
  };
  Rng rng(2020);
  for (const auto& [name, img] : inputs) {
    for (const auto& [oh, ow] :
         std::vector<std::pair<int64_t, int64_t>>{{224, 224}, {32, 40}, {7, 300}, {31, 45}}) {
      RandomResizedCrop rrc(RandomResizedCropOptions(oh, ow));
      for (int i = 0; i < 4; ++i) {
        const Region r = rrc.get_params(img->height, img->width, rng);
        ResizePlan p;
        p.top = static_cast<double>(r.top);
        p.left = static_cast<double>(r.left);
        p.height = static_cast<double>(r.height);
        p.width = static_cast<double>(r.width);
        p.out_height = oh;
        p.out_width = ow;
        std::ostringstream args;
        args << r.top << " " << r.left << " " << r.height << " " << r.width << " " << oh << " "
             << ow;
        add("resized_crop", name, args.str(), resize_region(*img, p));
      }
    }
    // Boxes ending at the image's last pixel: the vectorized resampling reads 4 bytes per
    // pixel and must switch to the scalar formula at the end of the buffer.
    for (const auto& [oh, ow] :
         std::vector<std::pair<int64_t, int64_t>>{{224, 224}, {32, 40}, {29, 41}}) {
      const int64_t h = img->height * 3 / 5, w = img->width * 7 / 10;
      const int64_t top = img->height - h, left = img->width - w;
      ResizePlan p;
      p.top = static_cast<double>(top);
      p.left = static_cast<double>(left);
      p.height = static_cast<double>(h);
      p.width = static_cast<double>(w);
      p.out_height = oh;
      p.out_width = ow;
      std::ostringstream args;
      args << top << " " << left << " " << h << " " << w << " " << oh << " " << ow;
      add("resized_crop", name, args.str(), resize_region(*img, p));
    }
    for (int64_t size : {256, 50, 61, 100}) {
      Image out = *img;
      Resize(ResizeOptions(size)).apply(out, rng);
      add("resize", name, std::to_string(size), std::move(out));
    }
    Image hw = *img;
    Resize(ResizeOptions(30, 700)).apply(hw, rng);
    add("resize_hw", name, "30 700", std::move(hw));
    for (const auto& [ch, cw] :
         std::vector<std::pair<int64_t, int64_t>>{{224, 224}, {50, 60}, {70, 90}, {60, 1}}) {
      Image out = *img;
      CenterCrop(CenterCropOptions(ch, cw)).apply(out, rng);
      add("center_crop", name, std::to_string(ch) + " " + std::to_string(cw), std::move(out));
    }
    Image flipped = *img;
    hflip(flipped);
    add("hflip", name, "", std::move(flipped));
  }
  // RandomCrop(32, padding=4) on a 32 x 32 image, torchvision's pad + crop at the same box.
  const Image cifar = dt::synthetic_image(32, 32, 3, 3);
  write_file(dir / "cifar.png", encode_png(cifar));
  for (uint64_t seed = 0; seed < 5; ++seed) {
    Rng a(seed), replay(seed);
    Image out = cifar;
    RandomCrop(RandomCropOptions(32).padding(4)).apply(out, a);
    const int64_t top = replay.randint(0, 9), left = replay.randint(0, 9);
    add("pad_crop", "cifar", "4 " + std::to_string(top) + " " + std::to_string(left) + " 32 32",
        std::move(out));
  }
  const size_t geometric = jobs.size();
  const std::string tensor_out = dir / "tensor.bin", norm_out = dir / "norm.bin";
  jobs.push_back({"to_tensor\t" + (dir / "small.png") + "\t" + tensor_out, {}, {}});
  jobs.push_back({"normalize\t" + (dir / "small.png") + "\t" + norm_out +
                      "\t0.485\t0.456\t0.406\t0.229\t0.224\t0.225",
                  {},
                  {}});
  {
    std::ofstream f(dir / "jobs.txt");
    for (const auto& j : jobs) f << j.line << "\n";
  }
  ASSERT_EQ(dt::run_python(dt::oracle_script() + " jobs " + (dir / "jobs.txt")), 0);
  for (size_t i = 0; i < geometric; ++i) {
    const Image theirs = read_image(dir / ("out" + std::to_string(i) + ".png"));
    Image mine = jobs[i].expected;
    ASSERT_EQ(mine.channels, 3);
    EXPECT_EQ(dt::max_abs_diff(mine, theirs), 0)
        << jobs[i].line << " (mine " << mine.height << "x" << mine.width << ", theirs "
        << theirs.height << "x" << theirs.width << ")";
  }
  const torch::Tensor t = to_tensor(small);
  const torch::Tensor n = to_tensor(small, imagenet_normalize());
  const auto tv_t = dt::read_floats(tensor_out, static_cast<size_t>(t.numel()));
  const auto tv_n = dt::read_floats(norm_out, static_cast<size_t>(n.numel()));
  EXPECT_TRUE(torch::equal(t, torch::from_blob(const_cast<float*>(tv_t.data()), t.sizes())));
  EXPECT_TRUE(torch::equal(n, torch::from_blob(const_cast<float*>(tv_n.data()), n.sizes())));
}

}  // namespace
