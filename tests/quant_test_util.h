#pragma once
// Random inputs and small affine matrices for the quantized-kernel tests (one definition for every test file).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "io/dtype.h"
#include "tensor/quant_formats.h"
#include "tensor/weight_matrix.h"

namespace zaya::test {

inline std::vector<float> random_floats(size_t n, std::mt19937& rng, float scale = 1.0f) {
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

// An MLX affine matrix (F16 scales and biases) of random N(0, 0.05²) weights; W points into the vectors, which keep
// their buffers when the struct is moved.
struct AffineMatrix {
  std::vector<uint32_t> packed;
  std::vector<uint16_t> scales, biases;
  WeightMatrix W;
};

inline AffineMatrix make_affine(int64_t rows, int64_t cols, int bits, int group, std::mt19937& rng) {
  AffineMatrix q;
  const int64_t words = cols * bits / 32, groups = cols / group;
  q.packed.resize(rows * words);
  q.scales.resize(rows * groups);
  q.biases.resize(rows * groups);
  auto w = random_floats(rows * cols, rng, 0.05f);
  std::vector<float> s(groups), b(groups);
  for (int64_t r = 0; r < rows; ++r) {
    quant::affine_quantize_row(&w[r * cols], cols, bits, group, true, &q.packed[r * words], s.data(), b.data());
    for (int64_t g = 0; g < groups; ++g) q.scales[r * groups + g] = f32_to_f16(s[g]), q.biases[r * groups + g] = f32_to_f16(b[g]);
  }
  WeightMatrix& W = q.W;
  W.format = WeightFormat::Affine;
  W.rows = rows;
  W.cols = cols;
  W.bits = bits;
  W.group_size = group;
  W.data = q.packed.data();
  W.row_bytes = words * 4;
  W.scales = q.scales.data();
  W.biases = q.biases.data();
  W.scale_dtype = DType::F16;
  W.scale_row_bytes = groups * 2;
  W.name = "affine";
  return q;
}

// The matrix-engine path (2) of a forced-path kernel `path(W, X, n, Y, p)` against its tiled path (1), bitwise, on
// shapes that cross the engine's 32-row blocks, 16-token groups and L2 token blocks. False (nothing checked) where
// the CPU has no engine.
template <class PathFn>
bool engine_matches_tiles(const PathFn& path, std::mt19937& rng) {
  struct Shape { int bits, group; int64_t rows, cols; size_t tokens; };
  const Shape shapes[] = {{4, 32, 70, 2048, 9},  {4, 64, 33, 2560, 120}, {8, 32, 70, 384, 17}, {8, 128, 5, 2048, 40},
                          {4, 128, 1, 512, 16},  {8, 64, 64, 2048 + 512, 33}, {4, 32, 31, 128, 200},
                          {4, 64, 20, 2560, 300}};  // 300 tokens of 2560 columns: two of the engine's 1 MiB token blocks
  // Extremes of the integer block sums: rows of all-lowest and all-highest codes against activations at the int16
  // (or int8) limits of both signs, so every engine product, split and partial sum is at its largest.
  for (int bits : {4, 8}) {
    const int64_t rows = 34, cols = 512;
    const size_t tokens = 19;
    auto q = make_affine(rows, cols, bits, 32, rng);
    const int64_t words = cols * bits / 32;
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t w = 0; w < words; ++w) q.packed[r * words + w] = r % 2 ? 0xFFFFFFFFu : 0u;
    std::vector<float> X(tokens * cols), tiles(tokens * rows), engine(tokens * rows, -7.0f);
    for (size_t t = 0; t < tokens; ++t)
      for (int64_t c = 0; c < cols; ++c) X[t * cols + c] = t % 3 == 0 ? 1.0f : t % 3 == 1 ? -1.0f : (c % 2 ? 2.0f : -2.0f);
    if (!path(q.W, X.data(), tokens, engine.data(), 2)) return false;
    EXPECT_TRUE(path(q.W, X.data(), tokens, tiles.data(), 1));
    for (size_t i = 0; i < tiles.size(); ++i)
      EXPECT_EQ(engine[i], tiles[i]) << "extreme codes, bits " << bits << ": token " << i / rows << " row " << i % rows;
  }
  for (const Shape& s : shapes) {
    auto q = make_affine(s.rows, s.cols, s.bits, s.group, rng);
    auto X = random_floats(s.tokens * s.cols, rng);
    X[3 * s.cols + 40] = 0.0f;
    X[5 * s.cols + 7] = std::numeric_limits<float>::infinity();  // token 5: every output NaN on both paths
    std::vector<float> tiles(s.tokens * s.rows), engine(s.tokens * s.rows, -7.0f);
    if (!path(q.W, X.data(), s.tokens, engine.data(), 2)) return false;
    EXPECT_TRUE(path(q.W, X.data(), s.tokens, tiles.data(), 1));
    for (size_t i = 0; i < tiles.size(); ++i)
      if (i / s.rows == 5) EXPECT_TRUE(std::isnan(engine[i]) && std::isnan(tiles[i])) << "token 5 row " << i % s.rows;
      else EXPECT_EQ(engine[i], tiles[i]) << "bits " << s.bits << " group " << s.group << " " << s.rows << "x" << s.cols
                                     << ", " << s.tokens << " tokens: token " << i / s.rows << " row " << i % s.rows;
  }
  return true;
}

}  // namespace zaya::test
