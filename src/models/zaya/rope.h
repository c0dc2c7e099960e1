#pragma once
#include <cstdint>
#include <vector>

#include "zaya/config.h"

namespace zaya {

// Partial rotate-half RoPE (spec §3.3 step 6): only the first rd dims of each head rotate, pairs (i, i + rd/2).
// inv_freq and the angle are fp32, as in the reference, so long-context outputs match its rounding.
class Rope {
 public:
  explicit Rope(const ModelConfig& cfg);
  // Rotates one head vector of head_dim values in place for absolute position pos.
  void apply(float* v, int64_t pos) const;
  // Rotates n_heads head vectors (stride floats apart) at the same position: cos/sin are computed once, and each
  // head gets the same bits as from apply().
  void apply_heads(float* v, int64_t n_heads, int64_t stride, int64_t pos) const;

 private:
  int64_t half_ = 0;
  std::vector<float> inv_freq_;
};

}  // namespace zaya
