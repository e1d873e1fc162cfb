// Tests of mgd::solver::linear_sum_assignment and tiled_assignment: statuses, hand-solved
// cases, edge cases (negative costs, ties, degenerate matrices), brute force over every
// injection for all sizes up to 8 columns, and randomized agreement with scipy on the
// explicitly tiled matrix (tests/oracle/lsa_oracle.py).

#include "mgd/solver/assignment.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "solver_testing.h"

namespace mgd::solver {
namespace {

using testing::check_assignment;
using testing::feature_costs;
using testing::integer_costs;
using testing::uniform_costs;

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kOracleTolerance = 1e-9;

class AssignmentTest : public ::testing::Test {
 protected:
  // Every test draws its matrices from seeds of its own.
  uint64_t seed(uint64_t salt) const { return 0x6d6764u * 1000003u + salt; }
};

// The explicitly tiled (k*rows) x cols matrix: row g*rows + j is row j (spec 4a).
std::vector<double> tile(const std::vector<double>& cost, int64_t rows, int64_t cols, int64_t k) {
  std::vector<double> tiled;
  for (int64_t g = 0; g < k; ++g) tiled.insert(tiled.end(), cost.begin(), cost.end());
  EXPECT_EQ(static_cast<int64_t>(tiled.size()), k * rows * cols);
  return tiled;
}

void expect_failure(const AssignmentResult& r, Status status) {
  EXPECT_EQ(r.status, status) << status_name(r.status);
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.cost, 0.0);
  EXPECT_TRUE(r.row_to_col.empty());
  EXPECT_TRUE(r.col_to_row.empty());
}

// --- statuses ------------------------------------------------------------------------------

TEST_F(AssignmentTest, EmptyMatrices) {
  const std::vector<double> none;
  expect_failure(linear_sum_assignment(none, 0, 0), Status::kEmpty);
  expect_failure(linear_sum_assignment(none, 0, 5), Status::kEmpty);
  expect_failure(linear_sum_assignment(none, 3, 0), Status::kEmpty);
  expect_failure(tiled_assignment(none, 0, 4, 2), Status::kEmpty);
  expect_failure(linear_sum_assignment(nullptr, 0, 0), Status::kEmpty);
  expect_failure(tiled_assignment(nullptr, 0, 7, 3), Status::kEmpty);
}

TEST_F(AssignmentTest, NonFiniteCostsAreInvalid) {
  for (double bad : {kNaN, kInf, -kInf, 2 * kMaxCostMagnitude, -1e300}) {
    for (size_t where : {0, 5, 11}) {
      std::vector<double> c = uniform_costs(3, 4, -1.0, 1.0, seed(where));
      c[where] = bad;
      expect_failure(linear_sum_assignment(c, 3, 4), Status::kInvalidCost);
      expect_failure(tiled_assignment(c, 2, 6, 3), Status::kInvalidCost);
    }
  }
  // The largest accepted magnitude still solves.
  std::vector<double> c = {kMaxCostMagnitude, -kMaxCostMagnitude, 0.0, 1.0};
  const AssignmentResult r = linear_sum_assignment(c, 2, 2);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.cost, -kMaxCostMagnitude + 0.0);
}

TEST_F(AssignmentTest, InfeasibleShapes) {
  const std::vector<double> c = uniform_costs(4, 3, 0.0, 1.0, seed(1));
  expect_failure(linear_sum_assignment(c, 4, 3), Status::kInfeasible);  // rows > cols
  const std::vector<double> d = uniform_costs(3, 8, 0.0, 1.0, seed(2));
  expect_failure(tiled_assignment(d, 3, 8, 0), Status::kInfeasible);   // k < 1
  expect_failure(tiled_assignment(d, 3, 8, -2), Status::kInfeasible);  // k < 1
  expect_failure(tiled_assignment(d, 3, 8, 3), Status::kInfeasible);   // 9 > 8
  // rows * k overflows int64: must still read as infeasible.
  expect_failure(tiled_assignment(d, 3, 8, std::numeric_limits<int64_t>::max()),
                 Status::kInfeasible);
  ASSERT_TRUE(tiled_assignment(d, 3, 8, 2).ok());
  ASSERT_TRUE(tiled_assignment(d.data(), 1, 8, 8).ok());  // the first row alone
}

