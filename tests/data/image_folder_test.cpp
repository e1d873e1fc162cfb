#include "mgd/data/image_folder.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>

#include "data/data_testing.h"
#include "mgd/data/loader.h"

namespace {

using namespace mgd::data;
namespace dt = mgd::data_testing;
namespace fs = std::filesystem;
using dt::expect_error;
using dt::TempDir;

void write_jpeg(const std::string& path, int64_t h, int64_t w, uint64_t seed) {
  fs::create_directories(fs::path(path).parent_path());
  write_file(path, encode_jpeg(dt::synthetic_image(h, w, 3, seed)));
}

void write_png(const std::string& path, int64_t h, int64_t w, uint64_t seed) {
  fs::create_directories(fs::path(path).parent_path());
  write_file(path, encode_png(dt::synthetic_image(h, w, 3, seed)));
}

void write_text(const std::string& path, const std::string& text) {
  fs::create_directories(fs::path(path).parent_path());
  std::ofstream(path) << text;
}

// root/train/{cat, dog, "sea lion"}, root/valid/{cat, dog, "sea lion"}, with nested folders,
// mixed case extensions, a PNG named .jpg and files that are not images.
void make_folder(const std::string& root) {
  uint64_t seed = 0;
  for (const std::string split : {"train", "valid"}) {
    const std::string s = root + "/" + split;
    write_jpeg(s + "/dog/b.jpg", 40, 50, ++seed);
    write_jpeg(s + "/dog/a.JPG", 50, 40, ++seed);
    write_png(s + "/dog/c.png", 33, 47, ++seed);
    write_jpeg(s + "/dog/sub/z.jpeg", 30, 30, ++seed);
    write_jpeg(s + "/dog/sub dir/y.jpg", 30, 31, ++seed);
    write_png(s + "/cat/really_a_png.jpg", 45, 45, ++seed);
    write_jpeg(s + "/cat/x.jpg", 60, 80, ++seed);
    write_text(s + "/cat/notes.txt", "not an image");
    write_jpeg(s + "/sea lion/1.jpg", 64, 48, ++seed);
    write_jpeg(s + "/sea lion/10.jpg", 64, 48, ++seed);
    write_jpeg(s + "/sea lion/2.jpg", 64, 48, ++seed);
  }
  write_text(root + "/train/README", "a file beside the class folders");
}

TEST(ImageFolder, ScanOrderAndLabels) {
  TempDir dir;
  make_folder(dir.path());
  const FolderIndex index = scan_image_folder(dir / "train");
  EXPECT_EQ(index.classes, (std::vector<std::string>{"cat", "dog", "sea lion"}));
  std::vector<std::string> names;
  for (const auto& s : index.samples)
    names.push_back(fs::path(s.first).lexically_relative(dir / "train").string());
  EXPECT_EQ(names,
            (std::vector<std::string>{"cat/really_a_png.jpg", "cat/x.jpg", "dog/a.JPG", "dog/b.jpg",
                                      "dog/c.png", "dog/sub/z.jpeg", "dog/sub dir/y.jpg",
                                      "sea lion/1.jpg", "sea lion/10.jpg", "sea lion/2.jpg"}));
  const std::vector<int64_t> labels = {0, 0, 1, 1, 1, 1, 1, 2, 2, 2};
  for (size_t i = 0; i < labels.size(); ++i) EXPECT_EQ(index.samples[i].second, labels[i]);
}

TEST(ImageFolder, SameSamplesAsTorchvision) {
  MGD_REQUIRE_ORACLE();
  TempDir dir;
  make_folder(dir.path());
  ASSERT_EQ(
      dt::run_python(dt::oracle_script() + " folder '" + (dir / "train") + "' " + (dir / "tv.txt")),
      0);
  std::ifstream in(dir / "tv.txt");
  std::string line;
  std::getline(in, line);
  EXPECT_EQ(line, "cat\tdog\tsea lion");
  const FolderIndex index = scan_image_folder(dir / "train");
  size_t i = 0;
  while (std::getline(in, line)) {
    ASSERT_LT(i, index.samples.size());
    const auto tab = line.rfind('\t');
    EXPECT_EQ(line.substr(0, tab), index.samples[i].first);
    EXPECT_EQ(std::stoll(line.substr(tab + 1)), index.samples[i].second);
    ++i;
  }
  EXPECT_EQ(i, index.samples.size());
}

// The loader's batches hold exactly what get() returns sample by sample, whether the images
// reach the batch by get_into (written in place) or by a copy; get_into writes into the slot
// it is given when the shape fits and returns a new tensor otherwise.
TEST(ImageFolder, LoaderWritesImagesInPlaceExactly) {
  TempDir dir;
  make_folder(dir.path());
  auto ds = std::make_shared<ImageFolderDataset>(
      ImageFolderOptions(dir.path()), imagenet_train_transform(24));
  Loader loader(ds, LoaderOptions().batch_size(4).shuffle(true).seed(3).workers(0));
  int64_t seen = 0;
  for (Batch& b : loader) {
    for (int64_t k = 0; k < b.indices.size(0); ++k, ++seen) {
      const int64_t index = b.indices[k].item<int64_t>();
      Rng rng = Rng::for_sample(3, 0, index);
      EXPECT_TRUE(torch::equal(b.images[k], ds->get(index, rng).image)) << "sample " << index;
    }
  }
  EXPECT_EQ(seen, ds->size());
  auto slot = torch::empty({3, 24, 24});
  Rng rng = Rng::for_sample(3, 0, 1);
  EXPECT_EQ(ds->get_into(1, rng, slot).image.data_ptr(), slot.data_ptr());
  auto wrong = torch::empty({3, 24, 25});
  rng = Rng::for_sample(3, 0, 1);
  const auto fresh = ds->get_into(1, rng, wrong).image;
  EXPECT_NE(fresh.data_ptr(), wrong.data_ptr());
  EXPECT_TRUE(torch::equal(fresh, slot));
}

TEST(ImageFolder, SplitDirectories) {
  TempDir dir;
  make_folder(dir.path());
  EXPECT_EQ(image_folder_split_dir(dir.path(), "train"), dir / "train");
  EXPECT_EQ(image_folder_split_dir(dir.path(), "test"), dir / "valid");
  ImageFolderDataset test(ImageFolderOptions(dir.path()).split("test"), imagenet_eval_transform());
  EXPECT_EQ(test.directory(), dir / "valid");
  EXPECT_EQ(test.size(), 10);
  EXPECT_EQ(test.num_classes(), 3);
  EXPECT_EQ(test.channels(), 3);
  // ImageNet's own name for it.
  fs::rename(dir / "valid", dir / "val");
  EXPECT_EQ(image_folder_split_dir(dir.path(), "test"), dir / "val");
}

TEST(ImageFolder, BadLayoutsThrowClearly) {
  TempDir dir;
  const Compose t = imagenet_eval_transform();
  expect_error([&] { ImageFolderDataset(ImageFolderOptions(dir / "nope"), t); },
               {dir / "nope", "missing or not a directory"});
  expect_error([&] { ImageFolderDataset(ImageFolderOptions(dir.path()), t); },
               {dir / "train", "does not exist"});
  fs::create_directories(dir / "train");
  write_text(dir / "train/file.jpg", "x");
  expect_error([&] { ImageFolderDataset(ImageFolderOptions(dir.path()), t); },
               {"no class directories in " + (dir / "train")});
  write_jpeg(dir / "train/a/1.jpg", 10, 10, 1);
  fs::create_directories(dir / "train/b/nested");
  write_text(dir / "train/b/readme.txt", "x");
  expect_error([&] { ImageFolderDataset(ImageFolderOptions(dir.path()), t); },
               {"no .jpg, .jpeg or .png image in class directory", dir / "train/b"});
  // An unreadable directory (permissions do not bind root, so only when not root).
  if (::geteuid() != 0) {
    fs::create_directories(dir / "locked/train/a");
    fs::permissions(dir / "locked/train", fs::perms::none);
    EXPECT_THROW(ImageFolderDataset(ImageFolderOptions(dir / "locked"), t), c10::Error);
    fs::permissions(dir / "locked/train", fs::perms::owner_all);
  }
}

TEST(ImageFolder, DecodeShortcutsAreExact) {
  // Decoding only the crop box must not change a single value: the same tensors as the plain
  // decode-then-transform path, for the training and the evaluation pipeline.
  TempDir dir;
  for (int i = 0; i < 6; ++i)
    write_jpeg(dir / ("train/a/" + std::to_string(i) + ".jpg"), 200 + 37 * i, 300 - 23 * i, i);
  write_png(dir / "train/a/p.png", 120, 90, 9);
  for (const Compose& t : {imagenet_train_transform(64), imagenet_eval_transform(73, 64)}) {
    ImageFolderDataset fast(ImageFolderOptions(dir.path()), t);
    ImageFolderDataset plain(ImageFolderOptions(dir.path()).decode_region(false), t);
    for (int64_t i = 0; i < fast.size(); ++i) {
      for (uint64_t seed = 0; seed < 4; ++seed) {
        Rng a = Rng::for_sample(seed, 0, i), b = a;
        const Example x = fast.get(i, a), y = plain.get(i, b);
        ASSERT_EQ(x.image.sizes(), (std::vector<int64_t>{3, 64, 64}));
        EXPECT_TRUE(torch::equal(x.image, y.image)) << t.describe() << " sample " << i;
        EXPECT_EQ(a.next_u64(), b.next_u64());
      }
    }
  }
}

TEST(ImageFolder, ReducingGapIsClose) {
  // DCT-domain shrinking of a large JPEG before the resize: approximate, but close.
  TempDir dir;
  write_jpeg(dir / "train/a/big.jpg", 1200, 1600, 3);
  const Compose t = imagenet_eval_transform(64 * 8 / 7, 64);
  ImageFolderDataset exact(ImageFolderOptions(dir.path()), t);
  ImageFolderDataset reduced(ImageFolderOptions(dir.path()).reducing_gap(2.0), t);
  Rng a(1), b(1);
  const torch::Tensor x = exact.get(0, a).image, y = reduced.get(0, b).image;
  ASSERT_EQ(x.sizes(), y.sizes());
  // In units of the normalised tensor (1/255 / 0.225 ~ 0.017 per level).
  EXPECT_LT((x - y).abs().mean().item<double>(), 0.03);
  EXPECT_THROW(ImageFolderDataset(ImageFolderOptions(dir.path()).reducing_gap(0.5), t), c10::Error);
}

TEST(ImageFolder, EvalPipelineMatchesTorchvision) {
  MGD_REQUIRE_ORACLE();
  TempDir dir;
  make_folder(dir.path());
  write_jpeg(dir / "valid/dog/big.jpg", 375, 500, 77);
  ImageFolderDataset ds(ImageFolderOptions(dir.path()).split("test"),
                        imagenet_eval_transform(36, 32));
  {
    std::ofstream jobs(dir / "jobs.txt");
    for (int64_t i = 0; i < ds.size(); ++i) {
      jobs << "eval\t" << ds.index().samples[i].first << "\t" << (dir / ("t" + std::to_string(i)))
           << "\t36\t32\n";
    }
  }
  ASSERT_EQ(dt::run_python(dt::oracle_script() + " jobs " + (dir / "jobs.txt")), 0);
  for (int64_t i = 0; i < ds.size(); ++i) {
    Rng rng(0);
    const torch::Tensor mine = ds.get(i, rng).image;
    auto theirs =
        dt::read_floats(dir / ("t" + std::to_string(i)), static_cast<size_t>(mine.numel()));
    EXPECT_TRUE(torch::equal(mine, torch::from_blob(theirs.data(), mine.sizes())))
        << ds.index().samples[i].first << " max diff "
        << (mine - torch::from_blob(theirs.data(), mine.sizes())).abs().max().item<float>();
  }
}

TEST(ImageFolder, CorruptImagesAreSubstitutedOrFatal) {
  TempDir dir;
  write_jpeg(dir / "train/a/0.jpg", 40, 40, 1);
  const auto good = encode_jpeg(dt::synthetic_image(40, 40, 3, 2));
  write_file(dir / "train/a/1.jpg",
             std::vector<uint8_t>(good.begin(), good.begin() + good.size() / 2));
  write_text(dir / "train/a/2.png", "garbage, not a PNG");
  write_jpeg(dir / "train/b/3.jpg", 40, 40, 3);
  const Compose t = imagenet_eval_transform(36, 32);
  ImageFolderDataset ds(ImageFolderOptions(dir.path()), t);
  ASSERT_EQ(ds.size(), 4);
  Rng rng(5);
  // Samples 1 and 2 are unreadable: both become sample 3 (label 1), with sample 1's or 2's
  // randomness.
  const Example e1 = ds.get(1, rng);
  EXPECT_EQ(e1.label, 1);
  EXPECT_EQ(ds.num_corrupt(), 2);
  Rng r3(5);
  EXPECT_TRUE(torch::equal(e1.image, ds.get(3, r3).image));
  const Example e2 = ds.get(2, rng);  // already known bad: no new log, same substitute
  EXPECT_EQ(e2.label, 1);
  EXPECT_EQ(ds.num_corrupt(), 2);
  const auto bad = ds.corrupt_files();
  ASSERT_EQ(bad.size(), 2u);
  EXPECT_EQ(bad[0], dir / "train/a/1.jpg");
  // Fatal: the error names the file and what is wrong.
  ImageFolderDataset strict(ImageFolderOptions(dir.path()).skip_corrupt(false), t);
  expect_error([&] { strict.get(1, rng); }, {dir / "train/a/1.jpg", "truncated"});
  expect_error([&] { strict.get(2, rng); }, {dir / "train/a/2.png", "not a JPEG or PNG"});
  EXPECT_EQ(strict.get(0, rng).label, 0);
  // Too many consecutive bad files.
  ImageFolderDataset impatient(ImageFolderOptions(dir.path()).max_substitutions(2), t);
  expect_error([&] { impatient.get(1, rng); }, {"2 consecutive unreadable samples"});
  // Transform errors are not the file's fault: they propagate.
  ImageFolderDataset misconfigured(ImageFolderOptions(dir.path()),
                                   Compose({std::make_shared<RandomCrop>(RandomCropOptions(500))}));
  EXPECT_THROW(misconfigured.get(0, rng), c10::Error);
  EXPECT_EQ(misconfigured.num_corrupt(), 0);
}

}  // namespace
