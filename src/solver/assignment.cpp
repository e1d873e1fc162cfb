// Shortest augmenting paths for the capacitated (tiled) assignment; see the header for the
// problem, the algorithm and references.
//
// Invariants between searches (c the cost, u row and v column potentials):
//  (I1) c[i][j] - u[i] - v[j] >= 0 for every column j that row i does not hold;
//  (I2) c[i][j] - u[i] - v[j] == 0 for every column j that row i holds ("tight");
//  (I3) if rows*k < cols: v[j] == 0 for every unassigned column, v[j] <= 0 for the others.
// (I1) and (I2) make the Dijkstra search valid: in the residual graph a row reaches each
// column it does not hold at reduced cost >= 0, and a held column leads back to its row at
// reduced cost 0. (I3) makes every unassigned column an equally good end of a path, so the
// first one reached ends a shortest path to the sink, and the final duals certify
// optimality (a column left unassigned has slack, so its dual must be 0).

#include "mgd/solver/assignment.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <vector>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#endif

namespace mgd::solver {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

// Augmenting row reduction stops after this many row scans per unit it started with (plus
// kArrScanSlack); whatever is still missing then goes to the shortest-path phase. The
// reduction is an auction with no minimum bid and can creep on near-ties.
constexpr int64_t kArrScansPerUnit = 4;
constexpr int64_t kArrScanSlack = 64;
// Larger selections in augmenting row reduction use nth_element instead of an insertion
// buffer.
constexpr int kMaxInsertionSelect = 16;

// A candidate column for a row in augmenting row reduction: its reduced cost h, and whether
// it is unassigned (preferred among equal h: taking it evicts nobody).
struct Candidate {
  double h;
  int col;
  bool free;
};

inline bool better(const Candidate& a, const Candidate& b) {
  return a.h < b.h || (a.h == b.h && a.free && !b.free);
}

// What scanning one row tells a search: the nearest unlabelled column, and the nearest
// unlabelled unassigned one (the first in column order on ties, +inf if there is none).
struct ScanResult {
  double min;
  int argmin;
  double free_min;
  int free_argmin;
};

// Scans row `row` (costs c) from distance base + u[row]: lowers dist[j] to
// base + c[j] - masked_v[j] where that is smaller (recording pred[j] = row), then finds the
// nearest columns. Labelled columns have dist = +inf and masked_v = -inf, unassigned ones
// penalty 0, the others penalty +inf. Every version does the same arithmetic in the same
// order, so all give identical results.
using ScanFn = ScanResult (*)(const double* c, const double* masked_v, const double* penalty,
                              double* dist, int64_t* pred, int n, double base, int64_t row);

// The scalar tail of every version, from column `begin` on.
inline void scan_tail(const double* c, const double* masked_v, const double* penalty, double* dist,
                      int64_t* pred, int begin, int n, double base, int64_t row, ScanResult* out) {
  for (int j = begin; j < n; ++j) {
    const double r = base + c[j] - masked_v[j];
    double d = dist[j];
    if (r < d) {
      d = r;
      dist[j] = r;
      pred[j] = row;
    }
    if (d < out->min) {
      out->min = d;
      out->argmin = j;
    }
    const double f = d + penalty[j];
    if (f < out->free_min) {
      out->free_min = f;
      out->free_argmin = j;
    }
  }
}

ScanResult scan_row_scalar(const double* c, const double* masked_v, const double* penalty,
                           double* dist, int64_t* pred, int n, double base, int64_t row) {
  ScanResult out{kInf, 0, kInf, 0};
  scan_tail(c, masked_v, penalty, dist, pred, 0, n, base, row, &out);
  return out;
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define MGD_SOLVER_X86 1

// Merges per-lane minima (lane l saw columns l, l + lanes, ...) into `out`: the smallest
// value, and on ties the smallest column.
inline void merge_lanes(const double* value, const double* at, int lanes, double* min,
                        int* argmin) {
  for (int l = 0; l < lanes; ++l) {
    const int j = static_cast<int>(at[l]);
    if (value[l] < *min || (value[l] == *min && j < *argmin)) {
      *min = value[l];
      *argmin = j;
    }
  }
}

ScanResult scan_row_sse2(const double* c, const double* masked_v, const double* penalty,
                         double* dist, int64_t* pred, int n, double base, int64_t row) {
  const __m128d vbase = _mm_set1_pd(base);
  const __m128i vrow = _mm_set1_epi64x(row);
  const __m128d step = _mm_set1_pd(2.0);
  __m128d index = _mm_set_pd(1.0, 0.0);
  __m128d best = _mm_set1_pd(kInf), best_free = best;
  __m128d at = _mm_setzero_pd(), at_free = at;
  int j = 0;
  for (; j < n - 1; j += 2) {  // not j + 2 <= n: no overflow near INT_MAX
    const __m128d r =
        _mm_sub_pd(_mm_add_pd(vbase, _mm_loadu_pd(c + j)), _mm_loadu_pd(masked_v + j));
    __m128d d = _mm_loadu_pd(dist + j);
    const __m128d lt = _mm_cmplt_pd(r, d);
    d = _mm_min_pd(r, d);  // r < d ? r : d
    _mm_storeu_pd(dist + j, d);
    const __m128i lti = _mm_castpd_si128(lt);
    __m128i p = _mm_loadu_si128(reinterpret_cast<const __m128i*>(pred + j));
    p = _mm_or_si128(_mm_and_si128(lti, vrow), _mm_andnot_si128(lti, p));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(pred + j), p);
    const __m128d nearer = _mm_cmplt_pd(d, best);
    best = _mm_min_pd(d, best);
    at = _mm_or_pd(_mm_and_pd(nearer, index), _mm_andnot_pd(nearer, at));
    const __m128d f = _mm_add_pd(d, _mm_loadu_pd(penalty + j));
    const __m128d nearer_free = _mm_cmplt_pd(f, best_free);
    best_free = _mm_min_pd(f, best_free);
    at_free = _mm_or_pd(_mm_and_pd(nearer_free, index), _mm_andnot_pd(nearer_free, at_free));
    index = _mm_add_pd(index, step);
  }
  alignas(16) double lane_best[2], lane_at[2], lane_best_free[2], lane_at_free[2];
  _mm_store_pd(lane_best, best);
  _mm_store_pd(lane_at, at);
  _mm_store_pd(lane_best_free, best_free);
  _mm_store_pd(lane_at_free, at_free);
  ScanResult out{kInf, n, kInf, n};
  merge_lanes(lane_best, lane_at, 2, &out.min, &out.argmin);
  merge_lanes(lane_best_free, lane_at_free, 2, &out.free_min, &out.free_argmin);
  scan_tail(c, masked_v, penalty, dist, pred, j, n, base, row, &out);
  return out;
}

__attribute__((target("avx2"))) ScanResult scan_row_avx2(const double* c, const double* masked_v,
                                                         const double* penalty, double* dist,
                                                         int64_t* pred, int n, double base,
                                                         int64_t row) {
  const __m256d vbase = _mm256_set1_pd(base);
  const __m256d vrow = _mm256_castsi256_pd(_mm256_set1_epi64x(row));
  const __m256d step = _mm256_set1_pd(4.0);
  __m256d index = _mm256_set_pd(3.0, 2.0, 1.0, 0.0);
  __m256d best = _mm256_set1_pd(kInf), best_free = best;
  __m256d at = _mm256_setzero_pd(), at_free = at;
  int j = 0;
  for (; j < n - 3; j += 4) {
    const __m256d r =
        _mm256_sub_pd(_mm256_add_pd(vbase, _mm256_loadu_pd(c + j)), _mm256_loadu_pd(masked_v + j));
    __m256d d = _mm256_loadu_pd(dist + j);
    const __m256d lt = _mm256_cmp_pd(r, d, _CMP_LT_OQ);
    d = _mm256_min_pd(r, d);  // r < d ? r : d
    _mm256_storeu_pd(dist + j, d);
    double* p = reinterpret_cast<double*>(pred + j);
    _mm256_storeu_pd(p, _mm256_blendv_pd(_mm256_loadu_pd(p), vrow, lt));
    const __m256d nearer = _mm256_cmp_pd(d, best, _CMP_LT_OQ);
    best = _mm256_min_pd(d, best);
    at = _mm256_blendv_pd(at, index, nearer);
    const __m256d f = _mm256_add_pd(d, _mm256_loadu_pd(penalty + j));
    const __m256d nearer_free = _mm256_cmp_pd(f, best_free, _CMP_LT_OQ);
    best_free = _mm256_min_pd(f, best_free);
    at_free = _mm256_blendv_pd(at_free, index, nearer_free);
    index = _mm256_add_pd(index, step);
  }
  alignas(32) double lane_best[4], lane_at[4], lane_best_free[4], lane_at_free[4];
  _mm256_store_pd(lane_best, best);
  _mm256_store_pd(lane_at, at);
  _mm256_store_pd(lane_best_free, best_free);
  _mm256_store_pd(lane_at_free, at_free);
  ScanResult out{kInf, n, kInf, n};
  merge_lanes(lane_best, lane_at, 4, &out.min, &out.argmin);
  merge_lanes(lane_best_free, lane_at_free, 4, &out.free_min, &out.free_argmin);
  scan_tail(c, masked_v, penalty, dist, pred, j, n, base, row, &out);
  return out;
}

__attribute__((target("avx512f"))) ScanResult scan_row_avx512(const double* c,
                                                              const double* masked_v,
                                                              const double* penalty, double* dist,
                                                              int64_t* pred, int n, double base,
                                                              int64_t row) {
  const __m512d vbase = _mm512_set1_pd(base);
  const __m512i vrow = _mm512_set1_epi64(row);
  const __m512d step = _mm512_set1_pd(8.0);
  constexpr __mmask8 kAll = 0xff;
  __m512d index = _mm512_set_pd(7.0, 6.0, 5.0, 4.0, 3.0, 2.0, 1.0, 0.0);
  __m512d best = _mm512_set1_pd(kInf), best_free = best;
  __m512d at = _mm512_setzero_pd(), at_free = at;
  int j = 0;
  for (; j < n - 7; j += 8) {
    const __m512d r =
        _mm512_sub_pd(_mm512_add_pd(vbase, _mm512_loadu_pd(c + j)), _mm512_loadu_pd(masked_v + j));
    __m512d d = _mm512_loadu_pd(dist + j);
    const __mmask8 lt = _mm512_cmp_pd_mask(r, d, _CMP_LT_OQ);
    // r < d ? r : d; the masked form sidesteps GCC 12's -Wmaybe-uninitialized on _mm512_min_pd.
    d = _mm512_mask_min_pd(d, kAll, r, d);
    _mm512_storeu_pd(dist + j, d);
    _mm512_mask_storeu_epi64(pred + j, lt, vrow);
    const __mmask8 nearer = _mm512_cmp_pd_mask(d, best, _CMP_LT_OQ);
    best = _mm512_mask_min_pd(best, kAll, d, best);
    at = _mm512_mask_mov_pd(at, nearer, index);
    const __m512d f = _mm512_add_pd(d, _mm512_loadu_pd(penalty + j));
    const __mmask8 nearer_free = _mm512_cmp_pd_mask(f, best_free, _CMP_LT_OQ);
    best_free = _mm512_mask_min_pd(best_free, kAll, f, best_free);
    at_free = _mm512_mask_mov_pd(at_free, nearer_free, index);
    index = _mm512_add_pd(index, step);
  }
  alignas(64) double lane_best[8], lane_at[8], lane_best_free[8], lane_at_free[8];
  _mm512_store_pd(lane_best, best);
  _mm512_store_pd(lane_at, at);
  _mm512_store_pd(lane_best_free, best_free);
  _mm512_store_pd(lane_at_free, at_free);
  ScanResult out{kInf, n, kInf, n};
  merge_lanes(lane_best, lane_at, 8, &out.min, &out.argmin);
  merge_lanes(lane_best_free, lane_at_free, 8, &out.free_min, &out.free_argmin);
  scan_tail(c, masked_v, penalty, dist, pred, j, n, base, row, &out);
  return out;
}
#endif

// The scan for `kernel`, or nullptr if this CPU (or build) cannot run it.
ScanFn scan_for(SearchKernel kernel) {
  switch (kernel) {
    case SearchKernel::kScalar:
      return scan_row_scalar;
#ifdef MGD_SOLVER_X86
    case SearchKernel::kSse2:
      return scan_row_sse2;
    case SearchKernel::kAvx2:
      return __builtin_cpu_supports("avx2") ? scan_row_avx2 : nullptr;
    case SearchKernel::kAvx512:
      return __builtin_cpu_supports("avx512f") ? scan_row_avx512 : nullptr;
    case SearchKernel::kAuto:
      if (__builtin_cpu_supports("avx512f")) return scan_row_avx512;
      return __builtin_cpu_supports("avx2") ? scan_row_avx2 : scan_row_sse2;
#else
    case SearchKernel::kAuto:
      return scan_row_scalar;
    default:
      return nullptr;
#endif
  }
  return nullptr;
}

class TransportSolver {
 public:
  TransportSolver(const double* cost, int rows, int cols, int k, ScanFn scan)
      : cost_(cost),
        rows_(rows),
        cols_(cols),
        k_(k),
        u_(rows, 0.0),
        v_(cols, 0.0),
        owner_(cols, -1),
        slot_(cols, -1),
        held_(static_cast<size_t>(rows) * k, -1),
        count_(rows, 0),
        penalty_(cols, 0.0),
        scan_row_(scan),
        dist_(cols, kInf),
        label_(cols, 0.0),
        masked_v_(cols, 0.0),
        pred_(cols, -1),
        via_(rows, -1),
        row_dist_(rows, 0.0) {}

