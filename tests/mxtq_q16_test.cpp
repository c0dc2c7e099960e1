// The MXTQ 4-bit int16-activation kernels (mxtq_q16.h): both SIMD paths against the scalar reference on every
// target, batch/thread invariance, matmul_multi, non-finite activations, the integer block sums beyond int32, and
// the error against the fp32 path.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "io/dtype.h"
#include "io/safetensors.h"
#include "kernels/format_table.h"
#include "kernels/kernels.h"
#include "kernels/kernels_testing.h"
#include "kernels/mxtq_q16.h"
#include "kernels/quant_matmul.h"
#include "tensor/quant_formats.h"
#include "quant_test_util.h"
#include "test_util.h"
#include "util/thread_pool.h"
#include "zaya/model.h"
#include "zaya/runtime.h"

namespace zaya {
namespace {

struct Mxtq {
  std::vector<uint32_t> packed;
  std::vector<uint16_t> norms;
  WeightMatrix W;
};

using test::random_floats;

std::shared_ptr<const MxtqTables> tables(int64_t cols, int bits = 4) {
  auto t = std::make_shared<MxtqTables>();
  t->in_features = cols;
  t->bits = bits;
  t->signs = quant::mxtq_signs(cols, 42);
  t->codebook = quant::mxtq_codebook(cols, bits);
  return t;
}

// Rows quantized from w (random when empty) with the given tables.
Mxtq make(int64_t rows, int64_t cols, std::shared_ptr<const MxtqTables> t, std::mt19937& rng, std::vector<float> w = {}) {
  Mxtq q;
  const int64_t words = quant::mxtq_words(cols, t->bits);
  q.packed.resize(rows * words);
  q.norms.resize(rows);
  if (w.empty()) w = random_floats(rows * cols, rng, 0.05f);
  for (int64_t r = 0; r < rows; ++r) {
    float norm = 0;
    quant::mxtq_quantize_row(&w[r * cols], cols, t->bits, t->signs.data(), t->codebook.data(), &q.packed[r * words], &norm);
    q.norms[r] = f32_to_f16(norm);
  }
  q.W.format = WeightFormat::Mxtq;
  q.W.rows = rows;
  q.W.cols = cols;
  q.W.bits = t->bits;
  q.W.data = q.packed.data();
  q.W.row_bytes = words * 4;
  q.W.norms = q.norms.data();
  q.W.mxtq = std::move(t);
  q.W.name = "mxtq";
  return q;
}

Mxtq make(int64_t rows, int64_t cols, std::mt19937& rng) { return make(rows, cols, tables(cols), rng); }

bool same_bits(float a, float b) { return std::memcmp(&a, &b, sizeof a) == 0; }

// The int16 codebook: the largest value maps to ±kCodeMax, every value is within half a step of c·K.
TEST(MxtqQ16, Int16Codebook) {
  std::mt19937 rng(1);
  Mxtq q = make(2, 2048, rng);
  ASSERT_TRUE(mxtq16::supported(q.W));
  const mxtq16::Codebook cb = mxtq16::int16_codebook(q.W);
  const std::vector<float>& c = q.W.mxtq->codebook;
  int32_t amax = 0;
  for (size_t k = 0; k < 16; ++k) {
    amax = std::max<int32_t>(amax, std::abs(cb.cq[k]));
    EXPECT_NEAR(cb.cq[k] * cb.inv_k, c[k], 0.5001f * cb.inv_k) << k;
    if (k) {
      EXPECT_GT(cb.cq[k], cb.cq[k - 1]) << "order kept";
    }
  }
  EXPECT_EQ(amax, mxtq16::kCodeMax);
  // What the arithmetic does not cover goes to the fp32 path.
  Mxtq odd = make(2, 48, rng), three = make(2, 64, tables(64, 3), rng);
  EXPECT_FALSE(mxtq16::supported(odd.W)) << "48 columns: not whole 32-column blocks";
  EXPECT_FALSE(mxtq16::supported(three.W)) << "3-bit";
  EXPECT_STREQ(pick_kernel(q.W, Precision::Fast).name, "mxtq-int16");
  EXPECT_STREQ(pick_kernel(q.W, Precision::Exact).name, "mxtq-rotated");
  EXPECT_STREQ(pick_kernel(odd.W, Precision::Fast).name, "mxtq-rotated");
  EXPECT_STREQ(pick_kernel(three.W, Precision::Fast).name, "mxtq-rotated");
  auto bad = std::make_shared<MxtqTables>(*q.W.mxtq);
  bad->codebook[3] = std::numeric_limits<float>::quiet_NaN();
  WeightMatrix w = q.W;
  w.mxtq = bad;
  EXPECT_FALSE(mxtq16::supported(w)) << "a non-finite codebook";
}

// Both SIMD paths (one token at a time, multi-token tiles) and the dispatching entry point are the scalar reference,
// bit for bit, on every target this CPU runs, for ragged shapes: odd row counts (a partial 4-row tile), widths that
// are not whole 512-column segments (a partial last segment; 800 and 2144 are not powers of two for the rotation),
// token counts that leave a partial tile. SSE4 and EMU128 have no FMA: there the fp32 steps round twice.
TEST(MxtqQ16, PathsMatchScalarReference) {
  std::vector<int64_t> targets = kernels_testing::available_targets();
  targets.insert(targets.begin(), 0);  // the normal choice (AVX3_DL with VNNI where the CPU has it)
  size_t simd_runs = 0;
  for (int64_t forced : targets) {
    kernels_testing::force_target(forced);
    const std::string target = affine_simd_target_name();
    SCOPED_TRACE("target " + target);
    const bool fma_target = target != "SSE4" && target != "EMU128";
    std::mt19937 rng(2);
    for (int64_t cols : {64, 192, 512, 800, 2048, 2048 + 96})
      for (int64_t rows : {1, 5, 37})
        for (size_t tokens : {1, 2, 3, 5}) {
          Mxtq q = make(rows, cols, rng);
          auto X = random_floats(tokens * cols, rng);
          std::vector<float> ref(tokens * rows), y0(tokens * rows), y1(tokens * rows), y(tokens * rows);
          mxtq16::matmul_ref(q.W, X.data(), tokens, ref.data());
          matmul(q.W, X.data(), tokens, y.data());
          if (mxtq_matmul_path(q.W, X.data(), tokens, y0.data(), 0)) {
            ASSERT_TRUE(mxtq_matmul_path(q.W, X.data(), tokens, y1.data(), 1));
            ++simd_runs;
          } else {
            y0 = y1 = y;  // a target without the SIMD path: the scalar reference is the kernel
          }
          for (size_t i = 0; i < ref.size(); ++i) {
            const std::string what = "cols " + std::to_string(cols) + " rows " + std::to_string(rows) + " tokens " +
                                     std::to_string(tokens) + " i " + std::to_string(i);
            ASSERT_TRUE(same_bits(y0[i], y1[i])) << what << " (one-token vs tiled path) " << y0[i] << " " << y1[i];
            ASSERT_TRUE(same_bits(y[i], tokens == 1 ? y0[i] : y1[i])) << what << " (matmul vs forced path)";
            if (fma_target) ASSERT_TRUE(same_bits(y0[i], ref[i])) << what << ": " << y0[i] << " vs " << ref[i];
            else ASSERT_NEAR(y0[i], ref[i], 1e-6f * (1 + std::fabs(ref[i]))) << what;
          }
        }
  }
  kernels_testing::force_target(0);
  EXPECT_GT(simd_runs, 0u);
}

// Results do not depend on the thread count or on the batch a token is in.
TEST(MxtqQ16, ThreadAndBatchInvariant) {
  std::mt19937 rng(3);
  Mxtq q = make(67, 2048, rng);
  const size_t n = 11;
  auto X = random_floats(n * 2048, rng);
  std::vector<float> ref(n * 67);
  ThreadPool one(1);
  matmul(q.W, X.data(), n, ref.data(), Compute(&one));
  for (size_t threads : {2, 3}) {
    ThreadPool p(threads);
    std::vector<float> y(n * 67);
    matmul(q.W, X.data(), n, y.data(), Compute(&p));
    EXPECT_EQ(y, ref) << "threads " << threads;
    for (size_t t = 0; t < n; ++t) {
      std::vector<float> y1(67);
      matmul(q.W, &X[t * 2048], 1, y1.data(), Compute(&p));
      for (size_t r = 0; r < 67; ++r) ASSERT_EQ(y1[r], ref[t * 67 + r]) << "token " << t << " alone, threads " << threads;
    }
  }
}

// More tokens than one L2 block of the tiled path (kTokenBlockBytes: 32 tokens of 2048 columns): every block gives
// each token what the one-token path gives it alone.
TEST(MxtqQ16, TiledPathAcrossTokenBlocks) {
  std::mt19937 rng(4);
  const int64_t rows = 9, cols = 2048;
  const size_t n = 75;
  Mxtq q = make(rows, cols, rng);
  auto X = random_floats(n * cols, rng);
  std::vector<float> y0(n * rows), y1(n * rows), ref(n * rows);
  mxtq16::matmul_ref(q.W, X.data(), n, ref.data());
  if (!mxtq_matmul_path(q.W, X.data(), n, y0.data(), 0)) GTEST_SKIP() << "no SIMD path on this CPU";
  ASSERT_TRUE(mxtq_matmul_path(q.W, X.data(), n, y1.data(), 1));
  for (size_t i = 0; i < y0.size(); ++i) {
    ASSERT_TRUE(same_bits(y0[i], y1[i])) << "token " << i / rows << " row " << i % rows;
    ASSERT_NEAR(y1[i], ref[i], 1e-6f * (1 + std::fabs(ref[i]))) << "token " << i / rows;
  }
}

// matmul_multi over the experts' gate and up (one rotation): bitwise the separate products, one token and several;
// matrices with another rotation or width are not fused and still give their own products.
TEST(MxtqQ16, MatmulMultiEqualsSeparateCalls) {
  for (int64_t forced : kernels_testing::available_targets()) {
    kernels_testing::force_target(forced);
    SCOPED_TRACE(std::string("target ") + affine_simd_target_name());
    std::mt19937 rng(4);
    auto t = tables(512);
    Mxtq gate = make(40, 512, t, rng), up = make(17, 512, t, rng);
    Mxtq copy_tables = make(9, 512, tables(512), rng);  // equal signs in another object: still fused
    auto other = std::make_shared<MxtqTables>(*t);
    other->signs[5] = -other->signs[5];
    Mxtq rotated = make(9, 512, other, rng);
    for (size_t n : {1, 6}) {
      auto X = random_floats(n * 512, rng);
      std::vector<float> yg(n * 40), yu(n * 17), yc(n * 9), rg(n * 40), ru(n * 17), rc(n * 9);
      matmul(gate.W, X.data(), n, rg.data());
      matmul(up.W, X.data(), n, ru.data());
      matmul(copy_tables.W, X.data(), n, rc.data());
      matmul_multi({&gate.W, &up.W, &copy_tables.W}, X.data(), n, {yg.data(), yu.data(), yc.data()});
      EXPECT_EQ(yg, rg);
      EXPECT_EQ(yu, ru);
      EXPECT_EQ(yc, rc);
      const WeightMatrix* ws[] = {&gate.W, &rotated.W};
      float* ys[] = {yg.data(), yc.data()};
      EXPECT_FALSE(mxtq_q16_multi(ws, 2, X.data(), n, ys, default_pool())) << "another rotation is not fused";
      matmul_multi({&gate.W, &rotated.W}, X.data(), n, {yg.data(), yc.data()});
      matmul(rotated.W, X.data(), n, rc.data());
      EXPECT_EQ(yg, rg);
      EXPECT_EQ(yc, rc);
    }
  }
  kernels_testing::force_target(0);
}

// A non-finite activation spreads through the rotation: every output of its token is NaN, the other tokens are not
// touched — on both paths.
TEST(MxtqQ16, NonFiniteActivationsGiveNaN) {
  std::mt19937 rng(5);
  Mxtq q = make(9, 256, rng);
  for (float bad : {std::numeric_limits<float>::infinity(), std::numeric_limits<float>::quiet_NaN()}) {
    auto X = random_floats(3 * 256, rng);
    X[256 + 70] = bad;
    std::vector<float> y(3 * 9), y1(9);
    matmul(q.W, X.data(), 3, y.data());
    matmul(q.W, X.data() + 256, 1, y1.data());
    for (int r = 0; r < 9; ++r) {
      EXPECT_TRUE(std::isfinite(y[r]) && std::isfinite(y[2 * 9 + r])) << r;
      EXPECT_TRUE(std::isnan(y[9 + r])) << r;
      EXPECT_TRUE(std::isnan(y1[r])) << r;
    }
    std::vector<float> ref(3 * 9);
    mxtq16::matmul_ref(q.W, X.data(), 3, ref.data());
    for (int r = 0; r < 9; ++r) EXPECT_TRUE(std::isnan(ref[9 + r])) << r;
  }
}

// Activations aligned with a row (x = the row's own dequantized weights, so x̃ ∝ c[idx]) make block sums far beyond
// int32 (≈ 2^34): the kernels' split keeps them exact, so the result is the fp32 product's to the int16 rounding.
TEST(MxtqQ16, BlockSumsBeyondInt32StayExact) {
  std::mt19937 rng(6);
  Mxtq q = make(8, 2048, rng);
  std::vector<float> X(8 * 2048);
  for (int64_t r = 0; r < 8; ++r) decode_row(q.W, r, &X[r * 2048]);
  std::vector<float> fast(8 * 8), exact(8 * 8), ref(8 * 8);
  matmul(q.W, X.data(), 8, fast.data());
  matmul(q.W, X.data(), 8, exact.data(), Compute(Precision::Exact));
  mxtq16::matmul_ref(q.W, X.data(), 8, ref.data());
  for (size_t t = 0; t < 8; ++t) {
    const float diag = exact[t * 8 + t];
    ASSERT_GT(diag, 0.0f);
    EXPECT_NEAR(fast[t * 8 + t], diag, 1e-4f * diag) << "token " << t;
    for (size_t r = 0; r < 8; ++r) ASSERT_TRUE(same_bits(fast[t * 8 + r], ref[t * 8 + r])) << t << " " << r;
  }
  // Confirm the premise: some block's exact sum is out of int32 range.
  const mxtq16::Codebook cb = mxtq16::int16_codebook(q.W);
  std::vector<float> xr(2048);
  quant::mxtq_rotate(X.data(), 2048, q.W.mxtq->signs.data(), xr.data());
  double biggest = 0;
  for (size_t b = 0; b < 64; ++b) {
    float amax = 0;
    for (size_t i = 0; i < 32; ++i) amax = std::max(amax, std::fabs(xr[b * 32 + i]));
    double s = 0;
    for (size_t i = 0; i < 32; ++i) {
      const uint32_t idx = quant::mxtq_unpack_index(q.packed.data(), static_cast<int64_t>(b * 32 + i), 4);
      s += double(cb.cq[idx]) * std::lrint(xr[b * 32 + i] * (32767.0f / amax));
    }
    biggest = std::max(biggest, std::fabs(s));
  }
  EXPECT_GT(biggest, 2147483647.0);
}

// The int16 arithmetic against the fp32 path (Precision::Exact) and the float64 reference: within 2e-5 of Σ|w·x|,
// the bound the other quantized Fast kernels meet (quant_kernels_test).
TEST(MxtqQ16, CloseToTheFp32Product) {
  std::mt19937 rng(7);
  for (int64_t cols : {64, 192, 2048}) {
    Mxtq q = make(33, cols, rng);
    auto X = random_floats(4 * cols, rng);
    std::vector<float> fast(4 * 33), ref(4 * 33), row(cols);
    matmul(q.W, X.data(), 4, fast.data());
    matmul_ref(q.W, X.data(), 4, ref.data());
    double worst = 0;
    for (int64_t r = 0; r < 33; ++r) {
      decode_row(q.W, r, row.data());
      for (size_t t = 0; t < 4; ++t) {
        double mag = 0;
        for (int64_t c = 0; c < cols; ++c) mag += std::fabs(double(row[c]) * X[t * cols + c]);
        const double err = std::fabs(fast[t * 33 + r] - ref[t * 33 + r]);
        ASSERT_LE(err, 2e-5 * mag + 1e-6) << "cols " << cols << " r " << r << " t " << t;
        worst = std::max(worst, err / mag);
      }
    }
    RecordProperty("worst_rel_cols_" + std::to_string(cols), std::to_string(worst));
  }
}

// The JANGTQ4 golden bundle in the default (Fast) arithmetic runs its experts through this kernel; its logits stay
// within the golden tolerance (1e-3, bundle_golden_test) and close to the fp32 path. The errors are printed.
TEST(MxtqQ16, GoldenBundleLogits) {
  const std::string dir = test::require_path(test::data_dir() + "/golden/zaya1-bundles/tiny-a-jangtq4");
  const auto meta = nlohmann::json::parse(test::read_file(dir + "/cases.json"));
  const auto ids = meta["full"]["ids"].get<std::vector<int32_t>>();
  const TensorStore cases = TensorStore::open(dir + "/cases.safetensors");
  const std::vector<float> ref = to_f32(cases.require("full.logits"));
  std::vector<float> logits[2];
  for (bool exact : {false, true}) {
    LoadOptions o;
    o.verbose = false;
    o.exact = exact;
    auto m = Model::load(dir, o);
    DecodeState st = m->new_state();
    profile_begin();
    logits[exact] = m->forward(ids, st, LogitsMode::All);
    const ProfileReport p = profile_end();
    const bool int16_ran = std::any_of(p.kernels.begin(), p.kernels.end(), [](const auto& k) { return k.name == "mxtq-int16"; });
    EXPECT_EQ(int16_ran, !exact);
  }
  auto max_diff = [](const std::vector<float>& a, const std::vector<float>& b) {
    double w = 0;
    for (size_t i = 0; i < a.size(); ++i) w = std::max(w, std::fabs(double(a[i]) - b[i]));
    return w;
  };
  ASSERT_EQ(logits[0].size(), ref.size());
  const double fast_ref = max_diff(logits[0], ref), exact_ref = max_diff(logits[1], ref), fast_exact = max_diff(logits[0], logits[1]);
  std::printf("tiny-a-jangtq4 logits max |diff|: int16 vs reference %.3g, fp32 vs reference %.3g, int16 vs fp32 %.3g\n",
              fast_ref, exact_ref, fast_exact);
  RecordProperty("int16_vs_reference", std::to_string(fast_ref));
  RecordProperty("int16_vs_fp32", std::to_string(fast_exact));
  EXPECT_LE(fast_ref, 1e-3);
  EXPECT_GT(fast_exact, 0.0) << "the int16 path did not run";
}

}  // namespace
}  // namespace zaya
