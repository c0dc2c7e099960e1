#include "kernels/elementwise.h"

#include <algorithm>
#include <cmath>

#include "kernels/kernels.h"
#include "util/thread_pool.h"

namespace zaya {

namespace {

inline float gelu_erf(float v) { return 0.5f * v * (1.0f + std::erf(v * 0.70710678118654752f)); }

// v ← v · scale / ‖v‖₂ with the SIMD dot (no epsilon, as the legacy reference).
void l2_scale(float* v, size_t n, float scale) {
  const float f = scale / std::sqrt(dot(v, v, n));
  for (size_t i = 0; i < n; ++i) v[i] *= f;
}

void qk_coupling_rows(const float* q, const float* k, const float* z, size_t t0, size_t t1, size_t nq, size_t nk,
                      size_t dh, const float* temp, float* Q, float* K) {
  const size_t qw = nq * dh, kw = nk * dh, C = qw + kw, g = nq / nk;
  const float sqrt_dh = std::sqrt(static_cast<float>(dh));
  for (size_t t = t0; t < t1; ++t) {
    const float* qt = q + t * qw;
    const float* kt = k + t * kw;
    const float* zt = z + t * C;
    for (size_t j = 0; j < nk; ++j) {
      float* Kj = K + t * kw + j * dh;
      std::fill(Kj, Kj + dh, 0.0f);
      for (size_t h = j * g; h < (j + 1) * g; ++h) {
        float* Qh = Q + t * qw + h * dh;
        for (size_t i = 0; i < dh; ++i) {
          const float mq = 0.5f * (qt[h * dh + i] + kt[j * dh + i]);
          Qh[i] = zt[h * dh + i] + mq;
          Kj[i] += mq;
        }
      }
      for (size_t i = 0; i < dh; ++i) Kj[i] = zt[qw + j * dh + i] + Kj[i] / static_cast<float>(g);
      l2_scale(Kj, dh, sqrt_dh);
      for (size_t i = 0; i < dh; ++i) Kj[i] *= temp[j];
    }
    for (size_t h = 0; h < nq; ++h) l2_scale(Q + t * qw + h * dh, dh, sqrt_dh);
  }
}

}  // namespace

void for_rows(size_t n_rows, size_t row_width, const std::function<void(size_t, size_t)>& fn, ThreadPool* pool) {
  if (n_rows == 0) return;
  // ~16k floats per chunk: large enough that handing out a chunk costs little next to its work.
  const size_t grain = std::max<size_t>(1, 16384 / std::max<size_t>(row_width, 1));
  (pool ? *pool : default_pool()).parallel_for(n_rows, grain, fn);
}

void residual_merge(const float* m, float* r, const float* hs, const float* hb, const float* rs, const float* rb,
                    size_t n, size_t H) {
  for_rows(n, H, [&](size_t t0, size_t t1) {
    for (size_t t = t0; t < t1; ++t) {
      const float* mt = m + t * H;
      float* rt = r + t * H;
      if (rs) {
        for (size_t i = 0; i < H; ++i) rt[i] = (mt[i] + hb[i]) * hs[i] + (rt[i] + rb[i]) * rs[i];
      } else {
        for (size_t i = 0; i < H; ++i) rt[i] = (mt[i] + hb[i]) * hs[i];
      }
    }
  });
}

void residual_merge_ref(const float* m, float* r, const float* hs, const float* hb, const float* rs, const float* rb,
                        size_t n, size_t H) {
  for (size_t i = 0; i < n * H; ++i) {
    const float hidden = (m[i] + hb[i % H]) * hs[i % H];
    r[i] = rs ? hidden + (r[i] + rb[i % H]) * rs[i % H] : hidden;
  }
}

void rmsnorm_rows(const float* x, const float* w, size_t n, size_t d, float eps, float* out) {
  for_rows(n, d, [&](size_t t0, size_t t1) {
    for (size_t t = t0; t < t1; ++t) rmsnorm(x + t * d, w, d, eps, out + t * d);
  });
}

void bias_gelu(float* a, const float* b, size_t n, size_t d) {
  for_rows(n, 4 * d, [&](size_t t0, size_t t1) {  // erf costs several plain operations per element
    for (size_t t = t0; t < t1; ++t)
      for (size_t i = 0; i < d; ++i) a[t * d + i] = gelu_erf(a[t * d + i] + b[i]);
  });
}

void bias_gelu_ref(float* a, const float* b, size_t n, size_t d) {
  for (size_t i = 0; i < n * d; ++i) {
    const float v = a[i] + b[i % d];
    a[i] = 0.5f * v * (1.0f + std::erf(v * 0.70710678118654752f));
  }
}

void eda_mix(float* h, const float* bias, const float* scale, float* rho, size_t n, size_t d) {
  for_rows(n, d, [&](size_t t0, size_t t1) {
    for (size_t t = t0; t < t1; ++t) {
      float* ht = h + t * d;
      float* rt = rho + t * d;
      for (size_t i = 0; i < d; ++i) {
        float v = ht[i] + bias[i];
        if (scale) v += rt[i] * scale[i];
        ht[i] = v;
        rt[i] = v;
      }
    }
  });
}

void eda_mix_ref(float* h, const float* bias, const float* scale, float* rho, size_t n, size_t d) {
  for (size_t i = 0; i < n * d; ++i) {
    h[i] = scale ? (h[i] + bias[i % d]) + rho[i] * scale[i % d] : h[i] + bias[i % d];
    rho[i] = h[i];
  }
}

void qk_coupling(const float* q, const float* k, const float* z, size_t n, size_t nq, size_t nk, size_t dh,
                 const float* temp, float* Q, float* K) {
  for_rows(n, (nq + nk) * dh, [&](size_t t0, size_t t1) { qk_coupling_rows(q, k, z, t0, t1, nq, nk, dh, temp, Q, K); });
}

void qk_coupling_ref(const float* q, const float* k, const float* z, size_t n, size_t nq, size_t nk, size_t dh,
                     const float* temp, float* Q, float* K) {
  // Written from the spec's formulas, with float64 norms: the fast version must agree to rounding.
  const size_t qw = nq * dh, kw = nk * dh, C = qw + kw, g = nq / nk;
  const double sqrt_dh = std::sqrt(static_cast<double>(dh));
  auto normalize = [&](float* v, double scale) {
    double ss = 0;
    for (size_t i = 0; i < dh; ++i) ss += static_cast<double>(v[i]) * v[i];
    const double f = scale / std::sqrt(ss);
    for (size_t i = 0; i < dh; ++i) v[i] = static_cast<float>(v[i] * f);
  };
  for (size_t t = 0; t < n; ++t)
    for (size_t j = 0; j < nk; ++j) {
      for (size_t i = 0; i < dh; ++i) {
        double mean = 0;
        for (size_t h = j * g; h < (j + 1) * g; ++h) {
          const float mq = 0.5f * (q[t * qw + h * dh + i] + k[t * kw + j * dh + i]);
          Q[t * qw + h * dh + i] = z[t * C + h * dh + i] + mq;
          mean += mq;
        }
        K[t * kw + j * dh + i] = static_cast<float>(z[t * C + qw + j * dh + i] + mean / static_cast<double>(g));
      }
      normalize(K + t * kw + j * dh, sqrt_dh * temp[j]);
      for (size_t h = j * g; h < (j + 1) * g; ++h) normalize(Q + t * qw + h * dh, sqrt_dh);
    }
}

}  // namespace zaya
