#pragma once
// Element types of tensor files (the safetensors dtype names) and their scalar conversions. This is the one place
// that defines how fp16, bf16, E4M3, E8M0 and E2M1 bits become floats; everything else calls these.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

namespace zaya {

enum class DType { F64, F32, F16, BF16, I64, I32, I16, I8, U64, U32, U16, U8, BOOL, F8_E4M3, F8_E5M2 };

size_t dtype_size(DType t);
const char* dtype_name(DType t);
std::optional<DType> parse_dtype(const std::string& s);

float bf16_to_f32(uint16_t v);
float f16_to_f32(uint16_t v);
uint16_t f32_to_bf16(float f);  // round to nearest even
uint16_t f32_to_f16(float f);   // round to nearest even

float e4m3_to_f32(uint8_t b);   // OCP E4M3fn (bias 7, no inf; S.1111.111 is NaN)
uint8_t f32_to_e4m3(float v);   // round to nearest even, saturating to ±448
float e8m0_to_f32(uint8_t b);   // 2^(b-127); b = 0 → 2^-127; 0xFF → +inf (MLX's decoder; OCP says NaN)
float e2m1_to_f32(uint8_t code);  // 4-bit code, bit 3 = sign

}  // namespace zaya
