// COCO bbox evaluation (mgd/evaluation/coco_eval.h): hand-solved scenes, pycocotools' quirks,
// and random scenes against a deliberately naive evaluator written from the definitions.
//
// pycocotools is not installed here, so the oracle is NaiveCoco below: per (category, area,
// limit, threshold) it ranks detections by counting, matches by choosing the best candidate
// under an explicit key, recounts TP / FP for every prefix and reads interpolated precision
// by scanning, with no shared code or data layout. Scenes use integer coordinates, so IoU is
// exact in either formula order and the two must agree bit for bit on every precision and
// recall entry.
//
// A note on "1": pycocotools' precision is tp / (tp + fp + eps) with eps = 2^-52, so one true
// positive out of one detection has precision 1 / (1 + 2^-52) = 1 - 2^-52 + ..., one ulp-ish
// below 1 (two true positives give exactly 1, as 2 + 2^-52 rounds to 2). Hand-computed values
// are therefore compared within 1e-12.

#include "mgd/evaluation/coco_eval.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "support/temp_dir.h"

namespace mgd::evaluation {
namespace {

constexpr double kTol = 1e-12;

GroundTruth gt(int64_t image, int64_t category, double x, double y, double w, double h,
               bool crowd = false) {
  GroundTruth g;
  g.image_id = image;
  g.category_id = category;
  g.bbox = {x, y, w, h};
  g.area = w * h;
  g.iscrowd = crowd;
  return g;
}

Detection det(int64_t image, int64_t category, double x, double y, double w, double h,
              double score) {
  Detection d;
  d.image_id = image;
  d.category_id = category;
  d.bbox = {x, y, w, h};
  d.score = score;
  return d;
}

// precision[t][r][k][a][m] and recall[t][k][a][m] of a result.
double precision_at(const CocoEvalResult& r, int64_t t, int64_t rr, int64_t k, int64_t a,
                    int64_t m) {
  const auto& d = r.dims;
  return r.precision[static_cast<size_t>((((t * d[1] + rr) * d[2] + k) * d[3] + a) * d[4] + m)];
}
double recall_at(const CocoEvalResult& r, int64_t t, int64_t k, int64_t a, int64_t m) {
  const auto& d = r.dims;
  return r.recall[static_cast<size_t>(((t * d[2] + k) * d[3] + a) * d[4] + m)];
}

void expect_stats(const CocoEvalResult& r, const std::vector<double>& expected) {
  const std::vector<double> s = r.stats();
  ASSERT_EQ(s.size(), 12u);
  const char* names[] = {"AP",  "AP50", "AP75",  "APs", "APm", "APl",
                         "AR1", "AR10", "AR100", "ARs", "ARm", "ARl"};
  for (size_t i = 0; i < 12; ++i) EXPECT_NEAR(s[i], expected[i], kTol) << names[i];
}

// ---------------------------------------------------------------------------------------
// Parameters

TEST(CocoEval, DefaultThresholdsAreNumpyLinspaceBitForBit) {
  // Values printed by numpy 1.24: np.linspace(.5, .95, 10) and np.linspace(0, 1, 101).
  const std::vector<double> iou = CocoEvalOptions::coco_iou_thresholds();
  const std::vector<double> expected_iou = {
      0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.8999999999999999, 0.95};
  ASSERT_EQ(iou.size(), 10u);
  for (size_t i = 0; i < 10; ++i) EXPECT_EQ(iou[i], expected_iou[i]) << i;
  const std::vector<double> rec = CocoEvalOptions::coco_recall_thresholds();
  ASSERT_EQ(rec.size(), 101u);
  // The entries where i * 0.01 is not the double nearest i / 100.
  const std::vector<std::pair<int, double>> off = {
      {35, 0.35000000000000003}, {41, 0.41000000000000003}, {47, 0.47000000000000003},
      {57, 0.5700000000000001},  {69, 0.6900000000000001},  {70, 0.7000000000000001},
      {82, 0.8200000000000001},  {83, 0.8300000000000001},  {94, 0.9400000000000001},
      {95, 0.9500000000000001}};
  for (int i = 0; i <= 100; ++i) {
    double want = i / 100.0;
    for (const auto& [j, v] : off) {
      if (j == i) want = v;
    }
    EXPECT_EQ(rec[static_cast<size_t>(i)], want) << i;
  }
  const CocoEvalOptions o;
  EXPECT_EQ(o.max_dets, (std::vector<int>{1, 10, 100}));
  EXPECT_EQ(o.area_ranges[0][1], 1e10);
  EXPECT_EQ(o.area_ranges[1][1], 1024.0);
  EXPECT_EQ(o.area_ranges[2][1], 9216.0);
}

TEST(CocoEval, RejectsBadOptionsAndNonFiniteInputs) {
  CocoEvalOptions o;
  o.max_dets = {1, 100};
  EXPECT_THROW(evaluate_bbox({}, {}, {1}, {1}, o), std::invalid_argument);
  o.max_dets = {0, 10, 100};
  EXPECT_THROW(evaluate_bbox({}, {}, {1}, {1}, o), std::invalid_argument);
  o = CocoEvalOptions{};
  o.iou_thresholds.clear();
  EXPECT_THROW(evaluate_bbox({}, {}, {1}, {1}, o), std::invalid_argument);
  EXPECT_THROW(evaluate_bbox({}, {det(1, 1, 0, 0, 1, 1, std::nan(""))}, {1}, {1}),
               std::invalid_argument);
  GroundTruth g = gt(1, 1, 0, 0, 1, 1);
  g.area = INFINITY;
  EXPECT_THROW(evaluate_bbox({g}, {}, {1}, {1}), std::invalid_argument);
}

// ---------------------------------------------------------------------------------------
// Empty and hand-solved scenes

TEST(CocoEval, EmptyInputsGiveMinusOneEverywhere) {
  // No images or categories: COCOeval's precision and recall stay -1, every mean is -1.
  const CocoEvalResult none = evaluate_bbox({}, {}, {}, {});
  expect_stats(none, std::vector<double>(12, -1.0));
  EXPECT_TRUE(none.per_category_ap.empty());
  // Images and categories but nothing on them: the same, and each category's AP is -1.
  const CocoEvalResult empty = evaluate_bbox({}, {}, {1, 2}, {3, 4});
  expect_stats(empty, std::vector<double>(12, -1.0));
  ASSERT_EQ(empty.per_category_ap.size(), 2u);
  EXPECT_EQ(empty.per_category_ap[0], (std::pair<int64_t, double>{3, -1.0}));
  EXPECT_EQ(empty.per_category_ap[1], (std::pair<int64_t, double>{4, -1.0}));
  for (double p : empty.precision) EXPECT_EQ(p, -1.0);
  // Detections only (no ground truth): still -1, not 0.
  const CocoEvalResult dets_only = evaluate_bbox({}, {det(1, 3, 0, 0, 10, 10, 0.9)}, {1}, {3});
  expect_stats(dets_only, std::vector<double>(12, -1.0));
}

TEST(CocoEval, GroundTruthWithoutDetectionsGivesZero) {
  // One 10x10 (small) object, no detection: AP = AR = 0 for all and small; medium and large
  // have no ground truth (-1).
  const CocoEvalResult r = evaluate_bbox({gt(1, 1, 0, 0, 10, 10)}, {}, {1}, {1});
  expect_stats(r, {0, 0, 0, 0, -1, -1, 0, 0, 0, 0, -1, -1});
  EXPECT_EQ(r.per_category_ap[0].second, 0.0);
}

TEST(CocoEval, PerfectDetectionsGiveOne) {
  // One object of each size on two images, each found exactly: every precision entry is
  // tp / (tp + eps) ~ 1, every recall 1. AR1 is 1 too: one object per (image, category).
  const std::vector<GroundTruth> gts = {gt(1, 1, 0, 0, 10, 10),     // small (100)
                                        gt(1, 2, 50, 50, 50, 50),   // medium (2500)
                                        gt(2, 1, 0, 0, 200, 100)};  // large (20000)
  std::vector<Detection> dets;
  for (const auto& g : gts) {
    dets.push_back(det(g.image_id, g.category_id, g.bbox[0], g.bbox[1], g.bbox[2], g.bbox[3], 0.8));
  }
  const CocoEvalResult r = evaluate_bbox(gts, dets, {1, 2}, {1, 2});
  expect_stats(r, {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1});
  EXPECT_NEAR(r.per_category_ap[0].second, 1.0, kTol);
  EXPECT_NEAR(r.per_category_ap[1].second, 1.0, kTol);
}

TEST(CocoEval, FalsePositiveRankedAboveTruePositive) {
  // Two objects A, B. Detections by score: A exactly (0.9), a box on nothing (0.8), B exactly
  // (0.7). At every IoU threshold: TP, FP, TP, so
  //   recall    = 1/2, 1/2, 2/2
  //   precision = 1/1, 1/2, 2/3  -> made non-increasing from the right: 1, 2/3, 2/3.
  // Recall thresholds 0.00 .. 0.50 (51 of them; 0.50 is exactly 50 * 0.01) first reach
  // recall >= r at the first detection: precision 1. Thresholds 0.51 .. 1.00 (50) need the
  // third: 2/3. AP = (51 * 1 + 50 * 2/3) / 101 = 253/303 = 0.834983..., at every threshold.
  const std::vector<GroundTruth> gts = {gt(1, 1, 0, 0, 20, 20), gt(1, 1, 100, 100, 20, 20)};
  const std::vector<Detection> dets = {det(1, 1, 0, 0, 20, 20, 0.9),
                                       det(1, 1, 300, 300, 20, 20, 0.8),
                                       det(1, 1, 100, 100, 20, 20, 0.7)};
  const CocoEvalResult r = evaluate_bbox(gts, dets, {1}, {1});
  const double ap = (51.0 + 50.0 * 2.0 / 3.0) / 101.0;
  EXPECT_NEAR(ap, 253.0 / 303.0, kTol);
  // Both objects are small (400); AR1 finds one of two, AR10 and AR100 both.
  expect_stats(r, {ap, ap, ap, ap, -1, -1, 0.5, 1, 1, 1, -1, -1});
  // The interpolated curve itself, at IoU 0.5, area all, maxDets 100 (k = 0, a = 0, m = 2).
  for (int rr = 0; rr <= 100; ++rr) {
    EXPECT_NEAR(precision_at(r, 0, rr, 0, 0, 2), rr <= 50 ? 1.0 : 2.0 / 3.0, kTol) << rr;
  }
}

TEST(CocoEval, RecallThresholdsUseLinspaceValues) {
  // 20 objects, 7 found (and nothing else): recall 7/20 = 0.35 exactly, precision 1. The
  // 36th recall threshold is 35 * 0.01 = 0.35000000000000003 > 0.35, so only thresholds
  // 0.00 .. 0.34 (35 of them) are reached: AP = 35/101, not 36/101 as with i / 100.
  std::vector<GroundTruth> gts;
  std::vector<Detection> dets;
  for (int i = 0; i < 20; ++i) {
    gts.push_back(gt(1, 1, 40.0 * i, 0, 30, 30));
    if (i < 7) dets.push_back(det(1, 1, 40.0 * i, 0, 30, 30, 1.0 - 0.01 * i));
  }
  const CocoEvalResult r = evaluate_bbox(gts, dets, {1}, {1});
  EXPECT_NEAR(r.ap, 35.0 / 101.0, kTol);
  EXPECT_NEAR(r.ar100, 0.35, kTol);
}

TEST(CocoEval, DuplicateDetectionAndIoUExactlyAtThreshold) {
  // One 10x10 object. The first detection (0.9) covers its top 6 rows: IoU 60/100 = 0.6,
  // exactly the third threshold (0.6 is 2 * 0.049999999999999996 + 0.5 == 0.6), which
  // matches (IoU >= t). The second (0.8) is exact, a duplicate.
  //  - t in {0.50, 0.55, 0.60}: first TP, duplicate FP: precision 1, 1/2 -> AP 1.
  //  - t >= 0.65: first FP, second TP: precision 0, 1/2 -> envelope 1/2, 1/2 -> AP 1/2.
  // AP = (3 * 1 + 7 * 0.5) / 10 = 0.65; AP50 = 1; AP75 = 0.5. AR1 counts only the first
  // detection: recall 1 at 3 thresholds -> 0.3. AR10 = AR100 = 1.
  const CocoEvalResult r =
      evaluate_bbox({gt(1, 1, 0, 0, 10, 10)},
                    {det(1, 1, 0, 0, 10, 6, 0.9), det(1, 1, 0, 0, 10, 10, 0.8)}, {1}, {1});
  expect_stats(r, {0.65, 1, 0.5, 0.65, -1, -1, 0.3, 1, 1, 1, -1, -1});
}

TEST(CocoEval, CrowdRegionAbsorbsDetections) {
  // A crowd region 50x50 at (20, 0) and one object at (0, 0). Three detections inside the
  // crowd, scored above the true one: their IoU with a crowd is intersection / detection
  // area = 1 (their ordinary IoU would be 100/2500 = 0.04), so they match the crowd - one
  // crowd absorbs all three - and are ignored, not false positives. AP = 1. The crowd is
  // never a missed object either: recall 1.
  const std::vector<GroundTruth> gts = {gt(1, 1, 20, 0, 50, 50, /*crowd=*/true),
                                        gt(1, 1, 0, 0, 10, 10)};
  const std::vector<Detection> dets = {
      det(1, 1, 20, 0, 10, 10, 0.95), det(1, 1, 40, 10, 10, 10, 0.9),
      det(1, 1, 55, 35, 10, 10, 0.85), det(1, 1, 0, 0, 10, 10, 0.5)};
  const CocoEvalResult r = evaluate_bbox(gts, dets, {1}, {1});
  EXPECT_NEAR(r.ap, 1.0, kTol);
  EXPECT_NEAR(r.ar100, 1.0, kTol);
  // AR1: the first detection by score is absorbed by the crowd, so no TP: AR1 = 0.
  EXPECT_NEAR(r.ar1, 0.0, kTol);

  // Without the crowd flag the region is an ordinary (missed) object and the three
  // detections are false positives above the one TP: recall 1/2, precision 1/4 -> AP =
  // 51 * 0.25 / 101 (thresholds 0 .. 0.5).
  std::vector<GroundTruth> plain = gts;
  plain[0].iscrowd = false;
  EXPECT_NEAR(evaluate_bbox(plain, dets, {1}, {1}).ap, 51 * 0.25 / 101, kTol);
}

TEST(CocoEval, CrowdOnlyCompetesWhenNoOrdinaryObjectMatches) {
  // A detection with IoU 0.6 with an object and crowd-IoU 1 with a crowd region around it
  // takes the object where it can (non-ignored ground truth first): a TP at t <= 0.6, at
  // t >= 0.65 the crowd absorbs it (ignored, not FP). Precision 1 at 3 of 10 thresholds,
  // 0 (nothing found) at the rest: AP = AR = 0.3.
  const std::vector<GroundTruth> gts = {gt(1, 1, 0, 0, 100, 100, /*crowd=*/true),
                                        gt(1, 1, 0, 0, 10, 10)};
  const CocoEvalResult r = evaluate_bbox(gts, {det(1, 1, 0, 0, 10, 6, 0.9)}, {1}, {1});
  EXPECT_NEAR(r.ap, 0.3, kTol);
  EXPECT_NEAR(r.ar100, 0.3, kTol);
}

TEST(CocoEval, CategoryWithOnlyCrowdGroundTruthIsMinusOne) {
  const CocoEvalResult r =
      evaluate_bbox({gt(1, 1, 0, 0, 10, 10, true)}, {det(1, 1, 0, 0, 10, 10, 0.9)}, {1}, {1});
  expect_stats(r, std::vector<double>(12, -1.0));
}

TEST(CocoEval, AreaRanges) {
  // A small object (10x10 = 100) found, a large one (100x100 = 10000) missed, and a 5x5
  // false positive (area 25, small) scored highest. Sorted: FP (0.99), TP on small (0.9).
  //  - all:    npig 2. recall 0, 1/2; precision 0, 1/2 -> envelope 1/2, 1/2. Thresholds
  //            0 .. 0.5 (51) -> AP = 51 * 0.5 / 101; AR = 0.5.
  //  - small:  the large object is ignored (outside), npig 1. recall 0, 1; precision 0, 1/2
  //            -> AP 0.5 at all 101 thresholds; AR 1.
  //  - medium: no object: -1.
  //  - large:  npig 1 (the large object). The TP matched the small object, ignored here ->
  //            the detection is ignored; the unmatched 5x5 is outside the range -> ignored.
  //            Nothing counts: AP 0, AR 0.
  // AR1: only the FP -> 0 everywhere.
  const std::vector<GroundTruth> gts = {gt(1, 1, 0, 0, 10, 10), gt(1, 1, 200, 200, 100, 100)};
  const std::vector<Detection> dets = {det(1, 1, 500, 500, 5, 5, 0.99),
                                       det(1, 1, 0, 0, 10, 10, 0.9)};
  const CocoEvalResult r = evaluate_bbox(gts, dets, {1}, {1});
  const double ap_all = 51 * 0.5 / 101;
  expect_stats(r, {ap_all, ap_all, ap_all, 0.5, -1, 0, 0, 0.5, 0.5, 1, -1, 0});
}

TEST(CocoEval, UnmatchedDetectionsOutsideTheRangeAreIgnored) {
  // A large object (100x100) found (0.8), and a small 10x10 false positive scored above it
  // (0.9).
  //  - all:   FP, TP: recall 0, 1; precision 0, 1/2 -> envelope 1/2: AP 0.5.
  //  - large: the FP's box area 100 is outside [9216, 1e10] and it matched nothing, so it is
  //           ignored: the TP alone, AP 1.
  //  - small: no small object: -1 (the FP has nothing to lower).
  const CocoEvalResult r =
      evaluate_bbox({gt(1, 1, 0, 0, 100, 100)},
                    {det(1, 1, 300, 300, 10, 10, 0.9), det(1, 1, 0, 0, 100, 100, 0.8)}, {1}, {1});
  EXPECT_NEAR(r.ap, 0.5, kTol);
  EXPECT_NEAR(r.ap_large, 1.0, kTol);
  EXPECT_EQ(r.ap_small, -1.0);
  EXPECT_EQ(r.ap_medium, -1.0);
}

TEST(CocoEval, AreaRangesAreInclusiveAndUseTheAreaField) {
  // Area exactly 32^2 = 1024 lies in both small [0, 1024] and medium [1024, 9216].
  const CocoEvalResult r =
      evaluate_bbox({gt(1, 1, 0, 0, 32, 32)}, {det(1, 1, 0, 0, 32, 32, 0.9)}, {1}, {1});
  EXPECT_NEAR(r.ap_small, 1.0, kTol);
  EXPECT_NEAR(r.ap_medium, 1.0, kTol);
  EXPECT_EQ(r.ap_large, -1.0);
  // Ground truth is classified by its `area` field (a segmentation's area in COCO), not by
  // its box: a 100x100 box with area 500 is small. Its exact detection (box area 10000) is
  // matched to it, so in the large range it matched an ignored object and is ignored; no
  // large object: APl = -1.
  GroundTruth g = gt(1, 1, 0, 0, 100, 100);
  g.area = 500;
  const CocoEvalResult s = evaluate_bbox({g}, {det(1, 1, 0, 0, 100, 100, 0.9)}, {1}, {1});
  EXPECT_NEAR(s.ap_small, 1.0, kTol);
  EXPECT_EQ(s.ap_large, -1.0);
}

TEST(CocoEval, MaxDetsCutOff) {
  // 11 objects on one image, each found exactly; scores 0.99 .. 0.89, given in a shuffled
  // order (the cut is by score, not input order).
  //  - maxDets 100: all 11 TPs: AP 1, AR100 1.
  //  - maxDets 10: the top 10: recall 10/11 = 0.909.., precision 1: AR10 = 10/11, and the
  //    precision curve reaches thresholds 0 .. 0.90 (91 of 101).
  //  - maxDets 1: recall 1/11, thresholds 0 .. 0.09 (10): AR1 = 1/11.
  std::vector<GroundTruth> gts;
  std::vector<Detection> dets;
  for (int i = 0; i < 11; ++i) {
    gts.push_back(gt(1, 1, 40.0 * i, 0, 30, 30));
    dets.push_back(det(1, 1, 40.0 * i, 0, 30, 30, 0.99 - 0.01 * i));
  }
  std::mt19937 rng(7);
  std::shuffle(dets.begin(), dets.end(), rng);
  const CocoEvalResult r = evaluate_bbox(gts, dets, {1}, {1});
  EXPECT_NEAR(r.ap, 1.0, kTol);
  EXPECT_NEAR(r.ar100, 1.0, kTol);
  EXPECT_NEAR(r.ar10, 10.0 / 11.0, kTol);
  EXPECT_NEAR(r.ar1, 1.0 / 11.0, kTol);
  double ap10 = 0, ap1 = 0;
  for (int rr = 0; rr <= 100; ++rr) {
    ap10 += precision_at(r, 0, rr, 0, 0, 1);
    ap1 += precision_at(r, 0, rr, 0, 0, 0);
  }
  EXPECT_NEAR(ap10 / 101, 91.0 / 101.0, kTol);
  EXPECT_NEAR(ap1 / 101, 10.0 / 101.0, kTol);

  // The 11th detection by score is also cut before matching when the largest limit is 10.
  CocoEvalOptions o;
  o.max_dets = {10, 1, 5};  // any order; sorted like pycocotools
  const CocoEvalResult c = evaluate_bbox(gts, dets, {1}, {1}, o);
  EXPECT_NEAR(c.ar100, 10.0 / 11.0, kTol);  // "AR100" is the largest limit, 10
  EXPECT_NEAR(c.ar10, 5.0 / 11.0, kTol);
  EXPECT_EQ(c.max_dets, (std::vector<int>{1, 5, 10}));
}

TEST(CocoEval, CategoryWithoutGroundTruthIsExcludedFromTheMean) {
  // Category 1: one object found exactly (AP 1). Category 2: two false positives and no
  // ground truth (-1, excluded). Category 3: nothing (-1). Category 4: one object, its only
  // detection a FP ranked above the TP -> recall 0, 1; precision 0, 1/2 -> AP 1/2.
  // Mean over categories 1 and 4: 0.75.
  const std::vector<GroundTruth> gts = {gt(1, 1, 0, 0, 50, 50), gt(2, 4, 0, 0, 50, 50)};
  const std::vector<Detection> dets = {
      det(1, 1, 0, 0, 50, 50, 0.9), det(1, 2, 0, 0, 50, 50, 0.9), det(2, 2, 10, 10, 50, 50, 0.8),
      det(2, 4, 200, 200, 50, 50, 0.9), det(2, 4, 0, 0, 50, 50, 0.6)};
  const CocoEvalResult r = evaluate_bbox(gts, dets, {1, 2}, {1, 2, 3, 4});
  ASSERT_EQ(r.per_category_ap.size(), 4u);
  EXPECT_EQ(r.per_category_ap[0].first, 1);
  EXPECT_NEAR(r.per_category_ap[0].second, 1.0, kTol);
  EXPECT_EQ(r.per_category_ap[1], (std::pair<int64_t, double>{2, -1.0}));
  EXPECT_EQ(r.per_category_ap[2], (std::pair<int64_t, double>{3, -1.0}));
  EXPECT_EQ(r.per_category_ap[3].first, 4);
  EXPECT_NEAR(r.per_category_ap[3].second, 0.5, kTol);
  EXPECT_NEAR(r.ap, 0.75, kTol);
  // Both objects are medium (2500). AR1: category 1 finds its object with its first
  // detection, category 4 does not: (1 + 0) / 2.
  expect_stats(r, {0.75, 0.75, 0.75, -1, 0.75, -1, 0.5, 1, 1, -1, 1, -1});
}

TEST(CocoEval, ImagesAndIdsOutsideTheListsAreSkipped) {
  const std::vector<GroundTruth> gts = {gt(1, 1, 0, 0, 50, 50)};
  const std::vector<Detection> dets = {det(1, 1, 0, 0, 50, 50, 0.5)};
  const CocoEvalResult base = evaluate_bbox(gts, dets, {1}, {1});
  // Empty images in the list, duplicates, another order: no effect.
  const CocoEvalResult more = evaluate_bbox(gts, dets, {5, 1, 3, 1}, {1, 1});
  EXPECT_EQ(base.precision, more.precision);
  EXPECT_EQ(base.recall, more.recall);
  // Ground truth and detections on an image or category not evaluated: ignored entirely.
  std::vector<GroundTruth> gts2 = gts;
  gts2.push_back(gt(9, 1, 0, 0, 50, 50));
  std::vector<Detection> dets2 = dets;
  dets2.push_back(det(9, 1, 100, 100, 50, 50, 0.99));
  dets2.push_back(det(1, 7, 100, 100, 50, 50, 0.99));
  const CocoEvalResult outside = evaluate_bbox(gts2, dets2, {1}, {1});
  EXPECT_EQ(base.precision, outside.precision);
  EXPECT_EQ(base.stats(), outside.stats());
}

// ---------------------------------------------------------------------------------------
// Ties (pycocotools' orders)

TEST(CocoEval, EqualScoresAcrossImagesFollowImageIdOrder) {
  // One detection on image 1 and one on image 2, both scored 0.5, at the same place; the one
  // object is on image 2 (first case) or image 1 (second). The concatenation is in ascending
  // image id (whatever order image_ids are given in) and the sort is stable, so image 1's
  // detection comes first:
  //   FP first: recall 0, 1; precision 0, 1/2 -> AP 0.5.   TP first: AP 1.
  const std::vector<Detection> dets_fp_on_1 = {det(2, 1, 0, 0, 50, 50, 0.5),
                                               det(1, 1, 0, 0, 50, 50, 0.5)};
  const CocoEvalResult a = evaluate_bbox({gt(2, 1, 0, 0, 50, 50)}, dets_fp_on_1, {2, 1}, {1});
  EXPECT_NEAR(a.ap, 0.5, kTol);
  const CocoEvalResult b = evaluate_bbox({gt(1, 1, 0, 0, 50, 50)}, dets_fp_on_1, {2, 1}, {1});
  EXPECT_NEAR(b.ap, 1.0, kTol);
}

TEST(CocoEval, EqualScoresWithinAnImageKeepInputOrder) {
  // Two exact detections of one object, same score: the first in input order is the TP and
  // the second a duplicate. Here they differ: the first given covers 60% (IoU 0.6).
  //   given (partial, exact): t <= 0.6 -> TP, FP (AP 1); t >= 0.65 -> FP, TP (AP 0.5): 0.65.
  //   given (exact, partial): the exact one is the TP at every t: AP 1.
  const std::vector<GroundTruth> g = {gt(1, 1, 0, 0, 10, 10)};
  const Detection partial = det(1, 1, 0, 0, 10, 6, 0.7), exact = det(1, 1, 0, 0, 10, 10, 0.7);
  EXPECT_NEAR(evaluate_bbox(g, {partial, exact}, {1}, {1}).ap, 0.65, kTol);
  EXPECT_NEAR(evaluate_bbox(g, {exact, partial}, {1}, {1}).ap, 1.0, kTol);
}

TEST(CocoEval, EqualIoUGoesToTheLaterGroundTruth) {
  // Objects G1 = [0,0,10,10] and G2 = [10,0,10,10]; detection d1 = [5,0,10,10] (0.9) has IoU
  // 50/150 = 1/3 with both, d2 = G2 exactly (0.8). With one IoU threshold 0.3, pycocotools
  // gives d1 the later of equal candidates, G2, so d2 finds G2 taken and G1 at IoU 0: FP.
  // recall 1/2, 1/2; precision 1, 1/2 -> AP = 51/101 (had d1 taken G1, AP would be 1).
  CocoEvalOptions o;
  o.iou_thresholds = {0.3};
  const CocoEvalResult r =
      evaluate_bbox({gt(1, 1, 0, 0, 10, 10), gt(1, 1, 10, 0, 10, 10)},
                    {det(1, 1, 5, 0, 10, 10, 0.9), det(1, 1, 10, 0, 10, 10, 0.8)}, {1}, {1}, o);
  EXPECT_NEAR(r.ap, 51.0 / 101.0, kTol);
  // AP50 / AP75: no such threshold among {0.3}: -1, like pycocotools' empty slice.
  EXPECT_EQ(r.ap50, -1.0);
  EXPECT_EQ(r.ap75, -1.0);
}

// ---------------------------------------------------------------------------------------
// Tables and the results file

TEST(CocoEval, FormatTableMatchesPycocotoolsAndDetectron2) {
  const std::vector<GroundTruth> gts = {gt(1, 1, 0, 0, 50, 50), gt(2, 4, 0, 0, 50, 50)};
  const std::vector<Detection> dets = {
      det(1, 1, 0, 0, 50, 50, 0.9), det(2, 4, 200, 200, 50, 50, 0.9), det(2, 4, 0, 0, 50, 50, 0.6)};
  const CocoEvalResult r = evaluate_bbox(gts, dets, {1, 2}, {1, 4});
  const std::string table = format_table(r, {"cat", "dog"});
  std::istringstream in(table);
  std::vector<std::string> lines;
  for (std::string l; std::getline(in, l);) lines.push_back(l);
  ASSERT_GE(lines.size(), 20u) << table;
  EXPECT_EQ(lines[0],
            " Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ] = 0.750");
  EXPECT_EQ(lines[1],
            " Average Precision  (AP) @[ IoU=0.50      | area=   all | maxDets=100 ] = 0.750");
  EXPECT_EQ(lines[3],
            " Average Precision  (AP) @[ IoU=0.50:0.95 | area= small | maxDets=100 ] = -1.000");
  EXPECT_EQ(lines[6],
            " Average Recall     (AR) @[ IoU=0.50:0.95 | area=   all | maxDets=  1 ] = 0.500");
  EXPECT_EQ(lines[10],
            " Average Recall     (AR) @[ IoU=0.50:0.95 | area=medium | maxDets=100 ] = 1.000");
  // Detectron2's summary: x100, centred, nan for -1.
  EXPECT_EQ(lines[12], "Evaluation results for bbox:");
  EXPECT_EQ(lines[13], "|   AP   |  AP50  |  AP75  |  APs  |  APm   |  APl  |");
  EXPECT_EQ(lines[14], "|:------:|:------:|:------:|:-----:|:------:|:-----:|");
  EXPECT_EQ(lines[15], "| 75.000 | 75.000 | 75.000 |  nan  | 75.000 |  nan  |");
  // Per-category: AP of "cat" is 1 / (1 + eps) -> 100.000, of "dog" 0.5 -> 50.000.
  EXPECT_EQ(lines[16], "Per-category bbox AP:");
  EXPECT_EQ(lines[17], "| category   | AP      | category   | AP     |");
  EXPECT_EQ(lines[18], "|:-----------|:--------|:-----------|:-------|");
  EXPECT_EQ(lines[19], "| cat        | 100.000 | dog        | 50.000 |");
}

TEST(CocoEval, FormatTableFillsRowsOfThreePairs) {
  // Four categories: the second row holds one pair and blanks; unnamed ones show their id.
  std::vector<GroundTruth> gts;
  std::vector<Detection> dets;
  for (int c = 1; c <= 4; ++c) {
    gts.push_back(gt(1, c, 0, 0, 50, 50));
    dets.push_back(det(1, c, 0, 0, 50, 50, 0.9));
  }
  const std::string table = format_table(evaluate_bbox(gts, dets, {1}, {1, 2, 3, 4}),
                                         {"person", "bicycle", "traffic light"});
  EXPECT_NE(
      table.find("| category   | AP      | category   | AP      | category      | AP      |\n"
                 "|:-----------|:--------|:-----------|:--------|:--------------|:--------|\n"
                 "| person     | 100.000 | bicycle    | 100.000 | traffic light | 100.000 |\n"
                 "| 4          | 100.000 |            |         |               |         |\n"),
      std::string::npos)
      << table;
}

// Numbers in `text` in order of appearance, read with strtod.
std::vector<double> numbers_in(const std::string& text) {
  std::vector<double> out;
  const char* p = text.c_str();
  while (*p) {
    if ((*p >= '0' && *p <= '9') || *p == '-') {
      char* end = nullptr;
      out.push_back(std::strtod(p, &end));
      p = end;
    } else {
      ++p;
    }
  }
  return out;
}

TEST(CocoEval, ResultsJsonRoundTrips) {
  const std::vector<Detection> dets = {
      det(42, 1, 0.1, 1e-7, 123.456789012345, 3, 0.30000000000000004),
      det(7, 90, -0.0, 1e16, 5e-324, 2.5, 1.0 / 3.0), det(-3, 2, 640, 480, 0, 0, 0)};
  mgd::testing::TempDir dir("coco-eval");
  const std::string path = dir / "bbox_results.json";
  write_results_json(path, dets);
  std::ifstream f(path);
  std::stringstream buf;
  buf << f.rdbuf();
  const std::string text = buf.str();
  EXPECT_EQ(text, results_json(dets));
  EXPECT_NE(text.find("{\"image_id\": 42, \"category_id\": 1, \"bbox\": [0.1, 1e-07, "
                      "123.456789012345, 3], \"score\": 0.30000000000000004}"),
            std::string::npos)
      << text;
  // Every number reads back exactly, in order.
  const std::vector<double> nums = numbers_in(text);
  ASSERT_EQ(nums.size(), dets.size() * 7);
  for (size_t j = 0; j < dets.size(); ++j) {
    const auto& d = dets[j];
    const double want[7] = {static_cast<double>(d.image_id),
                            static_cast<double>(d.category_id),
                            d.bbox[0],
                            d.bbox[1],
                            d.bbox[2],
                            d.bbox[3],
                            d.score};
    for (int c = 0; c < 7; ++c) EXPECT_EQ(nums[j * 7 + c], want[c]) << j << " " << c;
  }
  // No temporary file is left beside it.
  int entries = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir.path())) {
    (void)e;
    ++entries;
  }
  EXPECT_EQ(entries, 1);
  // And Python's json module parses it to the same values (float.hex is exact).
  const std::string cmd = std::string(MGD_PYTHON) +
                          " -c \"import json,sys; d=json.load(open(sys.argv[1])); "
                          "print(len(d)); [print(a['image_id'], a['category_id'], "
                          "*[float(v).hex() for v in a['bbox']], float(a['score']).hex()) "
                          "for a in d]\" " +
                          path + " 2>&1";
  FILE* pipe = popen(cmd.c_str(), "r");
  ASSERT_NE(pipe, nullptr);
  std::string out;
  char chunk[512];
  while (size_t n = fread(chunk, 1, sizeof chunk, pipe)) out.append(chunk, n);
  const int status = pclose(pipe);
  if (status != 0) GTEST_SKIP() << "python's json check unavailable: " << out;
  std::istringstream lines(out);
  size_t count = 0;
  lines >> count;
  ASSERT_EQ(count, dets.size()) << out;
  for (const auto& d : dets) {
    int64_t image = 0, category = 0;
    std::string hex[5];
    lines >> image >> category >> hex[0] >> hex[1] >> hex[2] >> hex[3] >> hex[4];
    EXPECT_EQ(image, d.image_id);
    EXPECT_EQ(category, d.category_id);
    for (int c = 0; c < 4; ++c)
      EXPECT_EQ(std::strtod(hex[c].c_str(), nullptr), d.bbox[c]) << hex[c];
    EXPECT_EQ(std::strtod(hex[4].c_str(), nullptr), d.score) << hex[4];
  }
}

