// MLX affine quantization (bundle-formats §3): the LSB-first bit stream packing and MLX's scale/bias choice.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "zaya/error.h"
#include "tensor/quant_formats.h"

namespace zaya::quant {

bool affine_bits_supported(int bits) {
  return bits == 2 || bits == 3 || bits == 4 || bits == 5 || bits == 6 || bits == 8;
}

bool affine_group_supported(int group_size) { return group_size == 32 || group_size == 64 || group_size == 128; }

int64_t packed_words(int64_t n, int bits) { return (n * bits + 31) / 32; }

uint32_t unpack_code(const uint32_t* packed_row, int64_t i, int bits) {
  const int64_t bit = i * bits;
  const int64_t w = bit / 32;
  const int shift = static_cast<int>(bit % 32);
  const uint32_t mask = (1u << bits) - 1u;
  uint32_t v = packed_row[w] >> shift;
  // A field that crosses a word boundary (3/5/6-bit) takes its high bits from the next word.
  if (shift + bits > 32) v |= packed_row[w + 1] << (32 - shift);
  return v & mask;
}

void pack_codes(const uint8_t* codes, int64_t n, int bits, uint32_t* packed_row) {
  const int64_t words = packed_words(n, bits);
  std::fill(packed_row, packed_row + words, 0u);
  const uint32_t mask = (1u << bits) - 1u;
  for (int64_t i = 0; i < n; ++i) {
    const uint32_t c = codes[i] & mask;
    const int64_t bit = i * bits;
    const int64_t w = bit / 32;
    const int shift = static_cast<int>(bit % 32);
    packed_row[w] |= c << shift;
    if (shift + bits > 32) packed_row[w + 1] |= c >> (32 - shift);
  }
}

namespace {

void check_affine(int64_t n, int bits, int group_size) {
  if (!affine_bits_supported(bits))
    throw Error(cat("affine quantization: unsupported bits ", bits, " (expected 2, 3, 4, 5, 6 or 8)"));
  if (!affine_group_supported(group_size))
    throw Error(cat("affine quantization: unsupported group size ", group_size, " (expected 32, 64 or 128)"));
  if (n < 0 || n % group_size != 0)
    throw Error(cat("affine quantization: row length ", n, " is not a multiple of the group size ", group_size));
}

}  // namespace

void affine_quantize_row(const float* w, int64_t n, int bits, int group_size, bool metal_rules, uint32_t* packed_row,
                         float* scales, float* biases) {
  check_affine(n, bits, group_size);
  const float n_bins = static_cast<float>((1 << bits) - 1);
  const float eps = 1e-7f;
  // Metal rounds half away from zero (metal::round); the CPU kernel uses rint (ties to even).
  auto rnd = [metal_rules](float v) { return metal_rules ? std::round(v) : std::nearbyint(v); };
  std::vector<uint8_t> codes(static_cast<size_t>(n));
  for (int64_t g = 0; g < n / group_size; ++g) {
    const float* x = w + g * group_size;
    // The Metal kernel's running max starts at 0 (so an all-negative group has w_max = 0) and its running min
    // at the largest finite value; the CPU kernel takes the true extremes.
    float w_min = metal_rules ? std::numeric_limits<float>::max() : std::numeric_limits<float>::infinity();
    float w_max = metal_rules ? 0.0f : -std::numeric_limits<float>::infinity();
    for (int j = 0; j < group_size; ++j) {
      w_min = std::min(w_min, x[j]);
      w_max = std::max(w_max, x[j]);
    }
    float scale = std::max((w_max - w_min) / n_bins, eps);
    const bool side = std::fabs(w_min) > std::fabs(w_max);
    scale = side ? scale : -scale;
    const float edge = side ? w_min : w_max;
    const float q0 = rnd(edge / scale);
    float bias = 0.0f;
    if (q0 != 0.0f) {
      // Code 0 lands exactly on the larger-magnitude extreme and real zero on the integer code -q0.
      scale = edge / q0;
      bias = edge;
    }
    for (int j = 0; j < group_size; ++j) {
      float q = rnd((x[j] - bias) / scale);
      q = std::min(std::max(q, 0.0f), n_bins);
      codes[static_cast<size_t>(g * group_size + j)] = static_cast<uint8_t>(q);
    }
    scales[g] = scale;
    biases[g] = bias;
  }
  pack_codes(codes.data(), n, bits, packed_row);
}

void affine_dequantize_row(const uint32_t* packed_row, const float* scales, const float* biases, int64_t n, int bits,
                           int group_size, float* out) {
  check_affine(n, bits, group_size);
  for (int64_t i = 0; i < n; ++i) {
    const float q = static_cast<float>(unpack_code(packed_row, i, bits));
    const float qs = q * scales[i / group_size];  // separate rounding of the product, as MLX does (no FMA)
    out[i] = qs + biases[i / group_size];
  }
}

}  // namespace zaya::quant
