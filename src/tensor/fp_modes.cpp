// MLX floating-point quantization modes (bundle-formats §4): mxfp4, nvfp4, mxfp8, with the GPU/CPU kernel rules.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "zaya/error.h"
#include "tensor/quant_formats.h"

namespace zaya::quant {

bool is_fp_mode(WeightFormat m) {
  return m == WeightFormat::MxFp4 || m == WeightFormat::NvFp4 || m == WeightFormat::MxFp8;
}
int fp_group_size(WeightFormat m) { return m == WeightFormat::NvFp4 ? 16 : 32; }
int fp_bits(WeightFormat m) { return m == WeightFormat::MxFp8 ? 8 : 4; }


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

void check_fp(WeightFormat m, int64_t n) {
  if (!is_fp_mode(m)) throw Error(cat("fp quantization: ", weight_format_name(m), " is not an MLX fp mode"));
  const int g = fp_group_size(m);
  if (n < 0 || n % g != 0)
    throw Error(cat("fp quantization: row length ", n, " is not a multiple of the group size ", g));
}

float fp_scale_value(WeightFormat m, uint8_t s) { return m == WeightFormat::NvFp4 ? e4m3_to_f32(s) : e8m0_to_f32(s); }

}  // namespace

void fp_quantize_row(WeightFormat m, const float* w, int64_t n, uint32_t* packed_row, uint8_t* scales) {
  check_fp(m, n);
  const int g = fp_group_size(m);
  const int bits = fp_bits(m);
  std::vector<uint8_t> codes(static_cast<size_t>(n));
  for (int64_t gi = 0; gi < n / g; ++gi) {
    const float* x = w + gi * g;
    float amax = 0.0f;
    for (int j = 0; j < g; ++j) amax = std::max(amax, std::fabs(x[j]));
    uint8_t s;
    if (m == WeightFormat::NvFp4)
      s = static_cast<uint8_t>(f32_to_e4m3(amax / 6.0f) & 0x7F);  // amax ≥ 0; keep the sign bit clear
    else
      s = e8m0_scale(amax, m == WeightFormat::MxFp8 ? 448.0f : 6.0f);
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

void fp_dequantize_row(WeightFormat m, const uint32_t* packed_row, const uint8_t* scales, int64_t n, float* out) {
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
