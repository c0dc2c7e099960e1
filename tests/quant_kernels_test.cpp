// Quantized matmul kernels (working on packed data) against the scalar reference (dequantize the row, dot in double),
// on random shapes with ragged edges, plus thread and batch invariance.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>

#include "kernels/format_table.h"
#include "kernels/affine_q16.h"
#include "kernels/kernels_testing.h"
#include "kernels/quant_matmul.h"
#include "kernels/kernels.h"
#include "tensor/quant_formats.h"
#include "io/safetensors.h"
#include "quant_test_util.h"
#include "util/thread_pool.h"

using namespace zaya;

namespace {

struct QuantMatrix {
  std::vector<uint32_t> packed;
  std::vector<uint16_t> scales, biases, norms;
  std::vector<uint8_t> fp_scales;
  std::shared_ptr<MxtqTables> tables;
  WeightMatrix W;
};

using test::random_floats;

QuantMatrix make_affine(int64_t rows, int64_t cols, int bits, int group, std::mt19937& rng) {
  test::AffineMatrix a = test::make_affine(rows, cols, bits, group, rng);
  QuantMatrix q;
  q.packed = std::move(a.packed);  // moved buffers stay where W points
  q.scales = std::move(a.scales);
  q.biases = std::move(a.biases);
  q.W = a.W;
  return q;
}

QuantMatrix make_fp(int64_t rows, int64_t cols, WeightFormat f, std::mt19937& rng) {
  const WeightFormat mode = f;
  QuantMatrix q;
  const int bits = quant::fp_bits(mode), g = quant::fp_group_size(mode);
  const int64_t words = cols * bits / 32;
  q.packed.resize(rows * words);
  q.fp_scales.resize(rows * cols / g);
  auto w = random_floats(rows * cols, rng, 0.05f);
  for (int64_t r = 0; r < rows; ++r) quant::fp_quantize_row(mode, &w[r * cols], cols, &q.packed[r * words], &q.fp_scales[r * cols / g]);
  q.W.format = f;
  q.W.rows = rows;
  q.W.cols = cols;
  q.W.bits = bits;
  q.W.group_size = g;
  q.W.data = q.packed.data();
  q.W.row_bytes = words * 4;
  q.W.scales = q.fp_scales.data();
  q.W.scale_dtype = DType::U8;
  q.W.scale_row_bytes = cols / g;
  q.W.name = "fp";
  return q;
}

QuantMatrix make_mxtq(int64_t rows, int64_t cols, int bits, std::mt19937& rng) {
  QuantMatrix q;
  q.tables = std::make_shared<MxtqTables>();
  q.tables->in_features = cols;
  q.tables->bits = bits;
  q.tables->signs = quant::mxtq_signs(cols, 42);
  q.tables->codebook = quant::mxtq_codebook(cols, bits);
  const int64_t words = quant::mxtq_words(cols, bits);
  q.packed.resize(rows * words);
  q.norms.resize(rows);
  auto w = random_floats(rows * cols, rng, 0.05f);
  for (int64_t r = 0; r < rows; ++r) {
    float norm;
    quant::mxtq_quantize_row(&w[r * cols], cols, bits, q.tables->signs.data(), q.tables->codebook.data(), &q.packed[r * words], &norm);
    q.norms[r] = f32_to_f16(norm);
  }
  q.W.format = WeightFormat::Mxtq;
  q.W.rows = rows;
  q.W.cols = cols;
  q.W.bits = bits;
  q.W.data = q.packed.data();
  q.W.row_bytes = words * 4;
  q.W.norms = q.norms.data();
  q.W.mxtq = q.tables;
  q.W.name = "mxtq";
  return q;
}

// |fast - ref| <= tol · Σ|w·x| + tiny, row by row.
void expect_matches_reference(const WeightMatrix& W, size_t n_tokens, std::mt19937& rng, const std::string& what) {
  auto X = random_floats(n_tokens * W.cols, rng);
  std::vector<float> Y(n_tokens * W.rows), R(n_tokens * W.rows), row(W.cols);
  matmul(W, X.data(), n_tokens, Y.data());
  matmul_ref(W, X.data(), n_tokens, R.data());
  for (int64_t r = 0; r < W.rows; ++r) {
    decode_row(W, r, row.data());
    for (size_t t = 0; t < n_tokens; ++t) {
      double mag = 0;
      for (int64_t c = 0; c < W.cols; ++c) mag += std::fabs(double(row[c]) * X[t * W.cols + c]);
      ASSERT_NEAR(Y[t * W.rows + r], R[t * W.rows + r], 2e-5 * mag + 1e-6) << what << " r=" << r << " t=" << t;
    }
  }
}

}  // namespace

