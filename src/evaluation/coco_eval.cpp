// COCO bbox evaluation, following pycocotools' COCOeval (evaluate, accumulate, summarize)
// step by step; see the header for the protocol.
//
// Layout: ground truth and detections are bucketed by (category, image), sorted by category
// then image (images in ascending id order, which is COCOeval's concatenation order) and
// stably, so each bucket keeps the input order (pycocotools' per-image lists are in annotation
// order, which decides ties). Per category, every image with ground truth or detections is
// matched once per area range and IoU threshold; the outcome of each detection (ignored, true
// positive, false positive) is kept in a flat array, and the category's detections are sorted
// by score once: the order is the same for every area range, and a detection limit m keeps
// the subsequence of per-image ranks < m. Categories share nothing, so workers take whole
// categories and write disjoint entries of the result.
//
// Floating point follows numpy's and maskApi.c's order of operations; the project compiles in
// ISO mode (-std=c++17, so -ffp-contract=off), which keeps a*b+c from becoming an FMA.

#include "mgd/evaluation/coco_eval.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <exception>
#include <numeric>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>

namespace mgd::evaluation {
namespace {

// np.spacing(1): the gap above 1.0, pycocotools' guard against 0 / 0 in precision.
constexpr double kSpacing1 = 2.220446049250313e-16;
// numpy reduces a contiguous array in chunks of its buffer size (8192 elements), each summed
// pairwise; the chunk sums are added in order.
constexpr size_t kNumpyBufferSize = 8192;
constexpr size_t kNumpyPairwiseBlock = 128;

// numpy's pairwise_sum for doubles (numpy/core/src/umath/loops_utils.h.src).
double pairwise_sum(const double* a, size_t n) {
  if (n < 8) {
    double res = 0.0;
    for (size_t i = 0; i < n; ++i) res += a[i];
    return res;
  }
  if (n <= kNumpyPairwiseBlock) {
    double r[8];
    for (int j = 0; j < 8; ++j) r[j] = a[j];
    size_t i = 8;
    for (; i < n - (n % 8); i += 8) {
      for (int j = 0; j < 8; ++j) r[j] += a[i + j];
    }
    double res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
    for (; i < n; ++i) res += a[i];
    return res;
  }
  size_t n2 = n / 2;
  n2 -= n2 % 8;
  return pairwise_sum(a, n2) + pairwise_sum(a + n2, n - n2);
}

// np.mean(values) bit for bit (numpy >= 1.9); -1 for no values, as COCOeval.summarize.
double numpy_mean_or_minus_one(const std::vector<double>& values) {
  if (values.empty()) return -1.0;
  double sum = 0.0;
  for (size_t start = 0; start < values.size(); start += kNumpyBufferSize) {
    sum += pairwise_sum(values.data() + start, std::min(kNumpyBufferSize, values.size() - start));
  }
  return sum / static_cast<double>(values.size());
}

// np.linspace(start, stop, num) with endpoint: i * step + start, the last one exactly stop.
std::vector<double> linspace(double start, double stop, int num) {
  std::vector<double> y(static_cast<size_t>(num));
  const double step = (stop - start) / static_cast<double>(num - 1);
  for (int i = 0; i < num; ++i) {
    const double scaled = static_cast<double>(i) * step;
    y[static_cast<size_t>(i)] = scaled + start;
  }
  y.back() = stop;
  return y;
}

// pycocotools' bbIou (common/maskApi.c) for one pair: for a crowd ground truth the union is
// the detection's area.
double box_iou(const std::array<double, 4>& d, const std::array<double, 4>& g, bool crowd) {
  const double ga = g[2] * g[3];
  const double da = d[2] * d[3];
  const double w = std::fmin(d[2] + d[0], g[2] + g[0]) - std::fmax(d[0], g[0]);
  if (w <= 0) return 0.0;
  const double h = std::fmin(d[3] + d[1], g[3] + g[1]) - std::fmax(d[1], g[1]);
  if (h <= 0) return 0.0;
  const double i = w * h;
  const double u = crowd ? da : da + ga - i;
  return i / u;
}

bool outside(double area, const std::array<double, 2>& range) {
  return area < range[0] || area > range[1];
}

// Item indices sorted by (category index, image index), stably; items outside the evaluated
// images or categories are dropped. `key_of` returns -1 for those.
template <typename KeyOf>
std::vector<std::pair<int64_t, int64_t>> bucket(size_t n, KeyOf key_of) {
  std::vector<std::pair<int64_t, int64_t>> keyed;  // (key, item index)
  keyed.reserve(n);
  for (size_t j = 0; j < n; ++j) {
    const int64_t key = key_of(j);
    if (key >= 0) keyed.emplace_back(key, static_cast<int64_t>(j));
  }
  std::stable_sort(keyed.begin(), keyed.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  return keyed;
}

int64_t index_of(const std::vector<int64_t>& sorted, int64_t id) {
  const auto it = std::lower_bound(sorted.begin(), sorted.end(), id);
  return it != sorted.end() && *it == id ? it - sorted.begin() : -1;
}

std::vector<int64_t> sorted_unique(std::vector<int64_t> ids) {
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  return ids;
}

void check_options(const CocoEvalOptions& o) {
  if (o.iou_thresholds.empty()) {
    throw std::invalid_argument("evaluate_bbox: CocoEvalOptions::iou_thresholds is empty");
  }
  if (o.recall_thresholds.empty()) {
    throw std::invalid_argument("evaluate_bbox: CocoEvalOptions::recall_thresholds is empty");
  }
  std::vector<int> m = o.max_dets;
  std::sort(m.begin(), m.end());
  if (m.size() != 3 || m[0] <= 0 || m[0] == m[1] || m[1] == m[2]) {
    throw std::invalid_argument(
        "evaluate_bbox: CocoEvalOptions::max_dets must be three distinct positive detection "
        "limits (COCO: 1, 10, 100)");
  }
}

// Outcome of a detection at one (area range, IoU threshold).
enum Outcome : uint8_t { kIgnored = 0, kTruePositive = 1, kFalsePositive = 2 };

// One category's detections over all images, in COCOeval's concatenation order (image, then
// descending score), cut to the largest detection limit.
struct CategoryDetections {
  std::vector<double> score;
  std::vector<int32_t> rank;      // position within its image (for the detection limits)
  std::vector<uint8_t> outcome;   // [detection][area][threshold]
  std::array<int64_t, 4> npig{};  // non-ignored ground truth per area range
  void clear() {
    score.clear();
    rank.clear();
    outcome.clear();
    npig.fill(0);
  }
};

// COCOeval.evaluateImg for one image and category, every area range: appends the image's
// detections to `out`. `gt` and `dt` are this bucket's items in input order.
class ImageMatcher {
 public:
  explicit ImageMatcher(const CocoEvalOptions& o, int max_det) : o_(o), max_det_(max_det) {}

  void run(const std::vector<const GroundTruth*>& gt, std::vector<const Detection*>& dt,
           CategoryDetections& out) {
    const size_t T = o_.iou_thresholds.size();
    const size_t G = gt.size();
    // Highest score first, stably; then the detection limit.
    std::stable_sort(dt.begin(), dt.end(),
                     [](const Detection* a, const Detection* b) { return a->score > b->score; });
    if (dt.size() > static_cast<size_t>(max_det_)) dt.resize(static_cast<size_t>(max_det_));
    const size_t D = dt.size();

    iou_.assign(D * G, 0.0);
    for (size_t d = 0; d < D; ++d) {
      for (size_t g = 0; g < G; ++g)
        iou_[d * G + g] = box_iou(dt[d]->bbox, gt[g]->bbox, gt[g]->iscrowd);
    }

    const size_t first = out.score.size();
    for (size_t d = 0; d < D; ++d) {
      out.score.push_back(dt[d]->score);
      out.rank.push_back(static_cast<int32_t>(d));
    }
    out.outcome.resize((first + D) * 4 * T, kIgnored);

    order_.resize(G);
    ignore_.resize(G);
    matched_gt_.resize(G);
    matched_dt_.resize(D);
    ignored_dt_.resize(D);
    for (size_t a = 0; a < 4; ++a) {
      const auto& range = o_.area_ranges[a];
      // Non-ignored ground truth first, each group in input order.
      order_.clear();
      for (size_t g = 0; g < G; ++g) {
        if (!(gt[g]->iscrowd || outside(gt[g]->area, range))) order_.push_back(g);
      }
      out.npig[a] += static_cast<int64_t>(order_.size());
      for (size_t g = 0; g < G; ++g) {
        if (gt[g]->iscrowd || outside(gt[g]->area, range)) order_.push_back(g);
      }
      for (size_t j = 0; j < G; ++j) {
        ignore_[j] = gt[order_[j]]->iscrowd || outside(gt[order_[j]]->area, range);
      }
      for (size_t t = 0; t < T; ++t) {
        std::fill(matched_gt_.begin(), matched_gt_.end(), false);
        for (size_t d = 0; d < D; ++d) {
          double best = std::min(o_.iou_thresholds[t], 1 - 1e-10);
          int64_t m = -1;
          for (size_t j = 0; j < G; ++j) {
            const GroundTruth& g = *gt[order_[j]];
            if (matched_gt_[j] && !g.iscrowd) continue;      // taken (a crowd never is)
            if (m > -1 && !ignore_[m] && ignore_[j]) break;  // only ignored ones remain
            const double v = iou_[d * G + order_[j]];
            if (v < best) continue;
            best = v;  // >= : on equal IoU the later one wins, as in pycocotools
            m = static_cast<int64_t>(j);
          }
          matched_dt_[d] = m > -1;
          ignored_dt_[d] = m > -1 && ignore_[m];
          if (m > -1) matched_gt_[m] = true;
        }
        for (size_t d = 0; d < D; ++d) {
          const auto& b = dt[d]->bbox;
          bool ignored = ignored_dt_[d] || (!matched_dt_[d] && outside(b[2] * b[3], range));
          out.outcome[((first + d) * 4 + a) * T + t] = ignored          ? kIgnored
                                                       : matched_dt_[d] ? kTruePositive
                                                                        : kFalsePositive;
        }
      }
    }
  }

 private:
  const CocoEvalOptions& o_;
  int max_det_;
  std::vector<double> iou_;  // [detection][ground truth in input order]
  std::vector<size_t> order_;
  std::vector<char> ignore_, matched_gt_, matched_dt_, ignored_dt_;  // by sorted position
};

// COCOeval.evaluate() and accumulate() for one category, with buffers reused across the
// categories a worker takes.
class CategoryEvaluator {
 public:
  static constexpr size_t A = 4, M = 3;

  explicit CategoryEvaluator(const CocoEvalOptions& o) : o_(o), matcher_(o, o.max_dets.back()) {}

  // Category k of K: ground truth gt_keyed[g0, g1) and detections dt_keyed[d0, d1) (sorted by
  // image); writes precision[..][k][..] and recall[..][k][..] of `result`.
  void run(size_t k, size_t K, const std::vector<GroundTruth>& gts,
           const std::vector<std::pair<int64_t, int64_t>>& gt_keyed, size_t g0, size_t g1,
           const std::vector<Detection>& dets,
           const std::vector<std::pair<int64_t, int64_t>>& dt_keyed, size_t d0, size_t d1,
           CocoEvalResult& result) {
    const size_t T = o_.iou_thresholds.size(), R = o_.recall_thresholds.size();

    // evaluate(): every image with ground truth or detections of category k, in image order.
    cat_.clear();
    size_t gi = g0, di = d0;
    while (gi < g1 || di < d1) {
      const int64_t key_now = std::min(gi < g1 ? gt_keyed[gi].first : INT64_MAX,
                                       di < d1 ? dt_keyed[di].first : INT64_MAX);
      gt_bucket_.clear();
      dt_bucket_.clear();
      for (; gi < g1 && gt_keyed[gi].first == key_now; ++gi) {
        gt_bucket_.push_back(&gts[static_cast<size_t>(gt_keyed[gi].second)]);
      }
      for (; di < d1 && dt_keyed[di].first == key_now; ++di) {
        dt_bucket_.push_back(&dets[static_cast<size_t>(dt_keyed[di].second)]);
      }
      matcher_.run(gt_bucket_, dt_bucket_, cat_);
    }

    // accumulate(): one stable score order for all area ranges and limits, and the outcomes
    // gathered into it, one contiguous row per (area range, threshold).
    const size_t N = cat_.score.size();
    by_score_.resize(N);
    for (size_t e = 0; e < N; ++e) by_score_[e] = {cat_.score[e], static_cast<uint32_t>(e)};
    std::stable_sort(by_score_.begin(), by_score_.end(),
                     [](const auto& x, const auto& y) { return x.first > y.first; });
    sorted_rank_.resize(N);
    sorted_outcome_.resize(A * T * N);
    for (size_t j = 0; j < N; ++j) {
      const size_t e = by_score_[j].second;
      sorted_rank_[j] = cat_.rank[e];
      for (size_t at = 0; at < A * T; ++at)
        sorted_outcome_[at * N + j] = cat_.outcome[e * A * T + at];
    }
    for (size_t a = 0; a < A; ++a) {
      const int64_t npig = cat_.npig[a];
      if (npig == 0) continue;  // no ground truth to find: -1
      const double n_gt = static_cast<double>(npig);
      for (size_t t = 0; t < T; ++t) {
        // pycocotools keeps recall rc[i] = tp_i / npig and precision pr[i] = tp_i / (fp_i +
        // tp_i + eps) after every detection i, makes pr non-increasing from the right and
        // reads it at the first i with rc[i] >= r. Only true positives raise rc, and after one
        // pr can only fall until the next (same tp, more fp; rounding is monotone), so the
        // envelope at a true positive is the maximum over this and later true positives, and
        // for r > 0 the first i with rc[i] >= r is a true positive; for r <= 0 it is i = 0,
        // whose envelope is the same maximum (or 0: pr is 0 before any true positive).
        // Keeping the true positives alone therefore gives the same numbers.
        std::array<int64_t, M> tp{}, fp{};  // numpy's float cumsums hold the same integers
        for (size_t m = 0; m < M; ++m) {
          tp_rc_[m].clear();
          tp_pr_[m].clear();
        }
        const uint8_t* row = sorted_outcome_.data() + (a * T + t) * N;
        for (size_t m = 0; m < M; ++m) {
          const int max_det = o_.max_dets[m];
          for (size_t j = 0; j < N; ++j) {
            const uint8_t outcome = sorted_rank_[j] < max_det ? row[j] : uint8_t{kIgnored};
            fp[m] += outcome == kFalsePositive;
            if (outcome == kTruePositive) {
              const double tp_d = static_cast<double>(++tp[m]);
              tp_rc_[m].push_back(tp_d / n_gt);
              tp_pr_[m].push_back(tp_d / (static_cast<double>(fp[m]) + tp_d + kSpacing1));
            }
          }
        }
        for (size_t m = 0; m < M; ++m) {
          auto& rc = tp_rc_[m];
          auto& pr = tp_pr_[m];
          // 0 without detections
          result.recall[((t * K + k) * A + a) * M + m] = static_cast<double>(tp[m]) / n_gt;
          for (size_t i = pr.size(); i-- > 1;) {
            if (pr[i] > pr[i - 1]) pr[i - 1] = pr[i];
          }
          // np.searchsorted(rc, thresholds, 'left'); pycocotools stops at the first index past
          // the end (its try/except), leaving zeros.
          for (size_t r = 0; r < R; ++r) {
            const size_t idx = static_cast<size_t>(
                std::lower_bound(rc.begin(), rc.end(), o_.recall_thresholds[r]) - rc.begin());
            if (idx >= rc.size()) {
              for (; r < R; ++r) result.precision[(((t * R + r) * K + k) * A + a) * M + m] = 0;
              break;
            }
            result.precision[(((t * R + r) * K + k) * A + a) * M + m] = pr[idx];
          }
        }
      }
    }
  }

 private:
  const CocoEvalOptions& o_;
  ImageMatcher matcher_;
  CategoryDetections cat_;
  std::vector<const GroundTruth*> gt_bucket_;
  std::vector<const Detection*> dt_bucket_;
  std::vector<std::pair<double, uint32_t>> by_score_;
  std::vector<int32_t> sorted_rank_;
  std::vector<uint8_t> sorted_outcome_;  // [area][threshold][detection by score]
  // Recall and precision after each true positive, per detection limit.
  std::array<std::vector<double>, M> tp_rc_, tp_pr_;
};

void check_finite(const Detection& d) {
  if (!std::isfinite(d.score) || !std::isfinite(d.bbox[0]) || !std::isfinite(d.bbox[1]) ||
      !std::isfinite(d.bbox[2]) || !std::isfinite(d.bbox[3])) {
    throw std::invalid_argument("evaluate_bbox: detection on image " + std::to_string(d.image_id) +
                                ", category " + std::to_string(d.category_id) +
                                " has a non-finite score or box (expected finite numbers)");
  }
}

void check_finite(const GroundTruth& g) {
  if (!std::isfinite(g.area) || !std::isfinite(g.bbox[0]) || !std::isfinite(g.bbox[1]) ||
      !std::isfinite(g.bbox[2]) || !std::isfinite(g.bbox[3])) {
    throw std::invalid_argument(
        "evaluate_bbox: ground truth on image " + std::to_string(g.image_id) + ", category " +
        std::to_string(g.category_id) + " has a non-finite area or box (expected finite numbers)");
  }
}

}  // namespace

std::vector<double> CocoEvalOptions::coco_iou_thresholds() {
  return linspace(0.5, 0.95, 10);
}

std::vector<double> CocoEvalOptions::coco_recall_thresholds() {
  return linspace(0.0, 1.0, 101);
}

std::vector<double> CocoEvalResult::stats() const {
  return {ap,  ap50, ap75,  ap_small, ap_medium, ap_large,
          ar1, ar10, ar100, ar_small, ar_medium, ar_large};
}

CocoEvalResult evaluate_bbox(const std::vector<GroundTruth>& gts,
                             const std::vector<Detection>& dets,
                             const std::vector<int64_t>& image_ids,
                             const std::vector<int64_t>& category_ids,
                             const CocoEvalOptions& options) {
  check_options(options);
  for (const auto& g : gts) check_finite(g);
  for (const auto& d : dets) check_finite(d);

  CocoEvalOptions o = options;
  std::sort(o.max_dets.begin(), o.max_dets.end());
  const std::vector<int64_t> images = sorted_unique(image_ids);
  const std::vector<int64_t> cats = sorted_unique(category_ids);
  const int64_t I = static_cast<int64_t>(images.size());
  const size_t T = o.iou_thresholds.size(), R = o.recall_thresholds.size(), K = cats.size();
  constexpr size_t A = 4, M = 3;

  auto key = [&](int64_t image_id, int64_t category_id) -> int64_t {
    const int64_t i = index_of(images, image_id);
    const int64_t k = index_of(cats, category_id);
    return i < 0 || k < 0 ? -1 : k * I + i;
  };
  const auto gt_keyed =
      bucket(gts.size(), [&](size_t j) { return key(gts[j].image_id, gts[j].category_id); });
  const auto dt_keyed =
      bucket(dets.size(), [&](size_t j) { return key(dets[j].image_id, dets[j].category_id); });

  CocoEvalResult result;
  result.dims = {static_cast<int64_t>(T), static_cast<int64_t>(R), static_cast<int64_t>(K),
                 static_cast<int64_t>(A), static_cast<int64_t>(M)};
  result.iou_thresholds = o.iou_thresholds;
  result.max_dets = o.max_dets;
  result.precision.assign(T * R * K * A * M, -1.0);
  result.recall.assign(T * K * A * M, -1.0);

  // Categories are independent: each worker takes the next one and writes only its slots.
  // gt_keyed / dt_keyed are sorted by key = k * I + i, so category k is one range of each.
  std::vector<size_t> gt_start(K + 1), dt_start(K + 1);
  for (size_t k = 0; k <= K; ++k) {
    const int64_t first_key = static_cast<int64_t>(k) * I;
    auto by_key = [](const std::pair<int64_t, int64_t>& x, int64_t v) { return x.first < v; };
    gt_start[k] = static_cast<size_t>(
        std::lower_bound(gt_keyed.begin(), gt_keyed.end(), first_key, by_key) - gt_keyed.begin());
    dt_start[k] = static_cast<size_t>(
        std::lower_bound(dt_keyed.begin(), dt_keyed.end(), first_key, by_key) - dt_keyed.begin());
  }
  std::atomic<size_t> next_category{0};
  auto work = [&]() {
    CategoryEvaluator evaluator(o);
    for (size_t k = next_category++; k < K; k = next_category++) {
      evaluator.run(k, K, gts, gt_keyed, gt_start[k], gt_start[k + 1], dets, dt_keyed, dt_start[k],
                    dt_start[k + 1], result);
    }
  };
  size_t threads = options.num_threads > 0 ? static_cast<size_t>(options.num_threads)
                                           : std::max(1u, std::thread::hardware_concurrency());
  threads = std::min(threads, std::max<size_t>(K, 1));
  if (threads <= 1) {
    work();
  } else {
    std::vector<std::thread> pool;
    std::vector<std::exception_ptr> errors(threads);
    for (size_t w = 0; w < threads; ++w) {
      pool.emplace_back([&, w]() {
        try {
          work();
        } catch (...) {
          errors[w] = std::current_exception();
          next_category = K;  // the others stop after their current category
        }
      });
    }
    for (auto& thread : pool) thread.join();
    for (const auto& e : errors) {
      if (e) std::rethrow_exception(e);
    }
  }

  // summarize(): means over the entries > -1 of a slice, in numpy's C order.
  std::vector<double> values;
  auto average_precision = [&](int iou_or_all, size_t a, size_t m, double iou) {
    values.clear();
    for (size_t t = 0; t < T; ++t) {
      if (iou_or_all == 1 && !(o.iou_thresholds[t] == iou)) continue;
      for (size_t r = 0; r < R; ++r) {
        for (size_t k = 0; k < K; ++k) {
          const double p = result.precision[(((t * R + r) * K + k) * A + a) * M + m];
          if (p > -1) values.push_back(p);
        }
      }
    }
    return numpy_mean_or_minus_one(values);
  };
  auto average_recall = [&](size_t a, size_t m) {
    values.clear();
    for (size_t t = 0; t < T; ++t) {
      for (size_t k = 0; k < K; ++k) {
        const double v = result.recall[((t * K + k) * A + a) * M + m];
        if (v > -1) values.push_back(v);
      }
    }
    return numpy_mean_or_minus_one(values);
  };
  result.ap = average_precision(0, 0, 2, 0);
  result.ap50 = average_precision(1, 0, 2, 0.5);
  result.ap75 = average_precision(1, 0, 2, 0.75);
  result.ap_small = average_precision(0, 1, 2, 0);
  result.ap_medium = average_precision(0, 2, 2, 0);
  result.ap_large = average_precision(0, 3, 2, 0);
  result.ar1 = average_recall(0, 0);
  result.ar10 = average_recall(0, 1);
  result.ar100 = average_recall(0, 2);
  result.ar_small = average_recall(1, 2);
  result.ar_medium = average_recall(2, 2);
  result.ar_large = average_recall(3, 2);

  // Detectron2's per-category AP: precision[:, :, k, area all, last limit] > -1, averaged.
  result.per_category_ap.reserve(K);
  for (size_t k = 0; k < K; ++k) {
    values.clear();
    for (size_t t = 0; t < T; ++t) {
      for (size_t r = 0; r < R; ++r) {
        const double p = result.precision[(((t * R + r) * K + k) * A + 0) * M + (M - 1)];
        if (p > -1) values.push_back(p);
      }
    }
    result.per_category_ap.emplace_back(cats[k], numpy_mean_or_minus_one(values));
  }
  return result;
}

// ---------------------------------------------------------------------------------------
// Tables

namespace {

std::string fixed3(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.3f", v);
  return buf;
}

// Python's format(x, '.3f') for Detectron2's x100 figures: nan for "no value" (< 0).
std::string percent3(double v) {
  return v < 0 || std::isnan(v) ? "nan" : fixed3(v * 100);
}

enum class Align { kLeft, kCenter };

std::string pad(const std::string& s, size_t width, Align align) {
  if (s.size() >= width) return s;
  const size_t space = width - s.size();
  if (align == Align::kLeft) return s + std::string(space, ' ');
  const size_t left = space / 2;  // Python's str.center via '^': the extra space on the right
  return std::string(left, ' ') + s + std::string(space - left, ' ');
}

// tabulate(rows, headers, tablefmt="pipe"): every column as wide as its widest cell and at
// least its header + 2, one space of padding, a colon marking the alignment.
std::string pipe_table(const std::vector<std::string>& headers,
                       const std::vector<std::vector<std::string>>& rows, Align align) {
  std::vector<size_t> width(headers.size());
  for (size_t c = 0; c < headers.size(); ++c) {
    width[c] = headers[c].size() + 2;
    for (const auto& row : rows) width[c] = std::max(width[c], row[c].size());
  }
  std::ostringstream out;
  auto line = [&](const std::vector<std::string>& cells) {
    out << "|";
    for (size_t c = 0; c < cells.size(); ++c) out << " " << pad(cells[c], width[c], align) << " |";
    out << "\n";
  };
  line(headers);
  out << "|";
  for (size_t c = 0; c < headers.size(); ++c) {
    out << (align == Align::kLeft ? ":" + std::string(width[c] + 1, '-')
                                  : ":" + std::string(width[c], '-') + ":")
        << "|";
  }
  out << "\n";
  for (const auto& row : rows) line(row);
  return out.str();
}

std::string two_decimals(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.2f", v);
  return buf;
}

}  // namespace

std::string format_table(const CocoEvalResult& result,
                         const std::vector<std::string>& category_names) {
  std::ostringstream out;
  const auto& thr = result.iou_thresholds;
  const std::vector<int> max_dets =
      result.max_dets.size() == 3 ? result.max_dets : std::vector<int>{1, 10, 100};
  const std::string all_ious =
      thr.empty() ? "" : two_decimals(thr.front()) + ":" + two_decimals(thr.back());
  // pycocotools: ' {:<18} {} @[ IoU={:<9} | area={:>6s} | maxDets={:>3d} ] = {:0.3f}'
  auto line = [&](bool ap, const std::string& iou, const char* area, int max_det, double v) {
    char buf[160];
    std::snprintf(buf, sizeof buf, " %-18s %s @[ IoU=%-9s | area=%6s | maxDets=%3d ] = %.3f\n",
                  ap ? "Average Precision" : "Average Recall", ap ? "(AP)" : "(AR)", iou.c_str(),
                  area, max_det, v);
    out << buf;
  };
  line(true, all_ious, "all", max_dets[2], result.ap);
  line(true, "0.50", "all", max_dets[2], result.ap50);
  line(true, "0.75", "all", max_dets[2], result.ap75);
  line(true, all_ious, "small", max_dets[2], result.ap_small);
  line(true, all_ious, "medium", max_dets[2], result.ap_medium);
  line(true, all_ious, "large", max_dets[2], result.ap_large);
  line(false, all_ious, "all", max_dets[0], result.ar1);
  line(false, all_ious, "all", max_dets[1], result.ar10);
  line(false, all_ious, "all", max_dets[2], result.ar100);
  line(false, all_ious, "small", max_dets[2], result.ar_small);
  line(false, all_ious, "medium", max_dets[2], result.ar_medium);
  line(false, all_ious, "large", max_dets[2], result.ar_large);

  // Detectron2's create_small_table: centred, x100, nan for -1.
  out << "Evaluation results for bbox:\n"
      << pipe_table(
             {"AP", "AP50", "AP75", "APs", "APm", "APl"},
             {{percent3(result.ap), percent3(result.ap50), percent3(result.ap75),
               percent3(result.ap_small), percent3(result.ap_medium), percent3(result.ap_large)}},
             Align::kCenter);

  // Detectron2's per-category table: (category, AP) pairs filled row by row, up to three
  // pairs per row, blank cells after the last.
  const size_t n = result.per_category_ap.size();
  if (n > 0) {
    std::vector<std::string> flat;
    for (size_t k = 0; k < n; ++k) {
      flat.push_back(k < category_names.size() ? category_names[k]
                                               : std::to_string(result.per_category_ap[k].first));
      flat.push_back(percent3(result.per_category_ap[k].second));
    }
    const size_t cols = std::min<size_t>(6, 2 * n);
    std::vector<std::string> headers;
    for (size_t c = 0; c < cols / 2; ++c) {
      headers.push_back("category");
      headers.push_back("AP");
    }
    std::vector<std::vector<std::string>> rows;
    for (size_t start = 0; start < flat.size(); start += cols) {
      std::vector<std::string> row(cols);
      for (size_t c = 0; c < cols && start + c < flat.size(); ++c) row[c] = flat[start + c];
      rows.push_back(std::move(row));
    }
    out << "Per-category bbox AP:\n" << pipe_table(headers, rows, Align::kLeft);
  }
  return out.str();
}

// ---------------------------------------------------------------------------------------
// Results file

namespace {

// The shortest decimal that reads back as the same double (std::to_chars), e.g. 0.1, 1e-07.
void append_number(std::string& out, double v) {
  char buf[64];
  const auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, r.ptr);
}

}  // namespace

std::string results_json(const std::vector<Detection>& dets) {
  std::string out = "[";
  out.reserve(dets.size() * 110 + 2);
  for (size_t j = 0; j < dets.size(); ++j) {
    const Detection& d = dets[j];
    if (!std::isfinite(d.score) || !std::isfinite(d.bbox[0]) || !std::isfinite(d.bbox[1]) ||
        !std::isfinite(d.bbox[2]) || !std::isfinite(d.bbox[3])) {
      throw std::invalid_argument("write_results_json: detection " + std::to_string(j) +
                                  " (image " + std::to_string(d.image_id) +
                                  ") has a non-finite score or box; JSON has no such numbers");
    }
    out += j == 0 ? "\n" : ",\n";
    out += "{\"image_id\": " + std::to_string(d.image_id) +
           ", \"category_id\": " + std::to_string(d.category_id) + ", \"bbox\": [";
    for (int c = 0; c < 4; ++c) {
      if (c) out += ", ";
      append_number(out, d.bbox[static_cast<size_t>(c)]);
    }
    out += "], \"score\": ";
    append_number(out, d.score);
    out += "}";
  }
  out += dets.empty() ? "]\n" : "\n]\n";
  return out;
}

void write_results_json(const std::string& path, const std::vector<Detection>& dets) {
  const std::string text = results_json(dets);
  auto fail = [&](const std::string& what, int err) {
    throw std::runtime_error("write_results_json: " + path + ": " + what + ": " +
                             std::strerror(err));
  };
  if (path.empty() || path.back() == '/') {
    throw std::invalid_argument("write_results_json: '" + path + "' is not a file name");
  }
  const size_t slash = path.rfind('/');
  const std::string dir = slash == std::string::npos ? "."
                          : slash == 0               ? "/"
                                                     : path.substr(0, slash);
  const std::string base = slash == std::string::npos ? path : path.substr(slash + 1);
  static std::atomic<unsigned> counter{0};
  std::string temp;
  int fd = -1;
  for (int attempt = 0; fd < 0; ++attempt) {
    temp =
        dir + "/." + base + ".tmp." + std::to_string(::getpid()) + "." + std::to_string(counter++);
    fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd < 0 && (errno != EEXIST || attempt > 100)) fail("cannot create a temporary file", errno);
  }
  const char* p = text.data();
  size_t left = text.size();
  int err = 0;
  while (left > 0) {
    const ssize_t done = ::write(fd, p, left);
    if (done < 0 && errno == EINTR) continue;
    if (done < 0) {
      err = errno;
      break;
    }
    p += done;
    left -= static_cast<size_t>(done);
  }
  if (err == 0 && ::fsync(fd) != 0) err = errno;
  if (::close(fd) != 0 && err == 0) err = errno;
  if (err == 0 && ::rename(temp.c_str(), path.c_str()) != 0) err = errno;
  if (err != 0) {
    ::unlink(temp.c_str());
    fail("write failed", err);
  }
  const int dir_fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd >= 0) {
    ::fsync(dir_fd);
    ::close(dir_fd);
  }
}

}  // namespace mgd::evaluation