TEST_F(AssignmentTest, InvalidArguments) {
  const std::vector<double> c = uniform_costs(2, 3, 0.0, 1.0, seed(3));
  expect_failure(linear_sum_assignment(c.data(), -1, 3), Status::kInvalidArgument);
  expect_failure(linear_sum_assignment(c.data(), 2, -3), Status::kInvalidArgument);
  expect_failure(linear_sum_assignment(nullptr, 2, 3), Status::kInvalidArgument);
  expect_failure(linear_sum_assignment(c, 2, 4), Status::kInvalidArgument);  // size mismatch
  expect_failure(linear_sum_assignment(c, 1, 3), Status::kInvalidArgument);
  // rows * cols overflows: a mismatch, not a crash.
  const int64_t huge = int64_t{1} << 40;
  expect_failure(linear_sum_assignment(c, huge, huge), Status::kInvalidArgument);
  expect_failure(tiled_assignment(c.data(), 2, 3, 1, static_cast<SearchKernel>(99)),
                 Status::kInvalidArgument);
}

TEST_F(AssignmentTest, StatusNames) {
  EXPECT_STREQ(status_name(Status::kOptimal), "optimal");
  EXPECT_STREQ(status_name(Status::kEmpty), "empty");
  EXPECT_STREQ(status_name(Status::kInvalidCost), "invalid cost");
  EXPECT_STREQ(status_name(Status::kInfeasible), "infeasible");
  EXPECT_STREQ(status_name(Status::kInvalidArgument), "invalid argument");
}

// --- hand-solved ---------------------------------------------------------------------------

TEST_F(AssignmentTest, SquareByHand) {
  // scipy's documentation example.
  const std::vector<double> c = {4, 1, 3,  //
                                 2, 0, 5,  //
                                 3, 2, 2};
  const AssignmentResult r = linear_sum_assignment(c, 3, 3);
  EXPECT_EQ(check_assignment(r, c, 3, 3, 1), "");
  EXPECT_EQ(r.cost, 5.0);
  EXPECT_EQ(r.row_to_col, (std::vector<int64_t>{1, 0, 2}));
  EXPECT_EQ(r.col_to_row, (std::vector<int64_t>{1, 0, 2}));
}

TEST_F(AssignmentTest, RectangularByHand) {
  // Row 0 wants column 0, but row 1 needs it more; column 3 is the best other for row 0.
  const std::vector<double> c = {1, 9, 9, 2,  //
                                 1, 9, 9, 9};
  const AssignmentResult r = linear_sum_assignment(c, 2, 4);
  EXPECT_EQ(check_assignment(r, c, 2, 4, 1), "");
  EXPECT_EQ(r.cost, 3.0);
  EXPECT_EQ(r.row_to_col, (std::vector<int64_t>{3, 0}));
  EXPECT_EQ(r.col_to_row, (std::vector<int64_t>{1, -1, -1, 0}));
}

TEST_F(AssignmentTest, TiledByHand) {
  // Two rows, k = 2, four columns: row 0 is cheap on 0, 1; row 1 on 1, 2, 3. Row 0 needs
  // two columns, so it takes 0 and 1 unless giving 1 to row 1 is cheaper overall:
  // {0,1 | 2,3} = 1+2+3+3 = 9; {0,2 | 1,3} = 1+6+1+3 = 11; {0,3 | 1,2} = 1+7+1+3 = 12.
  const std::vector<double> c = {1, 2, 6, 7,  //
                                 8, 1, 3, 3};
  const AssignmentResult r = tiled_assignment(c, 2, 4, 2);
  EXPECT_EQ(check_assignment(r, c, 2, 4, 2), "");
  EXPECT_EQ(r.cost, 9.0);
  EXPECT_EQ(r.row_to_col, (std::vector<int64_t>{0, 1, 2, 3}));
  EXPECT_EQ(r.col_to_row, (std::vector<int64_t>{0, 0, 1, 1}));
}