TEST(KernelQuant, AffineMatchesReferenceOnRaggedShapes) {
  std::mt19937 rng(7);
  for (int bits : {2, 3, 4, 5, 6, 8})
    for (int group : {32, 64, 128})
      for (int64_t cols : {128, 384, 2048 + 128})
        for (int64_t rows : {1, 7, 33})
          for (size_t tokens : {1, 3, 4, 5, 9}) {
            if (cols % group) continue;
            auto q = make_affine(rows, cols, bits, group, rng);
            expect_matches_reference(q.W, tokens, rng,
                                     "affine b" + std::to_string(bits) + " g" + std::to_string(group) + " cols " + std::to_string(cols));
          }
}

TEST(KernelQuant, FpModesAndMxtqMatchReference) {
  std::mt19937 rng(8);
  for (int64_t cols : {64, 256}) {
    auto a = make_fp(9, cols, WeightFormat::MxFp4, rng);
    expect_matches_reference(a.W, 3, rng, "mxfp4");
    auto b = make_fp(9, cols, WeightFormat::NvFp4, rng);
    expect_matches_reference(b.W, 3, rng, "nvfp4");
    auto c = make_fp(9, cols, WeightFormat::MxFp8, rng);
    expect_matches_reference(c.W, 3, rng, "mxfp8");
  }
  for (int bits : {2, 3, 4})
    for (int64_t cols : {40, 48, 64, 192, 200}) {  // 40, 200: a SIMD-decoded part plus a scalar tail
      auto m = make_mxtq(11, cols, bits, rng);
      expect_matches_reference(m.W, 2, rng, "mxtq b" + std::to_string(bits) + " cols " + std::to_string(cols));
    }
}

// The int16-activation SIMD kernel, both paths (one token at a time and multi-token tiles), is the canonical
// arithmetic of affine_q16.h: compared with its scalar reference on ragged shapes (partial 16-block segments, row
// and token tails). Bitwise where the target has FMA, which every SIMD target we dispatch to on x86-64 ≥ AVX2 has.
TEST(KernelQuant, AffineQ16PathsMatchScalarReference) {
  // Every compiled target this CPU runs, not only the best one (0 = the normal choice, e.g. AVX3_DL with VNNI, which
  // the float kernels' target list does not name).
  std::vector<int64_t> targets = kernels_testing::available_targets();
  targets.insert(targets.begin(), 0);
  for (int64_t forced : targets) {
    kernels_testing::force_target(forced);
    const std::string target = affine_simd_target_name();
    SCOPED_TRACE("target " + target);
    const bool fma_target = target != "SSE4" && target != "EMU128";
    std::mt19937 rng(21);
    for (int bits : {4, 8})
      for (int group : {32, 64, 128})
        for (int64_t cols : {128, 384, 512, 2048 + 128, 2048 + 512})
          for (int64_t rows : {1, 5, 34})
            for (size_t tokens : {1, 2, 5, 9}) {
              if (cols % group) continue;
              auto q = make_affine(rows, cols, bits, group, rng);
              auto X = random_floats(tokens * cols, rng);
              std::vector<float> ref(tokens * rows), y0(tokens * rows), y1(tokens * rows), y(tokens * rows);
              q16::matmul_ref(q.W, X.data(), tokens, ref.data());
              matmul(q.W, X.data(), tokens, y.data());  // the dispatching entry point (any target, incl. scalar)
              if (affine_matmul_path(q.W, X.data(), tokens, y0.data(), 0)) {
                ASSERT_TRUE(affine_matmul_path(q.W, X.data(), tokens, y1.data(), 1));
              } else {
                y0 = y1 = y;  // a target without the SIMD path: the scalar reference is the kernel
              }
              for (size_t i = 0; i < ref.size(); ++i) {
                const std::string what = "b" + std::to_string(bits) + " g" + std::to_string(group) + " cols " +
                                         std::to_string(cols) + " rows " + std::to_string(rows) + " i " + std::to_string(i);
                ASSERT_EQ(y0[i], y1[i]) << what << " (one-token vs tiled path)";
                ASSERT_EQ(y[i], tokens == 1 ? y0[i] : y1[i]) << what << " (matmul vs forced path)";
                if (fma_target) ASSERT_EQ(y0[i], ref[i]) << what;
                else ASSERT_NEAR(y0[i], ref[i], 1e-6f * (1 + std::fabs(ref[i]))) << what;
              }
            }
  }
  kernels_testing::force_target(0);
}

