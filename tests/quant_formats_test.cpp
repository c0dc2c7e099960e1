// Quantization-format reference library (bundle-formats §3, §4, §8) against the golden vectors in
// tests/data/golden/formats: MLX affine (Metal and CPU rules), mxfp4/nvfp4/mxfp8, and JANG MXTQ.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "test_util.h"
#include "zaya/error.h"
#include "tensor/quant_formats.h"
#include "io/safetensors.h"

namespace q = zaya::quant;

namespace {

std::string formats_file(const std::string& name) {
  return zaya::test::require_path(zaya::test::data_dir() + "/golden/formats/" + name);
}

template <typename T>
std::vector<T> raw(const zaya::TensorView& v, zaya::DType expect) {
  EXPECT_EQ(v.dtype, expect) << v.name;
  if (v.dtype != expect || v.nbytes % sizeof(T) != 0) throw zaya::Error("unexpected dtype for " + v.name);
  std::vector<T> out(v.nbytes / sizeof(T));
  std::memcpy(out.data(), v.data, v.nbytes);  // the data may be unaligned
  return out;
}

std::vector<uint32_t> u32(const zaya::TensorStore& s, const std::string& n) {
  return raw<uint32_t>(s.require(n), zaya::DType::U32);
}
std::vector<uint16_t> f16_bits(const zaya::TensorStore& s, const std::string& n) {
  return raw<uint16_t>(s.require(n), zaya::DType::F16);
}
std::vector<float> f32(const zaya::TensorStore& s, const std::string& n) { return zaya::to_f32(s.require(n)); }

// Tensor names built with zaya::cat (GCC 12 warns falsely (-Wrestrict) on "literal" + std::string temporaries).
std::string affine_case(const char* rules, int bits, int group) { return zaya::cat(rules, ".b", bits, "_g", group, "."); }

uint32_t fbits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

// ---- affine ------------------------------------------------------------------------------------------------------

struct AffineResult {
  std::vector<uint32_t> words;
  std::vector<uint16_t> scales, biases;  // F16 bits
};

AffineResult quantize_rows(const std::vector<float>& w, int64_t rows, int64_t n, int bits, int group, bool metal) {
  AffineResult r;
  const int64_t wpr = q::packed_words(n, bits), gpr = n / group;
  r.words.resize(static_cast<size_t>(rows * wpr));
  std::vector<float> s(static_cast<size_t>(gpr)), b(static_cast<size_t>(gpr));
  for (int64_t i = 0; i < rows; ++i) {
    q::affine_quantize_row(w.data() + i * n, n, bits, group, metal, r.words.data() + i * wpr, s.data(), b.data());
    for (int64_t g = 0; g < gpr; ++g) {
      r.scales.push_back(zaya::f32_to_f16(s[g]));
      r.biases.push_back(zaya::f32_to_f16(b[g]));
    }
  }
  return r;
}

const int kAffineBits[] = {2, 3, 4, 5, 6, 8};
const int kAffineGroups[] = {32, 64};

TEST(QuantFormatAffine, SpecVectorsMetalRulesBitExact) {
  const auto st = zaya::TensorStore::open(formats_file("affine_spec_vectors.safetensors"));
  const std::vector<float> in = f32(st, "input_f16");
  ASSERT_EQ(in.size(), 4u * 64u);
  for (int bits : kAffineBits)
    for (int group : kAffineGroups) {
      const std::string p = affine_case("metal", bits, group);
      SCOPED_TRACE(p);
      const AffineResult r = quantize_rows(in, 4, 64, bits, group, /*metal=*/true);
      EXPECT_EQ(r.words, u32(st, p + "weight"));
      EXPECT_EQ(r.scales, f16_bits(st, p + "scales"));
      EXPECT_EQ(r.biases, f16_bits(st, p + "biases"));
    }
}

TEST(QuantFormatAffine, SpecVectorsCpuRulesBitExact) {
  const auto st = zaya::TensorStore::open(formats_file("affine_spec_vectors.safetensors"));
  const std::vector<float> in = f32(st, "input_f16");
  int cpu_variants = 0;
  for (int bits : kAffineBits)
    for (int group : kAffineGroups) {
      // Where no cpu.* variant is stored the CPU rules must give the Metal result.
      const bool has_cpu = st.find(affine_case("cpu", bits, group) + "weight") != nullptr;
      cpu_variants += has_cpu;
      const std::string p = affine_case(has_cpu ? "cpu" : "metal", bits, group);
      SCOPED_TRACE(p);
      const AffineResult r = quantize_rows(in, 4, 64, bits, group, /*metal=*/false);
      EXPECT_EQ(r.words, u32(st, p + "weight"));
      EXPECT_EQ(r.scales, f16_bits(st, p + "scales"));
      EXPECT_EQ(r.biases, f16_bits(st, p + "biases"));
      if (has_cpu) {
        // The README: the two rule sets differ on row 2 (all negative) only.
        const AffineResult m = quantize_rows(in, 4, 64, bits, group, /*metal=*/true);
        EXPECT_NE(r.words, m.words);
        const int64_t wpr = q::packed_words(64, bits);
        for (int64_t row : {0, 1, 3})
          for (int64_t k = 0; k < wpr; ++k) EXPECT_EQ(r.words[row * wpr + k], m.words[row * wpr + k]);
      }
    }
  EXPECT_EQ(cpu_variants, 8);  // bits 4/5/6/8 × groups 32/64
}

TEST(QuantFormatAffine, SpecVectorsDequantExact) {
  const auto st = zaya::TensorStore::open(formats_file("affine_spec_vectors.safetensors"));
  for (int bits : kAffineBits)
    for (int group : kAffineGroups) {
      const std::string p = affine_case("metal", bits, group);
      SCOPED_TRACE(p);
      const auto words = u32(st, p + "weight");
      const auto scales = f32(st, p + "scales"), biases = f32(st, p + "biases");
      const auto ref = f32(st, p + "dequant_f32");
      const int64_t wpr = q::packed_words(64, bits), gpr = 64 / group;
      std::vector<float> out(64);
      for (int64_t row = 0; row < 4; ++row) {
        q::affine_dequantize_row(words.data() + row * wpr, scales.data() + row * gpr, biases.data() + row * gpr, 64,
                                 bits, group, out.data());
        for (int64_t i = 0; i < 64; ++i) EXPECT_EQ(fbits(out[i]), fbits(ref[row * 64 + i])) << row << "," << i;
      }
    }
}

// NumPy's Generator.standard_normal (float64 ziggurat, 256 layers) on our PCG64, to regenerate the real fixture's
// input W = default_rng(0xBADC0FFEE).standard_normal((128, 64)).astype(float32). The layer tables are rebuilt
// with Marsaglia & Tsang's recursion (r = 3.6541528853610088, v = 4.92867323399e-3); an ulp difference against
// NumPy's stored tables could only matter on a draw landing exactly on a layer edge.
class NumpyNormal {
 public:
  explicit NumpyNormal(uint64_t seed) : rng_(seed) {
    const double m1 = 4503599627370496.0;  // 2^52
    double dn = kR, tn = dn;
    const double q_ = kV / std::exp(-0.5 * dn * dn);
    ki_[0] = static_cast<uint64_t>((dn / q_) * m1);
    ki_[1] = 0;
    wi_[0] = q_ / m1;
    wi_[255] = dn / m1;
    fi_[0] = 1.0;
    fi_[255] = std::exp(-0.5 * dn * dn);
    for (int i = 254; i >= 1; --i) {
      dn = std::sqrt(-2.0 * std::log(kV / dn + std::exp(-0.5 * dn * dn)));
      ki_[i + 1] = static_cast<uint64_t>((dn / tn) * m1);
      tn = dn;
      fi_[i] = std::exp(-0.5 * dn * dn);
      wi_[i] = dn / m1;
    }
  }
  double next() {
    for (;;) {
      uint64_t r = rng_.next64();
      const int idx = static_cast<int>(r & 0xFF);
      r >>= 8;
      const bool neg = r & 1u;
      const uint64_t rabs = (r >> 1) & 0x000FFFFFFFFFFFFFull;
      double x = static_cast<double>(rabs) * wi_[idx];
      if (neg) x = -x;
      if (rabs < ki_[idx]) return x;
      if (idx == 0) {
        for (;;) {  // the tail beyond r
          const double xx = -(1.0 / kR) * std::log1p(-rng_.next_double());
          const double yy = -std::log1p(-rng_.next_double());
          if (yy + yy > xx * xx) return ((rabs >> 8) & 1u) ? -(kR + xx) : kR + xx;
        }
      }
      if ((fi_[idx - 1] - fi_[idx]) * rng_.next_double() + fi_[idx] < std::exp(-0.5 * x * x)) return x;
    }
  }

