// The ZAYA1-VL vision tower at the real geometry (vision_config of shared/golden/zaya1-vl/real-config/config.json)
// with random BF16 weights made in memory, on one square image. Reports patches/s and achieved GFLOP/s
// (encode_flops: ≈ 1.3 GFLOP per patch, so a 448×448 image is ≈ 1.3 TFLOP — seconds per iteration).
//
// Args: image side in pixels, threads (0: all hardware threads). Smoke run: zaya_bench --benchmark_filter='VisionTower/112/1'
// The 32 blocks share one block's weights (40 MB in BF16, far beyond the caches either way): the products do the
// same work as with distinct weights while the benchmark stays at ~110 MB instead of 1.3 GB.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <vector>

#include "io/dtype.h"
#include "models/qwen_vit/vision_tower.h"
#include "util/thread_pool.h"

namespace {

using namespace zaya::vit;

const char* kRealVisionConfig = R"({"depth": 32, "fullatt_block_indexes": [7, 15, 23, 31], "hidden_act": "silu",
  "hidden_size": 1280, "in_channels": 3, "in_chans": 3, "intermediate_size": 3420, "num_heads": 16,
  "out_hidden_size": 2048, "patch_size": 14, "spatial_merge_size": 2, "spatial_patch_size": 14,
  "temporal_patch_size": 1, "window_size": 112})";

float next_value(uint32_t& s) {
  s = s * 1664525u + 1013904223u;
  return static_cast<float>(s >> 8) / static_cast<float>(1u << 23) - 1.0f;
}

struct RandomTower {
  VisionConfig cfg = VisionConfig::parse(nlohmann::json::parse(kRealVisionConfig), "real-config");
  std::vector<std::vector<uint16_t>> storage;  // BF16 matrices
  VisionWeights w;
  uint32_t seed = 7;

  zaya::WeightMatrix matrix(int64_t rows, int64_t cols) {
    std::vector<uint16_t>& s = storage.emplace_back(static_cast<size_t>(rows * cols));
    const float scale = 1.0f / static_cast<float>(cols);  // keeps activations O(1) through 32 blocks
    for (uint16_t& v : s) v = zaya::f32_to_bf16(scale * next_value(seed));
    zaya::WeightMatrix m;
    m.format = zaya::WeightFormat::BF16;
    m.rows = rows;
    m.cols = cols;
    m.row_bytes = static_cast<size_t>(cols) * 2;
    m.data = s.data();
    return m;
  }
  std::vector<float> vec(int64_t n, float base, float spread) {
    std::vector<float> v(static_cast<size_t>(n));
    for (float& x : v) x = base + spread * next_value(seed);
    return v;
  }

  RandomTower() {
    const int64_t hv = cfg.hidden, I = cfg.intermediate, M = cfg.merged_dim();
    storage.reserve(8);  // pointers into it must stay valid
    w.patch_embed = matrix(hv, cfg.patch_dim());
    VisionBlockWeights b;
    b.norm1 = vec(hv, 1.0f, 0.1f);
    b.norm2 = vec(hv, 1.0f, 0.1f);
    b.qkv = matrix(3 * hv, hv);
    b.qkv_bias = vec(3 * hv, 0.0f, 0.02f);
    b.proj = matrix(hv, hv);
    b.proj_bias = vec(hv, 0.0f, 0.02f);
    b.gate = matrix(I, hv);
    b.gate_bias = vec(I, 0.0f, 0.02f);
    b.up = matrix(I, hv);
    b.up_bias = vec(I, 0.0f, 0.02f);
    b.down = matrix(hv, I);
    b.down_bias = vec(hv, 0.0f, 0.02f);
    w.blocks.assign(static_cast<size_t>(cfg.depth), b);
    w.merger_norm = vec(hv, 1.0f, 0.1f);
    w.merger_fc1 = matrix(M, M);
    w.merger_fc1_bias = vec(M, 0.0f, 0.02f);
    w.merger_fc2 = matrix(cfg.out_hidden, M);
    w.merger_fc2_bias = vec(cfg.out_hidden, 0.0f, 0.02f);
  }
};

void BM_VisionTower(benchmark::State& state) {
  static RandomTower tower;
  static std::map<int64_t, std::unique_ptr<zaya::ThreadPool>> pools;
  auto& pool = pools[state.range(1)];
  if (!pool) pool = std::make_unique<zaya::ThreadPool>(static_cast<size_t>(state.range(1)));
  const int64_t side = state.range(0) / tower.cfg.patch;  // patches per side (the image is a multiple of 28 px)

  ImagePatches in;
  in.grids = {{1, side, side}};
  in.rows = side * side;
  in.cols = tower.cfg.patch_dim();
  in.pixel_values.resize(static_cast<size_t>(in.rows * in.cols));
  uint32_t seed = 3;
  for (float& v : in.pixel_values) v = next_value(seed);

  VisionActivations act;
  std::vector<float> features;
  const zaya::Compute compute(pool.get(), zaya::Precision::Exact);
  for (auto _ : state) {
    encode(tower.cfg, tower.w, in, act, features, compute);
    benchmark::DoNotOptimize(features.data());
  }
  const double flops = encode_flops(tower.cfg, VisionLayout::plan(tower.cfg, in.grids));
  const double iters = static_cast<double>(state.iterations());
  state.counters["patches/s"] = benchmark::Counter(static_cast<double>(in.rows) * iters, benchmark::Counter::kIsRate);
  state.counters["GFLOP/s"] = benchmark::Counter(flops * iters / 1e9, benchmark::Counter::kIsRate);
  state.counters["GFLOP/patch"] = flops / 1e9 / static_cast<double>(in.rows);
}

// 112 px (64 patches, ≈ 85 GFLOP) for smoke runs; 448 px (1024 patches) is the issue's reference shape.
BENCHMARK(BM_VisionTower)->Name("VisionTower")->Args({112, 1})->Args({448, 0})
    ->Unit(benchmark::kMillisecond)->Iterations(1)->UseRealTime();

}  // namespace