TEST(CocoEval, ResultsJsonRejectsNonFiniteNumbersAndKeepsTheOldFile) {
  mgd::testing::TempDir dir("coco-eval");
  const std::string path = dir / "r.json";
  write_results_json(path, {});
  std::ifstream f(path);
  std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  EXPECT_EQ(text, "[]\n");
  EXPECT_THROW(write_results_json(path, {det(1, 1, 0, 0, INFINITY, 1, 0.5)}),
               std::invalid_argument);
  std::ifstream g(path);
  std::string again((std::istreambuf_iterator<char>(g)), std::istreambuf_iterator<char>());
  EXPECT_EQ(again, "[]\n");
  EXPECT_THROW(write_results_json(dir / "no-such-dir/r.json", {}), std::runtime_error);
}

// ---------------------------------------------------------------------------------------
// Random scenes against a naive evaluator

// COCO evaluation from the definitions, slowly and without the structure of the real one.
class NaiveCoco {
 public:
  NaiveCoco(std::vector<GroundTruth> gts, std::vector<Detection> dets, std::vector<int64_t> images,
            std::vector<int64_t> cats, CocoEvalOptions o)
      : gts_(std::move(gts)), dets_(std::move(dets)), o_(std::move(o)) {
    std::sort(images.begin(), images.end());
    images.erase(std::unique(images.begin(), images.end()), images.end());
    std::sort(cats.begin(), cats.end());
    cats.erase(std::unique(cats.begin(), cats.end()), cats.end());
    images_ = images;
    cats_ = cats;
    std::sort(o_.max_dets.begin(), o_.max_dets.end());
  }

