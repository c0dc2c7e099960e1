#include "kernels/affine_q8.h"

namespace zaya::q8 {

void quantize_activations(const float* X, size_t n, size_t cols, size_t group_size, Activations& a) {
  prepare_activations(n, cols, group_size, a);
  for (size_t t = 0; t < n; ++t) quantize_token(X + t * cols, t, a);
}

bool supported(const WeightMatrix& W) { return q16::supported(W) && (W.bits == 4 || W.bits == 8); }

void matmul_ref(const WeightMatrix& W, const Activations& a, float* Y) { q16::block_matmul_ref(W, a, Y); }

void matmul_ref(const WeightMatrix& W, const float* X, size_t n_tokens, float* Y) {
  Activations a;
  quantize_activations(X, n_tokens, static_cast<size_t>(W.cols), static_cast<size_t>(W.group_size), a);
  matmul_ref(W, a, Y);
}

}  // namespace zaya::q8
