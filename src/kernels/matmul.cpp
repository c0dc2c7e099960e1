#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/kernels.h"
#include "util/thread_pool.h"

namespace zaya {

float dot_ref(const float* a, const float* b, size_t n) {
  double acc = 0;
  for (size_t i = 0; i < n; ++i) acc += static_cast<double>(a[i]) * b[i];
  return static_cast<float>(acc);
}

void rmsnorm_ref(const float* x, const float* w, size_t n, float eps, float* out) {
  double ss = 0;
  for (size_t i = 0; i < n; ++i) ss += static_cast<double>(x[i]) * x[i];
  const float inv = static_cast<float>(1.0 / std::sqrt(ss / static_cast<double>(n) + eps));
  for (size_t i = 0; i < n; ++i) out[i] = w[i] * (x[i] * inv);
}

void rmsnorm(const float* x, const float* w, size_t n, float eps, float* out) {
  const float ss = dot(x, x, n);
  const float inv = 1.0f / std::sqrt(ss / static_cast<float>(n) + eps);
  for (size_t i = 0; i < n; ++i) out[i] = w[i] * (x[i] * inv);
}

void softmax(float* x, size_t n) {
  if (n == 0) return;
  float mx = *std::max_element(x, x + n);
  double sum = 0;
  for (size_t i = 0; i < n; ++i) {
    x[i] = std::exp(x[i] - mx);
    sum += x[i];
  }
  const float inv = static_cast<float>(1.0 / sum);
  for (size_t i = 0; i < n; ++i) x[i] *= inv;
}

}  // namespace zaya
