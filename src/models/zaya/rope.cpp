#include "models/zaya/rope.h"

#include <algorithm>
#include <cmath>

namespace zaya {

Rope::Rope(const ModelConfig& cfg) {
  const int64_t rd = cfg.rotary_dims();
  half_ = rd / 2;
  inv_freq_.resize(static_cast<size_t>(half_));
  const float base = static_cast<float>(cfg.rope_theta);
  for (int64_t i = 0; i < half_; ++i) {
    const float expo = static_cast<float>(2 * i) / static_cast<float>(rd);
    inv_freq_[i] = 1.0f / std::pow(base, expo);
  }
}

void Rope::apply(float* v, int64_t pos) const { apply_heads(v, 1, 0, pos); }

void Rope::apply_heads(float* v, int64_t n_heads, int64_t stride, int64_t pos) const {
  constexpr int64_t kBlock = 64;  // angles per stack buffer
  float cs[kBlock], sn[kBlock];
  const float p = static_cast<float>(pos);
  for (int64_t i0 = 0; i0 < half_; i0 += kBlock) {
    const int64_t i1 = std::min(half_, i0 + kBlock);
    for (int64_t i = i0; i < i1; ++i) {
      const float angle = p * inv_freq_[i];
      cs[i - i0] = std::cos(angle), sn[i - i0] = std::sin(angle);
    }
    for (int64_t h = 0; h < n_heads; ++h) {
      float* vh = v + h * stride;
      for (int64_t i = i0; i < i1; ++i) {
        const float c = cs[i - i0], s = sn[i - i0];
        const float a = vh[i], b = vh[i + half_];
        vh[i] = a * c - b * s;
        vh[i + half_] = b * c + a * s;
      }
    }
  }
}

}  // namespace zaya
