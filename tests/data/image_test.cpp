#include "mgd/data/image.h"

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "data/data_testing.h"

namespace {

using namespace mgd::data;
namespace dt = mgd::data_testing;
using dt::TempDir;

// Images PIL wrote, and what PIL decodes them to; made once for the suite.
class PilImages : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!dt::oracle_available()) return;
    dir_ = new TempDir();
    ASSERT_EQ(dt::run_python(dt::oracle_script() + " images " + dir_->path()), 0);
    std::ifstream manifest(*dir_ / "manifest.txt");
    std::string name;
    int64_t h, w;
    while (manifest >> name >> h >> w) {
      Image ref(h, w, 3);
      std::ifstream raw(*dir_ / (name + ".rgb"), std::ios::binary);
      raw.read(reinterpret_cast<char*>(ref.data.data()),
               static_cast<std::streamsize>(ref.data.size()));
      refs_->emplace_back(name, std::move(ref));
    }
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
    refs_->clear();
  }
  static std::string path(const std::string& name) { return *dir_ / name; }
  static const Image& reference(const std::string& name) {
    for (const auto& r : *refs_) {
      if (r.first == name) return r.second;
    }
    throw std::runtime_error("no reference for " + name);
  }
  static TempDir* dir_;
  static std::vector<std::pair<std::string, Image>>* refs_;
};
TempDir* PilImages::dir_ = nullptr;
std::vector<std::pair<std::string, Image>>* PilImages::refs_ =
    new std::vector<std::pair<std::string, Image>>();

TEST(Image, ShapeAndRows) {
  Image image(2, 3, 3);
  EXPECT_EQ(image.data.size(), 18u);
  EXPECT_EQ(image.row_bytes(), 9);
  image.row(1)[0] = 7;
  EXPECT_EQ(image.data[9], 7);
  EXPECT_THROW(Image(-1, 2, 3), c10::Error);
}

TEST(Image, DetectsFormats) {
  const uint8_t jpeg[] = {0xff, 0xd8, 0xff, 0xe0};
  const uint8_t png[] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  const uint8_t text[] = {'h', 'e', 'l', 'l', 'o'};
  EXPECT_EQ(detect_image_format(jpeg, 4), ImageFormat::kJpeg);
  EXPECT_EQ(detect_image_format(png, 8), ImageFormat::kPng);
  EXPECT_EQ(detect_image_format(text, 5), ImageFormat::kUnknown);
  EXPECT_EQ(detect_image_format(png, 0), ImageFormat::kUnknown);
}

TEST(Image, PngRoundTripIsExact) {
  for (int64_t channels : {1, 3}) {
    const Image src = dt::synthetic_image(37, 51, channels, 7);
    const auto bytes = encode_png(src);
    const Image back = decode_image(bytes.data(), bytes.size());
    ASSERT_EQ(back.channels, 3);
    ASSERT_EQ(back.height, 37);
    ASSERT_EQ(back.width, 51);
    for (int64_t i = 0; i < 37 * 51; ++i) {
      for (int64_t c = 0; c < 3; ++c) {
        ASSERT_EQ(back.data[i * 3 + c], src.data[i * channels + (channels == 1 ? 0 : c)]);
      }
    }
    const ImageInfo info = read_image_info(bytes.data(), bytes.size());
    EXPECT_EQ(info.format, ImageFormat::kPng);
    EXPECT_EQ(info.height, 37);
    EXPECT_EQ(info.width, 51);
  }
}

