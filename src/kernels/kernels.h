#pragma once
// Compute kernels. Every fast kernel has a scalar reference (`*_ref`) that tests compare it with. The fast paths
// compute each output element in an order that depends only on its own inputs (not on the thread count, or on how
// many tokens are in the batch), so results are identical for any thread count and batch size.
#include <cstddef>
#include <cstdint>
#include <initializer_list>

#include "tensor/weight_matrix.h"
#include "zaya/runtime.h"

namespace zaya {

class ThreadPool;

// Arithmetic of the quantized products: a compute option chosen by the caller (a model's load options), never a
// property of the weights.
enum class Precision {
  Fast,   // reduced-precision activations where the format has such a kernel (affine 4/8-bit and MXTQ 4-bit: int16,
          // affine_q16.h and mxtq_q16.h; BF16 weights: bf16 activations and AVX-512 BF16 dot products, bf16_dot_hwy.cpp)
  Exact,  // fp32 activations everywhere: the reference's arithmetic
  Int8,   // opt-in (--int8): int8 activations for the affine 4/8-bit products (affine_q8.h, VNNI vpdpbusd); formats
          // without an int8 kernel use their Fast kernel
};

// Where and how a product runs. Converts from a ThreadPool* so call sites can pass just a pool.
struct Compute {
  ThreadPool* pool = nullptr;  // nullptr: default_pool()
  Precision precision = Precision::Fast;
  Compute() = default;
  Compute(ThreadPool* p, Precision q = Precision::Fast) : pool(p), precision(q) {}  // NOLINT: implicit on purpose
  explicit Compute(Precision q) : precision(q) {}
};

// Y[t, r] = Σ_c W[r, c] · X[t, c] for t < n_tokens. X is [n_tokens, W.cols], Y is [n_tokens, W.rows], both fp32
// row-major. The kernel comes from the format table (kernels/format_table.h).
void matmul(const WeightMatrix& W, const float* X, size_t n_tokens, float* Y, const Compute& c = {});
// Float64-accumulating reference over the dequantized rows (any format).
void matmul_ref(const WeightMatrix& W, const float* X, size_t n_tokens, float* Y);

// Ys[k] = X·Ws[k]ᵀ for matrices that read the same activations (q/k/v, gate/up): bitwise what separate matmul
// calls give, in one pass where the kernels allow it (the activations are prepared once, one parallel loop).
void matmul_multi(std::initializer_list<const WeightMatrix*> Ws, const float* X, size_t n_tokens,
                  std::initializer_list<float*> Ys, const Compute& c = {});

// Dot product of two fp32 vectors (fast path, fixed summation order).
float dot(const float* a, const float* b, size_t n);
float dot_ref(const float* a, const float* b, size_t n);

// out = w ⊙ x / sqrt(mean(x²) + eps); out may alias x.
void rmsnorm(const float* x, const float* w, size_t n, float eps, float* out);
void rmsnorm_ref(const float* x, const float* w, size_t n, float eps, float* out);

// In-place numerically stable softmax over n values.
void softmax(float* x, size_t n);

// out = SiLU(gate) ⊙ up = gate / (1 + e^-gate) ⊙ up, element-wise (large n is split over default_pool()).
void silu_mul(const float* gate, const float* up, size_t n, float* out);
void silu_mul_ref(const float* gate, const float* up, size_t n, float* out);

// Attention of the n_rows query heads that share one key/value head (GQA) over n_keys keys: out_r =
// Σ_s softmax_s(scale · q_r·k_s) · v_s. q and out are [n_rows, dh]; key and value s start at k + s·ld_kv and
// v + s·ld_kv. Each output row depends only on its own query row and the keys/values (not on n_rows).
// key_mask (optional, n_keys entries): keys with mask 0 are left out (at least one key must remain).
void gqa_attention(const float* q, size_t n_rows, const float* k, const float* v, size_t ld_kv, size_t n_keys,
                   size_t dh, float scale, float* out, const uint8_t* key_mask = nullptr);
void gqa_attention_ref(const float* q, size_t n_rows, const float* k, const float* v, size_t ld_kv, size_t n_keys,
                       size_t dh, float scale, float* out, const uint8_t* key_mask = nullptr);


}  // namespace zaya