  void solve() {
    const bool balanced = static_cast<int64_t>(rows_) * k_ == cols_;
    if (balanced) {
      column_reduction();
      reduction_transfer();
    }
    // Else v = 0 and no row holds anything. A row that holds nothing needs no valid u: a
    // search enters a row only through a column it holds, or starts there.
    augmenting_row_reduction();
    for (int i = 0; i < rows_; ++i) {
      while (count_[i] < k_) augment(i);
    }
  }

  void write(AssignmentResult* out) const {
    out->status = Status::kOptimal;
    out->row_to_col.resize(held_.size());
    out->col_to_row.assign(owner_.begin(), owner_.end());
    double total = 0.0;
    for (int i = 0; i < rows_; ++i) {
      const size_t begin = static_cast<size_t>(i) * k_;
      std::copy(held_.begin() + begin, held_.begin() + begin + k_, out->row_to_col.begin() + begin);
      std::sort(out->row_to_col.begin() + begin, out->row_to_col.begin() + begin + k_);
      const double* c = row(i);
      for (int s = 0; s < k_; ++s) total += c[out->row_to_col[begin + s]];
    }
    out->cost = total;
  }

 private:
  const double* row(int i) const { return cost_ + static_cast<size_t>(i) * cols_; }
  int* held(int i) { return held_.data() + static_cast<size_t>(i) * k_; }

