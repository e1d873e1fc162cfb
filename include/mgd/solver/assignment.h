// Exact linear sum assignment, and MGD's tiled assignment as a transportation problem.
//
// PROBLEM
//
// Given a dense rows x cols cost matrix c (row-major doubles, rows <= cols), the linear sum
// assignment problem assigns every row to a distinct column so that the total cost
// sum_i c[i][col(i)] is minimal. Columns left over stay unassigned.
//
// MGD's tiled matching (spec section 4a) stacks the s x t cost k times vertically and solves
// the assignment on the (k*s) x t result, so that every student channel (row) receives k
// distinct teacher channels (columns). The k copies of a row are interchangeable, so that
// problem is the transportation problem
//
//   minimise  sum_ij c[i][j] x[i][j]
//   s.t.      sum_j x[i][j] = k  for every row i,    sum_i x[i][j] <= 1  for every column j,
//             x[i][j] in {0, 1},
//
// which tiled_assignment() solves directly, without ever building or scanning the tiled
// matrix. linear_sum_assignment() is the case k = 1. The optimum of either is exact up to the
// rounding of double arithmetic (the same as scipy.optimize.linear_sum_assignment).
//
// ALGORITHM
//
// Successive shortest augmenting paths with dual potentials u (rows) and v (columns), as in
// Jonker and Volgenant [1] and Crouse [2] (the algorithm behind scipy), but over the rows as
// nodes of capacity k rather than over k*rows row copies:
//  - every column a row holds is kept "tight" (c[i][j] = u[i] + v[j]); every other arc has a
//    non-negative reduced cost c[i][j] - u[i] - v[j];
//  - a Dijkstra search starts at a row with free capacity. When it first reaches a column held
//    by row i it labels row i and all of i's columns at that distance and scans row i once
//    (a tiled solver would scan it once per copy). It stops at the first free column;
//  - the potentials of the labelled nodes are shifted by their distance, one unit moves along
//    the path, and each path row gives up one column and takes the next.
// Initialisation (as in [1], generalised to capacity k): when rows*k == cols, column reduction
// (v[j] = min_i c[i][j], each column to its cheapest row while that row has room) and
// reduction transfer. When rows*k < cols, columns that end up unassigned must keep v[j] = 0
// (column duals <= 0), so the solver starts from v = 0 instead. In both cases a capped
// augmenting row reduction follows: a row short of r columns takes its r cheapest columns in
// reduced cost, pricing them at its (r+1)-th cheapest, which may evict their holders.
//
// COMPLEXITY
//
// Memory: O(rows*k + cols) words besides the input. Time: O(rows*cols) for the
// initialisation, plus O(rows*cols) per augmentation (a search scans each row at most once),
// so O(k*rows * rows*cols) in the worst case, against O((k*rows)^2 * cols) for a solver on the
// tiled matrix. On random dense costs the initialisation leaves few units to augment and most
// searches stop early; the row scans run in AVX-512, AVX2 or SSE2 where the CPU has them. On
// MGD's costs (t = 2048 teacher channels, k = 4) this is about 15x faster than scipy on the
// tiled matrix (bench/solver_bench.cpp).
//
// USAGE
//
//   // cost: s x t, row-major; every row (student channel) gets k = t / s teacher channels.
//   mgd::solver::AssignmentResult r = mgd::solver::tiled_assignment(cost.data(), s, t, k);
//   if (r.status != mgd::solver::Status::kOptimal) {
//     throw std::runtime_error(mgd::solver::status_name(r.status));
//   }
//   for (int64_t g = 0; g < k; ++g) use(r.row_to_col[j * k + g]);  // row j's columns
//
// REFERENCES
//
// [1] R. Jonker and A. Volgenant, "A shortest augmenting path algorithm for dense and sparse
//     linear assignment problems", Computing 38(4):325-340, 1987.
// [2] D. F. Crouse, "On implementing 2D rectangular assignment algorithms", IEEE Transactions
//     on Aerospace and Electronic Systems 52(4):1679-1696, 2016.
// [3] R. K. Ahuja, T. L. Magnanti and J. B. Orlin, "Network Flows", Prentice Hall, 1993,
//     chapter 9 (successive shortest paths for the transportation problem).
// [4] K. Yue, J. Deng and F. Zhou, "Matching Guided Distillation", ECCV 2020 (the tiled
//     matching; docs/mgd-spec.md section 4a).