TEST(Image, JpegRoundTripIsClose) {
  const Image src = dt::synthetic_image(64, 48, 3, 3);
  for (bool subsample : {true, false}) {
    for (bool progressive : {false, true}) {
      const auto bytes = encode_jpeg(
          src, JpegEncodeOptions().quality(95).subsample(subsample).progressive(progressive));
      const Image back = decode_image(bytes.data(), bytes.size());
      ASSERT_EQ(back.height, 64);
      ASSERT_EQ(back.width, 48);
      EXPECT_LT(dt::mean_abs_diff(src, back), 6.0) << subsample << progressive;
      const ImageInfo info = read_image_info(bytes.data(), bytes.size());
      EXPECT_EQ(info.format, ImageFormat::kJpeg);
      EXPECT_EQ(info.height, 64);
      EXPECT_EQ(info.width, 48);
    }
  }
}

TEST_F(PilImages, DecodesExactlyAsPil) {
  MGD_REQUIRE_ORACLE();
  ASSERT_FALSE(refs_->empty());
  for (const auto& [name, ref] : *refs_) {
    const Image image = read_image(path(name));
    ASSERT_EQ(image.height, ref.height) << name;
    ASSERT_EQ(image.width, ref.width) << name;
    ASSERT_EQ(image.channels, 3) << name;
    // The same libjpeg-turbo with the same settings: identical, JPEG included.
    EXPECT_EQ(dt::max_abs_diff(image, ref), 0) << name;
  }
}

TEST_F(PilImages, RegionDecodeEqualsCropOfFullDecode) {
  MGD_REQUIRE_ORACLE();
  for (const std::string name : {"big.jpg", "big_progressive.jpg", "rgb420.jpg", "rgb422.jpg",
                                 "rgb444.jpg", "gray.jpg", "cmyk.jpg", "big.png"}) {
    const auto bytes = read_file(path(name));
    const Image full = decode_image(bytes.data(), bytes.size());
    std::mt19937_64 gen(11);
    for (int trial = 0; trial < 12; ++trial) {
      Region r;
      r.height = 1 + static_cast<int64_t>(gen() % full.height);
      r.width = 1 + static_cast<int64_t>(gen() % full.width);
      r.top = static_cast<int64_t>(gen() % (full.height - r.height + 1));
      r.left = static_cast<int64_t>(gen() % (full.width - r.width + 1));
      const Image part = decode_image(bytes.data(), bytes.size(), DecodeOptions().region(r));
      ASSERT_EQ(part.height, r.height);
      ASSERT_EQ(part.width, r.width);
      int worst = 0;
      for (int64_t y = 0; y < r.height; ++y) {
        for (int64_t x = 0; x < r.width * 3; ++x) {
          worst = std::max(
              worst, std::abs(int{part.row(y)[x]} - int{full.row(r.top + y)[r.left * 3 + x]}));
        }
      }
      EXPECT_EQ(worst, 0) << name << " region top " << r.top << " left " << r.left << " "
                          << r.height << "x" << r.width;
      if (name.find(".jpg") == std::string::npos) continue;
      // The wider rows: the region's rows, columns around it, its pixels the same.
      Region at;
      const Image rows =
          decode_jpeg_rows(bytes.data(), bytes.size(), DecodeOptions().region(r), name, &at);
      ASSERT_EQ(at.top, r.top);
      ASSERT_EQ(at.height, r.height);
      ASSERT_EQ(rows.height, r.height);
      ASSERT_EQ(rows.width, at.width);
      ASSERT_LE(at.left, r.left);
      ASSERT_GE(at.left + at.width, r.left + r.width);
      ASSERT_LE(at.left + at.width, full.width);
      worst = 0;
      for (int64_t y = 0; y < r.height; ++y) {
        for (int64_t x = 0; x < r.width * 3; ++x) {
          worst = std::max(worst, std::abs(int{rows.row(y)[(r.left - at.left) * 3 + x]} -
                                           int{full.row(r.top + y)[r.left * 3 + x]}));
        }
      }
      EXPECT_EQ(worst, 0) << name << " wider rows, region top " << r.top << " left " << r.left;
    }
  }
}

