// SM — sparse matching (spec 4b, 5).
// Contract: `index` is 1 x s; the output is T[:, index[0]] and the margins M[index[0]]. The
// other t - s teacher channels are dropped.
#pragma once

#include "mgd/reducers/reducer.h"

namespace mgd {
namespace functional {
Reduced sm_reduce(const torch::Tensor& teacher, const torch::Tensor& margins,
                  const torch::Tensor& index);
}  // namespace functional

class SmReducer final : public Reducer {
 public:
  std::string name() const override { return "sm"; }
  bool sparse() const override { return true; }
  bool amp_selection() const override { return true; }  // AMP over one group
  Reduced reduce(const torch::Tensor& teacher, const torch::Tensor& margins,
                 const torch::Tensor& index) const override {
    return functional::sm_reduce(teacher, margins, index);
  }
};

}  // namespace mgd
