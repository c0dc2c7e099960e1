// The AMX kernel of BF16 weights (bf16_amx_hwy.cpp): within its error bound of the scalar reference, bitwise
// invariant to the token count, the token's and the row's place in a tile, and the thread count (the model's
// prefill-then-decode and batched serving rely on that), NaN/inf propagation, and a model-level check that
// prefill, decode and a batched step agree bit for bit on a BF16 checkpoint. Skipped where the CPU or OS has no
// AMX-BF16 (then the format table never picks it).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "io/dtype.h"
#include "kernels/format_table.h"
#include "kernels/quant_matmul.h"
#include "test_util.h"
#include "util/thread_pool.h"
#include "zaya/convert.h"
#include "zaya/model.h"

namespace zaya {
namespace {

struct Bf16Matrix {
  std::vector<uint16_t> data;
  WeightMatrix W;
};

Bf16Matrix make(int64_t rows, int64_t cols, std::mt19937& rng) {
  std::normal_distribution<float> d(0.0f, 0.5f);
  Bf16Matrix m;
  m.data.resize(static_cast<size_t>(rows * cols));
  for (auto& v : m.data) v = f32_to_bf16(d(rng));
  m.W.format = WeightFormat::BF16;
  m.W.rows = rows;
  m.W.cols = cols;
  m.W.name = "bf16";
  m.W.row_bytes = static_cast<size_t>(cols) * 2;
  m.W.data = m.data.data();
  return m;
}

// Rows [r0, rows) of m as their own matrix (the same bytes, other places in the tiles).
WeightMatrix tail_rows(const Bf16Matrix& m, int64_t r0) {
  WeightMatrix W = m.W;
  W.rows -= r0;
  W.data = m.data.data() + r0 * m.W.cols;
  return W;
}

std::vector<float> random_x(size_t n, std::mt19937& rng) {
  std::normal_distribution<float> d(0.0f, 1.0f);
  std::vector<float> x(n);
  for (auto& v : x) v = d(rng);
  return x;
}

bool same_bits(const float* a, const float* b, size_t n) { return std::memcmp(a, b, n * sizeof(float)) == 0; }

#define SKIP_WITHOUT_AMX(W) \
  if (!bf16_amx_accepts(W)) GTEST_SKIP() << "no AMX-BF16 on this CPU or OS"

TEST(Bf16Amx, PickedUnderFastWhereTheCpuHasIt) {
  std::mt19937 rng(1);
  Bf16Matrix m = make(8, 64, rng);
  SKIP_WITHOUT_AMX(m.W);
  EXPECT_STREQ(pick_kernel(m.W, Precision::Fast).name, "bf16-amx");
  EXPECT_STREQ(pick_kernel(m.W, Precision::Int8).name, "bf16-amx");
  EXPECT_STREQ(pick_kernel(m.W, Precision::Exact).name, "bf16-tiles");
}

// |y − reference| ≤ 2^-20 Σ|w·x| (the reference rounds once per 32-column chunk, the engine somewhere inside one;
// measured ≤ 2^-23), and nowhere near the fp32-activation product's agreement: the activations are rounded to bf16.
TEST(Bf16Amx, WithinItsBoundOfTheReference) {
  std::mt19937 rng(2);
  double worst = 0;  // max |y − reference| / Σ|w·x|
  for (int64_t cols : {2048, 100, 32, 7}) {
    for (int64_t rows : {64, 37, 5}) {
      Bf16Matrix m = make(rows, cols, rng);
      SKIP_WITHOUT_AMX(m.W);
      for (size_t n : {1, 3, 16, 37}) {
        SCOPED_TRACE(testing::Message() << rows << "x" << cols << ", " << n << " tokens");
        const auto X = random_x(n * cols, rng);
        std::vector<float> Y(n * rows + 8, -7.0f), R(n * rows);
        ThreadPool pool(2);
        bf16_amx_product(m.W, X.data(), n, Y.data(), pool);
        bf16_amx_reference(m.W, X.data(), n, R.data());
        for (size_t g = 0; g < 8; ++g) ASSERT_EQ(Y[n * rows + g], -7.0f) << "write past the end";
        for (size_t t = 0; t < n; ++t)
          for (int64_t r = 0; r < rows; ++r) {
            double mag = 0;
            for (int64_t c = 0; c < cols; ++c)
              mag += std::fabs(static_cast<double>(bf16_to_f32(m.data[r * cols + c])) *
                               bf16_to_f32(f32_to_bf16(X[t * cols + c])));
            ASSERT_NEAR(Y[t * rows + r], R[t * rows + r], std::ldexp(mag, -20)) << "t " << t << " r " << r;
            worst = std::max(worst, std::fabs(Y[t * rows + r] - R[t * rows + r]) / mag);
          }
      }
    }
  }
  std::printf("[ amx ] max |kernel - reference| / sum|w x| = %.3g (2^%.1f)\n", worst, std::log2(worst));
}

// Each token alone, any sub-batch, any thread count and any first row give the bits of the full product.
TEST(Bf16Amx, BitwiseInvariantToBatchPlaceAndThreads) {
  std::mt19937 rng(3);
  for (int64_t cols : {2048, 100}) {
    Bf16Matrix m = make(70, cols, rng);
    SKIP_WITHOUT_AMX(m.W);
    const size_t n = 37, rows = 70;
    const auto X = random_x(n * cols, rng);
    std::vector<float> full(n * rows), Y(n * rows), one(rows);
    ThreadPool one_thread(1);
    bf16_amx_product(m.W, X.data(), n, full.data(), one_thread);
    for (size_t threads : {2, 3}) {
      ThreadPool pool(threads);
      bf16_amx_product(m.W, X.data(), n, Y.data(), pool);
      EXPECT_TRUE(same_bits(Y.data(), full.data(), Y.size())) << "threads " << threads << " cols " << cols;
    }
    for (size_t t = 0; t < n; ++t) {
      bf16_amx_product(m.W, X.data() + t * cols, 1, one.data(), one_thread);
      EXPECT_TRUE(same_bits(one.data(), full.data() + t * rows, rows)) << "token " << t << " alone, cols " << cols;
    }
    // Tokens 5..24 (20: one full group and one of 4) and 30..36 (7: a group of its own width).
    for (auto [t0, k] : {std::pair<size_t, size_t>{5, 20}, {30, 7}}) {
      std::vector<float> part(k * rows);
      bf16_amx_product(m.W, X.data() + t0 * cols, k, part.data(), one_thread);
      EXPECT_TRUE(same_bits(part.data(), full.data() + t0 * rows, part.size())) << "tokens from " << t0;
    }
    // Rows 3.. as their own matrix: every row lands elsewhere in its tile (and the ragged edge moves).
    const WeightMatrix tail = tail_rows(m, 3);
    std::vector<float> T(n * (rows - 3));
    bf16_amx_product(tail, X.data(), n, T.data(), one_thread);
    for (size_t t = 0; t < n; ++t)
      EXPECT_TRUE(same_bits(T.data() + t * (rows - 3), full.data() + t * rows + 3, rows - 3)) << "token " << t;
  }
}

TEST(Bf16Amx, NonFiniteActivationsPropagate) {
  std::mt19937 rng(4);
  Bf16Matrix m = make(20, 64, rng);
  SKIP_WITHOUT_AMX(m.W);
  auto X = random_x(3 * 64, rng);
  X[5] = std::numeric_limits<float>::quiet_NaN();
  X[64 + 9] = std::numeric_limits<float>::infinity();
  std::vector<float> Y(3 * 20);
  ThreadPool pool(1);
  bf16_amx_product(m.W, X.data(), 3, Y.data(), pool);
  for (size_t r = 0; r < 20; ++r) {
    EXPECT_TRUE(std::isnan(Y[r])) << r;
    EXPECT_FALSE(std::isfinite(Y[20 + r])) << r;
    EXPECT_TRUE(std::isfinite(Y[40 + r])) << r;
  }
}

// A BF16 checkpoint (tiny-a converted): a prompt prefilled then decoded one token at a time, alone and batched with
// another sequence, gives the bits of one forward pass over the whole sequence.
TEST(Bf16Amx, ModelPrefillDecodeAndBatchAgreeBitwise) {
  std::mt19937 rng(5);
  Bf16Matrix probe = make(1, 32, rng);
  SKIP_WITHOUT_AMX(probe.W);
  const std::string src = test::require_path(test::data_dir() + "/golden/zaya1-text/tiny-a");
  test::TempDir tmp("bf16-amx-model");
  ConvertOptions co;
  co.profile = parse_profile("bf16");
  convert_checkpoint(src, tmp / "bf16", co);
  LoadOptions o;
  o.verbose = false;
  auto m = Model::load(tmp / "bf16", o);
  const size_t V = m->config().vocab;
  std::vector<int32_t> a(23), b(9);
  std::uniform_int_distribution<int32_t> tok(0, static_cast<int32_t>(V) - 1);
  for (auto& t : a) t = tok(rng);
  for (auto& t : b) t = tok(rng);

  DecodeState full_st = m->new_state();
  const auto full = m->forward(a, full_st, LogitsMode::All);

  DecodeState sa = m->new_state(), sb = m->new_state();
  std::vector<Model::BatchItem> pre = {{std::span(a).first(17), &sa, LogitsMode::All, {}},
                                       {std::span(b), &sb, LogitsMode::All, {}}};
  m->forward_batch(pre);
  std::vector<float> got = pre[0].logits;
  for (size_t t = 17; t < a.size(); ++t) {
    const int32_t other = tok(rng);
    std::vector<Model::BatchItem> step = {{std::span(a).subspan(t, 1), &sa, LogitsMode::Last, {}},
                                          {std::span(&other, 1), &sb, LogitsMode::Last, {}}};
    m->forward_batch(step);
    got.insert(got.end(), step[0].logits.begin(), step[0].logits.end());
  }
  ASSERT_EQ(got.size(), full.size());
  EXPECT_TRUE(same_bits(got.data(), full.data(), full.size()));
}

}  // namespace
}  // namespace zaya