  void attach(int i, int j) {
    owner_[j] = i;
    penalty_[j] = kInf;
    slot_[j] = count_[i];
    held(i)[count_[i]++] = j;
  }

  void detach(int j) {
    const int i = owner_[j];
    int* h = held(i);
    const int last = h[--count_[i]];
    h[slot_[j]] = last;
    slot_[last] = slot_[j];
    owner_[j] = -1;
    slot_[j] = -1;
    penalty_[j] = 0.0;
  }

  // Make every column row i holds tight at u[i] (I2), lowering its v: a lower v only raises
  // other rows' reduced costs, and keeps v <= 0 (I3).
  void tighten(int i) {
    const double* c = row(i);
    const int* h = held(i);
    for (int s = 0; s < count_[i]; ++s) v_[h[s]] = c[h[s]] - u_[i];
  }

  // Balanced case only: v[j] = min_i c[i][j], u = 0; each column goes to its cheapest row
  // (the first, on ties) while that row has room.
  void column_reduction() {
    std::fill(v_.begin(), v_.end(), kInf);
    std::vector<int> cheapest(cols_, 0);
    for (int i = 0; i < rows_; ++i) {
      const double* c = row(i);
      for (int j = 0; j < cols_; ++j) {
        if (c[j] < v_[j]) {
          v_[j] = c[j];
          cheapest[j] = i;
        }
      }
    }
    for (int j = cols_ - 1; j >= 0; --j) {
      if (count_[cheapest[j]] < k_) attach(cheapest[j], j);
    }
  }