  // IoU from corners; for a crowd, intersection over the detection's area.
  static double iou(const Detection& d, const GroundTruth& g) {
    const double dx2 = d.bbox[0] + d.bbox[2], dy2 = d.bbox[1] + d.bbox[3];
    const double gx2 = g.bbox[0] + g.bbox[2], gy2 = g.bbox[1] + g.bbox[3];
    const double iw = std::max(0.0, std::min(dx2, gx2) - std::max(d.bbox[0], g.bbox[0]));
    const double ih = std::max(0.0, std::min(dy2, gy2) - std::max(d.bbox[1], g.bbox[1]));
    const double inter = iw * ih;
    if (inter == 0) return 0;
    const double da = d.bbox[2] * d.bbox[3];
    return g.iscrowd ? inter / da : inter / (da + g.bbox[2] * g.bbox[3] - inter);
  }

  struct Item {
    double score;
    size_t image_pos;
    size_t rank;
    int status;  // 0 ignored, 1 TP, 2 FP
  };

  // Returns (precision over recall thresholds, recall), or empty + -1 with no ground truth.
  std::pair<std::vector<double>, double> slice(int64_t cat, size_t area, int max_det,
                                               double thr) const {
    const auto& range = o_.area_ranges[area];
    auto out_of = [&](double a) { return a < range[0] || a > range[1]; };
    std::vector<Item> items;
    int64_t npig = 0;
    for (size_t ip = 0; ip < images_.size(); ++ip) {
      std::vector<const GroundTruth*> g;
      std::vector<const Detection*> d;
      for (const auto& x : gts_) {
        if (x.image_id == images_[ip] && x.category_id == cat) g.push_back(&x);
      }
      for (const auto& x : dets_) {
        if (x.image_id == images_[ip] && x.category_id == cat) d.push_back(&x);
      }
      // Rank of each detection: how many score higher, or equal and come earlier.
      std::vector<size_t> rank(d.size());
      for (size_t i = 0; i < d.size(); ++i) {
        for (size_t j = 0; j < d.size(); ++j) {
          if (d[j]->score > d[i]->score || (d[j]->score == d[i]->score && j < i)) ++rank[i];
        }
      }
      std::vector<bool> ignored(g.size());
      std::vector<size_t> position(g.size());  // in pycocotools' order: non-ignored first
      size_t non_ignored = 0;
      for (size_t j = 0; j < g.size(); ++j) {
        ignored[j] = g[j]->iscrowd || out_of(g[j]->area);
        if (!ignored[j]) ++non_ignored;
      }
      npig += static_cast<int64_t>(non_ignored);
      for (size_t j = 0, a = 0, b = non_ignored; j < g.size(); ++j) {
        position[j] = ignored[j] ? b++ : a++;
      }
      std::vector<bool> taken(g.size(), false);
      const double need = std::min(thr, 1 - 1e-10);
      for (size_t r = 0; r < d.size() && r < static_cast<size_t>(o_.max_dets.back()); ++r) {
        size_t i = 0;
        while (rank[i] != r) ++i;
        // The best free candidate by (not ignored, IoU, later position).
        int best = -1;
        for (size_t j = 0; j < g.size(); ++j) {
          if (taken[j] && !g[j]->iscrowd) continue;
          const double v = iou(*d[i], *g[j]);
          if (v < need) continue;
          if (best < 0) {
            best = static_cast<int>(j);
            continue;
          }
          const auto b = static_cast<size_t>(best);
          const double vb = iou(*d[i], *g[b]);
          const bool better =
              (!ignored[j] && ignored[b]) ||
              (ignored[j] == ignored[b] && (v > vb || (v == vb && position[j] > position[b])));
          if (better) best = static_cast<int>(j);
        }
        int status;
        if (best >= 0) {
          taken[static_cast<size_t>(best)] = true;
          status = ignored[static_cast<size_t>(best)] ? 0 : 1;
        } else {
          status = out_of(d[i]->bbox[2] * d[i]->bbox[3]) ? 0 : 2;
        }
        if (r < static_cast<size_t>(max_det)) items.push_back({d[i]->score, ip, r, status});
      }
    }
    if (npig == 0) return {{}, -1.0};
    std::sort(items.begin(), items.end(), [](const Item& a, const Item& b) {
      if (a.score != b.score) return a.score > b.score;
      if (a.image_pos != b.image_pos) return a.image_pos < b.image_pos;
      return a.rank < b.rank;
    });
    const size_t n = items.size();
    std::vector<double> prec(n), rec(n);
    for (size_t j = 0; j < n; ++j) {
      double tp = 0, fp = 0;
      for (size_t i = 0; i <= j; ++i) {
        tp += items[i].status == 1;
        fp += items[i].status == 2;
      }
      rec[j] = tp / static_cast<double>(npig);
      prec[j] = tp / (tp + fp + 2.220446049250313e-16);
    }
    std::vector<double> q(o_.recall_thresholds.size(), 0.0);
    for (size_t r = 0; r < q.size(); ++r) {
      // Interpolated precision: the best precision from the first point reaching recall r on.
      size_t first = n;
      for (size_t j = 0; j < n && first == n; ++j) {
        if (rec[j] >= o_.recall_thresholds[r]) first = j;
      }
      for (size_t j = first; j < n; ++j) q[r] = std::max(q[r], prec[j]);
    }
    return {q, n == 0 ? 0.0 : rec[n - 1]};
  }

