#include "mgd/data/coco.h"

#include <c10/util/Exception.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>

#include "mgd/data/image.h"

namespace mgd {
namespace data {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

// Deeper nesting than any instances file has (COCO's polygons are at depth 4) is refused while
// parsing, before a crafted file can build a huge tree.
constexpr int kMaxDepth = 64;

struct TooDeep {};

std::string type_name(const json& v) {
  if (v.is_number_integer()) return "an integer";
  if (v.is_number_float()) return "a number with a fraction";
  if (v.is_string()) return "a string";
  if (v.is_boolean()) return "a boolean";
  if (v.is_null()) return "null";
  if (v.is_array()) return "an array";
  return "an object";
}

// Messages: "<file>: <where>: <what>".
class Checker {
 public:
  explicit Checker(const std::string& file) : file_(file) {}

  template <typename... Args>
  [[noreturn]] void fail(const std::string& where, const Args&... args) const {
    std::ostringstream s;
    s << file_ << ": " << where << ": ";
    (s << ... << args);
    TORCH_CHECK(false, s.str());
  }

  const json& field(const json& obj, const char* key, const std::string& where) const {
    auto it = obj.find(key);
    if (it == obj.end()) fail(where, "missing key \"", key, "\"");
    return *it;
  }

  const json& array(const json& obj, const char* key, const std::string& where) const {
    const json& v = field(obj, key, where);
    if (!v.is_array()) fail(where, "\"", key, "\" should be an array, got ", type_name(v));
    return v;
  }

  int64_t integer(const json& v, const char* key, const std::string& where) const {
    if (v.is_number_unsigned()) {
      const uint64_t u = v.get<uint64_t>();
      if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        fail(where, "\"", key, "\" = ", u, " is out of range");
      }
      return static_cast<int64_t>(u);
    }
    if (v.is_number_integer()) return v.get<int64_t>();
    fail(where, "\"", key, "\" should be an integer, got ", type_name(v));
  }

  int64_t integer_field(const json& obj, const char* key, const std::string& where) const {
    return integer(field(obj, key, where), key, where);
  }

  double number(const json& v, const char* key, const std::string& where) const {
    if (!v.is_number()) fail(where, "\"", key, "\" should be a number, got ", type_name(v));
    const double d = v.get<double>();
    if (!std::isfinite(d)) fail(where, "\"", key, "\" is not finite");
    return d;
  }

  std::string string(const json& obj, const char* key, const std::string& where) const {
    const json& v = field(obj, key, where);
    if (!v.is_string()) fail(where, "\"", key, "\" should be a string, got ", type_name(v));
    return v.get<std::string>();
  }

 private:
  const std::string& file_;
};

std::string entry(const char* list, size_t i) {
  std::ostringstream s;
  s << list << "[" << i << "]";
  return s.str();
}

json parse_json(const char* data, size_t size, const std::string& name) {
  const json::parser_callback_t skip = [](int depth, json::parse_event_t event, json& parsed) {
    if ((event == json::parse_event_t::object_start || event == json::parse_event_t::array_start) &&
        depth > kMaxDepth) {
      throw TooDeep();
    }
    // Polygons and RLE masks: not needed for boxes, and most of COCO's bytes.
    return !(event == json::parse_event_t::key && parsed == "segmentation");
  };
  try {
    return json::parse(data, data + size, skip);
  } catch (const json::parse_error& e) {
    TORCH_CHECK(false, name, ": malformed JSON (byte ", e.byte, "): ", e.what());
  } catch (const json::exception& e) {  // e.g. a number too large for a double
    TORCH_CHECK(false, name, ": malformed JSON: ", e.what());
  } catch (const TooDeep&) {
    TORCH_CHECK(false, name, ": malformed instances file: nested deeper than ", kMaxDepth,
                " levels");
  }
}

}  // namespace

int64_t CocoInstances::label(int64_t category_id) const {
  auto it = label_of_category.find(category_id);
  TORCH_CHECK(it != label_of_category.end(), source, ": unknown category id ", category_id);
  return it->second;
}