TEST_F(AssignmentTest, TiledRectangularByHand) {
  // k = 2, 2 rows, 5 columns: column 4 is the worst for both, and stays out.
  const std::vector<double> c = {5, 1, 2, 3, 9,  //
                                 1, 5, 4, 2, 9};
  const AssignmentResult r = tiled_assignment(c, 2, 5, 2);
  EXPECT_EQ(check_assignment(r, c, 2, 5, 2), "");
  EXPECT_EQ(r.cost, 6.0);
  EXPECT_EQ(r.row_to_col, (std::vector<int64_t>{1, 2, 0, 3}));
  EXPECT_EQ(r.col_to_row, (std::vector<int64_t>{1, 0, 0, 1, -1}));
}

TEST_F(AssignmentTest, NegativeCostsByHand) {
  const std::vector<double> c = {-1, -5, 0,  //
                                 -4, -6, -2};
  const AssignmentResult r = linear_sum_assignment(c, 2, 3);
  EXPECT_EQ(check_assignment(r, c, 2, 3, 1), "");
  EXPECT_EQ(r.cost, -9.0);  // -5 + -4
  EXPECT_EQ(r.row_to_col, (std::vector<int64_t>{1, 0}));
}

TEST_F(AssignmentTest, OneByOneAndOneRow) {
  const std::vector<double> one = {-2.5};
  AssignmentResult r = linear_sum_assignment(one, 1, 1);
  EXPECT_EQ(check_assignment(r, one, 1, 1, 1), "");
  EXPECT_EQ(r.cost, -2.5);
  EXPECT_EQ(r.row_to_col, (std::vector<int64_t>{0}));

  const std::vector<double> row = {3, 1, 4, 1, 5, 9, 2, 6};
  r = linear_sum_assignment(row, 1, 8);
  EXPECT_EQ(check_assignment(r, row, 1, 8, 1), "");
  EXPECT_EQ(r.cost, 1.0);
  EXPECT_TRUE(r.row_to_col[0] == 1 || r.row_to_col[0] == 3);
  r = tiled_assignment(row, 1, 8, 3);  // the three cheapest: 1, 1, 2
  EXPECT_EQ(check_assignment(r, row, 1, 8, 3), "");
  EXPECT_EQ(r.cost, 4.0);
  EXPECT_EQ(r.row_to_col, (std::vector<int64_t>{1, 3, 6}));
  r = tiled_assignment(row, 1, 8, 8);  // everything
  EXPECT_EQ(check_assignment(r, row, 1, 8, 8), "");
  EXPECT_EQ(r.cost, 31.0);
}

// --- edge cases ----------------------------------------------------------------------------

TEST_F(AssignmentTest, AllEqualCosts) {
  for (int64_t cols : {1, 7, 64, 2048}) {
    for (int64_t k : {1, 2, 4}) {
      for (int64_t rows : {cols / k, cols / (2 * k)}) {
        if (rows < 1) continue;
        const std::vector<double> c(static_cast<size_t>(rows * cols), 0.75);
        const AssignmentResult r = tiled_assignment(c, rows, cols, k);
        EXPECT_EQ(check_assignment(r, c, rows, cols, k), "") << rows << "x" << cols << " k" << k;
        EXPECT_NEAR(r.cost, 0.75 * rows * k, 1e-12 * rows * k);
      }
    }
  }
}

TEST_F(AssignmentTest, SumOfRowAndColumnTerms) {
  // c[i][j] = a[i] + b[j]: every complete assignment of a square problem costs the same, a
  // rectangular one must pick the rows*k cheapest columns.
  const int64_t rows = 96, cols = 384;
  const std::vector<double> a = uniform_costs(1, rows, -3.0, 3.0, seed(10));
  std::vector<double> b = uniform_costs(1, cols, 0.0, 1.0, seed(11));
  std::vector<double> c(static_cast<size_t>(rows * cols));
  for (int64_t i = 0; i < rows; ++i) {
    for (int64_t j = 0; j < cols; ++j) c[i * cols + j] = a[i] + b[j];
  }
  for (int64_t k : {1, 2, 4}) {
    const AssignmentResult r = tiled_assignment(c, rows, cols, k);
    ASSERT_EQ(check_assignment(r, c, rows, cols, k), "");
    std::vector<double> sorted = b;
    std::sort(sorted.begin(), sorted.end());
    double expected = 0.0;
    for (int64_t i = 0; i < rows; ++i) expected += k * a[i];
    for (int64_t j = 0; j < rows * k; ++j) expected += sorted[j];
    EXPECT_NEAR(r.cost, expected, 1e-10 * rows * k) << "k " << k;
  }
}

