// COCO's bounding-box evaluation (pycocotools' COCOeval, iouType 'bbox'), natively and
// torch-free, so that detection results are scored without Python and the figures are the
// ones papers report.
//
// PROBLEM
//
// Detection quality on COCO is not one number but twelve (AP at IoU 0.50:0.05:0.95, AP50,
// AP75, AP for small / medium / large objects, AR for 1 / 10 / 100 detections per image and
// per object size), and each depends on details of pycocotools' protocol: how detections are
// matched greedily to ground truth, which ground truth and detections are ignored (crowd
// regions, objects outside an area range), how precision is interpolated at 101 recall
// points, and even the floating point of its thresholds. A reimplementation that differs in
// any of them reports different numbers, so this one follows COCOeval step by step.
//
// PROTOCOL (what evaluate_bbox computes; T IoU thresholds, R recall thresholds, K categories,
// A = 4 area ranges, M = 3 detection limits)
//
//  - Images and categories are the sorted, de-duplicated `image_ids` / `category_ids`; ground
//    truth and detections on other images or categories are not evaluated (as with
//    COCOeval.params.imgIds / catIds).
//  - Per image and category: detections sorted by descending score (stable, in input order on
//    ties, like np.argsort(-score, kind='mergesort')) and cut to the largest detection limit.
//    IoU of boxes [x, y, w, h] as pycocotools' bbIou computes it, where for a crowd ground
//    truth the union is the detection's area alone (intersection / detection area).
//  - Per area range [lo, hi] (inclusive at both ends): a ground truth is ignored when it is a
//    crowd or its `area` field lies outside; ground truth is ordered non-ignored first (stable).
//    At each IoU threshold t, each detection in score order takes the ground truth of highest
//    IoU >= min(t, 1 - 1e-10) that is still free (a crowd stays free), the later one on equal
//    IoU, and never an ignored one once it holds a non-ignored one. A detection matched to an
//    ignored ground truth is ignored; an unmatched one whose box area w*h lies outside the
//    range is ignored; every other detection is a true or a false positive.
//  - Per category, area range and detection limit m: the first m detections of every image,
//    concatenated in image order and stably sorted by descending score; cumulative TP and FP
//    at each threshold give recall tp/npig (npig: non-ignored ground truth) and precision
//    tp/(tp+fp+eps); precision is made non-increasing from the right and read at each recall
//    threshold r at the first detection whose recall is >= r (0 beyond the last one). Recall is
//    that of all m detections. Both are -1 where the category has no non-ignored ground truth.
//  - The summary means every entry > -1 of the relevant slice (-1 when there is none), with
//    numpy's summation order, so the figures match COCOeval.summarize() to the last bit.
//  - Per-category AP (IoU .50:.95, area all, the largest limit), as Detectron2 tabulates it.
//
// Defaults reproduce COCO's parameters exactly: the IoU thresholds and recall thresholds are
// computed like np.linspace (0.5 + i * ((0.95 - 0.5) / 9), i * 0.01), not as decimal literals;
// this matters: 35 * 0.01 = 0.35000000000000003, so a recall of 35/100 falls short of the
// recall threshold "0.35", and the IoU threshold "0.90" is 0.8999999999999999.
//
// DIFFERENCES FROM PYCOCOTOOLS (none affect well-formed COCO data)
//  - pycocotools marks a match by storing the ground truth's annotation id, so a ground truth
//    whose id is 0 counts as never matched; here matches are flags (as if ids were >= 1).
//  - Scores and boxes must be finite here (std::invalid_argument otherwise).
//
// COMPLEXITY
//
// Ground truth and detections are bucketed by (category, image) first (one stable sort).
// Matching costs O(A * T * D * G) per image and category (D <= the largest limit, G ground
// truth); accumulation sorts a category's detections by score once, and then, per area range
// and threshold, one pass over them per detection limit that divides only at true positives.
// Categories are spread over threads (CocoEvalOptions::num_threads). On one core: COCO val2017's
// shape (5000 images, 80 categories, 100 detections per image, 500k detections) about 0.5 s; 4M
// detections (10 per image and category) about 3 s (tests/evaluation/coco_eval_test.cpp reports a
// timing).
//
// USAGE
//
//   std::vector<mgd::evaluation::GroundTruth> gts = ...;   // from the annotation file
//   std::vector<mgd::evaluation::Detection> dets = ...;    // from the model
//   auto result = mgd::evaluation::evaluate_bbox(gts, dets, image_ids, category_ids);
//   std::cout << mgd::evaluation::format_table(result, category_names);
//   mgd::evaluation::write_results_json("bbox_results.json", dets);  // for anyone to re-score
//
// REFERENCES
//
// [1] T.-Y. Lin et al., "Microsoft COCO: Common Objects in Context", ECCV 2014;
//     https://cocodataset.org/#detection-eval (the metrics).
// [2] pycocotools, PythonAPI/pycocotools/cocoeval.py and common/maskApi.c (bbIou) in
//     github.com/cocodataset/cocoapi: the reference implementation reproduced here.
// [3] Detectron2, detectron2/evaluation/coco_evaluation.py: the per-category AP table and the
//     results file.

#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace mgd::evaluation {

