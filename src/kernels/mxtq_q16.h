#pragma once
// Canonical arithmetic of the MXTQ 4-bit products (the JANGTQ4 experts, bundle-formats §8.3) with int16
// activations, the counterpart of affine_q16.h for a codebook format:
//
//   x̃      = H(s ⊙ x)                                  (fp32, quant::mxtq_rotate, the same function on every path)
//   xq, d  = x̃ quantized per 32-column block exactly as q16 does (|xq| ≤ 32767, d = amax/32767, NaN if not finite)
//   cq[k]  = round(c[k] · K), K = kCodeMax / max|c|    (the 16 codebook values as integers, derived per product)
//   isum_b = Σ_{i∈b} cq[idx_i] · xq_i                   (an exact integer)
//   F      = Σ_b float(isum_b) · d_b                    (float() rounds the exact integer once; FMA into lane b mod 16)
//   y_r    = reduce16(F) · (norm_r · invK)              (norm_r: the stored F16 row norm; invK = max|c| / kCodeMax)
//
// The final scale is one fp32 product norm_r · invK, then one multiplication of the reduced sum by it. No bias term.
//
// isum is not an int32 sum: with a 15-bit codebook a block sum can reach 32·2^15·2^15 = 2^35, and a row aligned with
// the activations does get there. The kernels split xq = 2048·xh + xl (xh ∈ [−16, 15], xl ∈ [0, 2047]) and add two
// exact int32 sums Sh = Σ cq·xh and Sl = Σ cq·xl (|Sl| ≤ 32·kCodeMax·2047 < 2^31) with the integer dot products;
// then T = Sh + (Sl >> 11), R = Sl & 2047 give isum = 2048·T + R with |T| ≤ 544·kCodeMax < 2^24, so
// fma(2048, float(T), float(R)) is float(isum) rounded once. kCodeMax = 30720 is what keeps that bound.
// A codebook of 11 bits would keep a single int32 sum (half the integer work) but its rounding would dominate: the
// JANGTQ4 golden logits move 1.8e-3 from the reference (tolerance 1e-3) instead of 6.7e-4, and products miss the
// 2e-5·Σ|w·x| bound of the other Fast kernels. At 15 bits its rounding is below the activations'.
#include <cstddef>
#include <cstdint>

#include "tensor/weight_matrix.h"

namespace zaya::mxtq16 {

constexpr int32_t kCodeMax = 30720;  // |cq| bound (see above)
constexpr int kSplit = 11;           // xq = 2^kSplit · xh + xl

struct Codebook {
  int16_t cq[16] = {};
  float inv_k = 0.0f;  // max|c| / kCodeMax
};

// Whether W is an MXTQ matrix this arithmetic covers: 4-bit, whole 32-column blocks, a finite non-zero codebook.
bool supported(const WeightMatrix& W);

// The int16 codebook of a supported matrix.
Codebook int16_codebook(const WeightMatrix& W);

// Scalar reference (and the fallback on targets without a SIMD path): Y[t, r] as defined above.
void matmul_ref(const WeightMatrix& W, const float* X, size_t n_tokens, float* Y);

}  // namespace zaya::mxtq16
