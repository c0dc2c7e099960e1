#include "model/residual_merge.h"

namespace zaya {

void residual_merge(const ResidualMergeWeights& w, const float* m, float* r, size_t n_tokens, size_t H) {
  const float* hs = w.hidden_scale.data();
  const float* hb = w.hidden_bias.data();
  for (size_t t = 0; t < n_tokens; ++t) {
    const float* mt = m + t * H;
    float* rt = r + t * H;
    if (w.has_residual()) {
      const float* rs = w.residual_scale.data();
      const float* rb = w.residual_bias.data();
      for (size_t i = 0; i < H; ++i) rt[i] = (mt[i] + hb[i]) * hs[i] + (rt[i] + rb[i]) * rs[i];
    } else {
      for (size_t i = 0; i < H; ++i) rt[i] = (mt[i] + hb[i]) * hs[i];
    }
  }
}

}  // namespace zaya
