#include "model/residual_merge.h"

#include <algorithm>

#include "zaya/thread_pool.h"

namespace zaya {

void residual_merge(const ResidualMergeWeights& w, const float* m, float* r, size_t n_tokens, size_t H) {
  const float* hs = w.hidden_scale.data();
  const float* hb = w.hidden_bias.data();
  // Tokens are independent: split over the pool in blocks (light, memory-bound work).
  default_pool().parallel_for(n_tokens, std::max<size_t>(1, 16384 / std::max<size_t>(H, 1)), [&](size_t t0, size_t t1) {
    for (size_t t = t0; t < t1; ++t) {
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
  });
}

}  // namespace zaya
