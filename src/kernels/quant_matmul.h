#pragma once
#include <cstddef>

#include "zaya/weights.h"

namespace zaya {

class ThreadPool;

// Y = X·Wᵀ for the quantized formats (affine, mxfp4/nvfp4/mxfp8, MXTQ) working on the packed data: each row is
// decoded into registers/L1 and never materialized as a float copy of the matrix. Thread- and batch-invariant
// like the float kernels.
void quant_matmul(const WeightMatrix& W, const float* X, size_t n_tokens, float* Y, ThreadPool& pool);

// SIMD path for affine 4/8-bit (quant_matmul_hwy.cpp); returns false for widths it does not handle.
bool affine_matmul_simd(const WeightMatrix& W, const float* X, size_t n_tokens, float* Y, ThreadPool& pool);

// The portable path for every packed format (also the fallback of the SIMD one).
void quant_matmul_generic(const WeightMatrix& W, const float* X, size_t n_tokens, float* Y, ThreadPool& pool);

// Decodes the code values of one row to float (affine: q as float; fp modes: element values before the scale;
// MXTQ: codebook values before the norm). Exposed for tests.
void decode_row_codes(const WeightMatrix& W, int64_t r, float* out);

}  // namespace zaya