  // Compares every precision / recall entry and the summary with `r`.
  void check(const CocoEvalResult& r) const {
    const size_t T = o_.iou_thresholds.size(), R = o_.recall_thresholds.size();
    const size_t K = cats_.size();
    ASSERT_EQ(r.dims[0], static_cast<int64_t>(T));
    ASSERT_EQ(r.dims[2], static_cast<int64_t>(K));
    std::vector<double> all_ap, all_ar100, small_ap;
    for (size_t k = 0; k < K; ++k) {
      std::vector<double> cat_ap;
      for (size_t a = 0; a < 4; ++a) {
        for (size_t m = 0; m < 3; ++m) {
          for (size_t t = 0; t < T; ++t) {
            const auto [q, rc] = slice(cats_[k], a, o_.max_dets[m], o_.iou_thresholds[t]);
            const auto ti = static_cast<int64_t>(t), ki = static_cast<int64_t>(k);
            const auto ai = static_cast<int64_t>(a), mi = static_cast<int64_t>(m);
            ASSERT_EQ(recall_at(r, ti, ki, ai, mi), rc) << k << " " << a << " " << m << " " << t;
            for (size_t rr = 0; rr < R; ++rr) {
              const double want = q.empty() ? -1.0 : q[rr];
              ASSERT_EQ(precision_at(r, ti, static_cast<int64_t>(rr), ki, ai, mi), want)
                  << "cat " << k << " area " << a << " maxdet " << m << " iou " << t << " r " << rr;
              if (want > -1 && m == 2 && a == 0) cat_ap.push_back(want);
              if (want > -1 && m == 2 && a == 1) small_ap.push_back(want);
            }
            if (rc > -1 && m == 2 && a == 0) all_ar100.push_back(rc);
          }
        }
      }
      double s = 0;
      for (double v : cat_ap) s += v;
      EXPECT_NEAR(r.per_category_ap[k].second, cat_ap.empty() ? -1 : s / cat_ap.size(), kTol);
      all_ap.insert(all_ap.end(), cat_ap.begin(), cat_ap.end());
    }
    auto mean = [](const std::vector<double>& v) {
      double s = 0;
      for (double x : v) s += x;
      return v.empty() ? -1.0 : s / static_cast<double>(v.size());
    };
    EXPECT_NEAR(r.ap, mean(all_ap), kTol);
    EXPECT_NEAR(r.ap_small, mean(small_ap), kTol);
    EXPECT_NEAR(r.ar100, mean(all_ar100), kTol);
  }

