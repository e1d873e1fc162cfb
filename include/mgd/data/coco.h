// COCO-format detection data: an instances JSON (images, annotations, categories) and a folder
// of images, as COCO, LVIS-style exports, CVAT, Label Studio and Roboflow write them.
//
// Categories map to contiguous labels 0..K-1 in increasing id order (Detectron2's
// thing_dataset_id_to_contiguous_id); CocoInstances keeps the map both ways, so detections can
// be written back with the file's category ids. Samples are the images in increasing id order
// (Detectron2's order). Crowd annotations (iscrowd 1) are kept in CocoInstances -- evaluation
// treats them as regions where detections are ignored -- and left out of the training targets.
// Images without boxes are kept (evaluation needs them); CocoOptions::filter_empty leaves out
// the images without a non-crowd box, as Detectron2's training does.
//
// The JSON is read with nlohmann/json (Debian's nlohmann-json3-dev). Only what box detection
// needs is kept: "segmentation" values are skipped while parsing (COCO's train2017 file is
// mostly polygons). A file that is not what is expected ends with one c10::Error naming the
// file and the offending entry: malformed JSON (with the parser's line, column and byte), a
// missing key or a value of the wrong type, a duplicate id, a box with w or h <= 0 or reaching
// more than box_tolerance px outside its image (the annotation id, its image's id and size), an
// annotation whose image_id or category_id is not in the file, and -- for CocoDataset -- a
// missing image file or one whose size differs from the JSON's.
//
//   auto train = std::make_shared<CocoDataset>(coco_split("/data/coco",
//   "train").filter_empty(true),
//                                              detection::train_transform());
//   DetectionLoader loader(train, LoaderOptions().batch_size(16).workers(8));
#pragma once

#include <torch/arg.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "mgd/data/detection.h"
#include "mgd/data/detection_transforms.h"

namespace mgd {
namespace data {

struct CocoImage {
  int64_t id = 0;
  std::string file_name;  ///< relative to the image folder
  int64_t height = 0;
  int64_t width = 0;
};

struct CocoAnnotation {
  int64_t id = 0;
  int64_t image_id = 0;
  int64_t category_id = 0;
  std::array<double, 4> bbox{0, 0, 0, 0};  ///< x, y, w, h in the image's pixels, as in the file
  double area = 0;  ///< the file's "area" (a segmentation's area in COCO); w * h when absent
  bool iscrowd = false;
};

struct CocoCategory {
  int64_t id = 0;
  std::string name;
};

/// A parsed and checked instances file.
struct CocoInstances {
  std::string source;                       ///< the file's name, for messages
  std::vector<CocoImage> images;            ///< sorted by id
  std::vector<CocoCategory> categories;     ///< sorted by id: label i is categories[i]
  std::vector<CocoAnnotation> annotations;  ///< in the file's order
  /// Per image (position in `images`): the positions in `annotations` of its annotations, in
  /// the file's order.
  std::vector<std::vector<int64_t>> image_annotations;

  int64_t num_classes() const { return static_cast<int64_t>(categories.size()); }
  /// The contiguous label of a category id. Throws c10::Error for an unknown id.
  int64_t label(int64_t category_id) const;
  /// The category id of a contiguous label (results files use these). Throws when out of range.
  int64_t category_id(int64_t label) const;
  /// The position in `images` of an image id. Throws c10::Error for an unknown id.
  int64_t image_index(int64_t image_id) const;

  std::unordered_map<int64_t, int64_t> label_of_category;  ///< category id -> label
  std::unordered_map<int64_t, int64_t> index_of_image;     ///< image id -> position in images
};

/// Parses an instances JSON held in memory; `name` (the file) is used in messages. A box may
/// reach up to `box_tolerance` px outside its image (rounding in exported files) and is kept
/// as written; farther is an error.
CocoInstances parse_coco_instances(const char* data, size_t size,
                                   const std::string& name = "<memory>",
                                   double box_tolerance = 1.0);

/// Reads and parses an instances file.
CocoInstances read_coco_instances(const std::string& path, double box_tolerance = 1.0);

struct CocoOptions {
  CocoOptions(std::string annotation_file, std::string image_dir)
      : annotation_file_(std::move(annotation_file)), image_dir_(std::move(image_dir)) {}
  /// The instances JSON.
  TORCH_ARG(std::string, annotation_file);
  /// The folder the images' file_name values are relative to.
  TORCH_ARG(std::string, image_dir);
  /// Leave out images without a non-crowd box (Detectron2's FILTER_EMPTY_ANNOTATIONS, on for
  /// its training sets). Evaluation keeps every image: leave it false.
  TORCH_ARG(bool, filter_empty) = false;
  /// 3: RGB, grayscale files expanded (PIL's convert("RGB"), what ImageNet backbones take);
  /// 1: luma (PIL's convert("L"); a grayscale file's own values), e.g. for Fashion-MNIST
  /// scenes on a one-channel network.
  TORCH_ARG(int64_t, channels) = 3;
  /// How far (px) a box may reach outside its image before the file is refused.
  TORCH_ARG(double, box_tolerance) = 1.0;
  /// Check at construction that every image file exists (one stat per image), so that a
  /// missing file is reported before training rather than when its batch comes.
  TORCH_ARG(bool, check_files) = true;
};

/// The annotation file and image folder of a split under a data root, in COCO's layout:
/// root/annotations/instances_<split>.json with root/<split>/ (what `mgd data scenes` writes),
/// or else instances_<split>2017.json with <split>2017/ (COCO 2017). Throws c10::Error listing
/// the paths tried when neither exists.
CocoOptions coco_split(const std::string& root, const std::string& split);

/// A COCO-format detection data set: sample i is the i-th image in id order (of those kept),
/// its non-crowd boxes (x0, y0, x1, y1) with contiguous labels, through the transform.
class CocoDataset : public DetectionDataset {
 public:
  /// Reads and checks the annotation file (and, with check_files, that every image exists).
  CocoDataset(CocoOptions options, detection::Compose transform);

  int64_t size() const override { return static_cast<int64_t>(samples_.size()); }
  DetectionSample get(int64_t index, Rng& rng) const override;
  int64_t num_classes() const override { return instances_.num_classes(); }
  int64_t channels() const override { return options_.channels(); }

  const CocoInstances& instances() const { return instances_; }
  const CocoOptions& options() const { return options_; }
  const detection::Compose& transform() const { return transform_; }
  /// The image of sample `index`.
  const CocoImage& image(int64_t index) const;
  /// The path of sample `index`'s file.
  std::string image_path(int64_t index) const;
  /// Sample `index`'s training target before any transform: its non-crowd boxes (x0, y0, x1,
  /// y1 in the file's pixels; float n x 4) and labels.
  DetectionTarget target(int64_t index) const;
  /// Sample `index`'s image, decoded, with options().channels() channels, untransformed.
  Image read(int64_t index) const;

 private:
  DetectionTarget target_in_double(int64_t index) const;

  CocoOptions options_;
  detection::Compose transform_;
  CocoInstances instances_;
  std::vector<int64_t> samples_;  // positions in instances_.images
};

}  // namespace data
}  // namespace mgd