  // Raise u of every full row to its cheapest reduced cost among the columns it does not
  // hold, moving the slack onto its own columns: they become dearer to the other rows.
  void reduction_transfer() {
    for (int i = 0; i < rows_; ++i) {
      if (count_[i] != k_ || k_ == cols_) continue;
      const double* c = row(i);
      double mu = kInf;
      for (int j = 0; j < cols_; ++j) {
        if (owner_[j] != i) mu = std::min(mu, c[j] - v_[j]);
      }
      u_[i] += mu;
      tighten(i);
    }
  }

  // Selects into candidates_ the `want` best columns row i does not hold, ascending by
  // (h, taken); returns how many there are (fewer than `want` only if the row could take
  // every column it does not hold).
  int select_candidates(int i, int want) {
    const double* c = row(i);
    candidates_.clear();
    if (want <= kMaxInsertionSelect) {
      Candidate buf[kMaxInsertionSelect];
      int n = 0;
      double worst = kInf;  // buf[want - 1].h once buf is full: most columns stop here
      for (int j = 0; j < cols_; ++j) {
        const double h = c[j] - v_[j];
        if (h > worst) continue;
        const int o = owner_[j];
        if (o == i) continue;
        const Candidate x{h, j, o < 0};
        if (n == want && !better(x, buf[want - 1])) continue;
        int p = n < want ? n++ : want - 1;
        while (p > 0 && better(x, buf[p - 1])) {
          buf[p] = buf[p - 1];
          --p;
        }
        buf[p] = x;
        if (n == want) worst = buf[want - 1].h;
      }
      candidates_.assign(buf, buf + n);
      return n;
    }
    for (int j = 0; j < cols_; ++j) {
      const int o = owner_[j];
      if (o != i) candidates_.push_back({c[j] - v_[j], j, o < 0});
    }
    const int n = std::min<int>(want, static_cast<int>(candidates_.size()));
    std::nth_element(candidates_.begin(), candidates_.begin() + (n - 1), candidates_.end(), better);
    std::sort(candidates_.begin(), candidates_.begin() + n, better);
    candidates_.resize(n);
    return n;
  }