 private:
  std::vector<GroundTruth> gts_;
  std::vector<Detection> dets_;
  std::vector<int64_t> images_, cats_;
  CocoEvalOptions o_;
};

// A random scene on integer coordinates: objects of every size (some crowds, some with an
// area field unlike w*h), detections jittered from them (some twice), spurious boxes,
// degenerate boxes, discrete scores (ties), ids outside the evaluated lists.
struct Scene {
  std::vector<GroundTruth> gts;
  std::vector<Detection> dets;
  std::vector<int64_t> images, cats;
};

Scene random_scene(std::mt19937& rng) {
  auto uni = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  Scene s;
  const int n_images = uni(1, 5), n_cats = uni(1, 3);
  for (int i = 0; i < n_images; ++i) s.images.push_back(uni(0, 3) * 10 + i);
  for (int c = 0; c < n_cats; ++c) s.cats.push_back(c * 3 + 1);
  auto score = [&]() {
    return uni(0, 1) ? uni(1, 5) / 5.0 : std::uniform_real_distribution<double>(0, 1)(rng);
  };
  auto size = [&]() {
    switch (uni(0, 2)) {
      case 0:
        return uni(1, 30);
      case 1:
        return uni(25, 100);
      default:
        return uni(90, 160);
    }
  };
  for (int64_t image : s.images) {
    for (int64_t cat : s.cats) {
      const int n_gt = uni(0, 4);
      for (int j = 0; j < n_gt; ++j) {
        GroundTruth g = gt(image, cat, uni(0, 200), uni(0, 200), size(), size(), uni(0, 9) == 0);
        if (uni(0, 4) == 0) g.area = uni(1, 12000);
        s.gts.push_back(g);
        const int copies = uni(0, 2);
        for (int c = 0; c < copies; ++c) {
          const double w = std::max(0.0, g.bbox[2] + uni(-8, 8));
          const double h = std::max(0.0, g.bbox[3] + uni(-8, 8));
          s.dets.push_back(
              det(image, cat, g.bbox[0] + uni(-8, 8), g.bbox[1] + uni(-8, 8), w, h, score()));
        }
      }
      const int spurious = uni(0, 5);
      for (int j = 0; j < spurious; ++j) {
        s.dets.push_back(det(image, cat, uni(0, 250), uni(0, 250), uni(0, 3) == 0 ? 0 : size(),
                             size(), score()));
      }
    }
  }
  // Outside the evaluated lists.
  s.gts.push_back(gt(999, s.cats[0], 0, 0, 50, 50));
  s.dets.push_back(det(s.images[0], 1000, 0, 0, 50, 50, 0.9));
  std::shuffle(s.gts.begin(), s.gts.end(), rng);
  std::shuffle(s.dets.begin(), s.dets.end(), rng);
  return s;
}

