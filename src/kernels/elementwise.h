#pragma once
// Element-wise steps of the forward passes, each with a scalar twin (`*_ref`: one thread, plain loops) that the
// tests compare bitwise with the fast version on every thread count. Rows (tokens) are independent, so the fast
// versions split rows over the pool with for_rows(); within a row both compute the same expressions in the same
// order, so they agree bit for bit.
#include <cstddef>
#include <functional>

namespace zaya {

class ThreadPool;

// Splits `n_rows` rows of `row_width` floats of light work over the pool in chunks large enough that scheduling
// stays cheap (the one grain rule for element-wise work). pool = nullptr uses default_pool().
void for_rows(size_t n_rows, size_t row_width, const std::function<void(size_t, size_t)>& fn,
              ThreadPool* pool = nullptr);

// Learnable residual scaling (ZAYA spec §3.2) over n rows of width H:
//   r = (m + hb) ⊙ hs                    when rs is null (the first merge)
//   r = (m + hb) ⊙ hs + (r + rb) ⊙ rs    otherwise
void residual_merge(const float* m, float* r, const float* hs, const float* hb, const float* rs, const float* rb,
                    size_t n, size_t H);
void residual_merge_ref(const float* m, float* r, const float* hs, const float* hb, const float* rs, const float* rb,
                        size_t n, size_t H);

// out[t] = rmsnorm(x[t]) ⊙ w for n rows of width d.
void rmsnorm_rows(const float* x, const float* w, size_t n, size_t d, float eps, float* out);

// a ← GELU_erf(a + b) for n rows of width d (b: [d]).
void bias_gelu(float* a, const float* b, size_t n, size_t d);
void bias_gelu_ref(float* a, const float* b, size_t n, size_t d);

// Router depth state (EDA): h ← h + bias (+ rho ⊙ scale when scale is non-null); rho ← h. n rows of width d.
void eda_mix(float* h, const float* bias, const float* scale, float* rho, size_t n, size_t d);
void eda_mix_ref(float* h, const float* bias, const float* scale, float* rho, size_t n, size_t d);

// CCA q/k coupling (ZAYA spec §3.3 steps 3–5) for n tokens. q: [n, nq·dh] and k: [n, nk·dh] raw projections,
// z: [n, (nq+nk)·dh] conv output (q part first). With g = nq/nk and mq = (q_h + k_j)/2 for the query heads h of kv
// head j: Q_h = l2norm(z_q,h + mq)·√dh; K_j = l2norm(z_k,j + mean_h mq)·√dh·temp_j (no epsilon, as the reference).
void qk_coupling(const float* q, const float* k, const float* z, size_t n, size_t nq, size_t nk, size_t dh,
                 const float* temp, float* Q, float* K);
void qk_coupling_ref(const float* q, const float* k, const float* z, size_t n, size_t nq, size_t nk, size_t dh,
                     const float* temp, float* Q, float* K);

}  // namespace zaya
