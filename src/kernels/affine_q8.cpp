#include "kernels/affine_q8.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "tensor/quant_formats.h"

namespace zaya::q8 {

void quantize_activations(const float* X, size_t n, size_t cols, size_t group_size, Activations& a) {
  prepare_activations(n, cols, group_size, a);
  for (size_t t = 0; t < n; ++t) quantize_token(X + t * cols, t, a);
}

bool supported(const WeightMatrix& W) { return q16::supported(W) && (W.bits == 4 || W.bits == 8); }

void matmul_ref(const WeightMatrix& W, const Activations& a, float* Y) {
  const size_t rows = W.rows, cols = W.cols, stride = a.blocks16 * kBlock;
  const size_t blocks_per_group = W.group_size / kBlock;
  const int32_t c = q16::code_centre(W.bits);
  std::vector<int32_t> codes(cols);
  for (size_t r = 0; r < rows; ++r) {
    const auto* w = reinterpret_cast<const uint32_t*>(static_cast<const uint8_t*>(W.data) + r * W.row_bytes);
    for (size_t i = 0; i < cols; ++i) codes[i] = static_cast<int32_t>(quant::unpack_code(w, static_cast<int64_t>(i), W.bits));
    const uint8_t* sp = static_cast<const uint8_t*>(W.scales) + r * W.scale_row_bytes;
    const uint8_t* bp = static_cast<const uint8_t*>(W.biases) + r * W.scale_row_bytes;
    for (size_t t = 0; t < a.n; ++t) {
      const int8_t* xq = &a.xq[t * stride];
      float accF[kLanes] = {}, accB[kLanes] = {};
      for (size_t b = 0; b < a.blocks16; ++b) {
        int32_t isum = 0;
        float m = 0.0f;
        if (b < a.blocks) {
          for (size_t i = 0; i < kBlock; ++i) isum += codes[b * kBlock + i] * xq[b * kBlock + i];
          isum -= c * a.xqsum[t * a.blocks16 + b];
          m = stored_scale(sp, W.scale_dtype, b / blocks_per_group) * a.d[t * a.blocks16 + b];
        }
        accF[b % kLanes] = std::fma(static_cast<float>(isum), m, accF[b % kLanes]);
      }
      for (size_t g = 0; g < a.groups16; ++g) {
        const float bias = g < a.groups ? std::fma(static_cast<float>(c), stored_scale(sp, W.scale_dtype, g),
                                                   stored_scale(bp, W.scale_dtype, g))
                                        : 0.0f;
        accB[g % kLanes] = std::fma(bias, a.xsum[t * a.groups16 + g], accB[g % kLanes]);
      }
      for (size_t i = 0; i < kLanes; ++i) accF[i] += accB[i];
      Y[t * rows + r] = q16::reduce16(accF);
    }
  }
}

void matmul_ref(const WeightMatrix& W, const float* X, size_t n_tokens, float* Y) {
  Activations a;
  quantize_activations(X, n_tokens, static_cast<size_t>(W.cols), static_cast<size_t>(W.group_size), a);
  matmul_ref(W, a, Y);
}

}  // namespace zaya::q8