  // Jonker-Volgenant augmenting row reduction for rows of capacity k: a row short of r
  // columns takes its r cheapest (reduced cost h), and raises u to the (r+1)-th cheapest h,
  // pricing each taken column at that level; holders it evicts are short again. Evictions
  // that raised a column's price are served at once, those at an unchanged price (ties)
  // wait for the next pass, as in [1].
  void augmenting_row_reduction() {
    std::vector<int> work, next, urgent;
    int64_t missing = 0;
    for (int i = 0; i < rows_; ++i) {
      if (count_[i] < k_) {
        work.push_back(i);
        missing += k_ - count_[i];
      }
    }
    int64_t budget = kArrScansPerUnit * missing + kArrScanSlack;
    for (int pass = 0; pass < 2 && !work.empty(); ++pass) {
      next.clear();
      size_t index = 0;
      while (budget > 0) {
        int i;
        if (!urgent.empty()) {
          i = urgent.back();
          urgent.pop_back();
        } else if (index < work.size()) {
          i = work[index++];
        } else {
          break;
        }
        if (count_[i] == k_) continue;
        --budget;
        const int r = k_ - count_[i];
        const int n = select_candidates(i, r + 1);
        const double u_new = n > r ? candidates_[r].h : candidates_[r - 1].h;
        for (int q = 0; q < r; ++q) {
          const Candidate& x = candidates_[q];
          const int previous = owner_[x.col];
          if (previous >= 0) {
            detach(x.col);
            (x.h < u_new ? urgent : next).push_back(previous);
          }
          attach(i, x.col);
        }
        u_[i] = u_new;
        tighten(i);
      }
      work.swap(next);
    }
  }