TEST(CocoEval, RandomScenesMatchTheNaiveEvaluator) {
  std::mt19937 rng(20240611);
  for (int trial = 0; trial < 200; ++trial) {
    const Scene s = random_scene(rng);
    CocoEvalOptions o;
    if (trial % 3 == 1) o.max_dets = {1, 3, 5};  // truncation before matching
    if (trial % 3 == 2) {
      o.iou_thresholds = {0.1, 0.5, 0.75};
      o.recall_thresholds = {0.0, 0.25, 0.5, 0.75, 1.0};
    }
    const CocoEvalResult r = evaluate_bbox(s.gts, s.dets, s.images, s.cats, o);
    SCOPED_TRACE("trial " + std::to_string(trial));
    NaiveCoco(s.gts, s.dets, s.images, s.cats, o).check(r);
    if (::testing::Test::HasFatalFailure()) return;
  }
}

TEST(CocoEval, MonotonicityAndInvariances) {
  std::mt19937 rng(99);
  for (int trial = 0; trial < 40; ++trial) {
    Scene s = random_scene(rng);
    const CocoEvalResult r = evaluate_bbox(s.gts, s.dets, s.images, s.cats);
    const auto& d = r.dims;
    for (int64_t t = 0; t < d[0]; ++t) {
      for (int64_t k = 0; k < d[2]; ++k) {
        for (int64_t a = 0; a < d[3]; ++a) {
          for (int64_t m = 0; m < d[4]; ++m) {
            // Interpolated precision never rises with recall; values lie in [0, 1].
            for (int64_t rr = 0; rr < d[1]; ++rr) {
              const double p = precision_at(r, t, rr, k, a, m);
              EXPECT_TRUE(p == -1 || (p >= 0 && p <= 1));
              if (rr > 0) {
                EXPECT_LE(p, precision_at(r, t, rr - 1, k, a, m));
              }
            }
            // More detections per image never lose recall (matching is done once, with the
            // largest limit, and the smaller ones keep prefixes).
            const double rc = recall_at(r, t, k, a, m);
            EXPECT_TRUE(rc == -1 || (rc >= 0 && rc <= 1));
            if (m > 0) {
              EXPECT_GE(rc, recall_at(r, t, k, a, m - 1));
            }
          }
        }
      }
    }
    // A monotone transform of the scores changes nothing.
    Scene scaled = s;
    for (auto& x : scaled.dets) x.score = 0.25 * x.score + 0.5;
    EXPECT_EQ(evaluate_bbox(scaled.gts, scaled.dets, s.images, s.cats).precision, r.precision);
    // Neither does the order of items across different (image, category) buckets.
    Scene regrouped = s;
    auto by_category = [](const auto& a, const auto& b) { return a.category_id > b.category_id; };
    std::stable_sort(regrouped.gts.begin(), regrouped.gts.end(), by_category);
    std::stable_sort(regrouped.dets.begin(), regrouped.dets.end(), by_category);
    const CocoEvalResult g = evaluate_bbox(regrouped.gts, regrouped.dets, s.images, s.cats);
    EXPECT_EQ(g.precision, r.precision);
    EXPECT_EQ(g.recall, r.recall);
    // Exact copies of the ground truth (every object found, nothing else) give AP ~ 1
    // wherever there is ground truth.
    std::vector<Detection> perfect;
    for (const auto& x : s.gts) {
      if (!x.iscrowd) {
        perfect.push_back(
            det(x.image_id, x.category_id, x.bbox[0], x.bbox[1], x.bbox[2], x.bbox[3], 0.5));
      }
    }
    const CocoEvalResult p = evaluate_bbox(s.gts, perfect, s.images, s.cats);
    for (const auto& [cat, ap] : p.per_category_ap) {
      if (ap != -1) {
        EXPECT_NEAR(ap, 1.0, kTol) << cat;
      }
    }
  }
}

