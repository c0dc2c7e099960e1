// The public runtime facts (include/zaya/runtime.h) over the thread pool and the kernels' dispatch, and the two
// machine probes: streaming read bandwidth and fp32 FMA throughput.
#include "zaya/runtime.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/runtime.cpp"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>

#include "kernels/quant_matmul.h"
#include "util/thread_pool.h"

HWY_BEFORE_NAMESPACE();
namespace zaya {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// `iters` rounds of 12 independent fp32 FMA chains (enough to cover the FMA latency on two ports) of full vectors,
// all in registers. Returns the lanes per vector; `sink` keeps the result alive.
size_t FmaChainsT(size_t iters, float* sink) {
  const hn::ScalableTag<float> df;
  using V = hn::Vec<decltype(df)>;
  const V m = hn::Set(df, 0.9999999f), c = hn::Set(df, 1e-7f);
  V a0 = hn::Set(df, 1.0f), a1 = hn::Set(df, 1.1f), a2 = hn::Set(df, 1.2f), a3 = hn::Set(df, 1.3f);
  V a4 = hn::Set(df, 1.4f), a5 = hn::Set(df, 1.5f), a6 = hn::Set(df, 1.6f), a7 = hn::Set(df, 1.7f);
  V a8 = hn::Set(df, 1.8f), a9 = hn::Set(df, 1.9f), a10 = hn::Set(df, 2.0f), a11 = hn::Set(df, 2.1f);
  for (size_t i = 0; i < iters; ++i) {
    a0 = hn::MulAdd(a0, m, c), a1 = hn::MulAdd(a1, m, c), a2 = hn::MulAdd(a2, m, c), a3 = hn::MulAdd(a3, m, c);
    a4 = hn::MulAdd(a4, m, c), a5 = hn::MulAdd(a5, m, c), a6 = hn::MulAdd(a6, m, c), a7 = hn::MulAdd(a7, m, c);
    a8 = hn::MulAdd(a8, m, c), a9 = hn::MulAdd(a9, m, c), a10 = hn::MulAdd(a10, m, c), a11 = hn::MulAdd(a11, m, c);
  }
  const V s = hn::Add(hn::Add(hn::Add(hn::Add(a0, a1), hn::Add(a2, a3)), hn::Add(hn::Add(a4, a5), hn::Add(a6, a7))),
                      hn::Add(hn::Add(a8, a9), hn::Add(a10, a11)));
  *sink = hn::GetLane(hn::SumOfLanes(df, s));
  return hn::Lanes(df);
}

}  // namespace HWY_NAMESPACE
}  // namespace zaya
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace zaya {

HWY_EXPORT(FmaChainsT);

double measure_fma_gflops() {
  ThreadPool& pool = default_pool();
  const size_t threads = pool.size();
  constexpr size_t kIters = size_t{1} << 21;  // ~1.5 GFLOP per thread with AVX-512: tens of ms per pass
  std::vector<float> sinks(threads * 16);
  double best = 0;
  for (int rep = 0; rep < 5; ++rep) {
    std::atomic<size_t> lanes{0};
    const auto t0 = std::chrono::steady_clock::now();
    pool.parallel_for(threads, 1, [&](size_t b, size_t e) {
      for (size_t t = b; t < e; ++t) lanes = HWY_DYNAMIC_DISPATCH(FmaChainsT)(kIters, &sinks[t * 16]);
    });
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const double flops = 2.0 * 12.0 * static_cast<double>(kIters) * static_cast<double>(lanes.load()) * threads;
    best = std::max(best, flops / s / 1e9);
  }
  float sum = 0;
  for (float v : sinks) sum += v;
  if (sum == 42.0f) std::puts("");  // keeps the chains
  return best;
}

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
#endif  // HWY_ONCE
