// Quantized matmul kernels on ZAYA1-8B shapes: affine 4-bit g32 experts/attention, the 8-bit lm_head, MXTQ 4-bit.
// Bytes processed = packed weights + scales/biases (+ norms) read per call, so the reported rate is GB/s of weights.
#include <benchmark/benchmark.h>

#include <memory>
#include <random>
#include <vector>

#include "kernels/kernels.h"
#include "tensor/quant_formats.h"
#include "io/safetensors.h"
#include "util/thread_pool.h"

namespace {

using namespace zaya;

struct Affine {
  std::vector<uint32_t> packed;
  std::vector<uint16_t> scales, biases;
  WeightMatrix W;
  Affine(int64_t rows, int64_t cols, int bits, int group) {
    std::mt19937 rng(1);
    std::normal_distribution<float> d(0, 0.02f);
    const int64_t words = cols * bits / 32, groups = cols / group;
    packed.resize(rows * words);
    scales.resize(rows * groups);
    biases.resize(rows * groups);
    std::vector<float> w(cols), s(groups), b(groups);
    for (int64_t r = 0; r < rows; ++r) {
      for (auto& v : w) v = d(rng);
      quant::affine_quantize_row(w.data(), cols, bits, group, true, &packed[r * words], s.data(), b.data());
      for (int64_t g = 0; g < groups; ++g) scales[r * groups + g] = f32_to_f16(s[g]), biases[r * groups + g] = f32_to_f16(b[g]);
    }
    W.format = WeightFormat::Affine;
    W.rows = rows, W.cols = cols, W.bits = bits, W.group_size = group;
    W.data = packed.data(), W.row_bytes = words * 4;
    W.scales = scales.data(), W.biases = biases.data(), W.scale_dtype = DType::F16, W.scale_row_bytes = groups * 2;
  }
};

// An MXTQ 4-bit matrix (the JANGTQ4 experts' format) with random weights.
struct Mxtq {
  std::vector<uint32_t> packed;
  std::vector<uint16_t> norms;
  WeightMatrix W;
  Mxtq(int64_t rows, int64_t cols) {
    auto t = std::make_shared<MxtqTables>();
    t->in_features = cols;
    t->bits = 4;
    t->signs = quant::mxtq_signs(cols, 42);
    t->codebook = quant::mxtq_codebook(cols, 4);
    std::mt19937 rng(1);
    std::normal_distribution<float> d(0, 0.02f);
    const int64_t words = quant::mxtq_words(cols, 4);
    packed.resize(rows * words);
    norms.resize(rows);
    std::vector<float> w(cols);
    for (int64_t r = 0; r < rows; ++r) {
      for (auto& v : w) v = d(rng);
      float norm = 0;
      quant::mxtq_quantize_row(w.data(), cols, 4, t->signs.data(), t->codebook.data(), &packed[r * words], &norm);
      norms[r] = f32_to_f16(norm);
    }
    W.format = WeightFormat::Mxtq;
    W.rows = rows, W.cols = cols, W.bits = 4;
    W.data = packed.data(), W.row_bytes = words * 4;
    W.norms = norms.data();
    W.mxtq = std::move(t);
  }
};

// Benchmark argument → arithmetic: 0 = int16 activations (the default), 1 = fp32 (exact), 2 = int8 (--int8).
Precision precision_arg(int64_t a) { return a == 1 ? Precision::Exact : a == 2 ? Precision::Int8 : Precision::Fast; }

void run(benchmark::State& state, const WeightMatrix& W, size_t tokens, size_t threads, int64_t arith = 0) {
  const Precision precision = precision_arg(arith);
  ThreadPool pool(threads);
  std::vector<float> x(tokens * W.cols, 0.5f), y(tokens * W.rows);
  for (auto _ : state) {
    matmul(W, x.data(), tokens, y.data(), Compute(&pool, precision));
    benchmark::DoNotOptimize(y.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * W.bytes()));
  state.counters["tok/s"] = benchmark::Counter(static_cast<double>(state.iterations() * tokens), benchmark::Counter::kIsRate);
}

// Products against a cycle of matrices (so one-token runs stream from memory, not cache).
template <class M>
void run_cycled(benchmark::State& state, const std::vector<std::unique_ptr<M>>& m, size_t tokens, size_t threads,
                int64_t arith = 0) {
  ThreadPool pool(threads);
  std::vector<float> x(tokens * m[0]->W.cols, 0.5f), y(tokens * m[0]->W.rows);
  size_t i = 0, bytes = 0;
  for (auto _ : state) {
    auto& W = m[i++ % m.size()]->W;
    matmul(W, x.data(), tokens, y.data(), Compute(&pool, precision_arg(arith)));
    bytes += W.bytes();
  }
  state.SetBytesProcessed(static_cast<int64_t>(bytes));
  state.counters["tok/s"] = benchmark::Counter(static_cast<double>(state.iterations() * tokens), benchmark::Counter::kIsRate);
}

// 16 experts' worth of gate_proj weights, cycled. Args: tokens, threads, arithmetic (precision_arg).
void BM_Affine4_Expert(benchmark::State& state) {
  static std::vector<std::unique_ptr<Affine>> m;
  if (m.empty())
    for (int i = 0; i < 16; ++i) m.push_back(std::make_unique<Affine>(2048, 2048, 4, 32));
  run_cycled(state, m, state.range(0), state.range(1), state.range(2));
}
BENCHMARK(BM_Affine4_Expert)
    ->ArgsProduct({{1, 4}, {1, 2}, {0, 1, 2}})
    ->ArgsProduct({{64, 512}, {1, 2}, {0, 1, 2}})
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);