  // Labels row i and every column it holds at distance d (`via`, by which i was reached, is
  // labelled already). The held columns are not truly at distance d (only row i is), but
  // labelling them so keeps every reduced cost non-negative after the potential update: when
  // i is reached every unlabelled column has a tentative distance >= d, and i's own arcs stay
  // tight. A tiled solver would reach them one by one, and scan row i once for each.
  void label_row(int i, double d, int via) {
    row_dist_[i] = d;
    labelled_rows_.push_back(i);
    const int* h = held(i);
    for (int s = 0; s < count_[i]; ++s) {
      if (h[s] != via) label_column(h[s], d);
    }
  }

  // Takes column j out of the search: an infinite tentative distance keeps it from being
  // picked, a v of -inf keeps every later scan from lowering that distance.
  void label_column(int j, double d) {
    label_[j] = d;
    labelled_cols_.push_back(j);
    dist_[j] = kInf;
    masked_v_[j] = -kInf;
  }

  // One Dijkstra search from `source` (a row short of columns) to the nearest unassigned
  // column in reduced costs, then the potential update and the augmentation of one unit.
  void augment(int source) {
    std::fill(dist_.begin(), dist_.end(), kInf);
    std::copy(v_.begin(), v_.end(), masked_v_.begin());
    labelled_rows_.clear();
    labelled_cols_.clear();
    label_row(source, 0.0, -1);

    int current = source;
    int sink = -1;
    double d_sink = 0.0;
    while (sink < 0) {
      const ScanResult scan =
          scan_row_(row(current), masked_v_.data(), penalty_.data(), dist_.data(), pred_.data(),
                    cols_, row_dist_[current] - u_[current], current);
      // Prefer an unassigned column among equally near ones: it ends the search.
      const bool free = scan.free_min <= scan.min;
      const int j = free ? scan.free_argmin : scan.argmin;
      const double d = free ? scan.free_min : scan.min;
      label_column(j, d);
      if (free) {
        sink = j;
        d_sink = d;
      } else {
        current = owner_[j];
        via_[current] = j;
        label_row(current, d, j);
      }
    }

    for (int i : labelled_rows_) u_[i] += d_sink - row_dist_[i];
    for (int j : labelled_cols_) v_[j] -= d_sink - label_[j];

    // Along the path every row gives up the column it was reached by and takes the next one.
    int j = sink;
    penalty_[sink] = kInf;
    for (;;) {
      const int i = static_cast<int>(pred_[j]);
      if (i == source) {
        attach(i, j);
        break;
      }
      const int next = via_[i];
      const int s = slot_[next];
      held(i)[s] = j;
      slot_[j] = s;
      owner_[j] = i;
      j = next;
    }
    // Restores (I2) exactly; the update above only keeps it up to rounding.
    for (int i : labelled_rows_) tighten(i);
  }

