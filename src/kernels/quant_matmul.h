#pragma once
// Product kernels of the packed formats, referenced by the format table (kernels/format_table.cpp). Each works on
// the packed data (rows decoded into registers/L1, never a float copy of the matrix) and is thread- and
// batch-invariant like the float kernels.
#include <cstddef>

#include "tensor/weight_matrix.h"

namespace zaya {

class ThreadPool;

// Float formats: Highway tiles with fp32 accumulation, one entry per element type (matmul_fast.cpp).
void f32_product(const WeightMatrix& W, const float* X, size_t n_tokens, float* Y, ThreadPool& pool);
void f16_product(const WeightMatrix& W, const float* X, size_t n_tokens, float* Y, ThreadPool& pool);
void bf16_product(const WeightMatrix& W, const float* X, size_t n_tokens, float* Y, ThreadPool& pool);

// BF16 weights in BF16 arithmetic (bf16_dot_hwy.cpp): activations rounded to bf16 once per product, AVX-512 BF16
// dot products with fp32 accumulation in a fixed order; accepted only where the CPU has AVX512_BF16.
bool bf16_dot_accepts(const WeightMatrix& W);
void bf16_dot_product(const WeightMatrix& W, const float* X, size_t n_tokens, float* Y, ThreadPool& pool);
void bf16_dot_reference(const WeightMatrix& W, const float* X, size_t n_tokens, float* Y);

// BF16 weights on the AMX matrix engine (bf16_amx_hwy.cpp): the same bf16 activations, TDPBF16PS tiles for every
// token count; accepted only where the CPU and OS run AMX-BF16. Its reference is exact per 32-column chunk; the
// engine adds a chunk's products more precisely than fp32 in an undocumented way, so the two agree to an error bound.
bool bf16_amx_accepts(const WeightMatrix& W);
void bf16_amx_product(const WeightMatrix& W, const float* X, size_t n_tokens, float* Y, ThreadPool& pool);
void bf16_amx_reference(const WeightMatrix& W, const float* X, size_t n_tokens, float* Y);

// Affine 4/8-bit in the canonical int16-activation arithmetic (affine_q16.h, quant_matmul_hwy.cpp); a target without
// the SIMD path runs the scalar reference of the same arithmetic, so every target gives the same bits.
bool affine_q16_accepts(const WeightMatrix& W);
void affine_q16_product(const WeightMatrix& W, const float* X, size_t n_tokens, float* Y, ThreadPool& pool);
// Several such matrices of one input width and group size on the same activations; false (nothing computed) unless
// every matrix is accepted and they share cols and group size.
bool affine_q16_multi(const WeightMatrix* const* Ws, size_t m, const float* X, size_t n_tokens, float* const* Ys,
                      ThreadPool& pool);
void affine_q16_reference(const WeightMatrix& W, const float* X, size_t n_tokens, float* Y);

// Affine 4/8-bit in the opt-in int8-activation arithmetic (affine_q8.h, affine_q8_hwy.cpp; Precision::Int8): VNNI
// vpdpbusd where the CPU has it, an exact emulation elsewhere, the scalar reference without SIMD.
bool affine_q8_accepts(const WeightMatrix& W);
void affine_q8_product(const WeightMatrix& W, const float* X, size_t n_tokens, float* Y, ThreadPool& pool);
bool affine_q8_multi(const WeightMatrix* const* Ws, size_t m, const float* X, size_t n_tokens, float* const* Ys,
                     ThreadPool& pool);
void affine_q8_reference(const WeightMatrix& W, const float* X, size_t n_tokens, float* Y);
// Tests: the int8 kernel with a forced path (0 = one token at a time, 1 = multi-token tiles, 2 = the AMX engine) on
// `pool`; false where the target (or, for 2, the CPU) has no such path.
bool affine_q8_path(const WeightMatrix& W, const float* X, size_t n_tokens, float* Y, int path, ThreadPool& pool);

// Affine 4/8-bit with fp32 activations (affine_f32_hwy.cpp); the portable kernel where the target has no SIMD path.
bool affine_f32_accepts(const WeightMatrix& W);
void affine_f32_product(const WeightMatrix& W, const float* X, size_t n_tokens, float* Y, ThreadPool& pool);

// Affine (any width) and the MLX fp modes: row codes and group scales from the format table, SIMD dot per group.
void grouped_product(const WeightMatrix& W, const float* X, size_t n_tokens, float* Y, ThreadPool& pool);
// A kernel's scalar reference run in parallel over slices of rows: the fallback of targets without its SIMD path,
// which still computes the canonical arithmetic (a row's result does not depend on the slice it is in).
void reference_by_rows(const WeightMatrix& W, const float* X, size_t n_tokens, float* Y, ThreadPool& pool,
                       void (*reference)(const WeightMatrix&, const float*, size_t, float*));

// MXTQ: activations rotated once per token (x̃ = H(s ⊙ x)), then norm · Σ c[idx]·x̃ per row.
void mxtq_product(const WeightMatrix& W, const float* X, size_t n_tokens, float* Y, ThreadPool& pool);

// MXTQ 4-bit in the canonical int16-activation arithmetic (mxtq_q16.h, mxtq_q16_hwy.cpp); like the affine one, a
// target without the SIMD path runs the scalar reference. The multi form takes matrices of one width and rotation.
bool mxtq_q16_accepts(const WeightMatrix& W);
void mxtq_q16_product(const WeightMatrix& W, const float* X, size_t n_tokens, float* Y, ThreadPool& pool);
bool mxtq_q16_multi(const WeightMatrix* const* Ws, size_t m, const float* X, size_t n_tokens, float* const* Ys,
                    ThreadPool& pool);
void mxtq_q16_reference(const WeightMatrix& W, const float* X, size_t n_tokens, float* Y);

// MXTQ 4-bit: codebook values of the first k·16 indices of a packed row (AVX-512); returns how many were written.
size_t mxtq4_decode_row_simd(const uint32_t* words, size_t cols, const float* codebook, float* out);

// Tests: the affine 4/8-bit SIMD kernel with a forced path (0 = one token at a time, 1 = multi-token tiles, 2 = the
// AMX engine, affine_amx_hwy.cpp); false where the target (or, for 2, the CPU) has no such path.
bool affine_matmul_path(const WeightMatrix& W, const float* X, size_t n_tokens, float* Y, int path);
// Tests: the MXTQ 4-bit int16 kernel with a forced path, as affine_matmul_path.
bool mxtq_matmul_path(const WeightMatrix& W, const float* X, size_t n_tokens, float* Y, int path);
// Highway target the affine kernel runs on (e.g. "AVX3_DL").
const char* affine_simd_target_name();

}  // namespace zaya
