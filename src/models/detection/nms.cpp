#include "mgd/models/detection/nms.h"

#include <ATen/Dispatch.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

namespace mgd::detection {
namespace {

// torchvision's batched_nms switches to its per-class path above this many box coordinates
// on the CPU; the order of equal scores in the result depends on the path.
constexpr int64_t kVanillaPathNumel = 4000;

// The candidates of one greedy pass in visiting order (decreasing score), as separate arrays
// so the IoU loop runs over contiguous memory and vectorizes.
template <typename T>
struct Candidates {
  std::vector<T> x1, y1, x2, y2, area;
  std::vector<int64_t> index;  // row in the caller's boxes
  std::vector<uint8_t> suppressed;

  void clear() {
    for (auto* v : {&x1, &y1, &x2, &y2, &area}) v->clear();
    index.clear();
  }
  void push(const T* box, int64_t row) {
    x1.push_back(box[0]);
    y1.push_back(box[1]);
    x2.push_back(box[2]);
    y2.push_back(box[3]);
    area.push_back((box[2] - box[0]) * (box[3] - box[1]));
    index.push_back(row);
  }
};

// The largest T <= threshold: for an IoU v of type T, v > result exactly when double(v) >
// threshold (torchvision compares the T value against the double threshold), so the loop
// compares in T.
template <typename T>
T threshold_in(double threshold) {
  T t = static_cast<T>(threshold);
  if (static_cast<double>(t) > threshold)
    t = std::nextafter(t, -std::numeric_limits<T>::infinity());
  return t;
}

// Greedy NMS over `c`, already in visiting order. Appends the kept rows to `kept`. After each
// kept box the survivors are compacted to the front (when it suppressed any), so later passes
// read only boxes still alive.
template <typename T>
void greedy_nms(Candidates<T>& c, double iou_threshold, std::vector<int64_t>& kept) {
  const T threshold = threshold_in<T>(iou_threshold);
  int64_t n = static_cast<int64_t>(c.index.size());
  c.suppressed.resize(n);
  T* x1 = c.x1.data();
  T* y1 = c.y1.data();
  T* x2 = c.x2.data();
  T* y2 = c.y2.data();
  T* area = c.area.data();
  int64_t* index = c.index.data();
  uint8_t* suppressed = c.suppressed.data();
  for (int64_t begin = 0; begin < n; ++begin) {
    kept.push_back(index[begin]);
    const T tx1 = x1[begin], ty1 = y1[begin], tx2 = x2[begin], ty2 = y2[begin];
    const T tarea = area[begin];
    uint8_t any = 0;
    for (int64_t k = begin + 1; k < n; ++k) {
      // torchvision's formula and evaluation order: the same IoU to the last bit.
      const T xx1 = std::max(tx1, x1[k]);
      const T yy1 = std::max(ty1, y1[k]);
      const T xx2 = std::min(tx2, x2[k]);
      const T yy2 = std::min(ty2, y2[k]);
      const T w = std::max(static_cast<T>(0), xx2 - xx1);
      const T h = std::max(static_cast<T>(0), yy2 - yy1);
      const T inter = w * h;
      const T iou = inter / (tarea + area[k] - inter);
      const uint8_t drop = iou > threshold;
      suppressed[k] = drop;
      any |= drop;
    }
    if (!any) continue;
    int64_t alive = begin + 1;
    for (int64_t k = begin + 1; k < n; ++k) {
      if (suppressed[k]) continue;
      x1[alive] = x1[k];
      y1[alive] = y1[k];
      x2[alive] = x2[k];
      y2[alive] = y2[k];
      area[alive] = area[k];
      index[alive] = index[k];
      ++alive;
    }
    n = alive;
  }
}

void check_inputs(const torch::Tensor& boxes, const torch::Tensor& scores) {
  TORCH_CHECK(boxes.dim() == 2 && boxes.size(1) == 4,
              "Invalid boxes for NMS: expected an N x 4 tensor of (x1, y1, x2, y2), got shape ",
              boxes.sizes());
  TORCH_CHECK(boxes.is_floating_point(), "Invalid boxes for NMS: expected a floating dtype, got ",
              boxes.scalar_type());
  TORCH_CHECK(scores.dim() == 1 && scores.size(0) == boxes.size(0),
              "Invalid scores for NMS: expected ", boxes.size(0),
              " values (one per box), got shape ", scores.sizes());
  TORCH_CHECK(scores.is_floating_point(), "Invalid scores for NMS: expected a floating dtype, got ",
              scores.scalar_type());
}

// Kept rows per group, each group visited by decreasing score (ties by index). `group` holds
// one id per box, or is undefined for a single group. Returns a mask over the rows.
std::vector<uint8_t> keep_mask(const torch::Tensor& boxes, const torch::Tensor& order,
                               const std::vector<int64_t>* group, double iou_threshold) {
  const int64_t n = boxes.size(0);
  const int64_t* ord = order.data_ptr<int64_t>();
  // Visiting positions, stably grouped by category: each group stays in score order.
  std::vector<int64_t> positions(n);
  for (int64_t p = 0; p < n; ++p) positions[p] = p;
  if (group != nullptr) {
    std::stable_sort(positions.begin(), positions.end(),
                     [&](int64_t a, int64_t b) { return (*group)[ord[a]] < (*group)[ord[b]]; });
  }
  std::vector<uint8_t> mask(n, 0);
  std::vector<int64_t> kept;
  kept.reserve(n);
  AT_DISPATCH_FLOATING_TYPES(boxes.scalar_type(), "mgd::detection::nms", [&] {
    const auto b = boxes.contiguous();
    const scalar_t* data = b.data_ptr<scalar_t>();
    Candidates<scalar_t> candidates;
    for (int64_t start = 0; start < n;) {
      int64_t end = start + 1;
      if (group != nullptr) {
        const int64_t id = (*group)[ord[positions[start]]];
        while (end < n && (*group)[ord[positions[end]]] == id) ++end;
      } else {
        end = n;
      }
      candidates.clear();
      for (int64_t p = start; p < end; ++p) {
        const int64_t i = ord[positions[p]];
        candidates.push(data + 4 * i, i);
      }
      greedy_nms(candidates, iou_threshold, kept);
      start = end;
    }
  });
  for (const int64_t i : kept) mask[i] = 1;
  return mask;
}

// The boxes in a dtype the kernel handles, on the CPU.
torch::Tensor kernel_boxes(const torch::Tensor& boxes) {
  auto b = boxes.to(torch::kCPU);
  const auto type = b.scalar_type();
  return type == torch::kFloat || type == torch::kDouble ? b : b.to(torch::kFloat);
}

torch::Tensor stable_descending_order(const torch::Tensor& scores) {
  return std::get<1>(scores.sort(/*stable=*/true, /*dim=*/0, /*descending=*/true)).contiguous();
}

}  // namespace

torch::Tensor nms(const torch::Tensor& boxes, const torch::Tensor& scores, double iou_threshold) {
  check_inputs(boxes, scores);
  const auto device = boxes.device();
  const int64_t n = boxes.size(0);
  if (n == 0) return torch::empty({0}, torch::dtype(torch::kLong).device(device));
  const auto cpu_scores = scores.to(torch::kCPU);
  const auto order = stable_descending_order(cpu_scores);
  const auto mask = keep_mask(kernel_boxes(boxes), order, nullptr, iou_threshold);
  const int64_t* ord = order.data_ptr<int64_t>();
  std::vector<int64_t> result;
  for (int64_t p = 0; p < n; ++p) {
    if (mask[ord[p]]) result.push_back(ord[p]);
  }
  return torch::tensor(result, torch::kLong).to(device);
}

torch::Tensor batched_nms(const torch::Tensor& boxes, const torch::Tensor& scores,
                          const torch::Tensor& idxs, double iou_threshold) {
  check_inputs(boxes, scores);
  TORCH_CHECK(idxs.dim() == 1 && idxs.size(0) == boxes.size(0),
              "Invalid category ids for batched NMS: expected ", boxes.size(0),
              " values (one per box), got shape ", idxs.sizes());
  TORCH_CHECK(!idxs.is_floating_point() && !idxs.is_complex(),
              "Invalid category ids for batched NMS: expected an integer dtype, got ",
              idxs.scalar_type());
  const auto device = boxes.device();
  const int64_t n = boxes.size(0);
  if (n == 0) return torch::empty({0}, torch::dtype(torch::kLong).device(device));
  const auto cpu_scores = scores.to(torch::kCPU);
  const auto order = stable_descending_order(cpu_scores);
  const auto ids = idxs.to(torch::kCPU, torch::kLong).contiguous();
  const std::vector<int64_t> group(ids.data_ptr<int64_t>(), ids.data_ptr<int64_t>() + n);
  const auto mask = keep_mask(kernel_boxes(boxes), order, &group, iou_threshold);
  std::vector<int64_t> result;
  if (boxes.numel() > kVanillaPathNumel) {
    // torchvision's per-class path: the kept indices in index order, then ATen's default
    // (not stable) descending sort of their scores.
    for (int64_t i = 0; i < n; ++i) {
      if (mask[i]) result.push_back(i);
    }
    const auto kept = torch::tensor(result, torch::kLong);
    const auto by_score = std::get<1>(cpu_scores.index_select(0, kept).sort(0, true));
    return kept.index_select(0, by_score).to(device);
  }
  const int64_t* ord = order.data_ptr<int64_t>();
  for (int64_t p = 0; p < n; ++p) {
    if (mask[ord[p]]) result.push_back(ord[p]);
  }
  return torch::tensor(result, torch::kLong).to(device);
}

}  // namespace mgd::detection
