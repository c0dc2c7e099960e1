#pragma once
// The format table: for every stored weight format, its row size, its row decoders (the scalar definition of what
// the bytes mean) and its product kernels, each with the scalar reference it is tested against. It is the only
// place that switches on WeightFormat; pick_kernel() is the only function that chooses a product kernel.
//
// Adding a weight format = a WeightFormat value, its codec (tensor/), one row here and its kernels.
#include <cstddef>
#include <cstdint>

#include "kernels/kernels.h"
#include "tensor/weight_matrix.h"

namespace zaya {

class ThreadPool;

// Y[t, r] = Σ_c W[r, c] · X[t, c] for the rows of W; pool is never null.
using ProductFn = void (*)(const WeightMatrix& W, const float* X, size_t n_tokens, float* Y, ThreadPool& pool);
// Several matrices on the same activations, bitwise what separate ProductFn calls give; false = not fused (then
// nothing was computed).
using MultiProductFn = bool (*)(const WeightMatrix* const* Ws, size_t m, const float* X, size_t n_tokens,
                                float* const* Ys, ThreadPool& pool);
using ReferenceFn = void (*)(const WeightMatrix& W, const float* X, size_t n_tokens, float* Y);
using RowDecodeFn = void (*)(const WeightMatrix& W, int64_t r, float* out);

struct ProductKernel {
  const char* name = nullptr;                     // for bench reports and test names; null = no such kernel
  ProductFn run = nullptr;
  MultiProductFn multi = nullptr;                 // optional
  bool (*accepts)(const WeightMatrix&) = nullptr;  // null = every matrix of the format
  ReferenceFn reference = nullptr;                // the scalar twin: same arithmetic, no SIMD, no threads
};

struct FormatRow {
  WeightFormat format;
  // Bytes per stored row of `cols` logical columns at `bits` (float formats ignore bits).
  size_t (*row_bytes)(int64_t cols, int bits);
  RowDecodeFn decode_row;    // row r dequantized to fp32 (embedding lookups, references)
  RowDecodeFn decode_codes;  // packed formats: the element values before the group scale (MXTQ: codebook values)
  // Per-group scale and bias of row r (affine: stored scale and bias; fp modes: decoded scale, bias 0).
  void (*row_scales)(const WeightMatrix& W, int64_t r, float* scale, float* bias);
  ProductKernel fp32;     // products with fp32 activations (Precision::Exact, and Fast where `reduced` is absent)
  ProductKernel reduced;  // Precision::Fast: reduced-precision activations (affine, MXTQ: int16; bf16: bf16)
  ProductKernel portable;  // the fallback for matrices the fast kernels do not accept
  ProductKernel int8;      // Precision::Int8: int8 activations (affine 4/8-bit); absent = the Fast choice
  // A matrix engine (AMX) in the `reduced` arithmetic's activations: preferred over `reduced` under Fast and Int8
  // where accepted. Its reference is not bitwise (see quant_matmul.h); batch and thread invariance still hold.
  ProductKernel matrix;
};

const FormatRow& format_row(WeightFormat f);

// The product kernel for W under `precision`: under Int8 the int8 kernel when accepted, else as Fast; under Fast the
// matrix-engine kernel, else the reduced-precision kernel when accepted; else the fp32 one when accepted, else the
// portable one.
const ProductKernel& pick_kernel(const WeightMatrix& W, Precision precision);

// Row r of W dequantized to fp32 (throws for r out of range).
void decode_row(const WeightMatrix& W, int64_t r, float* out);
// Bytes per stored row (see FormatRow::row_bytes).
size_t stored_row_bytes(WeightFormat f, int64_t cols, int bits);

}  // namespace zaya