  const double* cost_;
  const int rows_;
  const int cols_;
  const int k_;
  std::vector<double> u_;
  std::vector<double> v_;
  std::vector<int> owner_;  // per column: the row holding it, or -1
  std::vector<int> slot_;   // per column: its index within its owner's held list
  std::vector<int> held_;   // rows x k: the columns each row holds, count_[i] of them
  std::vector<int> count_;
  std::vector<double> penalty_;  // per column: 0 if unassigned, else +inf
  // Search scratch.
  const ScanFn scan_row_;
  std::vector<double> dist_;      // per column: tentative distance, +inf once labelled
  std::vector<double> label_;     // per column: distance label, once labelled
  std::vector<double> masked_v_;  // per column: v, -inf once labelled
  std::vector<int64_t> pred_;     // per column: the row it was reached from
  std::vector<int> via_;          // per row: the column it was reached through
  std::vector<double> row_dist_;  // per row: distance label
  std::vector<int> labelled_rows_;
  std::vector<int> labelled_cols_;
  std::vector<Candidate> candidates_;
};

AssignmentResult failure(Status status) {
  AssignmentResult result;
  result.status = status;
  return result;
}

}  // namespace

const char* status_name(Status status) {
  switch (status) {
    case Status::kOptimal:
      return "optimal";
    case Status::kEmpty:
      return "empty";
    case Status::kInvalidCost:
      return "invalid cost";
    case Status::kInfeasible:
      return "infeasible";
    case Status::kInvalidArgument:
      return "invalid argument";
  }
  return "unknown status";
}

bool search_kernel_available(SearchKernel kernel) {
  return scan_for(kernel) != nullptr;
}

AssignmentResult tiled_assignment(const double* cost, int64_t rows, int64_t cols, int64_t k,
                                  SearchKernel kernel) {
  if (rows < 0 || cols < 0) return failure(Status::kInvalidArgument);
  if (rows == 0 || cols == 0) return failure(Status::kEmpty);
  // Division, not rows * k: no overflow for any k.
  if (k < 1 || k > cols / rows) return failure(Status::kInfeasible);
  const ScanFn scan = scan_for(kernel);
  if (cost == nullptr || cols > std::numeric_limits<int>::max() || scan == nullptr) {
    return failure(Status::kInvalidArgument);
  }
  const size_t size = static_cast<size_t>(rows) * static_cast<size_t>(cols);
  for (size_t p = 0; p < size; ++p) {
    // Also false for NaN.
    if (!(std::fabs(cost[p]) <= kMaxCostMagnitude)) return failure(Status::kInvalidCost);
  }
  TransportSolver solver(cost, static_cast<int>(rows), static_cast<int>(cols), static_cast<int>(k),
                         scan);
  solver.solve();
  AssignmentResult result;
  solver.write(&result);
  return result;
}

AssignmentResult tiled_assignment(const double* cost, int64_t rows, int64_t cols, int64_t k) {
  return tiled_assignment(cost, rows, cols, k, SearchKernel::kAuto);
}

AssignmentResult tiled_assignment(const std::vector<double>& cost, int64_t rows, int64_t cols,
                                  int64_t k) {
  if (rows < 0 || cols < 0) return failure(Status::kInvalidArgument);
  if (cols != 0 && static_cast<uint64_t>(rows) > cost.size() / static_cast<uint64_t>(cols)) {
    return failure(Status::kInvalidArgument);
  }
  if (cost.size() != static_cast<size_t>(rows) * static_cast<size_t>(cols)) {
    return failure(Status::kInvalidArgument);
  }
  return tiled_assignment(cost.data(), rows, cols, k);
}

AssignmentResult linear_sum_assignment(const double* cost, int64_t rows, int64_t cols) {
  return tiled_assignment(cost, rows, cols, 1);
}

AssignmentResult linear_sum_assignment(const std::vector<double>& cost, int64_t rows,
                                       int64_t cols) {
  return tiled_assignment(cost, rows, cols, 1);
}

}  // namespace mgd::solver