int64_t CocoInstances::category_id(int64_t label) const {
  TORCH_CHECK(label >= 0 && label < num_classes(), source, ": label ", label, " out of range for ",
              num_classes(), " categories");
  return categories[static_cast<size_t>(label)].id;
}

int64_t CocoInstances::image_index(int64_t image_id) const {
  auto it = index_of_image.find(image_id);
  TORCH_CHECK(it != index_of_image.end(), source, ": unknown image id ", image_id);
  return it->second;
}

CocoInstances parse_coco_instances(const char* data, size_t size, const std::string& name,
                                   double box_tolerance) {
  TORCH_CHECK(box_tolerance >= 0 && std::isfinite(box_tolerance),
              "parse_coco_instances: invalid box_tolerance ", box_tolerance);
  const json root = parse_json(data, size, name);
  const Checker c(name);
  if (!root.is_object()) c.fail("top level", "expected an object, got ", type_name(root));
  CocoInstances out;
  out.source = name;

  // Categories, sorted by id: label i is the i-th.
  const json& cats = c.array(root, "categories", "top level");
  for (size_t i = 0; i < cats.size(); ++i) {
    const json& v = cats[i];
    const std::string where = entry("categories", i);
    if (!v.is_object()) c.fail(where, "expected an object, got ", type_name(v));
    CocoCategory cat;
    cat.id = c.integer_field(v, "id", where);
    cat.name = c.string(v, "name", where + " (id " + std::to_string(cat.id) + ")");
    out.categories.push_back(std::move(cat));
  }
  if (out.categories.empty()) c.fail("\"categories\"", "no categories");
  std::stable_sort(out.categories.begin(), out.categories.end(),
                   [](const CocoCategory& a, const CocoCategory& b) { return a.id < b.id; });
  for (size_t i = 0; i < out.categories.size(); ++i) {
    if (!out.label_of_category.emplace(out.categories[i].id, static_cast<int64_t>(i)).second) {
      c.fail("\"categories\"", "category id ", out.categories[i].id, " appears twice");
    }
  }

  // Images, sorted by id.
  const json& imgs = c.array(root, "images", "top level");
  for (size_t i = 0; i < imgs.size(); ++i) {
    const json& v = imgs[i];
    std::string where = entry("images", i);
    if (!v.is_object()) c.fail(where, "expected an object, got ", type_name(v));
    CocoImage im;
    im.id = c.integer_field(v, "id", where);
    where = "image id " + std::to_string(im.id);
    im.file_name = c.string(v, "file_name", where);
    im.width = c.integer_field(v, "width", where);
    im.height = c.integer_field(v, "height", where);
    if (im.width <= 0 || im.height <= 0) {
      c.fail(where, "invalid size ", im.width, "x", im.height, " (width x height)");
    }
    if (im.file_name.empty()) c.fail(where, "empty file_name");
    out.images.push_back(std::move(im));
  }
  std::stable_sort(out.images.begin(), out.images.end(),
                   [](const CocoImage& a, const CocoImage& b) { return a.id < b.id; });
  for (size_t i = 0; i < out.images.size(); ++i) {
    if (!out.index_of_image.emplace(out.images[i].id, static_cast<int64_t>(i)).second) {
      c.fail("\"images\"", "image id ", out.images[i].id, " appears twice");
    }
  }
  out.image_annotations.resize(out.images.size());

  // Annotations (a file without the key, as COCO's test image-info files, has none).
  if (root.contains("annotations")) {
    const json& anns = c.array(root, "annotations", "top level");
    std::unordered_map<int64_t, size_t> seen;
    for (size_t i = 0; i < anns.size(); ++i) {
      const json& v = anns[i];
      std::string where = entry("annotations", i);
      if (!v.is_object()) c.fail(where, "expected an object, got ", type_name(v));
      CocoAnnotation a;
      a.id = c.integer_field(v, "id", where);
      where = "annotation id " + std::to_string(a.id);
      if (!seen.emplace(a.id, i).second) {
        c.fail(where, "appears twice (annotations[", seen[a.id], "] and [", i, "])");
      }
      a.image_id = c.integer_field(v, "image_id", where);
      auto image = out.index_of_image.find(a.image_id);
      if (image == out.index_of_image.end()) {
        c.fail(where, "image_id ", a.image_id, " is not among the file's images");
      }
      const CocoImage& im = out.images[static_cast<size_t>(image->second)];
      where += " (image id " + std::to_string(im.id) + ", " + im.file_name + ")";
      a.category_id = c.integer_field(v, "category_id", where);
      if (!out.label_of_category.count(a.category_id)) {
        c.fail(where, "category_id ", a.category_id, " is not among the file's ",
               out.categories.size(), " categories (ids ", out.categories.front().id, "..",
               out.categories.back().id, ")");
      }
      const json& bbox = c.field(v, "bbox", where);
      if (!bbox.is_array() || bbox.size() != 4) {
        c.fail(where, "\"bbox\" should be an array of 4 numbers [x, y, w, h], got ",
               bbox.is_array() ? std::to_string(bbox.size()) + " elements" : type_name(bbox));
      }
      for (size_t k = 0; k < 4; ++k) a.bbox[k] = c.number(bbox[k], "bbox", where);
      const double x = a.bbox[0], y = a.bbox[1], w = a.bbox[2], h = a.bbox[3];
      if (!(w > 0 && h > 0)) {
        c.fail(where, "bbox [", x, ", ", y, ", ", w, ", ", h, "] has w or h <= 0");
      }
      const double t = box_tolerance;
      if (x < -t || y < -t || x + w > static_cast<double>(im.width) + t ||
          y + h > static_cast<double>(im.height) + t) {
        c.fail(where, "bbox [", x, ", ", y, ", ", w, ", ", h, "] (x, y, w, h) lies outside the ",
               im.width, "x", im.height, " image (tolerance ", t, " px)");
      }
      auto area = v.find("area");
      a.area = area == v.end() ? w * h : c.number(*area, "area", where);
      if (a.area < 0) c.fail(where, "negative area ", a.area);
      auto crowd = v.find("iscrowd");
      if (crowd != v.end()) {
        if (crowd->is_boolean()) {
          a.iscrowd = crowd->get<bool>();
        } else {
          const int64_t flag = c.integer(*crowd, "iscrowd", where);
          if (flag != 0 && flag != 1) c.fail(where, "\"iscrowd\" should be 0 or 1, got ", flag);
          a.iscrowd = flag == 1;
        }
      }
      out.image_annotations[static_cast<size_t>(image->second)].push_back(
          static_cast<int64_t>(out.annotations.size()));
      out.annotations.push_back(a);
    }
  }
  return out;
}

