#include "mgd/data/scenes.h"

#include <ATen/Parallel.h>
#include <c10/util/Exception.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "mgd/data/dataset.h"
#include "mgd/data/image.h"
#include "mgd/data/rng.h"
#include "mgd/data/transforms.h"

namespace mgd {
namespace data {
namespace {

namespace fs = std::filesystem;
using ojson = nlohmann::ordered_json;

// Rng streams: (seed, kSplitStream + split, canvas index).
constexpr int64_t kSplitStream = 1000;
// Object placements tried before an object is given up.
constexpr int kPlacementTries = 50;
// Clutter fragments are at most this many pixels on a side (objects are at least 16).
constexpr int64_t kMaxFragment = 12;

// Fashion-MNIST items of one split: uint8 N x 28 x 28 (x 1) and their labels.
struct Source {
  torch::Tensor images;
  torch::Tensor labels;
  int64_t count() const { return images.size(0); }
  int64_t side() const { return images.size(1); }

  Image item(int64_t i) const {
    Image im(side(), images.size(2), 1);
    std::memcpy(im.data.data(),
                images.data_ptr<uint8_t>() + i * static_cast<int64_t>(im.data.size()),
                im.data.size());
    return im;
  }
  int64_t label(int64_t i) const { return labels.data_ptr<int64_t>()[i]; }
};

Source load_source(const std::string& root, const std::string& split) {
  auto ds = make_dataset(DatasetOptions("fashion-mnist", root).split(split).augment(false));
  const auto* t = dynamic_cast<const TensorImageDataset*>(ds.get());
  TORCH_CHECK(t, "write_scenes: Fashion-MNIST did not load as in-memory images");
  return {t->images().contiguous(), t->labels().contiguous()};
}

// The tight box of the pixels above zero ({0, 0, 0, 0} when there are none).
Region nonzero_box(const Image& im) {
  int64_t y0 = im.height, y1 = -1, x0 = im.width, x1 = -1;
  for (int64_t y = 0; y < im.height; ++y) {
    const uint8_t* r = im.row(y);
    for (int64_t x = 0; x < im.width; ++x) {
      if (r[x] > 0) {
        y0 = std::min(y0, y), y1 = std::max(y1, y);
        x0 = std::min(x0, x), x1 = std::max(x1, x);
      }
    }
  }
  if (y1 < 0) return {0, 0, 0, 0};
  return {y0, x0, y1 - y0 + 1, x1 - x0 + 1};
}

Image resize_box(const Image& im, const Region& box, int64_t out_h, int64_t out_w) {
  ResizePlan plan;
  plan.top = static_cast<double>(box.top);
  plan.left = static_cast<double>(box.left);
  plan.height = static_cast<double>(box.height);
  plan.width = static_cast<double>(box.width);
  plan.out_height = out_h;
  plan.out_width = out_w;
  return resize_region(im, plan);
}

// canvas = max(canvas, gain * patch) with the patch's pixel (0, 0) at (top, left); pixels
// falling outside the canvas are dropped. Returns the patch's nonzero pixels that landed.
int64_t blend_max(Image& canvas, const Image& patch, int64_t top, int64_t left, double gain) {
  int64_t count = 0;
  for (int64_t y = 0; y < patch.height; ++y) {
    const int64_t cy = top + y;
    if (cy < 0 || cy >= canvas.height) continue;
    const uint8_t* p = patch.row(y);
    uint8_t* c = canvas.row(cy);
    for (int64_t x = 0; x < patch.width; ++x) {
      const int64_t cx = left + x;
      if (cx < 0 || cx >= canvas.width || p[x] == 0) continue;
      const auto v = static_cast<uint8_t>(std::lround(p[x] * gain));
      c[cx] = std::max(c[cx], v);
      ++count;
    }
  }
  return count;
}

struct Object {
  int64_t x = 0, y = 0, w = 0, h = 0;  // the box, COCO's [x, y, w, h]
  int64_t area = 0;                    // pixels of the object
  int64_t label = 0;                   // 0..9
};

struct Canvas {
  std::vector<uint8_t> png;
  std::vector<Object> objects;
};

double box_iou(const Object& a, const Object& b, double* cover) {
  const int64_t iw = std::min(a.x + a.w, b.x + b.w) - std::max(a.x, b.x);
  const int64_t ih = std::min(a.y + a.h, b.y + b.h) - std::max(a.y, b.y);
  const double inter = iw > 0 && ih > 0 ? static_cast<double>(iw * ih) : 0.0;
  const double aa = static_cast<double>(a.w * a.h), ab = static_cast<double>(b.w * b.h);
  *cover = inter / std::min(aa, ab);
  return inter / (aa + ab - inter);
}

Canvas make_canvas(const Source& src, const ScenesOptions& o, Rng& rng) {
  const int64_t size = o.size();
  Image canvas(size, size, 1);
  // Background: a dark level with pixel noise.
  const int64_t base = rng.randint(0, 40), noise = rng.randint(1, 17);
  for (auto& v : canvas.data) v = static_cast<uint8_t>(base + rng.randint(0, noise));
  // Clutter: small fragments of random items, dimmed; not annotated.
  const int64_t fragments = rng.randint(0, o.max_clutter() + 1);
  for (int64_t f = 0; f < fragments; ++f) {
    const Image item = src.item(rng.randint(0, src.count()));
    const Region box = nonzero_box(item);
    if (box.height < 2 || box.width < 2) continue;
    Region piece;
    piece.height = std::min(box.height, rng.randint(3, 9));
    piece.width = std::min(box.width, rng.randint(3, 9));
    piece.top = box.top + rng.randint(0, box.height - piece.height + 1);
    piece.left = box.left + rng.randint(0, box.width - piece.width + 1);
    const double scale = rng.uniform(0.7, 1.5);
    const int64_t ph = std::min<int64_t>(
        kMaxFragment, std::max<int64_t>(2, std::lround(static_cast<double>(piece.height) * scale)));
    const int64_t pw = std::min<int64_t>(
        kMaxFragment, std::max<int64_t>(2, std::lround(static_cast<double>(piece.width) * scale)));
    const Image patch = resize_box(item, piece, ph, pw);
    const int64_t top = rng.randint(0, size - ph + 1), left = rng.randint(0, size - pw + 1);
    blend_max(canvas, patch, top, left, rng.uniform(0.3, 0.8));
  }
  // Objects.
  Canvas out;
  const int64_t wanted = rng.randint(o.min_objects(), o.max_objects() + 1);
  const double log_lo = std::log(static_cast<double>(o.min_object_size()));
  const double log_hi = std::log(static_cast<double>(o.max_object_size()) + 1.0);
  for (int64_t n = 0; n < wanted; ++n) {
    const int64_t index = rng.randint(0, src.count());
    const Image item = src.item(index);
    const Region box = nonzero_box(item);
    int64_t side = static_cast<int64_t>(std::floor(std::exp(rng.uniform(log_lo, log_hi))));
    side = std::min({std::max(side, o.min_object_size()), o.max_object_size(), size});
    const double s =
        static_cast<double>(side) / static_cast<double>(std::max(box.height, box.width));
    const int64_t tries_seed = rng.randint(0, 1 << 30);  // placements use their own stream
    if (box.height == 0) continue;
    const Image patch = resize_box(
        item, box, std::max<int64_t>(1, std::lround(static_cast<double>(box.height) * s)),
        std::max<int64_t>(1, std::lround(static_cast<double>(box.width) * s)));
    const Region tight = nonzero_box(patch);
    if (tight.height == 0) continue;
    Rng place(static_cast<uint64_t>(tries_seed));
    for (int t = 0; t < kPlacementTries; ++t) {
      Object obj;
      obj.w = tight.width;
      obj.h = tight.height;
      obj.x = place.randint(0, size - obj.w + 1);
      obj.y = place.randint(0, size - obj.h + 1);
      bool ok = true;
      for (const Object& other : out.objects) {
        double cover = 0;
        if (box_iou(obj, other, &cover) > o.max_overlap() || cover > 0.5) {
          ok = false;
          break;
        }
      }
      if (!ok) continue;
      obj.area = blend_max(canvas, patch, obj.y - tight.top, obj.x - tight.left, 1.0);
      obj.label = src.label(index);
      out.objects.push_back(obj);
      break;
    }
  }
  // zlib's fastest level: the noisy canvases barely compress better at the default, at four
  // times the cost.
  out.png = encode_png(canvas, 1);
  return out;
}

void check_options(const ScenesOptions& o) {
  TORCH_CHECK(!o.output().empty(), "write_scenes: no output directory");
  TORCH_CHECK(o.train() >= 0 && o.val() >= 0, "write_scenes: invalid image counts train ",
              o.train(), ", val ", o.val());
  TORCH_CHECK(o.size() >= 16 && o.size() <= 4096, "write_scenes: invalid canvas size ", o.size(),
              " (16..4096 px)");
  TORCH_CHECK(o.min_objects() >= 1 && o.max_objects() >= o.min_objects(),
              "write_scenes: invalid object counts ", o.min_objects(), "..", o.max_objects());
  TORCH_CHECK(o.min_object_size() >= 4 && o.max_object_size() >= o.min_object_size() &&
                  o.min_object_size() <= o.size(),
              "write_scenes: invalid object sizes ", o.min_object_size(), "..", o.max_object_size(),
              " for a ", o.size(), " px canvas");
  TORCH_CHECK(o.max_overlap() >= 0 && o.max_overlap() <= 1, "write_scenes: invalid max_overlap ",
              o.max_overlap());
  TORCH_CHECK(o.max_clutter() >= 0, "write_scenes: invalid max_clutter ", o.max_clutter());
}

// Writes `text` to `path` through a temporary file renamed over it.
void write_atomically(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  write_file(tmp, std::vector<uint8_t>(text.begin(), text.end()));
  std::error_code ec;
  fs::rename(tmp, path, ec);
  TORCH_CHECK(!ec, "cannot rename ", tmp, " to ", path, ": ", ec.message());
}

// One split: its images and its (unwritten) JSON text.
std::string write_split(const ScenesOptions& o, const Source& src, const std::string& split,
                        int64_t split_id, int64_t count, int64_t* objects) {
  const fs::path dir = fs::path(o.output()) / split;
  std::error_code ec;
  fs::create_directories(dir, ec);
  TORCH_CHECK(!ec && fs::is_directory(dir), "write_scenes: cannot create ", dir.string(), ": ",
              ec.message());
  std::vector<std::vector<Object>> found(static_cast<size_t>(count));
  std::vector<std::string> names(static_cast<size_t>(count));
  for (int64_t i = 0; i < count; ++i) {
    char name[32];
    std::snprintf(name, sizeof(name), "%06lld.png", static_cast<long long>(i + 1));
    names[static_cast<size_t>(i)] = name;
  }
  at::parallel_for(0, count, 8, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      Rng rng = Rng::for_sample(o.seed(), kSplitStream + split_id, i);
      Canvas c = make_canvas(src, o, rng);
      write_file((dir / names[static_cast<size_t>(i)]).string(), c.png);
      found[static_cast<size_t>(i)] = std::move(c.objects);
    }
  });

