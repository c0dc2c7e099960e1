#pragma once
#include <cstddef>

#include "model/model_weights.h"

namespace zaya {

// Learnable residual scaling (spec §3.2), in fp32 for n tokens of width H:
//   first merge:  r = (m + hb) ⊙ hs
//   later merges: r = (m + hb) ⊙ hs + (r + rb) ⊙ rs
void residual_merge(const ResidualMergeWeights& w, const float* m, float* r, size_t n_tokens, size_t H);

}  // namespace zaya
