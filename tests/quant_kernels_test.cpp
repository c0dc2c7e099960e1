// Quantized matmul kernels (working on packed data) against the scalar reference (dequantize the row, dot in double),
// on random shapes with ragged edges, plus thread and batch invariance.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "kernels/quant_matmul.h"
#include "zaya/kernels.h"
#include "zaya/quant.h"
#include "zaya/safetensors.h"
#include "zaya/thread_pool.h"

using namespace zaya;

namespace {

struct QuantMatrix {
  std::vector<uint32_t> packed;
  std::vector<uint16_t> scales, biases, norms;
  std::vector<uint8_t> fp_scales;
  std::shared_ptr<MxtqTables> tables;
  WeightMatrix W;
};

std::vector<float> random_floats(size_t n, std::mt19937& rng, float scale = 1.0f) {
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

QuantMatrix make_affine(int64_t rows, int64_t cols, int bits, int group, std::mt19937& rng) {
  QuantMatrix q;
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
  q.W.format = WeightFormat::Affine;
  q.W.rows = rows;
  q.W.cols = cols;
  q.W.bits = bits;
  q.W.group_size = group;
  q.W.data = q.packed.data();
  q.W.row_bytes = words * 4;
  q.W.scales = q.scales.data();
  q.W.biases = q.biases.data();
  q.W.scale_dtype = DType::F16;
  q.W.scale_row_bytes = groups * 2;
  q.W.name = "affine";
  return q;
}

QuantMatrix make_fp(int64_t rows, int64_t cols, quant::FpMode mode, WeightFormat f, std::mt19937& rng) {
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
    W.row_to_f32(r, row.data());
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
    auto a = make_fp(9, cols, quant::FpMode::MxFp4, WeightFormat::MxFp4, rng);
    expect_matches_reference(a.W, 3, rng, "mxfp4");
    auto b = make_fp(9, cols, quant::FpMode::NvFp4, WeightFormat::NvFp4, rng);
    expect_matches_reference(b.W, 3, rng, "nvfp4");
    auto c = make_fp(9, cols, quant::FpMode::MxFp8, WeightFormat::MxFp8, rng);
    expect_matches_reference(c.W, 3, rng, "mxfp8");
  }
  for (int bits : {2, 3, 4})
    for (int64_t cols : {48, 64, 192}) {
      auto m = make_mxtq(11, cols, bits, rng);
      expect_matches_reference(m.W, 2, rng, "mxtq b" + std::to_string(bits) + " cols " + std::to_string(cols));
    }
}

TEST(KernelQuant, ThreadAndBatchInvariant) {
  std::mt19937 rng(9);
  std::vector<QuantMatrix> ms;
  ms.push_back(make_affine(37, 2048, 4, 32, rng));
  ms.push_back(make_affine(37, 2048 + 96, 8, 32, rng));
  ms.push_back(make_mxtq(21, 192, 4, rng));
  ms.push_back(make_fp(21, 128, quant::FpMode::MxFp4, WeightFormat::MxFp4, rng));
  for (auto& q : ms) {
    const size_t n = 11;
    auto X = random_floats(n * q.W.cols, rng);
    std::vector<float> ref(n * q.W.rows);
    ThreadPool one(1);
    matmul(q.W, X.data(), n, ref.data(), &one);
    for (size_t threads : {2, 3}) {
      ThreadPool p(threads);
      std::vector<float> y(n * q.W.rows);
      matmul(q.W, X.data(), n, y.data(), &p);
      EXPECT_EQ(y, ref) << weight_format_name(q.W.format) << " threads " << threads;
    }
    // Each token alone gives bitwise the same row as in the 11-token batch (decode vs prefill paths).
    for (size_t t = 0; t < n; ++t) {
      std::vector<float> y(q.W.rows);
      matmul(q.W, &X[t * q.W.cols], 1, y.data(), &one);
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