CocoInstances read_coco_instances(const std::string& path, double box_tolerance) {
  const std::vector<uint8_t> bytes = read_file(path);
  return parse_coco_instances(reinterpret_cast<const char*>(bytes.data()), bytes.size(), path,
                              box_tolerance);
}

CocoOptions coco_split(const std::string& root, const std::string& split) {
  TORCH_CHECK(!split.empty(), "coco_split: empty split name");
  std::error_code ec;
  std::vector<std::string> tried;
  for (const std::string& s : {split, split + "2017"}) {
    const fs::path json = fs::path(root) / "annotations" / ("instances_" + s + ".json");
    const fs::path images = fs::path(root) / s;
    if (fs::is_regular_file(json, ec) && fs::is_directory(images, ec)) {
      return CocoOptions(json.string(), images.string());
    }
    tried.push_back(json.string() + " with " + images.string() + "/");
  }
  TORCH_CHECK(false, "no COCO-format '", split, "' split under ", root, ": looked for ", tried[0],
              " and for ", tried[1],
              " (`mgd data scenes -o DIR` writes a synthetic set in this layout)");
}

// --- CocoDataset

CocoDataset::CocoDataset(CocoOptions options, detection::Compose transform)
    : options_(std::move(options)), transform_(std::move(transform)) {
  TORCH_CHECK(options_.channels() == 1 || options_.channels() == 3,
              "CocoOptions::channels should be 1 or 3, got ", options_.channels());
  instances_ = read_coco_instances(options_.annotation_file(), options_.box_tolerance());
  for (size_t i = 0; i < instances_.images.size(); ++i) {
    bool keep = !options_.filter_empty();
    for (int64_t a : instances_.image_annotations[i]) {
      keep = keep || !instances_.annotations[static_cast<size_t>(a)].iscrowd;
    }
    if (keep) samples_.push_back(static_cast<int64_t>(i));
  }
  if (options_.check_files()) {
    std::error_code ec;
    for (int64_t i = 0; i < size(); ++i) {
      const std::string path = image_path(i);
      TORCH_CHECK(fs::is_regular_file(path, ec), options_.annotation_file(), ": image id ",
                  image(i).id, ": file ", path, " does not exist (image folder ",
                  options_.image_dir(), ")");
    }
  }
}

