// The format table, row by row (llama.cpp's backend-op test in spirit): for every stored format, its row size
// matches what is stored, its row decode matches the codec's dequantizer, and every product kernel it lists agrees
// with that kernel's scalar reference on ragged shapes — on every SIMD target this CPU runs.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "io/dtype.h"
#include "kernels/format_table.h"
#include "kernels/kernels_testing.h"
#include "kernels/quant_matmul.h"
#include "tensor/quant_formats.h"
#include "util/thread_pool.h"
#include "zaya/error.h"
#include "zaya/runtime.h"

namespace zaya {
namespace {

// A matrix of any format with its storage.
struct Stored {
  std::vector<uint8_t> data, scales, biases;
  std::vector<uint16_t> norms;
  WeightMatrix W;
};

Stored make(WeightFormat f, int64_t rows, int64_t cols, int bits, std::mt19937& rng) {
  std::normal_distribution<float> d(0.0f, 0.5f);
  std::vector<float> w(static_cast<size_t>(rows * cols));
  for (auto& v : w) v = d(rng);
  Stored s;
  WeightMatrix& W = s.W;
  W.format = f;
  W.rows = rows;
  W.cols = cols;
  W.name = weight_format_name(f);
  W.bits = bits;
  W.row_bytes = stored_row_bytes(f, cols, bits);
  s.data.resize(W.row_bytes * rows);
  if (f == WeightFormat::F32) {
    std::memcpy(s.data.data(), w.data(), s.data.size());
  } else if (f == WeightFormat::F16 || f == WeightFormat::BF16) {
    for (size_t i = 0; i < w.size(); ++i) {
      const uint16_t h = f == WeightFormat::F16 ? f32_to_f16(w[i]) : f32_to_bf16(w[i]);
      std::memcpy(&s.data[2 * i], &h, 2);
    }
  } else if (f == WeightFormat::Affine) {
    W.group_size = 32;
    const int64_t groups = cols / 32;
    W.scale_dtype = DType::F16;
    W.scale_row_bytes = groups * 2;
    s.scales.resize(rows * groups * 2);
    s.biases.resize(rows * groups * 2);
    std::vector<float> sc(groups), bi(groups);
    for (int64_t r = 0; r < rows; ++r) {
      quant::affine_quantize_row(&w[r * cols], cols, bits, 32, true,
                                 reinterpret_cast<uint32_t*>(&s.data[r * W.row_bytes]), sc.data(), bi.data());
      for (int64_t g = 0; g < groups; ++g) {
        const uint16_t hs = f32_to_f16(sc[g]), hb = f32_to_f16(bi[g]);
        std::memcpy(&s.scales[(r * groups + g) * 2], &hs, 2);
        std::memcpy(&s.biases[(r * groups + g) * 2], &hb, 2);
      }
    }
  } else if (quant::is_fp_mode(f)) {
    W.group_size = quant::fp_group_size(f);
    W.bits = quant::fp_bits(f);
    W.row_bytes = stored_row_bytes(f, cols, W.bits);
    s.data.assign(W.row_bytes * rows, 0);
    W.scale_dtype = DType::U8;
    W.scale_row_bytes = cols / W.group_size;
    s.scales.resize(rows * W.scale_row_bytes);
    for (int64_t r = 0; r < rows; ++r)
      quant::fp_quantize_row(f, &w[r * cols], cols, reinterpret_cast<uint32_t*>(&s.data[r * W.row_bytes]),
                             &s.scales[r * W.scale_row_bytes]);
  } else {  // MXTQ
    auto tables = std::make_shared<MxtqTables>();
    tables->in_features = cols;
    tables->bits = bits;
    tables->signs = quant::mxtq_signs(cols, 42);
    tables->codebook = quant::mxtq_codebook(cols, bits);
    W.mxtq = tables;
    s.norms.resize(rows);
    for (int64_t r = 0; r < rows; ++r) {
      float norm = 0;
      quant::mxtq_quantize_row(&w[r * cols], cols, bits, tables->signs.data(), tables->codebook.data(),
                               reinterpret_cast<uint32_t*>(&s.data[r * W.row_bytes]), &norm);
      s.norms[r] = f32_to_f16(norm);
    }
  }
  W.data = s.data.data();
  if (!s.scales.empty()) W.scales = s.scales.data();
  if (!s.biases.empty()) W.biases = s.biases.data();
  if (!s.norms.empty()) W.norms = s.norms.data();
  return s;
}

struct Case {
  WeightFormat f;
  int bits;
  int64_t cols;
};

const Case kCases[] = {
    {WeightFormat::F32, 0, 37},    {WeightFormat::F16, 0, 70},    {WeightFormat::BF16, 0, 129},
    {WeightFormat::Affine, 4, 96}, {WeightFormat::Affine, 8, 160}, {WeightFormat::Affine, 3, 64},
    {WeightFormat::Affine, 2, 128}, {WeightFormat::MxFp4, 4, 96},  {WeightFormat::NvFp4, 4, 48},
    {WeightFormat::MxFp8, 8, 64},  {WeightFormat::Mxtq, 4, 192},  {WeightFormat::Mxtq, 3, 64},
    {WeightFormat::BF16, 0, 256},  {WeightFormat::BF16, 0, 20},
};

TEST(FormatTable, EveryRowIsItsOwnFormat) {
  for (int i = 0; i < kWeightFormatCount; ++i) {
    const FormatRow& row = format_row(static_cast<WeightFormat>(i));
    EXPECT_EQ(static_cast<int>(row.format), i);
    EXPECT_NE(row.decode_row, nullptr);
    EXPECT_NE(row.portable.run, nullptr) << "every format needs a portable product";
    EXPECT_NE(row.portable.reference, nullptr);
  }
}

TEST(FormatTable, RowDecodeIsTheCodecDefinition) {
  std::mt19937 rng(5);
  for (const Case& c : kCases) {
    Stored s = make(c.f, 3, c.cols, c.bits, rng);
    SCOPED_TRACE(testing::Message() << weight_format_name(c.f) << " bits " << c.bits);
    std::vector<float> row(c.cols), want(c.cols);
    for (int64_t r = 0; r < 3; ++r) {
      decode_row(s.W, r, row.data());
      // The codec's own dequantizer, called directly.
      const uint32_t* words = reinterpret_cast<const uint32_t*>(s.W.row(r));
      if (c.f == WeightFormat::Mxtq) {
        quant::mxtq_dequantize_row(words, f16_to_f32(s.W.norms[r]), c.cols, c.bits, s.W.mxtq->signs.data(),
                                   s.W.mxtq->codebook.data(), want.data());
      } else if (quant::is_fp_mode(c.f)) {
        quant::fp_dequantize_row(c.f, words, &s.scales[r * s.W.scale_row_bytes], c.cols, want.data());
      } else if (c.f == WeightFormat::Affine) {
        std::vector<float> sc(c.cols / 32), bi(c.cols / 32);
        for (size_t g = 0; g < sc.size(); ++g)
          sc[g] = stored_scale(s.scales.data(), DType::F16, r * sc.size() + g),
          bi[g] = stored_scale(s.biases.data(), DType::F16, r * sc.size() + g);
        quant::affine_dequantize_row(words, sc.data(), bi.data(), c.cols, c.bits, 32, want.data());
      } else {
        for (int64_t i = 0; i < c.cols; ++i) {
          uint16_t h;
          std::memcpy(&h, s.W.row(r) + 2 * i, 2);
          want[i] = c.f == WeightFormat::F32 ? reinterpret_cast<const float*>(s.W.row(r))[i]
                    : c.f == WeightFormat::F16 ? f16_to_f32(h) : bf16_to_f32(h);
        }
      }
      EXPECT_EQ(std::memcmp(row.data(), want.data(), row.size() * 4), 0) << "row " << r;
    }
    EXPECT_THROW(decode_row(s.W, 3, row.data()), Error);
  }
}

// Every product kernel of every row against its scalar twin, on every SIMD target, with 1 and 3 threads.
TEST(FormatTable, EveryKernelMatchesItsReference) {
  std::mt19937 rng(6);
  size_t runs = 0;
  for (int64_t target : kernels_testing::available_targets()) {
    kernels_testing::force_target(target);
    for (const Case& c : kCases) {
      Stored s = make(c.f, 13, c.cols, c.bits, rng);
      const FormatRow& row = format_row(c.f);
      for (const ProductKernel* k : {&row.fp32, &row.reduced, &row.portable, &row.int8, &row.matrix}) {
        if (!k->run || (k->accepts && !k->accepts(s.W))) continue;
        SCOPED_TRACE(testing::Message() << k->name << " on " << weight_format_name(c.f) << " bits " << c.bits
                                        << " target " << simd_target_name());
        for (size_t tokens : {1, 6}) {
          std::normal_distribution<float> d(0.0f, 1.0f);
          std::vector<float> X(tokens * c.cols), Y(tokens * 13), R(tokens * 13);
          for (auto& x : X) x = d(rng);
          k->reference(s.W, X.data(), tokens, R.data());
          for (size_t threads : {1, 3}) {
            ThreadPool pool(threads);
            k->run(s.W, X.data(), tokens, Y.data(), pool);
            double mag = 0;
            for (float r : R) mag = std::max(mag, static_cast<double>(std::fabs(r)));
            for (size_t i = 0; i < Y.size(); ++i)
              ASSERT_NEAR(Y[i], R[i], 1e-5 * (1 + mag)) << "tokens " << tokens << " threads " << threads << " i " << i;
            ++runs;
          }
        }
      }
    }
  }
  kernels_testing::force_target(0);
  EXPECT_GT(runs, 40u);
}

TEST(FormatTable, PickKernelFollowsPrecision) {
  std::mt19937 rng(7);
  Stored a4 = make(WeightFormat::Affine, 4, 64, 4, rng), a3 = make(WeightFormat::Affine, 4, 64, 3, rng);
  Stored f = make(WeightFormat::BF16, 4, 64, 0, rng);
  EXPECT_STREQ(pick_kernel(a4.W, Precision::Fast).name, "affine-int16");
  EXPECT_STREQ(pick_kernel(a4.W, Precision::Exact).name, "affine-f32");
  EXPECT_STREQ(pick_kernel(a3.W, Precision::Fast).name, "grouped");  // no int16 or fp32 SIMD path for 3 bits
  // BF16 arithmetic only where the CPU has AMX-BF16 or AVX512_BF16; fp32 tiles elsewhere and always under Exact.
  EXPECT_STREQ(pick_kernel(f.W, Precision::Fast).name,
               bf16_amx_accepts(f.W) ? "bf16-amx" : bf16_dot_accepts(f.W) ? "bf16-dot" : "bf16-tiles");
  EXPECT_STREQ(pick_kernel(f.W, Precision::Exact).name, "bf16-tiles");
}

// The BF16-arithmetic kernel is its reference bit for bit on this CPU, whatever the batch or thread count: each
// token alone gives the row it gets in a batch (decode path vs tiled path).
TEST(FormatTable, Bf16DotIsBitwiseItsReferenceAndBatchInvariant) {
  std::mt19937 rng(8);
  for (int64_t cols : {2048, 100}) {
    Stored s = make(WeightFormat::BF16, 37, cols, 0, rng);
    if (!bf16_dot_accepts(s.W)) GTEST_SKIP() << "no AVX512_BF16 on this CPU (target " << simd_target_name() << ")";
    const size_t n = 11;
    std::normal_distribution<float> d(0.0f, 1.0f);
    std::vector<float> X(n * cols), R(n * 37), Y(n * 37), one(37);
    for (auto& x : X) x = d(rng);
    bf16_dot_reference(s.W, X.data(), n, R.data());
    for (size_t threads : {1, 2, 3}) {
      ThreadPool pool(threads);
      bf16_dot_product(s.W, X.data(), n, Y.data(), pool);
      EXPECT_EQ(std::memcmp(Y.data(), R.data(), Y.size() * 4), 0) << "cols " << cols << " threads " << threads;
      for (size_t t = 0; t < n; ++t) {
        bf16_dot_product(s.W, X.data() + t * cols, 1, one.data(), pool);
        EXPECT_EQ(std::memcmp(one.data(), R.data() + t * 37, 37 * 4), 0) << "token " << t << " alone, cols " << cols;
      }
    }
  }
}

// The reference's arithmetic is what it says: within the bf16 rounding of the activations (relative 2^-9 per
// element, so |y - y64| <= 2^-9 Σ|w·x| plus the fp32 sums) of the float64 product over the stored weights, and
// visibly not the fp32-activation product (the activations are rounded).
TEST(FormatTable, Bf16DotReferenceIsBf16Arithmetic) {
  std::mt19937 rng(9);
  Stored s = make(WeightFormat::BF16, 16, 512, 0, rng);
  std::normal_distribution<float> d(0.0f, 1.0f);
  std::vector<float> X(3 * 512), Y(3 * 16), R(3 * 16), row(512);
  for (auto& x : X) x = d(rng);
  bf16_dot_reference(s.W, X.data(), 3, Y.data());
  matmul_ref(s.W, X.data(), 3, R.data());
  double max_rel = 0;
  for (size_t t = 0; t < 3; ++t)
    for (int64_t r = 0; r < 16; ++r) {
      decode_row(s.W, r, row.data());
      double abs_sum = 0;
      for (int64_t c = 0; c < 512; ++c) abs_sum += std::fabs(static_cast<double>(row[c]) * X[t * 512 + c]);
      const double err = std::fabs(Y[t * 16 + r] - R[t * 16 + r]);
      EXPECT_LE(err, (1.0 / 512 + 1e-6) * abs_sum) << "t " << t << " r " << r;
      max_rel = std::max(max_rel, err / abs_sum);
    }
  EXPECT_GT(max_rel, 1e-5) << "activations were not rounded to bf16";
  // Exact bf16 activations (values with 8 significant bits) give the float64 product up to fp32 summation.
  for (auto& x : X) x = bf16_to_f32(f32_to_bf16(x));
  bf16_dot_reference(s.W, X.data(), 3, Y.data());
  matmul_ref(s.W, X.data(), 3, R.data());
  for (size_t i = 0; i < Y.size(); ++i) EXPECT_NEAR(Y[i], R[i], 1e-4 * (1 + std::fabs(R[i])));
}

// The profile hook counts every product between profile_begin and profile_end under its kernel's name, with the
// bytes of its matrix, and nothing outside that window.
TEST(FormatTable, ProfileCountsProductsPerKernel) {
  std::mt19937 rng(10);
  Stored f = make(WeightFormat::F32, 8, 64, 0, rng), a = make(WeightFormat::Affine, 8, 64, 4, rng);
  std::vector<float> X(2 * 64, 0.5f), Y(2 * 8);
  matmul(f.W, X.data(), 2, Y.data());  // before: not counted
  profile_begin();
  for (int i = 0; i < 3; ++i) matmul(f.W, X.data(), 2, Y.data());
  matmul(a.W, X.data(), 1, Y.data(), Compute(Precision::Exact));
  const ProfileReport r = profile_end();
  matmul(f.W, X.data(), 2, Y.data());  // after: not counted
  ASSERT_EQ(r.kernels.size(), 2u);
  EXPECT_EQ(r.kernels[0].name, "f32-tiles");
  EXPECT_EQ(r.kernels[0].calls, 3u);
  EXPECT_EQ(r.kernels[0].weight_bytes, 3 * f.W.bytes());
  EXPECT_EQ(r.kernels[1].name, "affine-f32");
  EXPECT_EQ(r.kernels[1].weight_bytes, a.W.bytes());
  ASSERT_EQ(r.parts.size(), 5u);
  EXPECT_EQ(r.parts.back().weight_bytes, 3 * f.W.bytes() + a.W.bytes()) << "products outside every part";
  EXPECT_GE(r.seconds, r.kernels[0].seconds + r.kernels[1].seconds);
}

}  // namespace
}  // namespace zaya