TEST(CocoEval, SummaryMeansAreNumpysBitForBit) {
  // COCOeval.summarize() averages with np.mean, which sums in blocks of 8192 elements, each
  // pairwise; the summary must equal numpy's mean of the same precision entries exactly.
  // 80 categories and 1001 recall thresholds make the AP slice 10 x 1001 x 80 = 800800
  // entries (98 blocks).
  std::mt19937 rng(3);
  std::vector<GroundTruth> gts;
  std::vector<Detection> dets;
  std::vector<int64_t> cats;
  for (int c = 1; c <= 80; ++c) cats.push_back(c);
  for (int i = 0; i < 40; ++i) {
    for (int c = 1; c <= 80; ++c) {
      if (std::uniform_int_distribution<int>(0, 3)(rng) != 0) continue;
      const int x = std::uniform_int_distribution<int>(0, 100)(rng);
      gts.push_back(gt(i, c, x, x, 40, 30));
      for (int j = 0; j < 3; ++j) {
        dets.push_back(det(i, c, x + std::uniform_int_distribution<int>(-12, 12)(rng), x, 40, 30,
                           std::uniform_real_distribution<double>(0, 1)(rng)));
      }
    }
  }
  std::vector<int64_t> images;
  for (int i = 0; i < 40; ++i) images.push_back(i);
  CocoEvalOptions o;
  o.recall_thresholds.clear();
  for (int i = 0; i <= 1000; ++i) o.recall_thresholds.push_back(i / 1000.0);
  const CocoEvalResult r = evaluate_bbox(gts, dets, images, cats, o);
  // The AP slice (area all, maxDets 100) in C order, as hex floats, for numpy.
  mgd::testing::TempDir dir("coco-eval");
  const std::string path = dir / "precision.txt";
  {
    std::ofstream f(path);
    f << std::hexfloat;
    for (int64_t t = 0; t < r.dims[0]; ++t) {
      for (int64_t rr = 0; rr < r.dims[1]; ++rr) {
        for (int64_t k = 0; k < r.dims[2]; ++k) f << precision_at(r, t, rr, k, 0, 2) << "\n";
      }
    }
  }
  const std::string cmd = std::string(MGD_PYTHON) +
                          " -c \"import sys, numpy as np; "
                          "s = np.array([float.fromhex(l) for l in open(sys.argv[1])]); "
                          "print(float(np.mean(s[s > -1])).hex())\" " +
                          path + " 2>&1";
  FILE* pipe = popen(cmd.c_str(), "r");
  ASSERT_NE(pipe, nullptr);
  std::string out;
  char chunk[512];
  while (size_t n = fread(chunk, 1, sizeof chunk, pipe)) out.append(chunk, n);
  if (pclose(pipe) != 0) GTEST_SKIP() << "numpy unavailable: " << out;
  EXPECT_EQ(r.ap, std::strtod(out.c_str(), nullptr)) << out;
  // A plain left-to-right sum differs in the last bits here (the reason for the above).
  double plain = 0;
  size_t n = 0;
  for (int64_t t = 0; t < r.dims[0]; ++t) {
    for (int64_t rr = 0; rr < r.dims[1]; ++rr) {
      for (int64_t k = 0; k < r.dims[2]; ++k) {
        plain += precision_at(r, t, rr, k, 0, 2);
        ++n;
      }
    }
  }
  std::cout << "[ info     ] AP " << std::hexfloat << r.ap << ", a plain sum gives "
            << plain / static_cast<double>(n) << std::defaultfloat << "\n";
}