// One L2-resident matrix (512 × 2048), one thread: the kernel's compute rate without the memory system.
// Args: bits, arithmetic (precision_arg).
void BM_Affine_CacheResident(benchmark::State& state) {
  static Affine m4(512, 2048, 4, 32), m8(512, 2048, 8, 32);
  Affine& m = state.range(0) == 4 ? m4 : m8;
  run(state, m.W, 1, 1, state.range(1));
}
BENCHMARK(BM_Affine_CacheResident)->ArgsProduct({{4, 8}, {0, 1, 2}})->UseRealTime()->Unit(benchmark::kMicrosecond);

void BM_Affine8_LmHead(benchmark::State& state) {
  static Affine head(262272, 2048, 8, 32);
  run(state, head.W, state.range(0), state.range(1), state.range(2));
}
BENCHMARK(BM_Affine8_LmHead)->ArgsProduct({{1}, {1, 2}, {0, 1, 2}})->UseRealTime()->Unit(benchmark::kMillisecond);

// MXTQ 4-bit 2048 × 2048 (a JANGTQ4 expert's shape): 16 cycled matrices so one token streams from memory.
// Args: tokens, threads.
void BM_Mxtq4_Expert(benchmark::State& state) {
  static std::vector<std::unique_ptr<Mxtq>> m;
  if (m.empty())
    for (int i = 0; i < 16; ++i) m.push_back(std::make_unique<Mxtq>(2048, 2048));
  run_cycled(state, m, state.range(0), state.range(1));
}
BENCHMARK(BM_Mxtq4_Expert)->ArgsProduct({{1}, {1, 2}})->Args({512, 2})->UseRealTime()->Unit(benchmark::kMicrosecond);

// One L2-resident MXTQ matrix (512 × 2048), one thread, one token: the kernel's compute rate.
void BM_Mxtq4_CacheResident(benchmark::State& state) {
  static Mxtq m(512, 2048);
  run(state, m.W, 1, 1);
}
BENCHMARK(BM_Mxtq4_CacheResident)->UseRealTime()->Unit(benchmark::kMicrosecond);

}  // namespace