// More tokens than one L2 block of the tiled path (kTokenBlockBytes: 51 tokens of 2560 columns): bitwise the
// one-token path for every token, both widths.
TEST(KernelQuant, AffineQ16TiledPathAcrossTokenBlocks) {
  std::mt19937 rng(22);
  const int64_t rows = 7, cols = 2560;
  const size_t n = 120;
  for (int bits : {4, 8}) {
    auto q = make_affine(rows, cols, bits, 64, rng);
    auto X = random_floats(n * cols, rng);
    std::vector<float> y0(n * rows), y1(n * rows), ref(n * rows);
    q16::matmul_ref(q.W, X.data(), n, ref.data());
    if (!affine_matmul_path(q.W, X.data(), n, y0.data(), 0)) GTEST_SKIP() << "no SIMD path on this CPU";
    ASSERT_TRUE(affine_matmul_path(q.W, X.data(), n, y1.data(), 1));
    for (size_t i = 0; i < y0.size(); ++i) {
      ASSERT_EQ(y0[i], y1[i]) << "bits " << bits << " token " << i / rows << " row " << i % rows;
      ASSERT_NEAR(y1[i], ref[i], 1e-6f * (1 + std::fabs(ref[i]))) << "bits " << bits << " token " << i / rows;
    }
  }
}

// The AMX engine path (prefill on CPUs with AMX-INT8) is the tiled path bit for bit: same integer block sums, same
// fp32 sequence.
TEST(KernelQuant, AffineQ16EnginePathIsTheTiledPath) {
  std::mt19937 rng(24);
  auto path = [](const WeightMatrix& W, const float* X, size_t n, float* Y, int p) {
    return affine_matmul_path(W, X, n, Y, p);
  };
  if (!test::engine_matches_tiles(path, rng)) GTEST_SKIP() << "no AMX on this CPU or OS";
}

// Activation quantization: |xq·d − x| ≤ d/2, the block maximum maps to ±32767, Σxq and the group sums are kept, and
// a non-finite activation turns its outputs into NaN instead of a finite wrong number.
TEST(KernelQuant, AffineQ16ActivationQuantization) {
  std::mt19937 rng(22);
  auto X = random_floats(3 * 160, rng, 3.0f);
  for (int i = 0; i < 32; ++i) X[160 + 32 + i] = 0.0f;  // an all-zero block
  q16::Activations a;
  q16::quantize_activations(X.data(), 3, 160, 32, a);
  ASSERT_EQ(a.blocks, 5u);
  ASSERT_EQ(a.blocks16, 16u);
  for (size_t t = 0; t < 3; ++t)
    for (size_t b = 0; b < 5; ++b) {
      const float d = a.d[t * 16 + b];
      int32_t sum = 0, amax = 0;
      for (size_t i = 0; i < 32; ++i) {
        const int16_t v = a.xq[t * 512 + b * 32 + i];
        EXPECT_LE(std::fabs(v * d - X[t * 160 + b * 32 + i]), 0.5f * d * 1.0001f + 1e-12f);
        sum += v;
        amax = std::max<int32_t>(amax, std::abs(v));
      }
      EXPECT_EQ(sum, a.xqsum[t * 16 + b]);
      if (t == 1 && b == 1) EXPECT_EQ(d, 0.0f); else EXPECT_EQ(amax, 32767);
    }
  auto q = make_affine(4, 160, 4, 32, rng);
  X[2 * 160 + 70] = std::numeric_limits<float>::infinity();
  std::vector<float> y(3 * 4);
  matmul(q.W, X.data(), 3, y.data());
  for (int r = 0; r < 4; ++r) {
    EXPECT_TRUE(std::isfinite(y[r])) << r;
    EXPECT_TRUE(std::isnan(y[2 * 4 + r])) << r;
  }
}

// fp32-activation path (Precision::Exact): the reference arithmetic up to summation order.
TEST(KernelQuant, AffineExactPathMatchesReference) {
  std::mt19937 rng(23);
  for (int bits : {4, 8})
    for (int64_t cols : {128, 2048 + 128})
      for (size_t tokens : {1, 5}) {
        auto q = make_affine(9, cols, bits, 32, rng);
        auto X = random_floats(tokens * cols, rng);
        std::vector<float> Y(tokens * 9), R(tokens * 9);
        matmul(q.W, X.data(), tokens, Y.data(), Compute(Precision::Exact));
        matmul_ref(q.W, X.data(), tokens, R.data());
        for (size_t i = 0; i < Y.size(); ++i) ASSERT_NEAR(Y[i], R[i], 2e-6 * (1 + std::fabs(R[i]))) << bits << " " << cols;
      }
}