TEST_F(AssignmentTest, DeterministicAndKernelIndependent) {
  // Every search kernel does the same arithmetic in the same order: identical answers.
  const int64_t rows = 128, cols = 512;
  const std::vector<double> c = feature_costs(rows, cols, seed(12));
  for (int64_t k : {1, 2, 4}) {
    const AssignmentResult reference = tiled_assignment(c, rows, cols, k);
    ASSERT_EQ(check_assignment(reference, c, rows, cols, k), "");
    for (SearchKernel kernel : {SearchKernel::kAuto, SearchKernel::kScalar, SearchKernel::kSse2,
                                SearchKernel::kAvx2, SearchKernel::kAvx512}) {
      if (!search_kernel_available(kernel)) continue;
      const AssignmentResult r = tiled_assignment(c.data(), rows, cols, k, kernel);
      EXPECT_EQ(r.cost, reference.cost) << "kernel " << static_cast<int>(kernel);
      EXPECT_EQ(r.row_to_col, reference.row_to_col) << "kernel " << static_cast<int>(kernel);
    }
  }
  EXPECT_TRUE(search_kernel_available(SearchKernel::kAuto));
  EXPECT_TRUE(search_kernel_available(SearchKernel::kScalar));
}

TEST_F(AssignmentTest, TiledEqualsExplicitTiling) {
  // tiled_assignment must reach the optimum of the assignment on the tiled matrix.
  for (int64_t k : {2, 3, 4}) {
    const int64_t rows = 40, cols = 40 * k + 7;
    const std::vector<double> c = uniform_costs(rows, cols, -1.0, 3.0, seed(20 + k));
    const AssignmentResult tiled = tiled_assignment(c, rows, cols, k);
    ASSERT_EQ(check_assignment(tiled, c, rows, cols, k), "");
    const std::vector<double> big = tile(c, rows, cols, k);
    const AssignmentResult plain = linear_sum_assignment(big, k * rows, cols);
    ASSERT_EQ(check_assignment(plain, big, k * rows, cols, 1), "");
    EXPECT_NEAR(tiled.cost, plain.cost, 1e-12 * std::fabs(plain.cost)) << "k " << k;
  }
}

// --- brute force ---------------------------------------------------------------------------

// Minimum cost over every injection of the R = k*rows rows of the tiled matrix into cols.
class BruteForce {
 public:
  BruteForce(const std::vector<double>& cost, int rows, int cols, int k)
      : cost_(cost), rows_(rows), cols_(cols), tiled_rows_(rows * k), used_(cols, false) {}

  double solve() {
    best_ = kInf;
    visit(0, 0.0);
    return best_;
  }

 private:
  void visit(int r, double sum) {
    if (r == tiled_rows_) {
      best_ = std::min(best_, sum);
      return;
    }
    const double* row = cost_.data() + static_cast<size_t>(r % rows_) * cols_;
    for (int j = 0; j < cols_; ++j) {
      if (used_[j]) continue;
      used_[j] = true;
      visit(r + 1, sum + row[j]);
      used_[j] = false;
    }
  }

  const std::vector<double>& cost_;
  const int rows_, cols_, tiled_rows_;
  std::vector<bool> used_;
  double best_ = kInf;
};

TEST_F(AssignmentTest, BruteForceHugeAndTinyMagnitudes) {
  // Potentials grow to sums of costs: near kMaxCostMagnitude they must stay finite, and
  // subnormal differences must not confuse the comparisons.
  for (double scale : {1e240, 1e-300}) {
    for (int k : {1, 2}) {
      for (int trial = 0; trial < 4; ++trial) {
        const int rows = 3, cols = 7;
        std::vector<double> c = uniform_costs(rows, cols, -1.0, 1.0, seed(900 + trial));
        for (double& x : c) x *= scale;
        const double expected = BruteForce(c, rows, cols, k).solve();
        const AssignmentResult r = tiled_assignment(c, rows, cols, k);
        ASSERT_EQ(check_assignment(r, c, rows, cols, k), "") << scale;
        EXPECT_NEAR(r.cost, expected, 1e-12 * std::fabs(expected)) << scale << " k" << k;
      }
    }
  }
}