/// One ground-truth object (a COCO annotation).
struct GroundTruth {
  int64_t image_id = 0;
  int64_t category_id = 0;
  std::array<double, 4> bbox{};  ///< x, y, w, h (COCO's box format)
  /// The annotation's `area` field (in COCO the segmentation's area, not w*h); the area
  /// ranges classify ground truth by it.
  double area = 0;
  bool iscrowd = false;  ///< a crowd region: never a false negative, absorbs detections
};

/// One detection (a COCO result).
struct Detection {
  int64_t image_id = 0;
  int64_t category_id = 0;
  std::array<double, 4> bbox{};  ///< x, y, w, h; w*h is its area for the area ranges
  double score = 0;
};

/// COCO's evaluation parameters; the defaults are COCOeval's for iouType 'bbox'.
struct CocoEvalOptions {
  /// IoU thresholds; np.linspace(.5, .95, 10) bit for bit. AP50 / AP75 are the entries equal
  /// to 0.5 / 0.75 (-1 when absent).
  std::vector<double> iou_thresholds = coco_iou_thresholds();
  /// Recall thresholds for interpolated precision; np.linspace(0, 1, 101) bit for bit.
  std::vector<double> recall_thresholds = coco_recall_thresholds();
  /// Detection limits per image, exactly three (the summary's AR1, AR10, AR100 use them in
  /// ascending order); matching uses the largest.
  std::vector<int> max_dets{1, 10, 100};
  /// Area ranges [lo, hi], inclusive, in the order all, small, medium, large.
  std::array<std::array<double, 2>, 4> area_ranges{
      {{0.0, 1e10}, {0.0, 32.0 * 32.0}, {32.0 * 32.0, 96.0 * 96.0}, {96.0 * 96.0, 1e10}}};

  /// Worker threads, each evaluating whole categories (the result does not depend on it);
  /// 0: std::thread::hardware_concurrency().
  int num_threads = 0;

  /// np.linspace(0.5, 0.95, 10).
  static std::vector<double> coco_iou_thresholds();
  /// np.linspace(0.0, 1.0, 101).
  static std::vector<double> coco_recall_thresholds();
};

/// COCOeval's summary, plus its accumulated arrays. AP and AR in [0, 1]; -1 where there is
/// nothing to average (no category with ground truth in that slice).
struct CocoEvalResult {
  double ap = -1, ap50 = -1, ap75 = -1, ap_small = -1, ap_medium = -1, ap_large = -1;
  double ar1 = -1, ar10 = -1, ar100 = -1, ar_small = -1, ar_medium = -1, ar_large = -1;
  /// (category id, AP at IoU .50:.95, area all, the largest detection limit), by ascending
  /// category id; -1 for a category without ground truth (Detectron2 shows it as nan).
  std::vector<std::pair<int64_t, double>> per_category_ap;

  /// COCOeval.eval['precision']: T x R x K x A x M, row-major (-1: no ground truth).
  std::vector<double> precision;
  /// COCOeval.eval['recall']: T x K x A x M, row-major (-1: no ground truth).
  std::vector<double> recall;
  /// The sizes T, R, K, A, M of `precision`.
  std::array<int64_t, 5> dims{};
  /// The parameters used (sorted max_dets), for the table's labels.
  std::vector<double> iou_thresholds;
  std::vector<int> max_dets;

  /// The 12 figures in COCO's order: AP, AP50, AP75, APs, APm, APl, AR1, AR10, AR100, ARs,
  /// ARm, ARl (COCOeval.stats).
  std::vector<double> stats() const;
};

/// Evaluates `dets` against `gts` on the given images and categories (COCOeval with iouType
/// 'bbox': evaluate(), accumulate(), summarize()). Ids outside `image_ids` / `category_ids`
/// are skipped. Throws std::invalid_argument for a non-finite score or box coordinate, a
/// non-finite ground-truth area, or options that are not three positive detection limits and
/// non-empty threshold lists.
CocoEvalResult evaluate_bbox(const std::vector<GroundTruth>& gts,
                             const std::vector<Detection>& dets,
                             const std::vector<int64_t>& image_ids,
                             const std::vector<int64_t>& category_ids,
                             const CocoEvalOptions& options = {});

/// pycocotools' 12 summary lines (" Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all |
/// maxDets=100 ] = 0.xxx", ...), then Detectron2's "Evaluation results for bbox" table (x100)
/// and its per-category AP table ("| category | AP | ..." in up to three column pairs, nan
/// for a category without ground truth). `category_names[k]` names the k-th entry of
/// `per_category_ap`; without names (or with too few) the ids are shown.
std::string format_table(const CocoEvalResult& result,
                         const std::vector<std::string>& category_names = {});

/// Writes `dets` in COCO's results format, [{"image_id": .., "category_id": .., "bbox": [x, y,
/// w, h], "score": ..}, ...], numbers in their shortest round-trip form, atomically (a
/// temporary file beside `path`, fsync, rename). Throws std::invalid_argument for a non-finite
/// number (JSON has none) and std::runtime_error when the file cannot be written.
void write_results_json(const std::string& path, const std::vector<Detection>& dets);

/// The JSON text write_results_json writes.
std::string results_json(const std::vector<Detection>& dets);

}  // namespace mgd::evaluation