  ojson root;
  root["info"] = {{"description", "mgd synthetic detection scenes from Fashion-MNIST (" + split +
                                      " split from Fashion-MNIST's " +
                                      (split_id == 0 ? "train" : "test") + " images)"},
                  {"version", "1"},
                  {"seed", o.seed()},
                  {"size", o.size()}};
  root["licenses"] = ojson::array();
  ojson images = ojson::array(), annotations = ojson::array(), categories = ojson::array();
  int64_t next_id = 1;
  for (int64_t i = 0; i < count; ++i) {
    images.push_back({{"id", i + 1},
                      {"file_name", names[static_cast<size_t>(i)]},
                      {"width", o.size()},
                      {"height", o.size()}});
    for (const Object& obj : found[static_cast<size_t>(i)]) {
      annotations.push_back({{"id", next_id++},
                             {"image_id", i + 1},
                             {"category_id", obj.label + 1},
                             {"bbox", {obj.x, obj.y, obj.w, obj.h}},
                             {"area", obj.area},
                             {"iscrowd", 0}});
    }
  }
  const auto& classes = fashion_mnist_classes();
  for (size_t c = 0; c < classes.size(); ++c) {
    categories.push_back(
        {{"id", static_cast<int64_t>(c) + 1}, {"name", classes[c]}, {"supercategory", "fashion"}});
  }
  root["images"] = std::move(images);
  root["annotations"] = std::move(annotations);
  root["categories"] = std::move(categories);
  *objects = next_id - 1;
  return root.dump() + "\n";
}

}  // namespace