TEST_F(AssignmentTest, BruteForceAllSmallSizes) {
  int cases = 0;
  for (int cols = 1; cols <= 8; ++cols) {
    for (int rows = 1; rows <= cols; ++rows) {
      for (int k = 1; k * rows <= cols; ++k) {
        for (int trial = 0; trial < 6; ++trial) {
          const uint64_t s = seed(1000 + 100 * cols + 10 * rows + k) * 7 + trial;
          // Trials 0-2: continuous (with negatives); 3-5: small integers, many ties.
          const std::vector<double> c = trial < 3 ? uniform_costs(rows, cols, -2.0, 5.0, s)
                                                  : integer_costs(rows, cols, 0, trial - 2, s);
          const double expected = BruteForce(c, rows, cols, k).solve();
          const AssignmentResult r = tiled_assignment(c, rows, cols, k);
          ASSERT_EQ(check_assignment(r, c, rows, cols, k), "")
              << rows << "x" << cols << " k" << k << " trial " << trial;
          ASSERT_NEAR(r.cost, expected, 1e-12 * std::max(1.0, std::fabs(expected)))
              << rows << "x" << cols << " k" << k << " trial " << trial;
          if (k == 1) {
            ASSERT_EQ(linear_sum_assignment(c, rows, cols).row_to_col, r.row_to_col);
          }
          ++cases;
        }
      }
    }
  }
  EXPECT_GT(cases, 400);
}

// --- randomized, against scipy -------------------------------------------------------------

class ScipyAgreementTest : public AssignmentTest {
 protected:
  static void SetUpTestSuite() {
    oracle_ = std::make_unique<testing::ScipyOracle>(MGD_PYTHON, testing::oracle_script());
  }
  static void TearDownTestSuite() { oracle_.reset(); }

  void SetUp() override {
    // Never a silent pass: without python3, numpy or scipy these tests fail.
    ASSERT_TRUE(oracle_->ok()) << "scipy oracle unavailable (install python3-scipy, as "
                                  "scripts/test does): "
                               << oracle_->error();
  }

  // scipy's optimum on the explicitly tiled matrix.
  double scipy_cost(const std::vector<double>& c, int64_t rows, int64_t cols, int64_t k) {
    const testing::TempMatrixFile file(c);
    EXPECT_EQ(file.error(), "");
    double cost = kNaN, seconds = 0.0;
    EXPECT_TRUE(oracle_->load(file.path(), rows, cols, k) && oracle_->solve(&cost, &seconds))
        << oracle_->error();
    return cost;
  }

  void expect_agreement(const std::vector<double>& c, int64_t rows, int64_t cols, int64_t k) {
    const AssignmentResult r = tiled_assignment(c, rows, cols, k);
    ASSERT_EQ(check_assignment(r, c, rows, cols, k), "");
    const double expected = scipy_cost(c, rows, cols, k);
    EXPECT_NEAR(r.cost, expected, kOracleTolerance * std::max(1.0, std::fabs(expected)))
        << rows << "x" << cols << " k" << k;
  }

  static std::unique_ptr<testing::ScipyOracle> oracle_;
};

std::unique_ptr<testing::ScipyOracle> ScipyAgreementTest::oracle_;

TEST(ScipyOracleTest, MissingInterpreterIsAnError) {
  // What the oracle tests see without python3: an error that names it, never a pass.
  testing::ScipyOracle oracle("/nonexistent/python3", testing::oracle_script());
  EXPECT_FALSE(oracle.ok());
  EXPECT_NE(oracle.error().find("/nonexistent/python3"), std::string::npos) << oracle.error();
  double cost = 0.0, seconds = 0.0;
  EXPECT_FALSE(oracle.load("/dev/null", 1, 1, 1));
  EXPECT_FALSE(oracle.solve(&cost, &seconds));
}

