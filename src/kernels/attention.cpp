// Causal GQA attention for one query position with Highway runtime dispatch: the query heads that share a key/value
// head are processed together, so each key and value row is loaded once for all of them.
//
// Thread and batch invariance: every output row is computed from its own query row and the n_keys keys/values by a
// sequence of vector operations that depends only on n_keys and head_dim (and the dispatched target): each score is
// computed exactly as dot() (one accumulator, a fused multiply-add per vector of dims, a zero-padded tail,
// the lane tree of sum_lanes-inl.h), then an exact max, exp and a lane-wise sum over keys in fixed blocks from key 0, then per output dim
// a chain of fused multiply-adds over the keys in increasing order. Register tiles over rows, keys and dims only
// interleave independent chains, so neither the number of rows nor the thread count changes a single bit.

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/attention.cpp"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>
#include <hwy/contrib/math/math-inl.h>

#include "kernels/kernels.h"
#include "kernels/sum_lanes-inl.h"

HWY_BEFORE_NAMESPACE();
namespace zaya {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

using DF = hn::ScalableTag<float>;
using VF = hn::Vec<DF>;

constexpr size_t kMaxLanes = HWY_MAX_BYTES / sizeof(float);
constexpr size_t kRowTile = 4;  // query heads per register tile (a GQA group is usually 4 or 8 heads)
// Keys per score tile and output vectors per P·V tile: 4x4 accumulators need 32 vector registers (AVX-512, NEON);
// 16-register targets (AVX2, SSE4) use 4x2 so the tiles do not spill.
#if HWY_ARCH_X86 && HWY_TARGET > HWY_AVX3
constexpr size_t kKeyTile = 2;
constexpr size_t kDimTile = 2;
#else
constexpr size_t kKeyTile = 4;
constexpr size_t kDimTile = 4;
#endif

// Cached keys/values of software prefetch. A decode step reads every cached row once and each task streams its kv
// head's cache (contiguous since the cache is head-major); the hardware prefetcher alone still leaves misses: a
// decode-shaped loop over 500 layers' caches of 550 positions ran 68–71 µs per layer without it, 61 with it (dev
// VM).
constexpr size_t kKeyAhead = 16;

// s[r * lds + j] = scale · dot(q_r, k_j) for R query rows (dh apart) and KT keys (ld_kv apart).
template <size_t R, size_t KT>
HWY_INLINE void ScoreTile(DF df, const float* HWY_RESTRICT q, size_t dh, const float* HWY_RESTRICT k, size_t ld_kv,
                          float scale, float* HWY_RESTRICT s, size_t lds) {
  const size_t N = hn::Lanes(df);
  VF acc[R][KT];
  for (size_t r = 0; r < R; ++r)
    for (size_t j = 0; j < KT; ++j) acc[r][j] = hn::Zero(df);
  auto step = [&](const float* qp, size_t ldq, const float* kp, size_t ldk) {
    VF kv[KT];
    for (size_t j = 0; j < KT; ++j) kv[j] = hn::LoadU(df, kp + j * ldk);
    for (size_t r = 0; r < R; ++r) {
      const VF qv = hn::LoadU(df, qp + r * ldq);
      for (size_t j = 0; j < KT; ++j) acc[r][j] = hn::MulAdd(qv, kv[j], acc[r][j]);
    }
  };
  size_t c = 0;
  for (; c + N <= dh; c += N) step(q + c, dh, k + c, ld_kv);
  if (c < dh) {
    // Ragged tail through zero-padded copies: the last key row may end where the cache does.
    const size_t rem = dh - c;
    HWY_ALIGN float qt[R * kMaxLanes] = {};
    HWY_ALIGN float kt[KT * kMaxLanes] = {};
    for (size_t r = 0; r < R; ++r) std::memcpy(qt + r * kMaxLanes, q + r * dh + c, rem * sizeof(float));
    for (size_t j = 0; j < KT; ++j) std::memcpy(kt + j * kMaxLanes, k + j * ld_kv + c, rem * sizeof(float));
    step(qt, kMaxLanes, kt, kMaxLanes);
  }
  HWY_ALIGN float o[R * KT];
  sum_lanes::SumTile(acc, o);
  for (size_t r = 0; r < R; ++r)
    for (size_t j = 0; j < KT; ++j) s[r * lds + j] = o[r * KT + j] * scale;
}

template <size_t R>
void ScoreRows(DF df, const float* q, size_t dh, const float* k, size_t ld_kv, size_t n_keys, float scale, float* s,
               size_t lds) {
  size_t j = 0;
  for (; j + kKeyTile <= n_keys; j += kKeyTile) {
    if (j + kKeyAhead + kKeyTile <= n_keys)
      for (size_t i = 0; i < kKeyTile; ++i)
        for (size_t c = 0; c < dh; c += 16) __builtin_prefetch(k + (j + kKeyAhead + i) * ld_kv + c, 0, 3);
    ScoreTile<R, kKeyTile>(df, q, dh, k + j * ld_kv, ld_kv, scale, s + j, lds);
  }
  for (; j < n_keys; ++j) ScoreTile<R, 1>(df, q, dh, k + j * ld_kv, ld_kv, scale, s + j, lds);
}

// o_r[c, c + D·N) = inv_sum_r · Σ_j p_r[j] · v_j[c, c + D·N) for R rows; v rows are read from column c.
template <size_t R, size_t D>
HWY_INLINE void PvTile(DF df, const float* HWY_RESTRICT p, size_t lds, const float* HWY_RESTRICT v, size_t ld_kv,
                       size_t n_keys, const float* inv_sum, float* HWY_RESTRICT o, size_t dh) {
  const size_t N = hn::Lanes(df);
  VF acc[R][D];
  for (size_t r = 0; r < R; ++r)
    for (size_t d = 0; d < D; ++d) acc[r][d] = hn::Zero(df);
  for (size_t j = 0; j < n_keys; ++j) {
    if (j + kKeyAhead < n_keys)
      for (size_t d = 0; d < D * N; d += 16) __builtin_prefetch(v + (j + kKeyAhead) * ld_kv + d, 0, 3);
    VF vv[D];
    for (size_t d = 0; d < D; ++d) vv[d] = hn::LoadU(df, v + j * ld_kv + d * N);
    for (size_t r = 0; r < R; ++r) {
      const VF pv = hn::Set(df, p[r * lds + j]);
      for (size_t d = 0; d < D; ++d) acc[r][d] = hn::MulAdd(pv, vv[d], acc[r][d]);
    }
  }
  for (size_t r = 0; r < R; ++r)
    for (size_t d = 0; d < D; ++d) hn::StoreU(hn::Mul(acc[r][d], hn::Set(df, inv_sum[r])), df, o + r * dh + d * N);
}

// The last dh % N dims: the same per-dim chain, with each value row copied into a zero-padded vector.
template <size_t R>
void PvTail(DF df, const float* p, size_t lds, const float* v, size_t ld_kv, size_t n_keys, const float* inv_sum,
            float* o, size_t dh, size_t rem) {
  VF acc[R];
  for (size_t r = 0; r < R; ++r) acc[r] = hn::Zero(df);
  HWY_ALIGN float vt[kMaxLanes] = {};
  for (size_t j = 0; j < n_keys; ++j) {
    std::memcpy(vt, v + j * ld_kv, rem * sizeof(float));
    const VF vv = hn::Load(df, vt);
    for (size_t r = 0; r < R; ++r) acc[r] = hn::MulAdd(hn::Set(df, p[r * lds + j]), vv, acc[r]);
  }
  for (size_t r = 0; r < R; ++r) {
    hn::Store(hn::Mul(acc[r], hn::Set(df, inv_sum[r])), df, vt);
    std::memcpy(o + r * dh, vt, rem * sizeof(float));
  }
}

template <size_t R>
void PvRows(DF df, const float* p, size_t lds, const float* v, size_t ld_kv, size_t n_keys, const float* inv_sum,
            float* o, size_t dh) {
  const size_t N = hn::Lanes(df);
  size_t c = 0;
  for (; c + kDimTile * N <= dh; c += kDimTile * N) PvTile<R, kDimTile>(df, p, lds, v + c, ld_kv, n_keys, inv_sum, o + c, dh);
  for (; c + N <= dh; c += N) PvTile<R, 1>(df, p, lds, v + c, ld_kv, n_keys, inv_sum, o + c, dh);
  if (c < dh) PvTail<R>(df, p, lds, v + c, ld_kv, n_keys, inv_sum, o + c, dh, dh - c);
}

void AttentionT(const float* q, size_t n_rows, const float* k, const float* v, size_t ld_kv, size_t n_keys, size_t dh,
                float scale, const uint8_t* key_mask, float* out) {
  const DF df;
  const size_t N = hn::Lanes(df);
  if (n_keys == 0) {
    std::fill(out, out + n_rows * dh, 0.0f);
    return;
  }
  // Score rows padded to whole vectors with -inf, which exp turns into exact zeros.
  const size_t lds = hwy::RoundUpTo(n_keys, N);
  thread_local std::vector<float> scratch;
  scratch.resize(n_rows * lds + n_rows);
  float* s = scratch.data();
  float* inv_sum = s + n_rows * lds;

  size_t r = 0;
  for (; r + kRowTile <= n_rows; r += kRowTile)
    ScoreRows<kRowTile>(df, q + r * dh, dh, k, ld_kv, n_keys, scale, s + r * lds, lds);
  for (; r < n_rows; ++r) ScoreRows<1>(df, q + r * dh, dh, k, ld_kv, n_keys, scale, s + r * lds, lds);
  // Masked keys score -inf: exp makes their weights exact zeros, so they add nothing to the sum or the output.
  if (key_mask)
    for (r = 0; r < n_rows; ++r)
      for (size_t j = 0; j < n_keys; ++j)
        if (!key_mask[j]) s[r * lds + j] = -std::numeric_limits<float>::infinity();

  // Softmax numerators in place; the division by their sum is folded into the output scaling.
  for (r = 0; r < n_rows; ++r) {
    float* sr = s + r * lds;
    std::fill(sr + n_keys, sr + lds, -std::numeric_limits<float>::infinity());
    VF mx = hn::LoadU(df, sr);
    for (size_t j = N; j < lds; j += N) mx = hn::Max(mx, hn::LoadU(df, sr + j));
    mx = hn::MaxOfLanes(df, mx);
    VF sum = hn::Zero(df);
    for (size_t j = 0; j < lds; j += N) {
      const VF e = hn::Exp(df, hn::Sub(hn::LoadU(df, sr + j), mx));
      hn::StoreU(e, df, sr + j);
      sum = hn::Add(sum, e);
    }
    inv_sum[r] = 1.0f / hn::GetLane(hn::SumOfLanes(df, sum));
  }

  for (r = 0; r + kRowTile <= n_rows; r += kRowTile)
    PvRows<kRowTile>(df, s + r * lds, lds, v, ld_kv, n_keys, inv_sum + r, out + r * dh, dh);
  for (; r < n_rows; ++r) PvRows<1>(df, s + r * lds, lds, v, ld_kv, n_keys, inv_sum + r, out + r * dh, dh);
}

}  // namespace HWY_NAMESPACE
}  // namespace zaya
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace zaya {

HWY_EXPORT(AttentionT);

void gqa_attention(const float* q, size_t n_rows, const float* k, const float* v, size_t ld_kv, size_t n_keys,
                   size_t dh, float scale, float* out, const uint8_t* key_mask) {
  HWY_DYNAMIC_DISPATCH(AttentionT)(q, n_rows, k, v, ld_kv, n_keys, dh, scale, key_mask, out);
}

void gqa_attention_ref(const float* q, size_t n_rows, const float* k, const float* v, size_t ld_kv, size_t n_keys,
                       size_t dh, float scale, float* out, const uint8_t* key_mask) {
  std::vector<double> p(n_keys), o(dh);
  for (size_t r = 0; r < n_rows; ++r) {
    const float* qr = q + r * dh;
    double mx = -std::numeric_limits<double>::infinity(), sum = 0;
    for (size_t j = 0; j < n_keys; ++j) {
      if (key_mask && !key_mask[j]) continue;
      double acc = 0;
      for (size_t c = 0; c < dh; ++c) acc += static_cast<double>(qr[c]) * k[j * ld_kv + c];
      p[j] = acc * scale;
      mx = std::max(mx, p[j]);
    }
    for (size_t j = 0; j < n_keys; ++j) sum += p[j] = (key_mask && !key_mask[j]) ? 0.0 : std::exp(p[j] - mx);
    std::fill(o.begin(), o.end(), 0.0);
    for (size_t j = 0; j < n_keys; ++j)
      for (size_t c = 0; c < dh; ++c) o[c] += p[j] * v[j * ld_kv + c];
    for (size_t c = 0; c < dh; ++c) out[r * dh + c] = n_keys ? static_cast<float>(o[c] / sum) : 0.0f;
  }
}

}  // namespace zaya
#endif  // HWY_ONCE
