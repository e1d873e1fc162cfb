#include "mgd/data/image_folder.h"
#include "mgd/util/messages.h"

#include <c10/util/Exception.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <filesystem>

namespace mgd {
namespace data {
namespace {

namespace fs = std::filesystem;

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

bool decodable(const std::string& name) {
  const std::string n = lower(name);
  return ends_with(n, ".jpg") || ends_with(n, ".jpeg") || ends_with(n, ".png");
}

// Image types torchvision's ImageFolder takes that mgd does not decode.
bool other_image(const std::string& name) {
  const std::string n = lower(name);
  for (const char* ext : {".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp"}) {
    if (ends_with(n, ext)) return true;
  }
  return false;
}

// One directory of os.walk(): its path and the names of the non-directories in it.
struct WalkEntry {
  std::string path;
  std::vector<std::string> files;
};

// os.walk(top, followlinks=True), without order; a symlink cycle is cut at depth 64.
void walk(const fs::path& dir, int depth, std::vector<WalkEntry>* out) {
  TORCH_CHECK(depth < 64, "ImageFolder: directories nested too deep (a symlink cycle?) at ",
              dir.string());
  WalkEntry entry;
  entry.path = dir.string();
  std::vector<fs::path> subdirs;
  std::error_code ec;
  fs::directory_iterator it(dir, ec);
  TORCH_CHECK(!ec, "ImageFolder: cannot read directory ", dir.string(), ": ", ec.message());
  for (; it != fs::directory_iterator(); it.increment(ec)) {
    TORCH_CHECK(!ec, "ImageFolder: cannot read directory ", dir.string(), ": ", ec.message());
    std::error_code ec2;
    if (it->is_directory(ec2)) {  // follows symlinks, as followlinks=True
      subdirs.push_back(it->path());
    } else {
      entry.files.push_back(it->path().filename().string());
    }
  }
  std::sort(entry.files.begin(), entry.files.end());
  out->push_back(std::move(entry));
  for (const auto& sub : subdirs) walk(sub, depth + 1, out);
}

}  // namespace

std::string image_folder_split_dir(const std::string& root, const std::string& split) {
  std::error_code ec;
  if (split == "test") {
    for (const char* name : {"valid", "val"}) {
      if (fs::is_directory(fs::path(root) / name, ec)) return (fs::path(root) / name).string();
    }
    return (fs::path(root) / "valid").string();
  }
  return (fs::path(root) / split).string();
}

FolderIndex scan_image_folder(const std::string& dir) {
  std::error_code ec;
  TORCH_CHECK(fs::exists(dir, ec), "ImageFolder: ", dir,
              " does not exist (expected <root>/<split>/<class>/<image>)");
  TORCH_CHECK(fs::is_directory(dir, ec), "ImageFolder: ", dir, " is not a directory");
  FolderIndex index;
  fs::directory_iterator it(dir, ec);
  TORCH_CHECK(!ec, "ImageFolder: cannot read directory ", dir, ": ", ec.message());
  for (; it != fs::directory_iterator(); it.increment(ec)) {
    TORCH_CHECK(!ec, "ImageFolder: cannot read directory ", dir, ": ", ec.message());
    std::error_code ec2;
    if (it->is_directory(ec2)) index.classes.push_back(it->path().filename().string());
  }
  TORCH_CHECK(!index.classes.empty(), "ImageFolder: no class directories in ", dir, " (expected ",
              dir, "/<class>/<image>)");
  std::sort(index.classes.begin(), index.classes.end());
  std::vector<std::string> empty;
  int64_t skipped = 0;
  for (size_t label = 0; label < index.classes.size(); ++label) {
    std::vector<WalkEntry> entries;
    walk(fs::path(dir) / index.classes[label], 0, &entries);
    // sorted(os.walk(...)) orders the directories by path.
    std::sort(entries.begin(), entries.end(),
              [](const WalkEntry& a, const WalkEntry& b) { return a.path < b.path; });
    const size_t before = index.samples.size();
    for (const auto& e : entries) {
      for (const auto& f : e.files) {
        if (decodable(f)) {
          index.samples.emplace_back((fs::path(e.path) / f).string(), static_cast<int64_t>(label));
        } else if (other_image(f)) {
          ++skipped;
        }
      }
    }
    if (index.samples.size() == before) empty.push_back(index.classes[label]);
  }
  TORCH_CHECK(empty.empty(), "ImageFolder: no .jpg, .jpeg or .png image in class ",
              empty.size() == 1 ? "directory " : "directories ", c10::Join(", ", [&] {
                std::vector<std::string> paths;
                for (const auto& c : empty) paths.push_back((fs::path(dir) / c).string());
                return paths;
              }()));
  if (skipped > 0) {
    mgd::warn(c10::str("ImageFolder: ", skipped, " image files in ", dir,
               " are of types mgd does not decode (.bmp, .ppm, .pgm, .tif, .webp) and are left out;"
               " torchvision's ImageFolder would include them, so sample indices differ from it"));
  }
  return index;
}

ImageFolderDataset::ImageFolderDataset(ImageFolderOptions options, Compose transform)
    : options_(std::move(options)), transform_(std::move(transform)) {
  TORCH_CHECK(options_.max_substitutions() >= 1,
              "Invalid ImageFolderOptions::max_substitutions: ", options_.max_substitutions());
  TORCH_CHECK(options_.reducing_gap() == 0 || options_.reducing_gap() >= 1,
              "Invalid ImageFolderOptions::reducing_gap: ", options_.reducing_gap(),
              " (0 for off, else >= 1)");
  std::error_code ec;
  TORCH_CHECK(fs::is_directory(options_.root(), ec), "ImageFolder: data root ", options_.root(),
              " is missing or not a directory");
  dir_ = image_folder_split_dir(options_.root(), options_.split());
  index_ = scan_image_folder(dir_);
}

int64_t ImageFolderDataset::label(int64_t index) const {
  TORCH_CHECK(index >= 0 && index < size(), "ImageFolder: index ", index, " out of range for ",
              size(), " samples");
  return index_.samples[index].second;
}

int64_t ImageFolderDataset::num_corrupt() const {
  std::lock_guard<std::mutex> lock(corrupt_mutex_);
  return static_cast<int64_t>(corrupt_.size());
}

std::vector<std::string> ImageFolderDataset::corrupt_files() const {
  std::lock_guard<std::mutex> lock(corrupt_mutex_);
  std::vector<std::string> files;
  for (int64_t i : corrupt_) files.push_back(index_.samples[i].first);
  return files;
}

namespace {

// A JPEG through the first step's crop-and-resize: decode only the pixels the resampling
// reads (exact), optionally shrunk in the DCT domain (approximate), then resample them. The
// plan was drawn on the full-size image, so the random choices are those of the plain path.
Image decode_planned(const std::vector<uint8_t>& bytes, const ImageInfo& info,
                     const ResizePlan& plan, const ImageFolderOptions& options,
                     const std::string& path) {
  int64_t eighths = 8;
  if (options.reducing_gap() > 0) {
    const double gap = options.reducing_gap();
    for (int64_t m = 1; m < 8; ++m) {
      if (plan.height * m / 8 >= gap * plan.out_height &&
          plan.width * m / 8 >= gap * plan.out_width) {
        eighths = m;
        break;
      }
    }
  }
  // libjpeg's scaled size: ceil(side * m / 8).
  const int64_t h = (info.height * eighths + 7) / 8;
  const int64_t w = (info.width * eighths + 7) / 8;
  const double sy = static_cast<double>(h) / static_cast<double>(info.height);
  const double sx = static_cast<double>(w) / static_cast<double>(info.width);
  ResizePlan p = plan;
  p.top *= sy;
  p.height = std::min(p.height * sy, static_cast<double>(h) - p.top);
  p.left *= sx;
  p.width = std::min(p.width * sx, static_cast<double>(w) - p.left);
  DecodeOptions decode;
  decode.max_pixels(options.max_pixels()).scale_eighths(eighths);
  Region source{0, 0, h, w};
  if (options.decode_region()) {
    source = resize_source(p);
    decode.region(source);
  }
  // The rows as libjpeg decodes them (the region and a few columns around it): no copy.
  Region decoded;
  const Image image = decode_jpeg_rows(bytes.data(), bytes.size(), decode, path, &decoded);
  TORCH_CHECK(decoded.top == source.top && decoded.height == source.height &&
                  decoded.left <= source.left &&
                  decoded.left + decoded.width >= source.left + source.width,
              "cannot decode JPEG ", path, ": decoded ", decoded.width, "x", decoded.height,
              " at (", decoded.top, ", ", decoded.left, "), expected ", source.width, "x",
              source.height, " at (", source.top, ", ", source.left, ")");
  return resize_region(image, p, decoded.top, decoded.left);
}

}  // namespace

Image ImageFolderDataset::decode_sample(int64_t index, Rng& rng, size_t* next_step) const {
  const std::string& path = index_.samples[index].first;
  const std::vector<uint8_t> bytes = read_file(path);
  const auto& steps = transform_.steps();
  const bool shortcut = options_.decode_region() || options_.reducing_gap() > 0;
  *next_step = 0;
  if (shortcut && !steps.empty() &&
      detect_image_format(bytes.data(), bytes.size()) == ImageFormat::kJpeg) {
    const ImageInfo info = read_image_info(bytes.data(), bytes.size(), path);
    TORCH_CHECK(info.height * info.width <= options_.max_pixels(), "cannot decode JPEG ", path,
                ": image of ", info.width, "x", info.height, " pixels exceeds the limit of ",
                options_.max_pixels(), " pixels");
    if (auto plan = steps[0]->plan(info.height, info.width, rng)) {
      *next_step = 1;
      // Resize then CenterCrop: decode and resample only the kept box.
      if (steps.size() > 1) {
        if (auto box = fold_crop(*steps[1], plan->out_height, plan->out_width)) {
          plan->window = *box;
          *next_step = 2;
        }
      }
      // Then a horizontal flip: drawn now, in its turn, and done by the horizontal pass.
      if (steps.size() > *next_step) {
        if (auto mirror = steps[*next_step]->mirror(rng)) {
          plan->mirror = *mirror;
          ++*next_step;
        }
      }
      return decode_planned(bytes, info, *plan, options_, path);
    }
  }
  DecodeOptions decode;
  decode.max_pixels(options_.max_pixels());
  return decode_image(bytes.data(), bytes.size(), decode, path);
}

torch::Tensor ImageFolderDataset::load(int64_t index, Rng& rng) const {
  TORCH_CHECK(index >= 0 && index < size(), "ImageFolder: index ", index, " out of range for ",
              size(), " samples");
  size_t next_step = 0;
  Image image = decode_sample(index, rng, &next_step);
  transform_.apply_steps(image, rng, next_step);
  return transform_.finish(image);
}

Example ImageFolderDataset::get(int64_t index, Rng& rng) const {
  return get_into(index, rng, torch::Tensor());
}

Example ImageFolderDataset::get_into(int64_t index, Rng& rng, const torch::Tensor& into) const {
  TORCH_CHECK(index >= 0 && index < size(), "ImageFolder: index ", index, " out of range for ",
              size(), " samples");
  std::string last_error;
  for (int64_t attempt = 0; attempt < options_.max_substitutions(); ++attempt) {
    const int64_t i = (index + attempt) % size();
    if (options_.skip_corrupt()) {
      std::lock_guard<std::mutex> lock(corrupt_mutex_);
      if (corrupt_.count(i)) continue;
    }
    // Every attempt starts from the randomness sample `index` was given.
    Rng attempt_rng = rng;
    size_t next_step = 0;
    Image image;
    try {
      image = decode_sample(i, attempt_rng, &next_step);
    } catch (const c10::Error& e) {
      if (!options_.skip_corrupt()) throw;
      last_error = e.what_without_backtrace();
      int64_t count;
      {
        std::lock_guard<std::mutex> lock(corrupt_mutex_);
        corrupt_.insert(i);
        count = static_cast<int64_t>(corrupt_.size());
      }
      mgd::warn(c10::str("ImageFolder: skipping an unreadable image (", count,
                         " so far; the next readable sample is used in its place): ",
                         last_error));
      TORCH_CHECK(count < size(), "ImageFolder: none of the ", size(), " images in ", dir_,
                  " can be read; the last error: ", last_error);
      continue;
    }
    // Errors of the transforms are not the file's fault: they propagate.
    transform_.apply_steps(image, attempt_rng, next_step);
    rng = attempt_rng;
    return {transform_.finish(image, into), index_.samples[i].second};
  }
  {
    std::lock_guard<std::mutex> lock(corrupt_mutex_);
    TORCH_CHECK(static_cast<int64_t>(corrupt_.size()) < size(), "ImageFolder: none of the ",
                size(), " images in ", dir_, " can be read",
                (last_error.empty() ? std::string() : "; the last error: " + last_error));
  }
  TORCH_CHECK(false, "ImageFolder: ", std::min<int64_t>(options_.max_substitutions(), size()),
              " consecutive unreadable samples from index ", index, " in ", dir_,
              (last_error.empty() ? std::string() : "; last error: " + last_error));
}

}  // namespace data
}  // namespace mgd
