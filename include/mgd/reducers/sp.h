// SP — simple pooling (spec 5).
// Contract, max form ("sp"): at every (b, j, h, w) the output is the plain maximum (no abs)
// over groups g of T[b, index[g][j], h, w]; the margin of channel j is the max over g of
// M[index[g][j]]. Average form ("sp_avg"): the mean over g of both instead.
#pragma once

#include "mgd/reducers/reducer.h"

namespace mgd {

enum class Pooling { kMax, kAverage };

namespace functional {
Reduced sp_reduce(const torch::Tensor& teacher, const torch::Tensor& margins,
                  const torch::Tensor& index, Pooling pooling = Pooling::kMax);
}  // namespace functional

class SpReducer final : public Reducer {
 public:
  explicit SpReducer(Pooling pooling = Pooling::kMax) : pooling_(pooling) {}
  std::string name() const override { return pooling_ == Pooling::kMax ? "sp" : "sp_avg"; }
  Reduced reduce(const torch::Tensor& teacher, const torch::Tensor& margins,
                 const torch::Tensor& index) const override {
    return functional::sp_reduce(teacher, margins, index, pooling_);
  }

 private:
  Pooling pooling_;
};

}  // namespace mgd
