#include "model/rope.h"

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

void Rope::apply(float* v, int64_t pos) const {
  const float p = static_cast<float>(pos);
  for (int64_t i = 0; i < half_; ++i) {
    const float angle = p * inv_freq_[i];
    const float c = std::cos(angle), s = std::sin(angle);
    const float a = v[i], b = v[i + half_];
    v[i] = a * c - b * s;
    v[i + half_] = b * c + a * s;
  }
}

}  // namespace zaya
