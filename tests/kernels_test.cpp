// Fast kernels vs the scalar references, on every SIMD target compiled in and supported by this CPU, plus the
// thread- and batch-invariance guarantees the model relies on for reproducible decoding.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "kernels/format_table.h"
#include "kernels/kernels_testing.h"
#include "kernels/kernels.h"
#include "io/safetensors.h"
#include "util/thread_pool.h"
#include "tensor/weight_matrix.h"

namespace zaya {
namespace {

const WeightFormat kFormats[] = {WeightFormat::F32, WeightFormat::BF16, WeightFormat::F16};

// A weight matrix that owns its storage; `values` is what the stored elements decode to.
struct TestWeights {
  std::vector<float> f32;
  std::vector<uint16_t> u16;
  std::vector<float> values;
  WeightMatrix W;
};

TestWeights make_weights(WeightFormat fmt, size_t rows, size_t cols, std::mt19937& rng, float scale = 1.0f) {
  std::normal_distribution<float> nd(0.0f, scale);
  TestWeights tw;
  tw.values.resize(rows * cols);
  tw.W.format = fmt;
  tw.W.rows = static_cast<int64_t>(rows);
  tw.W.cols = static_cast<int64_t>(cols);
  tw.W.row_bytes = cols * (fmt == WeightFormat::F32 ? 4 : 2);
  tw.W.name = "test";
  if (fmt == WeightFormat::F32) {
    tw.f32.resize(rows * cols);
    for (size_t i = 0; i < tw.f32.size(); ++i) tw.f32[i] = tw.values[i] = nd(rng);
    tw.W.data = tw.f32.data();
  } else {
    tw.u16.resize(rows * cols);
    for (size_t i = 0; i < tw.u16.size(); ++i) {
      const float v = nd(rng);
      tw.u16[i] = fmt == WeightFormat::BF16 ? f32_to_bf16(v) : f32_to_f16(v);
      tw.values[i] = fmt == WeightFormat::BF16 ? bf16_to_f32(tw.u16[i]) : f16_to_f32(tw.u16[i]);
    }
    tw.W.data = tw.u16.data();
  }
  return tw;
}

std::vector<float> random_vec(size_t n, std::mt19937& rng, float scale = 1.0f) {
  std::normal_distribution<float> nd(0.0f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = nd(rng);
  return v;
}

// Runs fn once per available SIMD target, forcing the dispatch to it; restores the normal choice afterwards.
void for_each_target(const std::function<void()>& fn) {
  const auto targets = kernels_testing::available_targets();
  ASSERT_FALSE(targets.empty());
  for (int64_t t : targets) {
    kernels_testing::force_target(t);
    SCOPED_TRACE(std::string("target ") + simd_target_name());
    fn();
  }
  kernels_testing::force_target(0);
}

bool same_bits(const float* a, const float* b, size_t n) { return n == 0 || std::memcmp(a, b, n * sizeof(float)) == 0; }

TEST(KernelSimd, ReportsDispatchedTarget) {
  const std::string name = simd_target_name();
  EXPECT_FALSE(name.empty());
  std::printf("[ INFO     ] fast kernels dispatch to %s; targets available:", name.c_str());
  for (int64_t t : kernels_testing::available_targets()) {
    kernels_testing::force_target(t);
    std::printf(" %s", simd_target_name());
  }
  kernels_testing::force_target(0);
  std::printf("\n");
  EXPECT_EQ(name, simd_target_name());
}

TEST(KernelMatmul, MatchesReferenceOnRaggedShapes) {
  for_each_target([] {
    std::mt19937 rng(1234);
    for (WeightFormat fmt : kFormats)
      for (size_t rows : {1, 5, 33})
        for (size_t cols : {1, 3, 7, 15, 16, 17, 31, 64, 100, 257})
          for (size_t nt : {0, 1, 2, 3, 5, 9}) {
            SCOPED_TRACE(testing::Message() << weight_format_name(fmt) << " rows=" << rows << " cols=" << cols
                                            << " tokens=" << nt);
            TestWeights tw = make_weights(fmt, rows, cols, rng);
            const auto X = random_vec(nt * cols, rng);
            // Guard cells after Y catch writes outside [n_tokens, rows].
            const size_t guard = 8;
            std::vector<float> Y(nt * rows + guard, -7.0f), R(nt * rows);
            matmul(tw.W, X.data(), nt, Y.data());
            // The scalar twin of the kernel that ran (matmul_ref for the fp32 tiles; BF16 on an AVX512_BF16 CPU
            // runs bf16-dot, whose twin rounds the activations to bf16 as it does).
            pick_kernel(tw.W, Precision::Fast).reference(tw.W, X.data(), nt, R.data());
            for (size_t g = 0; g < guard; ++g) ASSERT_EQ(Y[nt * rows + g], -7.0f) << "write past the end";
            for (size_t t = 0; t < nt; ++t)
              for (size_t r = 0; r < rows; ++r) {
                double mag = 0;
                for (size_t c = 0; c < cols; ++c)
                  mag += std::fabs(static_cast<double>(tw.values[r * cols + c]) * X[t * cols + c]);
                ASSERT_NEAR(Y[t * rows + r], R[t * rows + r], 1e-5 * mag + 1e-6) << "t=" << t << " r=" << r;
              }
          }
  });
}

TEST(KernelMatmul, ZeroColumnsGiveZeros) {
  WeightMatrix W;
  W.rows = 3;
  W.cols = 0;
  const float x = 0;
  std::vector<float> Y(6, 5.0f);
  matmul(W, &x, 2, Y.data());
  for (float y : Y) EXPECT_EQ(y, 0.0f);
}

TEST(KernelMatmul, ThreadInvariant) {
  ThreadPool p1(1), p2(2), p3(3), p5(5);
  ThreadPool* pools[] = {&p2, &p3, &p5};
  for_each_target([&] {
    std::mt19937 rng(99);
    for (WeightFormat fmt : kFormats)
      for (size_t nt : {1, 9}) {
        const size_t rows = 301, cols = 257;
        SCOPED_TRACE(testing::Message() << weight_format_name(fmt) << " tokens=" << nt);
        TestWeights tw = make_weights(fmt, rows, cols, rng);
        const auto X = random_vec(nt * cols, rng);
        std::vector<float> Y1(nt * rows), Yn(nt * rows);
        matmul(tw.W, X.data(), nt, Y1.data(), &p1);
        for (ThreadPool* p : pools) {
          std::fill(Yn.begin(), Yn.end(), 0.0f);
          matmul(tw.W, X.data(), nt, Yn.data(), p);
          EXPECT_TRUE(same_bits(Y1.data(), Yn.data(), Y1.size())) << p->size() << " threads";
        }
      }
  });
}

TEST(KernelMatmul, BatchInvariant) {
  ThreadPool pool(3);
  for_each_target([&] {
    std::mt19937 rng(7);
    for (WeightFormat fmt : kFormats)
      for (size_t cols : {5, 16, 67, 256})
        for (size_t rows : {7, 37}) {
          const size_t nt = 13;  // three 4-token tiles and a remainder token
          SCOPED_TRACE(testing::Message() << weight_format_name(fmt) << " rows=" << rows << " cols=" << cols);
          TestWeights tw = make_weights(fmt, rows, cols, rng);
          const auto X = random_vec(nt * cols, rng);
          std::vector<float> Yb(nt * rows), Y1(rows);
          matmul(tw.W, X.data(), nt, Yb.data(), &pool);
          for (size_t t = 0; t < nt; ++t) {
            matmul(tw.W, X.data() + t * cols, 1, Y1.data(), &pool);
            EXPECT_TRUE(same_bits(Y1.data(), Yb.data() + t * rows, rows)) << "token " << t;
          }
          // Any sub-batch starting anywhere gives the same rows, too.
          std::vector<float> Ys(5 * rows);
          matmul(tw.W, X.data() + 6 * cols, 5, Ys.data(), &pool);
          EXPECT_TRUE(same_bits(Ys.data(), Yb.data() + 6 * rows, 5 * rows));
          // And a row slice gives the same values as the full matrix.
          const WeightMatrix tail = tw.W.slice_rows(3, static_cast<int64_t>(rows) - 3);
          std::vector<float> Yr(nt * (rows - 3));
          matmul(tail, X.data(), nt, Yr.data(), &pool);
          for (size_t t = 0; t < nt; ++t)
            EXPECT_TRUE(same_bits(Yr.data() + t * (rows - 3), Yb.data() + t * rows + 3, rows - 3)) << "token " << t;
        }
  });
}

TEST(KernelMatmul, DotEqualsOneRowF32Matmul) {
  for_each_target([] {
    std::mt19937 rng(5);
    for (size_t n : {1, 9, 64, 129}) {
      TestWeights tw = make_weights(WeightFormat::F32, 1, n, rng);
      const auto x = random_vec(n, rng);
      float y;
      matmul(tw.W, x.data(), 1, &y);
      const float d = dot(tw.f32.data(), x.data(), n);
      EXPECT_TRUE(same_bits(&y, &d, 1)) << "n=" << n;
    }
  });
}

// Every 16-bit pattern decodes exactly like the scalar conversions (incl. subnormals, inf, nan).
TEST(KernelMatmul, HalfPrecisionDecodesEveryValueExactly) {
  for_each_target([] {
    for (WeightFormat fmt : {WeightFormat::BF16, WeightFormat::F16}) {
      SCOPED_TRACE(weight_format_name(fmt));
      std::vector<uint16_t> bits(65536);
      for (size_t i = 0; i < bits.size(); ++i) bits[i] = static_cast<uint16_t>(i);
      WeightMatrix W;
      W.format = fmt;
      W.rows = 65536;
      W.cols = 1;
      W.row_bytes = 2;
      W.data = bits.data();
      const float one = 1.0f;
      std::vector<float> Y(65536);
      matmul(W, &one, 1, Y.data(), Compute(Precision::Exact));  // the fp32 tiles (bf16-dot reads subnormals as 0)
      size_t bad = 0;
      for (size_t i = 0; i < bits.size(); ++i) {
        const float want = fmt == WeightFormat::BF16 ? bf16_to_f32(bits[i]) : f16_to_f32(bits[i]);
        const bool ok = std::isnan(want) ? std::isnan(Y[i]) : Y[i] == want;
        if (!ok && ++bad <= 5) ADD_FAILURE() << "bits 0x" << std::hex << i << ": got " << Y[i] << " want " << want;
      }
      EXPECT_EQ(bad, 0u);
    }
  });
}

TEST(KernelDot, MatchesReference) {
  for_each_target([] {
    std::mt19937 rng(11);
    for (size_t n : {0, 1, 3, 7, 8, 15, 16, 17, 31, 64, 100, 257, 4096}) {
      const auto a = random_vec(n, rng), b = random_vec(n, rng);
      double mag = 0;
      for (size_t i = 0; i < n; ++i) mag += std::fabs(static_cast<double>(a[i]) * b[i]);
      EXPECT_NEAR(dot(a.data(), b.data(), n), dot_ref(a.data(), b.data(), n), 1e-5 * mag + 1e-6) << "n=" << n;
    }
  });
}

TEST(KernelRmsnorm, MatchesReference) {
  for_each_target([] {
    std::mt19937 rng(3);
    for (size_t n : {1, 7, 64, 2048}) {
      const auto x = random_vec(n, rng, 3.0f), w = random_vec(n, rng);
      std::vector<float> out(n), ref(n);
      rmsnorm(x.data(), w.data(), n, 1e-6f, out.data());
      rmsnorm_ref(x.data(), w.data(), n, 1e-6f, ref.data());
      for (size_t i = 0; i < n; ++i) ASSERT_NEAR(out[i], ref[i], 1e-5f * std::fabs(ref[i]) + 1e-6f) << "n=" << n;
      // In place (out aliases x).
      std::vector<float> inplace = x;
      rmsnorm(inplace.data(), w.data(), n, 1e-6f, inplace.data());
      EXPECT_TRUE(same_bits(inplace.data(), out.data(), n));
    }
  });
}

TEST(KernelSoftmax, SumsToOneAndMatchesDoubleReference) {
  std::mt19937 rng(17);
  for (size_t n : {1, 2, 5, 100, 4096})
    for (float scale : {1.0f, 30.0f}) {
      auto x = random_vec(n, rng, scale);
      x[0] += 1000.0f;  // must not overflow
      std::vector<double> ref(n);
      double mx = -1e300, sum = 0;
      for (float v : x) mx = std::max(mx, static_cast<double>(v));
      for (size_t i = 0; i < n; ++i) sum += ref[i] = std::exp(static_cast<double>(x[i]) - mx);
      softmax(x.data(), n);
      double total = 0;
      for (size_t i = 0; i < n; ++i) {
        total += x[i];
        ASSERT_NEAR(x[i], ref[i] / sum, 1e-6 * (ref[i] / sum) + 1e-9) << "n=" << n << " i=" << i;
      }
      EXPECT_NEAR(total, 1.0, 1e-5) << "n=" << n;
    }
}

TEST(KernelSiluMul, MatchesReferenceAndIgnoresHowTheArrayIsSplit) {
  for_each_target([] {
    std::mt19937 rng(37);
    for (size_t n : {0, 1, 3, 15, 16, 17, 100, 40000}) {
      // Wide range: e^-g overflows in fp32 for g < -88 and must give ∓0 (the double reference gives < 1e-30).
      auto gate = random_vec(n, rng, 40.0f);
      const auto up = random_vec(n, rng);
      if (n > 3) gate[0] = 200.0f, gate[1] = -200.0f, gate[2] = -1e30f, gate[3] = 0.0f;
      std::vector<float> out(n), ref(n);
      silu_mul(gate.data(), up.data(), n, out.data());
      silu_mul_ref(gate.data(), up.data(), n, ref.data());
      for (size_t i = 0; i < n; ++i)
        ASSERT_NEAR(out[i], ref[i], 2e-6f * std::fabs(ref[i]) + 1e-30f) << "n=" << n << " i=" << i << " g=" << gate[i];
      // Pieces of odd sizes (ragged tails everywhere) give the same bits as the whole.
      std::vector<float> pieces(n);
      for (size_t b = 0; b < n; b += 7) {
        const size_t e = std::min(n, b + 7);
        silu_mul(&gate[b], &up[b], e - b, &pieces[b]);
      }
      EXPECT_TRUE(same_bits(pieces.data(), out.data(), n)) << "n=" << n;
    }
  });
}

// Keys/values sit ld_kv apart (several kv heads per cache row); the buffers end right after the last value read.
struct AttentionCase {
  std::vector<float> q, k, v;
  size_t ld_kv;
};

AttentionCase make_attention_case(size_t rows, size_t n_keys, size_t dh, std::mt19937& rng) {
  AttentionCase c;
  c.ld_kv = dh * 2 + 1;
  const size_t kv_len = n_keys ? (n_keys - 1) * c.ld_kv + dh : 0;
  c.q = random_vec(rows * dh, rng);
  c.k = random_vec(kv_len, rng);
  c.v = random_vec(kv_len, rng);
  return c;
}

TEST(KernelAttention, MatchesReferenceOnRaggedShapes) {
  for_each_target([] {
    std::mt19937 rng(29);
    for (size_t rows : {1, 2, 3, 4, 5, 8})
      for (size_t dh : {1, 3, 8, 15, 16, 17, 64, 100, 128})
        for (size_t n_keys : {0, 1, 2, 3, 5, 16, 17, 63, 130})
          // 1/sqrt(dh) as in the model; 40/sqrt(dh) gives peaked rows where most exps underflow to zero.
          for (float sharp : {1.0f, 40.0f}) {
            SCOPED_TRACE(testing::Message() << "rows=" << rows << " dh=" << dh << " keys=" << n_keys
                                            << " sharp=" << sharp);
            AttentionCase c = make_attention_case(rows, n_keys, dh, rng);
            const float scale = sharp / std::sqrt(static_cast<float>(dh));
            // Guard cells after the output catch writes past [rows, dh].
            const size_t guard = 8;
            std::vector<float> out(rows * dh + guard, -7.0f), ref(rows * dh);
            gqa_attention(c.q.data(), rows, c.k.data(), c.v.data(), c.ld_kv, n_keys, dh, scale, out.data());
            gqa_attention_ref(c.q.data(), rows, c.k.data(), c.v.data(), c.ld_kv, n_keys, dh, scale, ref.data());
            for (size_t g = 0; g < guard; ++g) ASSERT_EQ(out[rows * dh + g], -7.0f) << "write past the end";
            // Outputs are convex combinations of values ~N(0, 1); score errors scale with |q||k|·scale.
            const float tol = 2e-5f * std::max(1.0f, sharp * std::sqrt(static_cast<float>(dh)) / 4.0f);
            for (size_t i = 0; i < rows * dh; ++i) ASSERT_NEAR(out[i], ref[i], tol) << "i=" << i;
          }
  });
}

TEST(KernelAttention, RowsAreIndependentOfTheirNeighbours) {
  for_each_target([] {
    std::mt19937 rng(31);
    for (size_t dh : {17, 128})
      for (size_t n_keys : {1, 9, 200}) {
        SCOPED_TRACE(testing::Message() << "dh=" << dh << " keys=" << n_keys);
        const size_t rows = 7;
        AttentionCase c = make_attention_case(rows, n_keys, dh, rng);
        const float scale = 1.0f / std::sqrt(static_cast<float>(dh));
        std::vector<float> all(rows * dh), one(dh);
        gqa_attention(c.q.data(), rows, c.k.data(), c.v.data(), c.ld_kv, n_keys, dh, scale, all.data());
        for (size_t r = 0; r < rows; ++r) {
          gqa_attention(&c.q[r * dh], 1, c.k.data(), c.v.data(), c.ld_kv, n_keys, dh, scale, one.data());
          EXPECT_TRUE(same_bits(one.data(), &all[r * dh], dh)) << "row " << r;
        }
      }
  });
}

// A key mask (the VL image-pairs policy) leaves keys out: against the reference with the same mask, and against the
// unmasked kernel on the kept keys only (here: a mask that keeps a prefix).
TEST(KernelAttention, KeyMaskLeavesKeysOut) {
  for_each_target([] {
    std::mt19937 rng(37);
    for (size_t dh : {16, 80, 128})
      for (size_t n_keys : {1, 5, 33, 130}) {
        SCOPED_TRACE(testing::Message() << "dh=" << dh << " keys=" << n_keys);
        const size_t rows = 4;
        AttentionCase c = make_attention_case(rows, n_keys, dh, rng);
        const float scale = 1.0f / std::sqrt(static_cast<float>(dh));
        std::vector<uint8_t> mask(n_keys);
        for (size_t j = 0; j < n_keys; ++j) mask[j] = j == 0 || (rng() % 3 != 0);
        std::vector<float> out(rows * dh), ref(rows * dh);
        gqa_attention(c.q.data(), rows, c.k.data(), c.v.data(), c.ld_kv, n_keys, dh, scale, out.data(), mask.data());
        gqa_attention_ref(c.q.data(), rows, c.k.data(), c.v.data(), c.ld_kv, n_keys, dh, scale, ref.data(), mask.data());
        for (size_t i = 0; i < out.size(); ++i) ASSERT_NEAR(out[i], ref[i], 2e-5f) << "i=" << i;
        // Masking the tail equals attending over the prefix alone, bit for bit: a masked key adds exact zeros, and a
        // kept key's score is the same whether a key tile or the ragged tail computed it.
        const size_t keep = (n_keys + 1) / 2;
        std::vector<uint8_t> prefix(n_keys, 0);
        std::fill(prefix.begin(), prefix.begin() + static_cast<std::ptrdiff_t>(keep), 1);
        std::vector<float> masked(rows * dh), shorter(rows * dh);
        gqa_attention(c.q.data(), rows, c.k.data(), c.v.data(), c.ld_kv, n_keys, dh, scale, masked.data(), prefix.data());
        gqa_attention(c.q.data(), rows, c.k.data(), c.v.data(), c.ld_kv, keep, dh, scale, shorter.data());
        EXPECT_TRUE(same_bits(masked.data(), shorter.data(), masked.size()));
      }
  });
}

// MLX writes tensors at unaligned offsets: weight_from_tensor must copy those into aligned storage.
TEST(KernelWeights, MisalignedTensorIsCopiedAndComputesCorrectly) {
  std::mt19937 rng(23);
  const size_t rows = 19, cols = 37;
  for (WeightFormat fmt : kFormats) {
    SCOPED_TRACE(weight_format_name(fmt));
    TestWeights tw = make_weights(fmt, rows, cols, rng);
    const size_t esize = fmt == WeightFormat::F32 ? 4 : 2;
    const size_t nbytes = rows * cols * esize;
    std::vector<uint8_t> buf(nbytes + 16);
    for (size_t offset : {size_t{1}, size_t{8}}) {
      SCOPED_TRACE(testing::Message() << "offset " << offset);
      std::memcpy(buf.data() + offset, tw.W.data, nbytes);
      TensorView tv;
      tv.name = "w";
      tv.dtype = fmt == WeightFormat::F32 ? DType::F32 : fmt == WeightFormat::BF16 ? DType::BF16 : DType::F16;
      tv.shape = {static_cast<int64_t>(rows), static_cast<int64_t>(cols)};
      tv.data = buf.data() + offset;
      tv.nbytes = nbytes;
      tv.file = "hand-built";
      ASSERT_EQ(reinterpret_cast<uintptr_t>(buf.data()) % 8, 0u);  // vector storage is at least 8-aligned
      const WeightMatrix W = weight_from_tensor(tv, static_cast<int64_t>(rows), static_cast<int64_t>(cols));
      EXPECT_EQ(W.format, fmt);
      EXPECT_EQ(reinterpret_cast<uintptr_t>(W.data) % esize, 0u);
      if (offset % esize != 0) {
        EXPECT_NE(W.data, static_cast<const void*>(tv.data)) << "misaligned data must be copied";
        EXPECT_FALSE(W.owners.empty());
      } else {
        EXPECT_EQ(W.data, static_cast<const void*>(tv.data)) << "aligned data must not be copied";
      }
      ASSERT_EQ(std::memcmp(W.data, tw.W.data, nbytes), 0);
      const size_t nt = 3;
      const auto X = random_vec(nt * cols, rng);
      std::vector<float> Y(nt * rows), Yw(nt * rows);
      matmul(W, X.data(), nt, Y.data());
      matmul(tw.W, X.data(), nt, Yw.data());
      EXPECT_TRUE(same_bits(Y.data(), Yw.data(), Y.size()));
      std::vector<float> R(nt * rows);
      pick_kernel(tw.W, Precision::Fast).reference(tw.W, X.data(), nt, R.data());
      for (size_t i = 0; i < Y.size(); ++i) EXPECT_NEAR(Y[i], R[i], 1e-4f * (1.0f + std::fabs(R[i])));
    }
  }
}

}  // namespace
}  // namespace zaya
