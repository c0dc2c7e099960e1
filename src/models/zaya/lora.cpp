#include "models/zaya/lora.h"

#include <cstring>

namespace zaya {

void lora_add(const LoraWeights& l, const float* X, size_t n, const uint8_t* flags, float* Y, LoraScratch& s,
              const Compute& c) {
  if (!flags || !l.present()) return;
  const size_t in = static_cast<size_t>(l.a.cols),
               out = static_cast<size_t>(l.b.rows);
  size_t m = 0;
  for (size_t t = 0; t < n; ++t)
    if (flags[t]) {
      s.rows[m] = t;
      std::memcpy(&s.x[m * in], X + t * in, in * sizeof(float));
      ++m;
    }
  if (m == 0) return;
  matmul(l.a, s.x.data(), m, s.low.data(), c);
  matmul(l.b, s.low.data(), m, s.delta.data(), c);
  for (size_t i = 0; i < m; ++i) {
    float* y = Y + s.rows[i] * out;
    const float* d = &s.delta[i * out];
    for (size_t j = 0; j < out; ++j) y[j] += d[j];
  }
}

}  // namespace zaya