const CocoImage& CocoDataset::image(int64_t index) const {
  TORCH_CHECK(index >= 0 && index < size(), "CocoDataset: index ", index, " out of range for ",
              size(), " samples");
  return instances_.images[static_cast<size_t>(samples_[static_cast<size_t>(index)])];
}

std::string CocoDataset::image_path(int64_t index) const {
  return (fs::path(options_.image_dir()) / image(index).file_name).string();
}

DetectionTarget CocoDataset::target(int64_t index) const {
  DetectionTarget t = target_in_double(index);
  t.boxes = t.boxes.to(torch::kFloat32);
  return t;
}

// The boxes in double: the transforms compute in double and round once (as Detectron2 does).
DetectionTarget CocoDataset::target_in_double(int64_t index) const {
  const CocoImage& im = image(index);
  const auto& anns =
      instances_.image_annotations[static_cast<size_t>(samples_[static_cast<size_t>(index)])];
  std::vector<double> boxes;
  std::vector<int64_t> labels;
  for (int64_t k : anns) {
    const CocoAnnotation& a = instances_.annotations[static_cast<size_t>(k)];
    if (a.iscrowd) continue;
    // Clipped to the image (a box may reach box_tolerance px outside).
    const double w = static_cast<double>(im.width), h = static_cast<double>(im.height);
    boxes.push_back(std::min(std::max(a.bbox[0], 0.0), w));
    boxes.push_back(std::min(std::max(a.bbox[1], 0.0), h));
    boxes.push_back(std::min(std::max(a.bbox[0] + a.bbox[2], 0.0), w));
    boxes.push_back(std::min(std::max(a.bbox[1] + a.bbox[3], 0.0), h));
    labels.push_back(instances_.label(a.category_id));
  }
  DetectionTarget t;
  const int64_t n = static_cast<int64_t>(labels.size());
  t.boxes = torch::tensor(boxes, torch::kFloat64).reshape({n, 4});
  t.labels = torch::tensor(labels, torch::kInt64).reshape({n});
  return t;
}

Image CocoDataset::read(int64_t index) const {
  const CocoImage& im = image(index);
  const std::string path = image_path(index);
  Image rgb = read_image(path);
  TORCH_CHECK(rgb.height == im.height && rgb.width == im.width, path, ": the image is ", rgb.width,
              "x", rgb.height, " but ", options_.annotation_file(), " says image id ", im.id,
              " is ", im.width, "x", im.height, " (width x height)");
  if (options_.channels() == 3) return rgb;
  // PIL's convert("L"): ITU-R 601-2 luma in 16-bit fixed point; exact on gray pixels.
  Image gray(rgb.height, rgb.width, 1);
  const uint8_t* p = rgb.data.data();
  for (size_t i = 0; i < gray.data.size(); ++i, p += 3) {
    gray.data[i] = static_cast<uint8_t>((p[0] * 19595 + p[1] * 38470 + p[2] * 7471 + 0x8000) >> 16);
  }
  return gray;
}

DetectionSample CocoDataset::get(int64_t index, Rng& rng) const {
  DetectionSample s = transform_(read(index), target_in_double(index), rng);
  s.image_id = image(index).id;
  return s;
}

}  // namespace data
}  // namespace mgd
