// AMP — absolute max pooling, MGD's default reducer (spec 5).
// Contract: at every (b, j, h, w) the output is the value T[b, index[g][j], h, w] of largest
// absolute value over the k groups g, sign kept (the first group wins ties). The margin of
// student channel j is the mean over g of M[index[g][j]].
#pragma once

#include "mgd/reducers/reducer.h"

namespace mgd {
namespace functional {
Reduced amp_reduce(const torch::Tensor& teacher, const torch::Tensor& margins,
                   const torch::Tensor& index);
}  // namespace functional

class AmpReducer final : public Reducer {
 public:
  std::string name() const override { return "amp"; }
  bool amp_selection() const override { return true; }
  Reduced reduce(const torch::Tensor& teacher, const torch::Tensor& margins,
                 const torch::Tensor& index) const override {
    return functional::amp_reduce(teacher, margins, index);
  }
};

}  // namespace mgd