#pragma once

#include <cstdint>
#include <vector>

namespace mgd::solver {

/// The outcome of a solve. Only kOptimal carries an assignment.
enum class Status {
  kOptimal,          ///< an optimal assignment was found
  kEmpty,            ///< rows == 0 or cols == 0: nothing to assign
  kInvalidCost,      ///< some cost is NaN or +-inf, or |cost| > kMaxCostMagnitude
  kInfeasible,       ///< rows * k > cols, or k < 1
  kInvalidArgument,  ///< negative size, null matrix, cols >= 2^31, or a size mismatch
};

/// "optimal", "empty", "invalid cost", "infeasible" or "invalid argument".
const char* status_name(Status status);

/// Costs larger than this in magnitude are rejected (kInvalidCost): the dual potentials are
/// sums of up to 2*rows costs, and must stay finite.
constexpr double kMaxCostMagnitude = 1e250;

struct AssignmentResult {
  Status status = Status::kEmpty;
  /// Minimum total cost: the sum over rows of the costs of the row's assigned columns
  /// (0 unless kOptimal).
  double cost = 0.0;
  /// linear_sum_assignment: size rows, the column of each row. tiled_assignment: size rows*k,
  /// row j's k columns at [j*k, j*k + k), ascending. Empty unless kOptimal.
  std::vector<int64_t> row_to_col;
  /// Size cols: the row holding each column, -1 for unassigned columns. Empty unless kOptimal.
  std::vector<int64_t> col_to_row;

  bool ok() const { return status == Status::kOptimal; }
};

/// Minimum-cost assignment of every row of the dense row-major rows x cols matrix `cost`
/// (rows <= cols) to a distinct column. Negative costs are allowed.
AssignmentResult linear_sum_assignment(const double* cost, int64_t rows, int64_t cols);
/// As above; cost.size() must be rows * cols (else kInvalidArgument).
AssignmentResult linear_sum_assignment(const std::vector<double>& cost, int64_t rows, int64_t cols);

/// MGD's tiled assignment (spec 4a): every row gets exactly k distinct columns, every column
/// goes to at most one row, total cost minimal; needs rows * k <= cols. Same optimum as
/// linear_sum_assignment on the k-times vertically tiled (k*rows) x cols matrix, where row
/// g*rows + j of the tiled matrix stands for row j: to read the result as a tiled assignment,
/// give tiled row g*rows + j the column row_to_col[j*k + g].
AssignmentResult tiled_assignment(const double* cost, int64_t rows, int64_t cols, int64_t k);
/// As above; cost.size() must be rows * cols (else kInvalidArgument).
AssignmentResult tiled_assignment(const std::vector<double>& cost, int64_t rows, int64_t cols,
                                  int64_t k);

/// The vector code of the searches' row scans. kAuto (what the overloads above use) picks the
/// widest one this CPU runs; the others exist so that tests can check that all of them give
/// identical results (they do the same arithmetic in the same order).
enum class SearchKernel { kAuto, kScalar, kSse2, kAvx2, kAvx512 };

/// Whether this CPU and build can run `kernel` (kAuto and kScalar always can).
bool search_kernel_available(SearchKernel kernel);

/// tiled_assignment with a chosen kernel; kInvalidArgument if it is not available.
AssignmentResult tiled_assignment(const double* cost, int64_t rows, int64_t cols, int64_t k,
                                  SearchKernel kernel);

}  // namespace mgd::solver