TEST(KernelQuant, ThreadAndBatchInvariant) {
  std::mt19937 rng(9);
  std::vector<QuantMatrix> ms;
  ms.push_back(make_affine(37, 2048, 4, 32, rng));
  ms.push_back(make_affine(37, 2048 + 96, 8, 32, rng));
  ms.push_back(make_affine(37, 2048, 4, 32, rng));  // run with Precision::Exact below
  ms.push_back(make_mxtq(21, 192, 4, rng));
  ms.push_back(make_fp(21, 128, WeightFormat::MxFp4, rng));
  for (size_t mi = 0; mi < ms.size(); ++mi) {
    const QuantMatrix& q = ms[mi];
    const Precision prec = mi == 2 ? Precision::Exact : Precision::Fast;
    const size_t n = 11;
    auto X = random_floats(n * q.W.cols, rng);
    std::vector<float> ref(n * q.W.rows);
    ThreadPool one(1);
    matmul(q.W, X.data(), n, ref.data(), Compute(&one, prec));
    for (size_t threads : {2, 3}) {
      ThreadPool p(threads);
      std::vector<float> y(n * q.W.rows);
      matmul(q.W, X.data(), n, y.data(), Compute(&p, prec));
      EXPECT_EQ(y, ref) << weight_format_name(q.W.format) << " threads " << threads;
    }
    // Each token alone gives bitwise the same row as in the 11-token batch (decode vs prefill paths).
    for (size_t t = 0; t < n; ++t) {
      std::vector<float> y(q.W.rows);
      matmul(q.W, &X[t * q.W.cols], 1, y.data(), Compute(&one, prec));
      for (int64_t r = 0; r < q.W.rows; ++r) ASSERT_EQ(y[r], ref[t * q.W.rows + r]) << weight_format_name(q.W.format) << " t=" << t;
    }
  }
}

TEST(KernelQuant, SlicedRowsUseTheirOwnScales) {
  std::mt19937 rng(10);
  auto q = make_affine(16, 256, 4, 32, rng);
  auto X = random_floats(256, rng);
  std::vector<float> full(16), part(5);
  matmul(q.W, X.data(), 1, full.data());
  matmul(q.W.slice_rows(7, 5), X.data(), 1, part.data());
  for (int i = 0; i < 5; ++i) EXPECT_EQ(part[i], full[7 + i]);
}

// matmul_multi (one pass over several matrices reading the same activations) gives bitwise what separate calls
// give, for mixed widths, one token and several, and falls back when a matrix does not qualify.
TEST(KernelQuant, MatmulMultiEqualsSeparateCalls) {
  for (int64_t forced : kernels_testing::available_targets()) {
  kernels_testing::force_target(forced);
  SCOPED_TRACE(std::string("target ") + affine_simd_target_name());
  std::mt19937 rng(24);
  auto a = make_affine(40, 256, 4, 32, rng);
  auto b = make_affine(9, 256, 8, 32, rng);
  auto c = make_affine(17, 256, 4, 32, rng);
  for (size_t n : {1, 5}) {
    auto X = random_floats(n * 256, rng);
    std::vector<float> ya(n * 40), yb(n * 9), yc(n * 17), ra(n * 40), rb(n * 9), rc(n * 17);
    matmul_multi({&a.W, &b.W, &c.W}, X.data(), n, {ya.data(), yb.data(), yc.data()});
    matmul(a.W, X.data(), n, ra.data());
    matmul(b.W, X.data(), n, rb.data());
    matmul(c.W, X.data(), n, rc.data());
    EXPECT_EQ(ya, ra);
    EXPECT_EQ(yb, rb);
    EXPECT_EQ(yc, rc);
    // Under the exact arithmetic (no fused kernel) the result is still that of separate calls.
    const Compute exact(Precision::Exact);
    matmul_multi({&a.W, &c.W}, X.data(), n, {ya.data(), yc.data()}, exact);
    matmul(a.W, X.data(), n, ra.data(), exact);
    matmul(c.W, X.data(), n, rc.data(), exact);
    EXPECT_EQ(ya, ra);
    EXPECT_EQ(yc, rc);
  }
  }
  kernels_testing::force_target(0);
}
