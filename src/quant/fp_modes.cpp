// MLX floating-point quantization modes (bundle-formats §4): mxfp4, nvfp4, mxfp8, with the GPU/CPU kernel rules.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "zaya/error.h"
#include "zaya/quant.h"

namespace zaya::quant {

int fp_group_size(FpMode m) { return m == FpMode::NvFp4 ? 16 : 32; }
int fp_bits(FpMode m) { return m == FpMode::MxFp8 ? 8 : 4; }

float e2m1_to_f32(uint8_t code) {
  static const float kMag[8] = {0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f};
  const float v = kMag[code & 7];
  return (code & 8) ? -v : v;
}

float e8m0_to_f32(uint8_t b) {
  if (b == 0xFF) return std::numeric_limits<float>::infinity();  // MLX's decoder (OCP says NaN)
  return std::ldexp(1.0f, static_cast<int>(b) - 127);              // b = 0 gives 2^-127 (subnormal), not 0
}

float e4m3_to_f32(uint8_t b) {
  const bool neg = (b & 0x80) != 0;
  const int e = (b >> 3) & 0xF;
  const int m = b & 7;
  float v;
  if (e == 0xF && m == 7) {
    v = std::numeric_limits<float>::quiet_NaN();  // E4M3fn has no inf; S.1111.111 is NaN
  } else if (e == 0) {
    v = std::ldexp(static_cast<float>(m), -9);  // subnormal: m · 2^-6 / 8
  } else {
    v = std::ldexp(1.0f + static_cast<float>(m) / 8.0f, e - 7);
  }
  return neg ? -v : v;
}

uint8_t f32_to_e4m3(float v) {
  if (std::isnan(v)) return 0x7F;
  const uint8_t sign = std::signbit(v) ? 0x80 : 0x00;
  const float a = std::fabs(v);
  uint8_t code;
  if (a >= 448.0f) {
    code = 0x7E;  // saturate (inf included)
  } else if (a < 0.015625f) {
    // Subnormal range (below 2^-6): steps of 2^-9; the scaling is exact, nearbyint rounds ties to even. A result
    // of 8 is the smallest normal, whose code is also 8.
    code = static_cast<uint8_t>(std::nearbyint(a * 512.0f));
  } else {
    int e;
    const float frac = std::frexp(a, &e);  // a = frac · 2^e, frac in [0.5, 1)
    --e;                                   // a = (2·frac) · 2^e with 2·frac in [1, 2)
    const float mant = 2.0f * frac - 1.0f;  // exact
    int m = static_cast<int>(std::nearbyint(mant * 8.0f));
    if (m == 8) {
      m = 0;
      ++e;
    }
    const int c = ((e + 7) << 3) | m;
    code = static_cast<uint8_t>(std::min(c, 0x7E));
  }
  return static_cast<uint8_t>(sign | code);
}

namespace {

// E2M1 encode with MLX's kernel thresholds: round to nearest, ties to the even code.
uint8_t f32_to_e2m1(float x) {
  if (std::isnan(x)) return 7;
  const uint8_t sign = std::signbit(x) ? 8 : 0;
  const float a = std::fabs(x);
  uint8_t c = 0;
  if (a > 0.25f) c = 1;
  if (a >= 0.75f) c = 2;
  if (a > 1.25f) c = 3;
  if (a >= 1.75f) c = 4;
  if (a > 2.5f) c = 5;
  if (a >= 3.5f) c = 6;
  if (a > 5.0f) c = 7;
  return static_cast<uint8_t>(sign | c);
}

// E8M0 of amax/limit with the exponent rounded to nearest (half away from zero, metal::round), not floored.
uint8_t e8m0_scale(float amax, float limit) {
  if (!std::isfinite(amax)) return 0xFF;
  if (amax == 0.0f) return 0;  // the kernels' choice (the generic fallback uses 127; both decode to zeros)
  const float le = std::log2(amax / limit);
  int e = static_cast<int>(std::round(le));
  e = std::clamp(e, -127, 127);
  return static_cast<uint8_t>(e + 127);
}

void check_fp(FpMode m, int64_t n) {
  const int g = fp_group_size(m);
  if (n < 0 || n % g != 0)
    throw Error(cat("fp quantization: row length ", n, " is not a multiple of the group size ", g));
}

float fp_scale_value(FpMode m, uint8_t s) { return m == FpMode::NvFp4 ? e4m3_to_f32(s) : e8m0_to_f32(s); }

}  // namespace

void fp_quantize_row(FpMode m, const float* w, int64_t n, uint32_t* packed_row, uint8_t* scales) {
  check_fp(m, n);
  const int g = fp_group_size(m);
  const int bits = fp_bits(m);
  std::vector<uint8_t> codes(static_cast<size_t>(n));
  for (int64_t gi = 0; gi < n / g; ++gi) {
    const float* x = w + gi * g;
    float amax = 0.0f;
    for (int j = 0; j < g; ++j) amax = std::max(amax, std::fabs(x[j]));
    uint8_t s;
    if (m == FpMode::NvFp4)
      s = static_cast<uint8_t>(f32_to_e4m3(amax / 6.0f) & 0x7F);  // amax ≥ 0; keep the sign bit clear
    else
      s = e8m0_scale(amax, m == FpMode::MxFp8 ? 448.0f : 6.0f);
    scales[gi] = s;
    const float sv = fp_scale_value(m, s);
    for (int j = 0; j < g; ++j) {
      // A zero scale (nvfp4 with a tiny group) would divide by zero: every element is then 0 anyway.
      const float v = sv == 0.0f ? 0.0f : x[j] / sv;
      codes[static_cast<size_t>(gi * g + j)] = bits == 4 ? f32_to_e2m1(v) : f32_to_e4m3(v);
    }
  }
  pack_codes(codes.data(), n, bits, packed_row);
}

void fp_dequantize_row(FpMode m, const uint32_t* packed_row, const uint8_t* scales, int64_t n, float* out) {
  check_fp(m, n);
  const int g = fp_group_size(m);
  const int bits = fp_bits(m);
  for (int64_t i = 0; i < n; ++i) {
    const uint8_t c = static_cast<uint8_t>(unpack_code(packed_row, i, bits));
    const float e = bits == 4 ? e2m1_to_f32(c) : e4m3_to_f32(c);
    out[i] = e * fp_scale_value(m, scales[i / g]);
  }
}

}  // namespace zaya::quant