TEST_F(ScipyAgreementTest, PlainSquareAndRectangular) {
  for (int64_t n : {5, 64, 300, 1024}) {
    expect_agreement(uniform_costs(n, n, 0.0, 4.0, seed(2000 + n)), n, n, 1);
  }
  expect_agreement(uniform_costs(100, 257, -5.0, 5.0, seed(2001)), 100, 257, 1);
  expect_agreement(feature_costs(512, 2048, seed(2002)), 512, 2048, 1);  // SM (spec 4b)
  expect_agreement(feature_costs(256, 256, seed(2003)), 256, 256, 1);
  expect_agreement(integer_costs(200, 333, 0, 3, seed(2004)), 200, 333, 1);
  expect_agreement(feature_costs(2048, 2048, seed(2005)), 2048, 2048, 1);
}

TEST_F(ScipyAgreementTest, TiledTwo) {
  expect_agreement(uniform_costs(128, 256, 0.0, 4.0, seed(3000)), 128, 256, 2);
  expect_agreement(feature_costs(1024, 2048, seed(3001)), 1024, 2048, 2);
  expect_agreement(feature_costs(300, 700, seed(3002)), 300, 700, 2);  // shave rule off
  expect_agreement(integer_costs(256, 512, 0, 5, seed(3003)), 256, 512, 2);
}

TEST_F(ScipyAgreementTest, TiledFour) {
  expect_agreement(uniform_costs(512, 2048, 0.0, 4.0, seed(4000)), 512, 2048, 4);
  expect_agreement(feature_costs(512, 2048, seed(4001)), 512, 2048, 4);
  expect_agreement(uniform_costs(64, 300, -1.0, 1.0, seed(4002)), 64, 300, 4);
  expect_agreement(integer_costs(256, 1024, 0, 3, seed(4003)), 256, 1024, 4);
}

TEST_F(ScipyAgreementTest, OtherK) {
  expect_agreement(uniform_costs(100, 300, 0.0, 4.0, seed(5000)), 100, 300, 3);
  expect_agreement(feature_costs(32, 1024, seed(5001)), 32, 1024, 32);
  expect_agreement(uniform_costs(3, 200, 0.0, 1.0, seed(5002)), 3, 200, 50);
}

TEST_F(ScipyAgreementTest, RandomShapes) {
  // Random rows, k and spare columns, four kinds of costs.
  std::mt19937_64 gen(seed(6000));
  std::uniform_int_distribution<int64_t> rows_of(1, 160), k_of(1, 5), spare_of(0, 40);
  for (int trial = 0; trial < 48; ++trial) {
    const int64_t rows = rows_of(gen), k = k_of(gen);
    const int64_t cols = rows * k + (trial % 3 == 0 ? 0 : spare_of(gen));
    const uint64_t s = seed(6001 + trial);
    std::vector<double> c;
    switch (trial % 4) {
      case 0:
        c = uniform_costs(rows, cols, 0.0, 4.0, s);
        break;
      case 1:
        c = uniform_costs(rows, cols, -1e6, 1e6, s);
        break;
      case 2:
        c = integer_costs(rows, cols, -2, 2, s);
        break;
      default:
        c = feature_costs(rows, cols, s);
    }
    SCOPED_TRACE("trial " + std::to_string(trial));
    expect_agreement(c, rows, cols, k);
  }
}

TEST_F(ScipyAgreementTest, HardStructuredCosts) {
  // Rank-one costs c = i * j make every augmenting path long; c = (i - j)^2 has wide ties.
  for (int64_t k : {1, 2, 4}) {
    const int64_t rows = 256 / k, cols = 256;
    std::vector<double> product(static_cast<size_t>(rows * cols)), square(product.size());
    for (int64_t i = 0; i < rows; ++i) {
      for (int64_t j = 0; j < cols; ++j) {
        product[i * cols + j] = static_cast<double>(i * j);
        square[i * cols + j] = static_cast<double>((i - j) * (i - j));
      }
    }
    expect_agreement(product, rows, cols, k);
    expect_agreement(square, rows, cols, k);
  }
  // Negated, rectangular: augmenting row reduction gets nowhere and runs out of budget.
  std::vector<double> negated(static_cast<size_t>(150 * 400));
  for (int64_t i = 0; i < 150; ++i) {
    for (int64_t j = 0; j < 400; ++j) negated[i * 400 + j] = -static_cast<double>(i * j);
  }
  expect_agreement(negated, 150, 400, 1);
  negated.resize(100 * 400);  // its first 100 rows
  expect_agreement(negated, 100, 400, 4);
}

}  // namespace
}  // namespace mgd::solver
