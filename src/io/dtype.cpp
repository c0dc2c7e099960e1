// Element types of tensor files and their scalar conversions: the one definition of every fp16 / bf16 / fp8 / fp4
// decoder in the project (exact, IEEE semantics incl. subnormals, inf and NaN). Kernels that convert whole vectors
// with SIMD are tested against these.
#include "io/dtype.h"

#include <cmath>
#include <cstring>
#include <limits>

namespace zaya {

// ---- dtypes ----------------------------------------------------------------------------------------------------

namespace {
struct DTypeInfo {
  DType t;
  const char* name;
  size_t size;
};
constexpr DTypeInfo kDTypes[] = {
    {DType::F64, "F64", 8},  {DType::F32, "F32", 4},  {DType::F16, "F16", 2},         {DType::BF16, "BF16", 2},
    {DType::I64, "I64", 8},  {DType::I32, "I32", 4},  {DType::I16, "I16", 2},         {DType::I8, "I8", 1},
    {DType::U64, "U64", 8},  {DType::U32, "U32", 4},  {DType::U16, "U16", 2},         {DType::U8, "U8", 1},
    {DType::BOOL, "BOOL", 1}, {DType::F8_E4M3, "F8_E4M3", 1}, {DType::F8_E5M2, "F8_E5M2", 1},
};
}  // namespace

size_t dtype_size(DType t) {
  for (const auto& d : kDTypes)
    if (d.t == t) return d.size;
  return 0;
}
const char* dtype_name(DType t) {
  for (const auto& d : kDTypes)
    if (d.t == t) return d.name;
  return "?";
}
std::optional<DType> parse_dtype(const std::string& s) {
  for (const auto& d : kDTypes)
    if (s == d.name) return d.t;
  return std::nullopt;
}

// ---- conversions -----------------------------------------------------------------------------------------------

float bf16_to_f32(uint16_t v) {
  uint32_t u = static_cast<uint32_t>(v) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

float f16_to_f32(uint16_t h) {
  // Bit manipulation: this runs for every scale of every quantized row, so it must be cheap.
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
  uint32_t bits;
  if (exp == 0) {  // zero / subnormal: mant · 2^-24 is exact in fp32
    const float v = static_cast<float>(mant) * (1.0f / 16777216.0f);
    std::memcpy(&bits, &v, 4);
    bits |= sign;
  } else if (exp == 31) {
    bits = sign | 0x7f800000u | (mant << 13);  // inf, or NaN keeping its payload
  } else {
    bits = sign | ((exp + 112) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

uint16_t f32_to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffff) > 0x7f800000) return static_cast<uint16_t>((u >> 16) | 0x40);  // quiet NaN
  u += 0x7fff + ((u >> 16) & 1);
  return static_cast<uint16_t>(u >> 16);
}

uint16_t f32_to_f16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  const uint16_t sign = static_cast<uint16_t>((u >> 16) & 0x8000);
  const uint32_t au = u & 0x7fffffff;
  if (au > 0x7f800000) return sign | 0x7e00;
  if (au >= 0x477ff000) return sign | 0x7c00;  // rounds to >= 65520 -> inf
  if (au < 0x38800000) {                        // subnormal half (or zero)
    float a;
    std::memcpy(&a, &au, 4);
    // Scale so the half subnormal unit (2^-24) becomes 1, then round to nearest even.
    float scaled = a * 16777216.0f;
    uint32_t r = static_cast<uint32_t>(std::nearbyint(scaled));
    return sign | static_cast<uint16_t>(r);
  }
  uint32_t exp = ((au >> 23) - 127 + 15);
  uint32_t mant = au & 0x7fffff;
  uint32_t h = (exp << 10) | (mant >> 13);
  uint32_t rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem == 0x1000 && (h & 1))) ++h;
  return sign | static_cast<uint16_t>(h);
}

// ---- MX / OCP 8- and 4-bit formats ------------------------------------------------------------------------------

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

}  // namespace zaya