TEST(CocoEval, ThreadsDoNotChangeTheResult) {
  // Categories are spread over workers; every entry must be the same as on one thread.
  std::mt19937 rng(11);
  Scene all;
  for (int part = 0; part < 6; ++part) {
    Scene s = random_scene(rng);
    for (auto& g : s.gts) g.category_id += 100 * part;
    for (auto& d : s.dets) d.category_id += 100 * part;
    for (auto& c : s.cats) all.cats.push_back(c + 100 * part);
    all.gts.insert(all.gts.end(), s.gts.begin(), s.gts.end());
    all.dets.insert(all.dets.end(), s.dets.begin(), s.dets.end());
    all.images.insert(all.images.end(), s.images.begin(), s.images.end());
  }
  CocoEvalOptions one, four;
  one.num_threads = 1;
  four.num_threads = 4;
  const CocoEvalResult a = evaluate_bbox(all.gts, all.dets, all.images, all.cats, one);
  const CocoEvalResult b = evaluate_bbox(all.gts, all.dets, all.images, all.cats, four);
  EXPECT_EQ(a.precision, b.precision);
  EXPECT_EQ(a.recall, b.recall);
  EXPECT_EQ(a.stats(), b.stats());
  EXPECT_EQ(a.per_category_ap, b.per_category_ap);
}

// ---------------------------------------------------------------------------------------
// Size: COCO val2017's shape

TEST(CocoEval, Val2017SizedEvaluationTakesSeconds) {
  // 5000 images, 80 categories, ~7 objects and 100 detections per image (COCO's limit):
  // half jittered copies of the objects, half spread over random categories.
  std::mt19937 rng(5);
  auto uni = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  std::uniform_real_distribution<double> u01(0, 1);
  std::vector<GroundTruth> gts;
  std::vector<Detection> dets;
  std::vector<int64_t> images, cats;
  for (int c = 1; c <= 90; ++c) {
    if (c % 9 != 0 && cats.size() < 80) cats.push_back(c);
  }
  for (int i = 0; i < 5000; ++i) {
    images.push_back(100000 + 7 * i);
    const int n_gt = uni(1, 14);
    for (int j = 0; j < n_gt; ++j) {
      const int64_t cat = cats[static_cast<size_t>(uni(0, 79))];
      gts.push_back(gt(images.back(), cat, uni(0, 500), uni(0, 400), uni(4, 300), uni(4, 300),
                       uni(0, 50) == 0));
    }
    for (int j = 0; j < 100; ++j) {
      if (j % 2 == 0 && !gts.empty() && gts.back().image_id == images.back()) {
        const GroundTruth& g = gts[gts.size() - 1 - static_cast<size_t>(uni(0, n_gt - 1))];
        dets.push_back(det(g.image_id, g.category_id, g.bbox[0] + uni(-10, 10),
                           g.bbox[1] + uni(-10, 10), g.bbox[2] + uni(-10, 10),
                           g.bbox[3] + uni(-10, 10), u01(rng)));
      } else {
        dets.push_back(det(images.back(), cats[static_cast<size_t>(uni(0, 79))], uni(0, 500),
                           uni(0, 400), uni(4, 300), uni(4, 300), u01(rng) * 0.5));
      }
    }
  }
  const auto start = std::chrono::steady_clock::now();
  const std::clock_t cpu_start = std::clock();
  const CocoEvalResult r = evaluate_bbox(gts, dets, images, cats);
  const double cpu_seconds = static_cast<double>(std::clock() - cpu_start) / CLOCKS_PER_SEC;
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::cout << "[ timing   ] evaluate_bbox: " << images.size() << " images, " << cats.size()
            << " categories, " << gts.size() << " objects, " << dets.size()
            << " detections: " << seconds << " s wall, " << cpu_seconds << " s CPU (AP " << r.ap
            << ")\n";
  EXPECT_GT(r.ap, 0.0);
  EXPECT_LT(seconds, 60.0);  // about a second on one core; generous for a loaded machine
}

}  // namespace
}  // namespace mgd::evaluation
