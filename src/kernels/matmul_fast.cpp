// Portable fast path (to be replaced by Highway dynamic dispatch). Row-parallel over the thread pool; each output
// element is one dot product with a fixed 8-lane accumulation order, so results are thread- and batch-invariant.
#include <algorithm>
#include <cstring>
#include <vector>

#include "zaya/kernels.h"
#include "zaya/thread_pool.h"

namespace zaya {

namespace {
inline float dot8(const float* a, const float* b, size_t n) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  size_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int l = 0; l < 8; ++l) acc[l] += a[i + l] * b[i + l];
  for (int l = 0; i < n; ++i, ++l) acc[l] += a[i] * b[i];
  return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
}
}  // namespace

float dot(const float* a, const float* b, size_t n) { return dot8(a, b, n); }

const char* simd_target_name() { return "portable"; }

void matmul(const WeightMatrix& W, const float* X, size_t n_tokens, float* Y, ThreadPool* pool) {
  if (!pool) pool = &default_pool();
  const int64_t rows = W.rows, cols = W.cols;
  const size_t work_per_row = static_cast<size_t>(cols) * std::max<size_t>(1, n_tokens);
  const size_t grain = std::max<size_t>(1, 16384 / std::max<size_t>(1, work_per_row));
  pool->parallel_for(static_cast<size_t>(rows), grain, [&](size_t r0, size_t r1) {
    std::vector<float> row(W.format == WeightFormat::F32 ? 0 : cols);
    for (size_t r = r0; r < r1; ++r) {
      const float* w;
      if (W.format == WeightFormat::F32) {
        w = static_cast<const float*>(W.data) + r * cols;
      } else {
        W.row_to_f32(static_cast<int64_t>(r), row.data());
        w = row.data();
      }
      for (size_t t = 0; t < n_tokens; ++t) Y[t * rows + r] = dot8(w, X + t * cols, cols);
    }
  });
}

}  // namespace zaya
