#pragma once
// Int8-activation arithmetic of the affine (MLX 4/8-bit) matrix products: an opt-in precision (Precision::Int8,
// `--int8`), never chosen behind the user's back. Activations are quantized per block of 32 columns to int8
// (d = amax/127, round to nearest), the scheme of llama.cpp's Q8 activations. The unsigned codes (0..15, 0..255)
// are exactly the u8 operand of VNNI vpdpbusd and the int8 activations its s8 operand, so one instruction does 64
// multiply-adds, twice vpdpwssd of the int16 arithmetic (affine_q16.h). Everything else is the int16 arithmetic:
//
//   isum[b] = Σ_{i∈b} (q_i − c)·xq_i = Σ q_i·xq_i − c·Σ xq_i   (int32, exact: any order gives the same value)
//   F       = Σ_b float(isum[b]) · (s_{g(b)} · d_b)         (fp32 FMA into lane b mod 16, then the fixed 16-lane tree)
//   B       = Σ_g fma(c, s_g, b_g) · xsum_g                 (xsum: fp32 sum of the unquantized x over group g, in
//                                                            q16::group_sum's order; FMA into lane g mod 16)
//   y       = q16::reduce16 over lanes (F_lane + B_lane)
//
// c = 2^(bits−1). The bias term uses the unquantized x, so only the centred codes meet the int8 rounding. A block
// with a non-finite value gets d = NaN, so every output it touches is NaN. Every kernel (tiled prefill, one-token
// decode, any SIMD width or thread count) computes exactly this: results do not depend on how a batch is formed.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "kernels/affine_q16.h"
#include "tensor/weight_matrix.h"

namespace zaya::q8 {

using q16::kBlock;
using q16::kLanes;
constexpr float kQMax = 127.0f;

// Quantized activations of n tokens: q16's layout with int8 values (padded to whole 16-block segments and 16-group
// lanes).
using Activations = q16::BlockActivations<int8_t>;

inline void prepare_activations(size_t n, size_t cols, size_t group_size, Activations& a) {
  q16::prepare_block_activations(n, cols, group_size, a);
}
inline void quantize_token(const float* x, size_t t, Activations& a) { q16::quantize_block_token(x, t, kQMax, a); }
void quantize_activations(const float* X, size_t n, size_t cols, size_t group_size, Activations& a);

// Affine 4- or 8-bit with a group size that is a multiple of 32 (the widths with kernels).
bool supported(const WeightMatrix& W);

// Scalar reference (and the kernel on targets without a SIMD path): Y[t, r] as defined above.
void matmul_ref(const WeightMatrix& W, const Activations& a, float* Y);
void matmul_ref(const WeightMatrix& W, const float* X, size_t n_tokens, float* Y);

}  // namespace zaya::q8
