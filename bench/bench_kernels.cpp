// matmul micro-benchmarks on ZAYA1-8B-like shapes. bytes_per_second counts weights + activations in + out, so
// for decode (1 token) it is the weight-streaming bandwidth. "hot" reuses one matrix (cache-resident when it
// fits in L3); "stream" cycles through copies totalling >= 256 MiB, as decoding a real model does from DRAM.
//
// Args: rows, cols, tokens, threads, stream(0/1). Example: zaya_bench --benchmark_filter='BF16/2048/2048/1/'
// Matmul/BF16 runs Precision::Fast (bf16 arithmetic where the CPU has AVX512_BF16), Matmul/BF16-exact the fp32
// tiles; the label names the kernel that ran.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "kernels/format_table.h"
#include "kernels/kernels.h"
#include "io/safetensors.h"
#include "util/thread_pool.h"
#include "tensor/weight_matrix.h"

namespace {

using zaya::WeightFormat;

zaya::ThreadPool& pool_with(size_t threads) {
  static std::map<size_t, std::unique_ptr<zaya::ThreadPool>> pools;
  auto& p = pools[threads];
  if (!p) p = std::make_unique<zaya::ThreadPool>(threads);
  return *p;
}

// Deterministic pseudo-random values in [-1, 1).
float next_value(uint32_t& s) {
  s = s * 1664525u + 1013904223u;
  return static_cast<float>(s >> 8) / static_cast<float>(1u << 23) - 1.0f;
}

template <WeightFormat F, zaya::Precision P = zaya::Precision::Fast>
void BM_Matmul(benchmark::State& state) {
  const int64_t rows = state.range(0), cols = state.range(1);
  const size_t tokens = static_cast<size_t>(state.range(2));
  zaya::ThreadPool& pool = pool_with(static_cast<size_t>(state.range(3)));
  const bool stream = state.range(4) != 0;

  const size_t n = static_cast<size_t>(rows * cols);
  const size_t esize = F == WeightFormat::F32 ? 4 : 2;
  const size_t copies = stream ? std::max<size_t>(2, (size_t{256} << 20) / (n * esize)) : 1;
  std::vector<std::vector<uint8_t>> storage(copies, std::vector<uint8_t>(n * esize));
  uint32_t seed = 42;
  for (size_t i = 0; i < n; ++i) {
    const float v = 0.05f * next_value(seed);
    if (F == WeightFormat::F32) {
      std::memcpy(storage[0].data() + 4 * i, &v, 4);
    } else {
      const uint16_t h = F == WeightFormat::BF16 ? zaya::f32_to_bf16(v) : zaya::f32_to_f16(v);
      std::memcpy(storage[0].data() + 2 * i, &h, 2);
    }
  }
  // Same values, distinct addresses: what matters for the caches.
  for (size_t k = 1; k < copies; ++k) storage[k] = storage[0];
  std::vector<zaya::WeightMatrix> Ws(copies);
  for (size_t k = 0; k < copies; ++k) {
    Ws[k].format = F;
    Ws[k].rows = rows;
    Ws[k].cols = cols;
    Ws[k].row_bytes = cols * (F == zaya::WeightFormat::F32 ? 4 : 2);
    Ws[k].data = storage[k].data();
  }
  std::vector<float> X(tokens * cols), Y(tokens * rows);
  for (auto& x : X) x = next_value(seed);

  size_t k = 0;
  for (auto _ : state) {
    zaya::matmul(Ws[k], X.data(), tokens, Y.data(), zaya::Compute(&pool, P));
    benchmark::DoNotOptimize(Y.data());
    benchmark::ClobberMemory();
    k = (k + 1) % copies;
  }
  const double bytes = static_cast<double>(n * esize + (X.size() + Y.size()) * sizeof(float));
  state.SetBytesProcessed(static_cast<int64_t>(bytes * static_cast<double>(state.iterations())));
  state.counters["GFLOPS"] = benchmark::Counter(2.0 * static_cast<double>(n) * static_cast<double>(tokens),
                                                benchmark::Counter::kIsIterationInvariantRate,
                                                benchmark::Counter::kIs1000);
  state.SetLabel(std::string(zaya::simd_target_name()) + " " + zaya::pick_kernel(Ws[0], P).name);
}

void Shapes(benchmark::internal::Benchmark* b) {
  for (int64_t rows : {2048, 4096})
    for (int64_t tokens : {1, 64})
      for (int64_t threads : {1, 2})
        for (int64_t stream : {0, 1}) {
          if (tokens > 1 && stream) continue;  // prefill is compute-bound; the streaming case is decode's
          b->Args({rows, 2048, tokens, threads, stream});
        }
  b->ArgNames({"rows", "cols", "tokens", "threads", "stream"});
  b->Unit(benchmark::kMicrosecond);
  b->MinTime(0.2);
  b->UseRealTime();
}

// The small F16 products of a 512-token prefill of the 8B bundles: router down-projection (256 × 2048), router MLP
// (256 × 256) and one group of the CCA conv (128 × 256).
void PrefillF16Shapes(benchmark::internal::Benchmark* b) {
  for (auto [rows, cols] : {std::pair<int64_t, int64_t>{256, 2048}, {256, 256}, {128, 256}})
    for (int64_t threads : {1, 2}) b->Args({rows, cols, 512, threads, 0});
  b->ArgNames({"rows", "cols", "tokens", "threads", "stream"});
  b->Unit(benchmark::kMicrosecond);
  b->MinTime(0.2);
  b->UseRealTime();
}

BENCHMARK_TEMPLATE(BM_Matmul, WeightFormat::BF16)->Name("Matmul/BF16")->Apply(Shapes);
BENCHMARK_TEMPLATE(BM_Matmul, WeightFormat::BF16, zaya::Precision::Exact)->Name("Matmul/BF16-exact")->Apply(Shapes);
BENCHMARK_TEMPLATE(BM_Matmul, WeightFormat::F32)->Name("Matmul/F32")->Apply(Shapes);
BENCHMARK_TEMPLATE(BM_Matmul, WeightFormat::F16)->Name("Matmul/F16")->Apply(Shapes);
BENCHMARK_TEMPLATE(BM_Matmul, WeightFormat::F16)->Name("Matmul/F16-prefill")->Apply(PrefillF16Shapes);

}  // namespace

BENCHMARK_MAIN();
