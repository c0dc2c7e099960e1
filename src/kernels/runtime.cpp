// The public runtime facts (include/zaya/runtime.h) over the thread pool and the kernels' dispatch.
#include "zaya/runtime.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>

#include "kernels/quant_matmul.h"
#include "util/thread_pool.h"

namespace zaya {

size_t num_threads() { return default_pool().size(); }

const char* quant_simd_target_name() { return affine_simd_target_name(); }

ReadBandwidth::ReadBandwidth(size_t bytes) : buf_(bytes / sizeof(uint64_t)) {
  default_pool().parallel_for(buf_.size(), 1 << 16, [&](size_t b, size_t e) {
    for (size_t i = b; i < e; ++i) buf_[i] = i * 0x9E3779B97F4A7C15ull;
  });
}

double ReadBandwidth::measure_gbs() {
  ThreadPool& pool = default_pool();
  const size_t n = buf_.size();
  double best = 0;
  for (int rep = 0; rep < 3; ++rep) {
    std::atomic<uint64_t> sink{0};
    const auto t0 = std::chrono::steady_clock::now();
    pool.parallel_for(n, n / (pool.size() * 4) + 1, [&](size_t b, size_t e) {
      uint64_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
      size_t i = b;
      for (; i + 4 <= e; i += 4) a0 += buf_[i], a1 += buf_[i + 1], a2 += buf_[i + 2], a3 += buf_[i + 3];
      for (; i < e; ++i) a0 += buf_[i];
      sink += a0 + a1 + a2 + a3;
    });
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    best = std::max(best, static_cast<double>(n * sizeof(uint64_t)) / s / 1e9);
    if (sink.load() == 42) std::puts("");  // keeps the loop
  }
  return best;
}

}  // namespace zaya
