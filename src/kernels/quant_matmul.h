#pragma once
#include <cstddef>

#include "zaya/weights.h"

namespace zaya {

class ThreadPool;

// Y = X·Wᵀ for the quantized formats (affine, mxfp4/nvfp4/mxfp8, MXTQ) working on the packed data: each row is
// decoded into registers/L1 and never materialized as a float copy of the matrix. Thread- and batch-invariant
// like the float kernels.
void quant_matmul(const WeightMatrix& W, const float* X, size_t n_tokens, float* Y, ThreadPool& pool);

// Affine 4/8-bit in the canonical int16-activation arithmetic (affine_q16.h, quant_matmul_hwy.cpp); false for
// widths it does not handle.
bool affine_matmul_simd(const WeightMatrix& W, const float* X, size_t n_tokens, float* Y, ThreadPool& pool);
// Several affine 4/8-bit matrices of one input width on the same activations; false (nothing computed) unless every
// matrix qualifies for affine_matmul_simd and they share cols and group size.
bool affine_matmul_multi_simd(const WeightMatrix* const* Ws, size_t m, const float* X, size_t n_tokens, float* const* Ys,
                              ThreadPool& pool);
// MXTQ 4-bit: codebook values of the first k·16 indices of a packed row (AVX-512); returns how many were written.
size_t mxtq4_decode_row_simd(const uint32_t* words, size_t cols, const float* codebook, float* out);
// Affine 4/8-bit with fp32 activations (W.exact_activations; affine_f32_hwy.cpp).
bool affine_matmul_f32_simd(const WeightMatrix& W, const float* X, size_t n_tokens, float* Y, ThreadPool& pool);

// Tests: the affine 4/8-bit SIMD kernel with a forced path (0 = one token at a time, 1 = multi-token tiles);
// false where the target has no SIMD path.
bool affine_matmul_path(const WeightMatrix& W, const float* X, size_t n_tokens, float* Y, int path);
// Highway target the affine kernel runs on (e.g. "AVX3_DL").
const char* affine_simd_target_name();

// The portable path for every packed format (also the fallback of the SIMD one).
void quant_matmul_generic(const WeightMatrix& W, const float* X, size_t n_tokens, float* Y, ThreadPool& pool);

// Decodes the code values of one row to float (affine: q as float; fp modes: element values before the scale;
// MXTQ: codebook values before the norm). Exposed for tests.
void decode_row_codes(const WeightMatrix& W, int64_t r, float* out);

}  // namespace zaya
