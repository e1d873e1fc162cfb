// RD — random drop (spec 5).
// Contract: at every (b, j, h, w) the output is T[b, index[g][j], h, w] for a group g drawn
// uniformly at random, afresh for every element and every call (from `generator`, or the
// global generator). The margin of student channel j is M[index[g][j]] for one random g per
// channel, drawn afresh every call.
#pragma once

#include <ATen/core/Generator.h>
#include <c10/util/Optional.h>

#include "mgd/reducers/reducer.h"

namespace mgd {
namespace functional {
Reduced rd_reduce(const torch::Tensor& teacher, const torch::Tensor& margins,
                  const torch::Tensor& index,
                  c10::optional<at::Generator> generator = c10::nullopt);
}  // namespace functional

class RdReducer final : public Reducer {
 public:
  std::string name() const override { return "rd"; }
  Reduced reduce(const torch::Tensor& teacher, const torch::Tensor& margins,
                 const torch::Tensor& index) const override {
    return functional::rd_reduce(teacher, margins, index);
  }
};

}  // namespace mgd