 private:
  static constexpr double kR = 3.6541528853610088;
  static constexpr double kV = 4.92867323399e-3;
  q::Pcg64 rng_;
  uint64_t ki_[256];
  double wi_[256], fi_[256];
};

// Real MLX output (mx.quantize, 4-bit, group 64): our quantizer reproduces words, scales and biases bit-exactly
// under both rule sets, and W_dq·x (stored F16 scales) matches y_ref to the documented 7.5e-3.
TEST(QuantFormatAffine, RealMlxFixture) {
  const auto st = zaya::TensorStore::open(formats_file("real_mlx_affine4_g64_matmul_64x128.safetensors"));
  const auto words = u32(st, "W.weight");
  const auto scales_bits = f16_bits(st, "W.scales"), biases_bits = f16_bits(st, "W.biases");
  const auto scales = f32(st, "W.scales"), biases = f32(st, "W.biases");
  const auto x = f32(st, "x"), y_ref = f32(st, "y_ref");
  ASSERT_EQ(words.size(), 128u * 8u);
  ASSERT_EQ(x.size(), 64u);

  NumpyNormal normal(0xBADC0FFEEull);
  std::vector<float> w(128 * 64);
  for (auto& v : w) v = static_cast<float>(normal.next());
  for (bool metal : {true, false}) {
    SCOPED_TRACE(metal ? "metal" : "cpu");
    const AffineResult r = quantize_rows(w, 128, 64, 4, 64, metal);
    EXPECT_EQ(r.words, words);
    EXPECT_EQ(r.scales, scales_bits);
    EXPECT_EQ(r.biases, biases_bits);
  }

  // y_ref was computed with the float32 scales: ours reproduce it closely; the stored F16 ones within 7.5e-3.
  std::vector<float> wdq(64), s(1), b(1);
  std::vector<uint32_t> pk(8);
  double err_f32 = 0, err_f16 = 0;
  for (int64_t o = 0; o < 128; ++o) {
    q::affine_quantize_row(w.data() + o * 64, 64, 4, 64, true, pk.data(), s.data(), b.data());
    q::affine_dequantize_row(pk.data(), s.data(), b.data(), 64, 4, 64, wdq.data());
    double y = 0;
    for (int64_t i = 0; i < 64; ++i) y += static_cast<double>(wdq[i]) * x[i];
    err_f32 = std::max(err_f32, std::fabs(y - y_ref[o]));
    q::affine_dequantize_row(words.data() + o * 8, &scales[o], &biases[o], 64, 4, 64, wdq.data());
    y = 0;
    for (int64_t i = 0; i < 64; ++i) y += static_cast<double>(wdq[i]) * x[i];
    err_f16 = std::max(err_f16, std::fabs(y - y_ref[o]));
  }
  EXPECT_LE(err_f32, 1e-5);
  EXPECT_LE(err_f16, 7.5e-3);
}

TEST(QuantFormatAffine, HandWorkedExample) {
  std::vector<float> w(32);
  for (int i = 0; i < 32; ++i) w[i] = static_cast<float>(i - 12) * 0.125f;
  float s, b;
  uint32_t words[8];
  for (bool metal : {true, false}) {
    q::affine_quantize_row(w.data(), 32, 4, 32, metal, words, &s, &b);
    EXPECT_EQ(words[0], 0xBCCDDEEFu);
    EXPECT_EQ(words[1], 0x88999AABu);
    EXPECT_EQ(words[2], 0x44556677u);
    EXPECT_EQ(words[3], 0x00112233u);
    EXPECT_EQ(s, 2.375f / -9.0f);
    EXPECT_EQ(zaya::f32_to_f16(s), 0xB439);
    EXPECT_EQ(zaya::f32_to_f16(b), 0x40C0);
    const uint8_t codes[32] = {15, 14, 14, 13, 13, 12, 12, 11, 11, 10, 10, 9, 9, 9, 8, 8,
                               7,  7,  6,  6,  5,  5,  4,  4,  3,  3,  2,  2, 1, 1, 0, 0};
    for (int i = 0; i < 32; ++i) EXPECT_EQ(q::unpack_code(words, i, 4), codes[i]) << i;

    // Dequantized with the F16 scale and bias: −1.58374 at the saturated far end, −0.00024 for zero, 2.375.
    const float sf = zaya::f16_to_f32(zaya::f32_to_f16(s)), bf = zaya::f16_to_f32(zaya::f32_to_f16(b));
    float out[32];
    q::affine_dequantize_row(words, &sf, &bf, 32, 4, 32, out);
    EXPECT_NEAR(out[0], -1.58374f, 1e-5f);
    EXPECT_NEAR(out[12], -0.00024f, 1e-5f);
    EXPECT_EQ(out[31], 2.375f);

    q::affine_quantize_row(w.data(), 32, 3, 32, metal, words, &s, &b);
    EXPECT_EQ(words[0], 0x2DB6EDB7u);
    EXPECT_EQ(words[1], 0x26DB7249u);
    EXPECT_EQ(words[2], 0x00124949u);
    EXPECT_EQ(zaya::f16_to_f32(zaya::f32_to_f16(s)), -0.59375f);
    EXPECT_EQ(b, 2.375f);
    EXPECT_EQ(q::unpack_code(words, 10, 3), 4u);  // crosses words 0 → 1

    q::affine_quantize_row(w.data(), 32, 8, 32, metal, words, &s, &b);
    EXPECT_EQ(words[0], 0xE6EEF6FFu);
    EXPECT_NEAR(zaya::f16_to_f32(zaya::f32_to_f16(s)), -0.015221f, 1e-6f);
  }
}

TEST(QuantFormatAffine, PackUnpackRoundTripAllBits) {
  std::mt19937 rng(7);
  for (int bits : {1, 2, 3, 4, 5, 6, 7, 8}) {
    for (int64_t n : {1, 7, 32, 33, 64, 100, 256}) {
      std::vector<uint8_t> codes(static_cast<size_t>(n));
      for (auto& c : codes) c = static_cast<uint8_t>(rng() & ((1u << bits) - 1u));
      std::vector<uint32_t> packed(static_cast<size_t>(q::packed_words(n, bits)), 0xFFFFFFFFu);
      q::pack_codes(codes.data(), n, bits, packed.data());
      for (int64_t i = 0; i < n; ++i) ASSERT_EQ(q::unpack_code(packed.data(), i, bits), codes[i]) << bits << " " << i;
      // Element i is at stream bits [i·bits, (i+1)·bits), LSB first; unused high bits are zero.
      for (int64_t k = n * bits; k < static_cast<int64_t>(packed.size()) * 32; ++k)
        EXPECT_EQ((packed[k / 32] >> (k % 32)) & 1u, 0u);
    }
  }
  // §3.2 examples: 5-bit element 6 and 6-bit element 5 straddle words 0 and 1.
  uint8_t c5[8] = {0, 0, 0, 0, 0, 0, 0x1F, 0};
  uint32_t p5[2];
  q::pack_codes(c5, 8, 5, p5);
  EXPECT_EQ(p5[0], 0xC0000000u);
  EXPECT_EQ(p5[1], 0x7u);
  uint8_t c6[6] = {0, 0, 0, 0, 0, 0x3F};
  uint32_t p6[2];
  q::pack_codes(c6, 6, 6, p6);
  EXPECT_EQ(p6[0], 0xC0000000u);
  EXPECT_EQ(p6[1], 0xFu);
  EXPECT_EQ(q::packed_words(64, 3), 6);
}

TEST(QuantFormatAffine, AllZeroGroupAndErrors) {
  std::vector<float> w(32, 0.0f);
  float s, b;
  uint32_t words[4];
  q::affine_quantize_row(w.data(), 32, 4, 32, true, words, &s, &b);
  EXPECT_EQ(zaya::f32_to_f16(s), zaya::f32_to_f16(-1e-7f));
  EXPECT_EQ(b, 0.0f);
  for (uint32_t v : words) EXPECT_EQ(v, 0u);

  std::vector<float> big(128, 1.0f), sb(8), bb(8);
  std::vector<uint32_t> pk(64);
  EXPECT_THROW(q::affine_quantize_row(big.data(), 64, 7, 32, true, pk.data(), sb.data(), bb.data()), zaya::Error);
  EXPECT_THROW(q::affine_quantize_row(big.data(), 64, 1, 32, true, pk.data(), sb.data(), bb.data()), zaya::Error);
  EXPECT_THROW(q::affine_quantize_row(big.data(), 64, 4, 16, true, pk.data(), sb.data(), bb.data()), zaya::Error);
  EXPECT_THROW(q::affine_quantize_row(big.data(), 48, 4, 32, true, pk.data(), sb.data(), bb.data()), zaya::Error);
  EXPECT_THROW(q::affine_dequantize_row(pk.data(), sb.data(), bb.data(), 48, 4, 32, big.data()), zaya::Error);
  EXPECT_TRUE(q::affine_bits_supported(3));
  EXPECT_FALSE(q::affine_bits_supported(7));
  EXPECT_TRUE(q::affine_group_supported(128));
  EXPECT_FALSE(q::affine_group_supported(256));
}

// ---- fp modes ----------------------------------------------------------------------------------------------------

TEST(QuantFormatFp, Tables) {
  const float e2m1[16] = {0, 0.5f, 1, 1.5f, 2, 3, 4, 6, -0.0f, -0.5f, -1, -1.5f, -2, -3, -4, -6};
  for (int c = 0; c < 16; ++c) EXPECT_EQ(fbits(zaya::e2m1_to_f32(static_cast<uint8_t>(c))), fbits(e2m1[c])) << c;
  EXPECT_EQ(zaya::e8m0_to_f32(127), 1.0f);
  EXPECT_EQ(zaya::e8m0_to_f32(128), 2.0f);
  EXPECT_EQ(zaya::e8m0_to_f32(120), 1.0f / 128.0f);
  EXPECT_EQ(zaya::e8m0_to_f32(0), std::ldexp(1.0f, -127));
  EXPECT_EQ(zaya::e8m0_to_f32(254), std::ldexp(1.0f, 127));
  EXPECT_TRUE(std::isinf(zaya::e8m0_to_f32(0xFF)));
  // E4M3fn (the one decoder, io/dtype.h; checked against an independent formula in safetensors_test): every
  // finite code round-trips through the encoder; the known anchors.
  for (int b = 0; b < 256; ++b) {
    const float v = zaya::e4m3_to_f32(static_cast<uint8_t>(b));
    if ((b & 0x7F) == 0x7F) {
      EXPECT_TRUE(std::isnan(v)) << b;
      continue;
    }
    EXPECT_EQ(zaya::f32_to_e4m3(v), b) << b;  // every finite code round-trips (incl. −0)
  }
  EXPECT_EQ(zaya::e4m3_to_f32(0x7E), 448.0f);
  EXPECT_EQ(zaya::e4m3_to_f32(0x01), std::ldexp(1.0f, -9));
  EXPECT_EQ(zaya::e4m3_to_f32(0x08), std::ldexp(1.0f, -6));
  EXPECT_EQ(zaya::f32_to_e4m3(1000.0f), 0x7E);
  EXPECT_EQ(zaya::f32_to_e4m3(-1e9f), 0xFE);
  EXPECT_EQ(zaya::f32_to_e4m3(INFINITY), 0x7E);
  EXPECT_EQ(zaya::f32_to_e4m3(460.0f), 0x7E);
  // Ties to even: 1.0625 lies between 1 (m=0) and 1.125 (m=1) → 1; 1.1875 between 1.125 and 1.25 → 1.25.
  EXPECT_EQ(zaya::f32_to_e4m3(1.0625f), 0x38);
  EXPECT_EQ(zaya::f32_to_e4m3(1.1875f), 0x3A);
  EXPECT_EQ(zaya::f32_to_e4m3(std::ldexp(1.0f, -10)), 0x00);       // half the smallest subnormal → even (0)
  EXPECT_EQ(zaya::f32_to_e4m3(3.0f * std::ldexp(1.0f, -10)), 0x02);  // 1.5 subnormal steps → 2
  EXPECT_EQ(q::fp_group_size(zaya::WeightFormat::MxFp4), 32);
  EXPECT_EQ(q::fp_group_size(zaya::WeightFormat::NvFp4), 16);
  EXPECT_EQ(q::fp_group_size(zaya::WeightFormat::MxFp8), 32);
  EXPECT_EQ(q::fp_bits(zaya::WeightFormat::MxFp8), 8);
}

TEST(QuantFormatFp, Mxfp4SpecVectorsBitExact) {
  const auto st = zaya::TensorStore::open(formats_file("mxfp4_spec_vectors.safetensors"));
  const auto in = f32(st, "input_f16");
  const auto words = u32(st, "mxfp4.weight");
  const auto scales = raw<uint8_t>(st.require("mxfp4.scales"), zaya::DType::U8);
  const auto ref = f32(st, "mxfp4.dequant_f32");
  ASSERT_EQ(in.size(), 128u);
  std::vector<uint32_t> w(16);
  std::vector<uint8_t> s(4);
  for (int r = 0; r < 2; ++r) q::fp_quantize_row(zaya::WeightFormat::MxFp4, in.data() + r * 64, 64, w.data() + r * 8, s.data() + r * 2);
  EXPECT_EQ(w, words);
  EXPECT_EQ(s, scales);
  EXPECT_EQ(s, (std::vector<uint8_t>{127, 120, 128, 128}));
  EXPECT_EQ(words[0], 0x4E4826A1u);  // §4.1 word 0
  std::vector<float> out(64);
  for (int r = 0; r < 2; ++r) {
    q::fp_dequantize_row(zaya::WeightFormat::MxFp4, words.data() + r * 8, scales.data() + r * 2, 64, out.data());
    for (int i = 0; i < 64; ++i) EXPECT_EQ(fbits(out[i]), fbits(ref[r * 64 + i])) << r << "," << i;
  }
}

TEST(QuantFormatFp, NvFp4AndMxFp8RoundTrip) {
  std::mt19937 rng(123);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  const int64_t n = 4096;
  std::vector<float> x(n);
  for (auto& v : x) v = nd(rng) * 0.05f;
  struct Case {
    zaya::WeightFormat m;
    double max_rel_rms;  // RMS error relative to the group's amax
  };
  // E2M1 steps reach 2 units of a scale of amax/6 (≈ 0.33·amax at the top): RMS error ~0.1·amax; E4M3 has 3
  // mantissa bits: relative error ≤ 2^-4 per element.
  for (Case c : {Case{zaya::WeightFormat::NvFp4, 0.12}, Case{zaya::WeightFormat::MxFp4, 0.2}, Case{zaya::WeightFormat::MxFp8, 0.04}}) {
    const int g = q::fp_group_size(c.m);
    std::vector<uint32_t> packed(static_cast<size_t>(q::packed_words(n, q::fp_bits(c.m))));
    std::vector<uint8_t> scales(static_cast<size_t>(n / g));
    std::vector<float> y(n);
    q::fp_quantize_row(c.m, x.data(), n, packed.data(), scales.data());
    q::fp_dequantize_row(c.m, packed.data(), scales.data(), n, y.data());
    double err2 = 0, amax2 = 0;
    for (int64_t gi = 0; gi < n / g; ++gi) {
      double amax = 0;
      for (int j = 0; j < g; ++j) amax = std::max(amax, std::fabs(static_cast<double>(x[gi * g + j])));
      for (int j = 0; j < g; ++j) {
        const double d = y[gi * g + j] - x[gi * g + j];
        err2 += d * d;
        // mxfp8 elements: each within half an E4M3 ulp (2^-4 relative) once scaled, or tiny in absolute terms.
        if (c.m == zaya::WeightFormat::MxFp8) {
          // The exponent is rounded, not floored, so |x|/scale may pass 448 and saturate; otherwise E4M3 keeps
          // half an ulp: 2^-4 relative for normals, 2^-10·scale for subnormals.
          const double sc = zaya::e8m0_to_f32(scales[gi]);
          if (std::fabs(x[gi * g + j]) / sc > 448.0)
            EXPECT_EQ(std::fabs(y[gi * g + j]), 448.0 * sc) << gi << "," << j;
          else
            EXPECT_LE(std::fabs(d), std::fabs(x[gi * g + j]) * 0.0625 + sc * std::ldexp(1.0, -10)) << gi << "," << j;
        }
      }
      amax2 += amax * amax;
    }
    EXPECT_LE(std::sqrt(err2 / n) / std::sqrt(amax2 / (n / g)), c.max_rel_rms) << static_cast<int>(c.m);
  }
  // nvfp4 scale is E4M3(amax/6): a group with amax 6 gets scale 1.0 (0x38) and reproduces the E2M1 grid exactly.
  std::vector<float> grid = {0, 0.5f, 1, 1.5f, 2, 3, 4, 6, -0.5f, -1, -1.5f, -2, -3, -4, -6, 0};
  uint32_t pk[2];
  uint8_t sc;
  q::fp_quantize_row(zaya::WeightFormat::NvFp4, grid.data(), 16, pk, &sc);
  EXPECT_EQ(sc, 0x38);
  std::vector<float> back(16);
  q::fp_dequantize_row(zaya::WeightFormat::NvFp4, pk, &sc, 16, back.data());
  EXPECT_EQ(back, grid);
  EXPECT_THROW(q::fp_quantize_row(zaya::WeightFormat::NvFp4, grid.data(), 8, pk, &sc), zaya::Error);
  EXPECT_THROW(q::fp_quantize_row(zaya::WeightFormat::MxFp4, grid.data(), 16, pk, &sc), zaya::Error);
}

TEST(QuantFormatFp, ZeroGroupScale) {
  std::vector<float> z(32, 0.0f), out(32, 1.0f);
  uint32_t pk[4];
  uint8_t sc = 99;
  q::fp_quantize_row(zaya::WeightFormat::MxFp4, z.data(), 32, pk, &sc);
  EXPECT_EQ(sc, 0);
  q::fp_dequantize_row(zaya::WeightFormat::MxFp4, pk, &sc, 32, out.data());
  for (float v : out) EXPECT_EQ(v, 0.0f);
}

// ---- MXTQ --------------------------------------------------------------------------------------------------------

TEST(QuantFormatMxtq, SeedSequenceState) {
  const q::Pcg64State s = q::pcg64_seeded_state(42);
  EXPECT_EQ(s.state_hi, 0xCEA44F6798798F2Aull);
  EXPECT_EQ(s.state_lo, 0xACBC7C9D68860AC8ull);
  EXPECT_EQ(s.inc_hi, 0xFA505436C9A8416Eull);
  EXPECT_EQ(s.inc_lo, 0x66CAF2E28D25ABFFull);
  const std::vector<float> first = q::mxtq_signs(16, 42);
  const float expect[16] = {-1, 1, 1, -1, -1, 1, -1, 1, -1, -1, 1, 1, 1, 1, 1, 1};
  for (int i = 0; i < 16; ++i) EXPECT_EQ(first[i], expect[i]) << i;
  // Other seeds give other streams (increment always odd).
  const q::Pcg64State s0 = q::pcg64_seeded_state(0), s1 = q::pcg64_seeded_state(1ull << 40);
  EXPECT_EQ(s0.inc_lo & 1u, 1u);
  EXPECT_NE(s0.state_lo, s.state_lo);
  EXPECT_NE(s1.state_lo, s0.state_lo);
}

TEST(QuantFormatMxtq, SignsExact) {
  const auto st = zaya::TensorStore::open(formats_file("mxtq_spec_vectors.safetensors"));
  const auto rt = zaya::TensorStore::open(formats_file("jangtq_runtime_2048_seed42_reproduced.safetensors"));
  EXPECT_EQ(q::mxtq_signs(64, 42), f32(st, "signs.64.42"));
  const auto s2048 = q::mxtq_signs(2048, 42);
  EXPECT_EQ(s2048, f32(rt, "signs.2048.42"));
  // Prefix property.
  EXPECT_TRUE(std::equal(s2048.begin(), s2048.begin() + 64, q::mxtq_signs(64, 42).begin()));
}

TEST(QuantFormatMxtq, CodebooksExact) {
  const auto st = zaya::TensorStore::open(formats_file("mxtq_spec_vectors.safetensors"));
  const auto rt = zaya::TensorStore::open(formats_file("jangtq_runtime_2048_seed42_reproduced.safetensors"));
  for (int bits : {2, 3, 4}) {
    SCOPED_TRACE(bits);
    const auto c64 = q::mxtq_codebook(64, bits);
    const auto r64 = f32(st, zaya::cat("codebook.64.", bits));
    ASSERT_EQ(c64.size(), r64.size());
    for (size_t k = 0; k < c64.size(); ++k) EXPECT_EQ(fbits(c64[k]), fbits(r64[k])) << "64/" << k;
    const auto c2048 = q::mxtq_codebook(2048, bits);
    const auto r2048 = f32(rt, zaya::cat("codebook.2048.", bits));
    ASSERT_EQ(c2048.size(), r2048.size());
    for (size_t k = 0; k < c2048.size(); ++k) EXPECT_EQ(fbits(c2048[k]), fbits(r2048[k])) << "2048/" << k;
  }
  // §8.2: the 4-bit 2048 codebook × √2048 starts ±0.1527 in the middle and ends at ±2.8491.
  const auto c = q::mxtq_codebook(2048, 4);
  EXPECT_NEAR(c[8] * std::sqrt(2048.0), 0.1527, 1e-4);
  EXPECT_NEAR(c[15] * std::sqrt(2048.0), 2.8491, 1e-4);
  EXPECT_NEAR(c[0], -c[15], 1e-7);
}

TEST(QuantFormatMxtq, QuantizeDequantizeAndFastPath) {
  const auto st = zaya::TensorStore::open(formats_file("mxtq_spec_vectors.safetensors"));
  const auto W = f32(st, "W_f32");
  const auto x = f32(st, "x_f32");
  const auto signs = f32(st, "signs.64.42");
  ASSERT_EQ(W.size(), 8u * 64u);
  for (int bits : {2, 3, 4}) {
    const std::string p = zaya::cat("b", bits, ".");
    SCOPED_TRACE(p);
    const auto cb = f32(st, zaya::cat("codebook.64.", bits));
    const auto packed_ref = u32(st, p + "switch_mlp.proj.tq_packed");
    const auto norms_ref = f16_bits(st, p + "switch_mlp.proj.tq_norms");
    const auto tq_bits = raw<uint8_t>(st.require(p + "switch_mlp.proj.tq_bits"), zaya::DType::U8);
    EXPECT_EQ(tq_bits, std::vector<uint8_t>{static_cast<uint8_t>(bits)});
    const int64_t words = q::mxtq_words(64, bits);
    ASSERT_EQ(static_cast<int64_t>(packed_ref.size()), 8 * words);
    std::vector<uint32_t> packed(8 * words);
    std::vector<uint16_t> norms(8);
    for (int64_t o = 0; o < 8; ++o) {
      float nrm;
      q::mxtq_quantize_row(W.data() + o * 64, 64, bits, signs.data(), cb.data(), packed.data() + o * words, &nrm);
      norms[o] = zaya::f32_to_f16(nrm);
    }
    EXPECT_EQ(packed, packed_ref);
    EXPECT_EQ(norms, norms_ref);

    const auto wdq_ref = f32(st, p + "W_dequant_f32");
    const auto y_ref = f32(st, p + "y_ref_f32");
    std::vector<float> xr(64), row(64);
    q::mxtq_rotate(x.data(), 64, signs.data(), xr.data());
    for (int64_t o = 0; o < 8; ++o) {
      const float nrm = zaya::f16_to_f32(norms_ref[o]);
      q::mxtq_dequantize_row(packed_ref.data() + o * words, nrm, 64, bits, signs.data(), cb.data(), row.data());
      for (int64_t i = 0; i < 64; ++i) EXPECT_NEAR(row[i], wdq_ref[o * 64 + i], 1e-6) << o << "," << i;
      float acc = 0;
      for (int64_t j = 0; j < 64; ++j) acc += cb[q::mxtq_unpack_index(packed_ref.data() + o * words, j, bits)] * xr[j];
      EXPECT_NEAR(nrm * acc, y_ref[o], 1e-5) << o;
    }
  }
}

TEST(QuantFormatMxtq, PackingLayout) {
  EXPECT_EQ(q::mxtq_per_word(2), 16);
  EXPECT_EQ(q::mxtq_per_word(3), 10);
  EXPECT_EQ(q::mxtq_per_word(4), 8);
  EXPECT_EQ(q::mxtq_words(64, 3), 7);
  EXPECT_EQ(q::mxtq_words(2048, 4), 256);
  // 3-bit: index j of a word at shift 3j, the top two bits unused; index 10 starts the next word.
  const uint32_t row[2] = {(5u << 27) | (3u << 3), 6u};
  EXPECT_EQ(q::mxtq_unpack_index(row, 1, 3), 3u);
  EXPECT_EQ(q::mxtq_unpack_index(row, 9, 3), 5u);
  EXPECT_EQ(q::mxtq_unpack_index(row, 10, 3), 6u);
  EXPECT_THROW(q::mxtq_per_word(0), zaya::Error);
  EXPECT_THROW(q::mxtq_per_word(9), zaya::Error);
  EXPECT_THROW(q::mxtq_codebook(64, 0), zaya::Error);
}

TEST(QuantFormatMxtq, HadamardBlocks) {
  EXPECT_EQ(q::hadamard_blocks(192), (std::vector<int64_t>{128, 64}));
  EXPECT_EQ(q::hadamard_blocks(48), (std::vector<int64_t>{32, 16}));
  EXPECT_EQ(q::hadamard_blocks(2048), (std::vector<int64_t>{2048}));
  EXPECT_EQ(q::hadamard_blocks(7), (std::vector<int64_t>{4, 2, 1}));
  // Orthonormal and self-inverse on each block: the columns H·e_k are orthonormal and stay in their block;
  // H(H v) = v.
  const int64_t n = 192;
  std::vector<std::vector<float>> cols(n, std::vector<float>(n, 0.0f));
  for (int64_t k = 0; k < n; ++k) {
    cols[k][k] = 1.0f;
    q::hadamard_blocks_inplace(cols[k].data(), n);
    for (int64_t i = 0; i < n; ++i)
      if ((k < 128) != (i < 128)) {
        EXPECT_EQ(cols[k][i], 0.0f);
      }
  }
  for (int64_t a = 0; a < n; a += 7)
    for (int64_t b = 0; b < n; ++b) {
      double dot = 0;
      for (int64_t i = 0; i < n; ++i) dot += static_cast<double>(cols[a][i]) * cols[b][i];
      EXPECT_NEAR(dot, a == b ? 1.0 : 0.0, 1e-6) << a << "," << b;
    }
  // Natural (Sylvester) order: row 1 of H_4 is (+ − + −)/2.
  float e1[4] = {0, 1, 0, 0};
  q::hadamard_blocks_inplace(e1, 4);
  EXPECT_EQ(e1[0], 0.5f);
  EXPECT_EQ(e1[1], -0.5f);
  EXPECT_EQ(e1[2], 0.5f);
  EXPECT_EQ(e1[3], -0.5f);
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> ud(-1, 1);
  std::vector<float> v(n), w;
  for (auto& t : v) t = ud(rng);
  w = v;
  q::hadamard_blocks_inplace(w.data(), n);
  q::hadamard_blocks_inplace(w.data(), n);
  for (int64_t i = 0; i < n; ++i) EXPECT_NEAR(w[i], v[i], 1e-6);
}

TEST(QuantFormatMxtq, NonPowerOfTwoRoundTrip) {
  // in = 192: rotate, quantize at 4 bits, dequantize — the relative error is what a 16-level codebook gives.
  const int64_t n = 192;
  const auto signs = q::mxtq_signs(n, 42);
  const auto cb = q::mxtq_codebook(n, 4);
  std::mt19937 rng(11);
  std::normal_distribution<float> nd(0, 1);
  std::vector<float> w(n), back(n);
  for (auto& t : w) t = nd(rng);
  std::vector<uint32_t> packed(static_cast<size_t>(q::mxtq_words(n, 4)));
  float nrm;
  q::mxtq_quantize_row(w.data(), n, 4, signs.data(), cb.data(), packed.data(), &nrm);
  q::mxtq_dequantize_row(packed.data(), nrm, n, 4, signs.data(), cb.data(), back.data());
  double e2 = 0, w2 = 0;
  for (int64_t i = 0; i < n; ++i) {
    e2 += (back[i] - w[i]) * (back[i] - w[i]);
    w2 += w[i] * w[i];
  }
  EXPECT_NEAR(nrm * nrm, w2, 1e-3 * w2);  // the rotation preserves the norm
  EXPECT_LT(e2 / w2, 0.02);               // 4-bit Lloyd-Max: MSE ≈ 0.0095
}

}  // namespace