const std::vector<std::string>& fashion_mnist_classes() {
  static const std::vector<std::string> names = {"T-shirt/top", "Trouser",   "Pullover", "Dress",
                                                 "Coat",        "Sandal",    "Shirt",    "Sneaker",
                                                 "Bag",         "Ankle boot"};
  return names;
}

ScenesSummary write_scenes(const ScenesOptions& options) {
  check_options(options);
  const std::string root = options.fashion_mnist_root().empty() ? default_root("fashion-mnist")
                                                                : options.fashion_mnist_root();
  const fs::path annotations = fs::path(options.output()) / "annotations";
  std::error_code ec;
  fs::create_directories(annotations, ec);
  TORCH_CHECK(!ec && fs::is_directory(annotations), "write_scenes: cannot create ",
              annotations.string(), ": ", ec.message());
  ScenesSummary summary;
  summary.train_annotations = (annotations / "instances_train.json").string();
  summary.val_annotations = (annotations / "instances_val.json").string();
  // No complete-looking JSON may remain from an earlier set while the images change.
  fs::remove(summary.train_annotations, ec);
  fs::remove(summary.val_annotations, ec);

  // Fashion-MNIST's train split feeds the train images, its test split the val images.
  const Source train = options.train() > 0 ? load_source(root, "train") : Source();
  const std::string train_json =
      write_split(options, train, "train", 0, options.train(), &summary.train_objects);
  const Source test = options.val() > 0 ? load_source(root, "test") : Source();
  const std::string val_json =
      write_split(options, test, "val", 1, options.val(), &summary.val_objects);
  write_atomically(summary.val_annotations, val_json);
  write_atomically(summary.train_annotations, train_json);
  summary.train_images = options.train();
  summary.val_images = options.val();
  return summary;
}

}  // namespace data
}  // namespace mgd