TEST_F(PilImages, ScaledJpegDecode) {
  MGD_REQUIRE_ORACLE();
  const auto bytes = read_file(path("big.jpg"));
  const Image full = decode_image(bytes.data(), bytes.size());
  for (int64_t m = 1; m <= 8; ++m) {
    const Image small = decode_jpeg(bytes.data(), bytes.size(), DecodeOptions().scale_eighths(m));
    // libjpeg's scaled size: ceil(side * m / 8).
    EXPECT_EQ(small.height, (375 * m + 7) / 8);
    EXPECT_EQ(small.width, (500 * m + 7) / 8);
  }
  const Image half = decode_jpeg(bytes.data(), bytes.size(), DecodeOptions().scale_eighths(4));
  // Half scale is (close to) the 2x2 box average of the full decode.
  double err = 0;
  for (int64_t y = 0; y < 187; ++y) {
    for (int64_t x = 0; x < 250; ++x) {
      for (int64_t c = 0; c < 3; ++c) {
        const double avg =
            (full.row(2 * y)[2 * x * 3 + c] + full.row(2 * y)[(2 * x + 1) * 3 + c] +
             full.row(2 * y + 1)[2 * x * 3 + c] + full.row(2 * y + 1)[(2 * x + 1) * 3 + c]) /
            4.0;
        err += std::abs(avg - half.row(y)[x * 3 + c]);
      }
    }
  }
  EXPECT_LT(err / (187 * 250 * 3), 3.0);
  EXPECT_THROW(decode_jpeg(bytes.data(), bytes.size(), DecodeOptions().scale_eighths(9)),
               c10::Error);
  // The fast IDCT is close to the accurate one.
  const Image fast = decode_jpeg(bytes.data(), bytes.size(), DecodeOptions().fast_idct(true));
  EXPECT_LT(dt::mean_abs_diff(fast, full), 2.0);
}

TEST(Image, RejectsBadRegions) {
  const auto bytes = encode_jpeg(dt::synthetic_image(20, 30, 3, 1));
  for (const Region& r :
       {Region{0, 0, 21, 30}, Region{0, 25, 5, 6}, Region{-1, 0, 5, 5}, Region{0, 0, 0, 5}}) {
    EXPECT_THROW(decode_jpeg(bytes.data(), bytes.size(), DecodeOptions().region(r)), c10::Error);
    const auto png = encode_png(dt::synthetic_image(20, 30, 3, 1));
    EXPECT_THROW(decode_png(png.data(), png.size(), DecodeOptions().region(r)), c10::Error);
  }
}

TEST(Image, PixelLimitIsCheckedBeforeDecoding) {
  const Image src = dt::synthetic_image(40, 50, 3, 2);
  for (const auto& bytes : {encode_jpeg(src), encode_png(src)}) {
    try {
      decode_image(bytes.data(), bytes.size(), DecodeOptions().max_pixels(1999), "x.img");
      FAIL() << "expected an error";
    } catch (const c10::Error& e) {
      EXPECT_NE(std::string(e.what()).find("exceeds the limit of 1999 pixels"), std::string::npos)
          << e.what();
      EXPECT_NE(std::string(e.what()).find("x.img"), std::string::npos);
    }
    EXPECT_NO_THROW(decode_image(bytes.data(), bytes.size(), DecodeOptions().max_pixels(2000)));
  }
}

void expect_error(const std::vector<uint8_t>& bytes, const std::string& what) {
  try {
    decode_image(bytes.data(), bytes.size(), {}, "bad.img");
    FAIL() << "expected an error containing '" << what << "'";
  } catch (const c10::Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("bad.img"), std::string::npos) << msg;
    EXPECT_NE(msg.find(what), std::string::npos) << msg;
  }
}

