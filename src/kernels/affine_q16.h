#pragma once
// Canonical arithmetic of the affine (MLX 4/8-bit) matrix products. Activations are quantized per block of 32
// columns to int16 (d = amax/32767), so the code·activation products are exact integer sums and the wide integer
// dot products (VNNI vpdpwssd, pmaddwd) do the inner loop; the fp32 work is one step per block:
//
//   isum[b] = Σ_{i∈b} (q_i − c)·xq_i                     (int32, exact: any order gives the same value)
//   F       = Σ_b float(isum[b]) · (s_{g(b)} · d_b)       (fp32 FMA into lane b mod 16, then the fixed 16-lane tree)
//   B       = Σ_g fma(c, s_g, b_g) · xsum_g               (xsum = fp32 sum of the unquantized x over group g: 8 partial
//                                                          sums of columns i ≡ p mod 8 in order, then pairs (p, p+4),
//                                                          (p, p+2), (0, 1); FMA into lane g mod 16, same tree as F)
//   y       = the tree over lanes (F_lane + B_lane)
//
// c = 2^(bits−1) centres the codes: the rounding error of xq meets (q − c)·s instead of q·s, which halves it (the
// centre's share goes through the exact xsum). Kernels compute Σ q·xq and subtract c·Σ xq (exact integers).
//
// Every kernel (the one-token decode path, the blocked multi-token path, any SIMD width, any thread count) computes
// exactly this, so outputs are bitwise identical however a batch is formed. The int16 activations keep ~15 bits
// per block maximum, 100× finer than the bf16 activations MLX itself computes with.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "tensor/weight_matrix.h"

namespace zaya::q16 {

constexpr size_t kBlock = 32;    // activation quantization block (divides every supported group size)
constexpr size_t kLanes = 16;    // virtual lanes of the fp32 accumulation
constexpr float kQMax = 32767.0f;

inline size_t round_up(size_t n, size_t m) { return (n + m - 1) / m * m; }

// Quantized activations of n tokens of `cols` columns, as integers of type Q (int16 here; int8 in affine_q8.h).
// Arrays are padded with zeros to whole 16-block segments (blocks) and 16-group lanes (groups) so kernels never need
// a tail case.
template <class Q>
struct BlockActivations {
  size_t n = 0, cols = 0, group_size = 0;
  size_t blocks = 0, blocks16 = 0;  // cols/32 and rounded up to 16
  size_t groups = 0, groups16 = 0;  // cols/group_size and rounded up to 16
  std::vector<Q> xq;                // [n][blocks16 · 32]
  std::vector<float> d;             // [n][blocks16]
  std::vector<float> xsum;          // [n][groups16]
  std::vector<int32_t> xqsum;       // [n][blocks16]: Σ xq per block
};
using Activations = BlockActivations<int16_t>;

// Sizes and zero-fills `a` for n tokens.
template <class Q>
void prepare_block_activations(size_t n, size_t cols, size_t group_size, BlockActivations<Q>& a);
// Token t: per block d = amax/qmax and xq = round-to-nearest(x·qmax/amax), so |xq| ≤ qmax; a block with a non-finite
// value gets d = NaN so the outputs it touches are NaN (never a silent finite answer); the group sums.
template <class Q>
void quantize_block_token(const float* x, size_t t, float qmax, BlockActivations<Q>& a);

// The code centre c of a bits-wide affine code.
inline int32_t code_centre(int bits) { return 1 << (bits - 1); }

// Rounds x to the nearest xq with |xq| ≤ 32767 per block.
void quantize_activations(const float* X, size_t n, size_t cols, size_t group_size, Activations& a);
// The same in two steps (kernels quantize tokens in parallel, with SIMD): sizes and zero-fills `a`, then token t.
inline void prepare_activations(size_t n, size_t cols, size_t group_size, Activations& a) {
  prepare_block_activations(n, cols, group_size, a);
}
inline void quantize_token(const float* x, size_t t, Activations& a) { quantize_block_token(x, t, kQMax, a); }

// xsum of one group (n a multiple of 8) in the canonical order above.
float group_sum(const float* x, size_t n);

// The fixed reduction tree over the 16 lanes: pairs (i, i+8), then (i, i+4), (i, i+2), (i, i+1).
float reduce16(const float* lanes);

// Whether W is an affine matrix this arithmetic covers (any bits; group size a multiple of 32).
bool supported(const WeightMatrix& W);

// Scalar reference (and the fallback on targets without a SIMD path): Y[t, r] as defined above.
void matmul_ref(const WeightMatrix& W, const Activations& a, float* Y);
// The same for activations of any integer type (int8 in affine_q8.h): one definition of the arithmetic.
template <class Q>
void block_matmul_ref(const WeightMatrix& W, const BlockActivations<Q>& a, float* Y);
void matmul_ref(const WeightMatrix& W, const float* X, size_t n_tokens, float* Y);

}  // namespace zaya::q16