TEST(Image, CorruptAndTruncatedFilesThrow) {
  const Image src = dt::synthetic_image(48, 64, 3, 5);
  const auto jpeg = encode_jpeg(src);
  const auto png = encode_png(src);
  expect_error({}, "not a JPEG or PNG");
  expect_error({'G', 'I', 'F', '8', '9', 'a'}, "not a JPEG or PNG");
  // Cut inside the entropy-coded data: PIL says "image file is truncated"; so do we.
  expect_error(std::vector<uint8_t>(jpeg.begin(), jpeg.begin() + jpeg.size() / 2), "truncated");
  expect_error(std::vector<uint8_t>(jpeg.begin(), jpeg.begin() + 3), "JPEG");
  expect_error(std::vector<uint8_t>(jpeg.begin(), jpeg.begin() + 100), "JPEG");
  expect_error(std::vector<uint8_t>(png.begin(), png.begin() + png.size() / 2), "PNG");
  expect_error(std::vector<uint8_t>(png.begin(), png.begin() + 12), "PNG");
  // A flipped bit in the IHDR chunk breaks its CRC.
  auto bad_png = png;
  bad_png[18] ^= 0x40;
  expect_error(bad_png, "PNG");
  // A file, not a directory or a missing path.
  TempDir dir;
  EXPECT_THROW(read_image(dir.path()), c10::Error);
  try {
    read_image(dir / "missing.jpg");
    FAIL();
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what()).find("missing.jpg"), std::string::npos);
  }
}

TEST(Image, FileRoundTrip) {
  TempDir dir;
  const std::vector<uint8_t> bytes = {1, 2, 3, 0, 255};
  write_file(dir / "x.bin", bytes);
  EXPECT_EQ(read_file(dir / "x.bin"), bytes);
  // Larger than any first guess of a buffer, and empty.
  std::vector<uint8_t> big(300001);
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<uint8_t>(i * 7 + (i >> 9));
  write_file(dir / "big.bin", big);
  EXPECT_EQ(read_file(dir / "big.bin"), big);
  write_file(dir / "empty.bin", {});
  EXPECT_TRUE(read_file(dir / "empty.bin").empty());
  EXPECT_THROW(read_file(dir / "missing.bin"), c10::Error);
  EXPECT_THROW(read_file(dir.path()), c10::Error);
  EXPECT_THROW(write_file(dir / "no/such/dir.bin", bytes), c10::Error);
}

TEST(Image, MutationFuzzJpegAndPng) {
  // Small valid files of every kind the decoders handle, then thousands of mutants: each must
  // decode or throw, never crash (run under ASan by scripts/test --sanitize).
  std::vector<std::vector<uint8_t>> seeds;
  const Image rgb = dt::synthetic_image(19, 23, 3, 1);
  const Image gray = dt::synthetic_image(17, 9, 1, 2);
  seeds.push_back(encode_jpeg(rgb));
  seeds.push_back(encode_jpeg(rgb, JpegEncodeOptions().progressive(true)));
  seeds.push_back(encode_jpeg(rgb, JpegEncodeOptions().subsample(false)));
  seeds.push_back(encode_jpeg(gray));
  seeds.push_back(encode_png(rgb));
  seeds.push_back(encode_png(gray));
  const auto decode = [](const std::vector<uint8_t>& v) {
    const DecodeOptions options = DecodeOptions().max_pixels(1 << 20);
    const Image image = decode_image(v.data(), v.size(), options);
    if (image.height > 2 && image.width > 2) {
      decode_image(v.data(), v.size(),
                   DecodeOptions(options).region(Region{1, 1, image.height - 2, image.width - 2}));
    }
    if (detect_image_format(v.data(), v.size()) == ImageFormat::kJpeg) {
      decode_jpeg(v.data(), v.size(), DecodeOptions(options).scale_eighths(3));
    }
  };
  const auto [ok, threw] = dt::mutation_fuzz(seeds, 3000, 2024, decode);
  EXPECT_EQ(ok + threw, 3000);
  EXPECT_GT(threw, 0);
  EXPECT_GT(ok, 0);
  std::cout << "[ fuzz ] image mutants: " << ok << " decoded, " << threw << " rejected\n";
}

}  // namespace
