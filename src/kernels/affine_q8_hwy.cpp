// SIMD kernels of the int8-activation affine products (affine_q8.h, Precision::Int8). On AVX-512 VNNI the inner
// product is vpdpbusd (64 u8·s8 multiply-adds per instruction, the codes being the unsigned operand); other targets
// emulate it with 32-bit multiplies (same exact integer sums, slower), so every target gives the same bits.
//
// Two paths, bitwise equal (exact integer block sums, then the same fp32 sequence per block):
//  * several tokens (prefill): rows are re-laid out once per L2 block of tokens so that lane j of every vector holds
//    4 columns of block j of a 16-block segment; an R-row × 4-token register tile then accumulates a whole block per
//    lane in 8 steps before its single fp32 step.
//  * up to 8 tokens (decode, batched decode; AVX-512 VNNI): the packed row is streamed in its natural order, two
//    tokens at a time, and the per-lane sums are folded into block sums by a shuffle tree. Other targets run few
//    tokens through the tile.
#define HWY_WANT_AVX3_DL 1

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/affine_q8_hwy.cpp"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>
#include <hwy/aligned_allocator.h>

#include "kernels/affine_q8.h"
#include "kernels/q16_simd-inl.h"
#include "kernels/quant_matmul.h"
#include "util/thread_pool.h"

HWY_BEFORE_NAMESPACE();
namespace zaya {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

#if HWY_TARGET != HWY_SCALAR

// Names carry a Q8 prefix: these functions have external linkage in the same per-target namespace as the int16
// kernels' (one definition each across the program). The pieces both arithmetics share (scratch, row scales, the
// bias lanes, the reduction tree, the token block) come from q16_simd-inl.h.
using Q8DI = hn::ScalableTag<int32_t>;
using Q8DF = hn::Repartition<float, Q8DI>;
using Q8DH = hn::Rebind<hwy::float16_t, Q8DF>;
using Q8VI = hn::Vec<Q8DI>;
using Q8VF = hn::Vec<Q8DF>;

constexpr size_t kQ8Block = q8::kBlock, kQ8Lanes = q8::kLanes;
constexpr size_t kQ8Quads = kQ8Block / 4;  // 32-bit lanes (4 columns each) per block
#if HWY_TARGET <= HWY_AVX3
constexpr size_t kQ8TileRows = 4;  // 4 rows × 4 tokens: 16 integer accumulators of 32 registers
#else
constexpr size_t kQ8TileRows = 1;
#endif
constexpr size_t kQ8TileTokens = 4;

// acc + Σ of the four products (unsigned byte of a) · (signed byte of b) in every 32-bit lane.
HWY_INLINE Q8VI Q8DotQuads(Q8VI a, Q8VI b, Q8VI acc) {
#if HWY_TARGET == HWY_AVX3_DL
  // Inline asm: hwy 1.0.3's AVX3_DL attribute string lacks avx512vnni, so the intrinsic is not available here.
  __m512i r = acc.raw;
  asm("vpdpbusd %2, %1, %0" : "+v"(r) : "v"(a.raw), "v"(b.raw));
  return Q8VI{r};
#else
  const Q8DI di;
  const Q8VI m8 = hn::Set(di, 0xFF);
  acc = hn::Add(acc, hn::Mul(hn::And(a, m8), hn::ShiftRight<24>(hn::ShiftLeft<24>(b))));
  acc = hn::Add(acc, hn::Mul(hn::And(hn::ShiftRight<8>(a), m8), hn::ShiftRight<24>(hn::ShiftLeft<16>(b))));
  acc = hn::Add(acc, hn::Mul(hn::And(hn::ShiftRight<16>(a), m8), hn::ShiftRight<24>(hn::ShiftLeft<8>(b))));
  return hn::Add(acc, hn::Mul(hn::And(hn::ShiftRight<24>(a), m8), hn::ShiftRight<24>(b)));
#endif
}

// Token t of `a` from x (SIMD; the same numbers as q8::quantize_token).
HWY_INLINE void Q8QuantizeToken(const float* HWY_RESTRICT x, size_t t, q8::Activations& a) {
  QuantizeBlocks(x, t, q8::kQMax, a);
}

// ---- several tokens ---------------------------------------------------------------------------------------------

// Segment layout (rows of codes and tokens of activations alike): for segment s, sub-vector u (N blocks), quad
// k = 0..7, lane j: columns 4k..4k+3 of block s·16 + u·N + j, one byte each, as one 32-bit lane.
HWY_INLINE size_t Q8LayoutOffset(size_t b, size_t k, size_t N) {
  return (b / N * N) * kQ8Quads + k * N + b % N;
}

void Q8TokenLayout(const q8::Activations& a, size_t t, uint32_t* out) {
  const size_t N = hn::Lanes(Q8DI());
  const int8_t* x = &a.xq[t * a.blocks16 * kQ8Block];
  for (size_t b = 0; b < a.blocks16; ++b)
    for (size_t k = 0; k < kQ8Quads; ++k) std::memcpy(out + Q8LayoutOffset(b, k, N), x + b * kQ8Block + 4 * k, 4);
}

#if HWY_TARGET == HWY_AVX3_DL
// Index vectors of the segment transpose in Q8CodesLayout, found by following labels (block·8 + quad) through the
// three levels: pairs of inputs → 4 blocks × 4 quads, → 8 blocks × 2 quads, → 16 blocks × 1 quad (the layout).
struct Q8TransposePlan {
  alignas(64) int32_t idx[24][16];
  explicit Q8TransposePlan(int bits) {
    int in[8][16], L1[8][16], L2[8][16], out[8][16];
    for (int c = 0; c < 8; ++c)
      for (int d = 0; d < 16; ++d)
        in[c][d] = bits == 8 ? (2 * c + d / 8) * 8 + d % 8                         // 2 blocks of 8 dwords
                             : (4 * (c / 2) + d / 4) * 8 + 4 * (c % 2) + d % 4;  // lane q: block 4(c/2)+q
    int p = 0;
    auto make = [&](const int* A, const int* B, int* res, auto&& want) {
      for (int l = 0; l < 16; ++l) {
        res[l] = want(l);
        int at = -1;
        for (int m = 0; m < 16; ++m) at = A[m] == res[l] ? m : B[m] == res[l] ? 16 + m : at;
        idx[p][l] = at;
      }
      ++p;
    };
    for (int a = 0; a < 4; ++a)
      for (int h = 0; h < 2; ++h)
        make(in[2 * a], in[2 * a + 1], L1[2 * a + h], [&](int l) { return (4 * a + l % 4) * 8 + 4 * h + l / 4; });
    for (int G = 0; G < 2; ++G)
      for (int h = 0; h < 2; ++h)
        for (int e = 0; e < 2; ++e)
          make(L1[4 * G + h], L1[4 * G + 2 + h], L2[4 * G + 2 * h + e],
               [&](int l) { return (8 * G + l % 8) * 8 + 4 * h + 2 * e + l / 8; });
    for (int h = 0; h < 2; ++h)
      for (int e = 0; e < 2; ++e)
        for (int f = 0; f < 2; ++f)
          make(L2[2 * h + e], L2[4 + 2 * h + e], out[4 * h + 2 * e + f], [&](int l) { return l * 8 + 4 * h + 2 * e + f; });
  }
};
#endif

template <int BITS>
void Q8CodesLayout(const WeightMatrix& W, size_t r, size_t blocks16, uint32_t* out) {
  const size_t N = hn::Lanes(Q8DI());
  const size_t blocks = W.cols / kQ8Block, block_bytes = kQ8Block * BITS / 8;
  const uint8_t* row = static_cast<const uint8_t*>(W.data) + r * W.row_bytes;
  size_t b = 0;
#if HWY_TARGET == HWY_AVX3_DL
  // Whole segments by a 3-level transpose of 8 vectors (24 vpermt2d): code bytes 64c.. as 16 dwords (8-bit), or the
  // 4-bit nibbles spread to bytes in column order first (unpack of low/high nibbles: one block per 128-bit lane).
  static const Q8TransposePlan kPlan(BITS);
  for (; b + kQ8Lanes <= blocks; b += kQ8Lanes) {
    const uint8_t* seg = row + b * block_bytes;
    __m512i v[8], L1[8], L2[8];
    if constexpr (BITS == 8) {
      for (int c = 0; c < 8; ++c) v[c] = _mm512_loadu_si512(seg + 64 * c);
    } else {
      const __m512i m4 = _mm512_set1_epi8(0x0F);
      for (int c = 0; c < 4; ++c) {
        const __m512i z = _mm512_loadu_si512(seg + 64 * c);
        const __m512i lo = _mm512_and_si512(z, m4), hi = _mm512_and_si512(_mm512_srli_epi16(z, 4), m4);
        v[2 * c] = _mm512_unpacklo_epi8(lo, hi), v[2 * c + 1] = _mm512_unpackhi_epi8(lo, hi);
      }
    }
    const __m512i* idx = reinterpret_cast<const __m512i*>(kPlan.idx);
    int p = 0;
    for (int a = 0; a < 4; ++a)
      for (int h = 0; h < 2; ++h) L1[2 * a + h] = _mm512_permutex2var_epi32(v[2 * a], idx[p++], v[2 * a + 1]);
    for (int G = 0; G < 2; ++G)
      for (int h = 0; h < 2; ++h)
        for (int e = 0; e < 2; ++e)
          L2[4 * G + 2 * h + e] = _mm512_permutex2var_epi32(L1[4 * G + h], idx[p++], L1[4 * G + 2 + h]);
    uint32_t* o = out + b * kQ8Quads;
    for (int h = 0; h < 2; ++h)
      for (int e = 0; e < 2; ++e)
        for (int f = 0; f < 2; ++f)
          _mm512_store_si512(o + 16 * (4 * h + 2 * e + f),
                             _mm512_permutex2var_epi32(L2[2 * h + e], idx[p++], L2[4 + 2 * h + e]));
  }
#endif
  for (; b < blocks16; ++b)
    for (size_t k = 0; k < kQ8Quads; ++k) {
      uint32_t v = 0;
      if (b < blocks) {
        const uint8_t* q = row + b * block_bytes;
        if constexpr (BITS == 8) {
          std::memcpy(&v, q + 4 * k, 4);
        } else {
          const uint32_t p0 = q[2 * k], p1 = q[2 * k + 1];
          v = (p0 & 0xF) | (p0 >> 4) << 8 | (p1 & 0xF) << 16 | (p1 >> 4) << 24;
        }
      }
      out[Q8LayoutOffset(b, k, N)] = v;
    }
}

// R rows × T tokens over every segment: per sub-vector of N blocks, the R·T integer accumulators start at −c·Σxq
// and take the 8 quad steps in registers (each lane: one whole block of one row and one token), then one fp32 FMA
// per block into the (row, token) lanes.
template <size_t R, size_t T>
HWY_INLINE void Q8Tile(const uint32_t* const* codes, const uint32_t* const* x, const int32_t* const* ncx,
                       const float* const* sblk, const float* const* d, size_t blocks16,
                       float (*lanes)[kQ8TileTokens][kQ8Lanes]) {
  const Q8DI di;
  const Q8DF df;
  const size_t N = hn::Lanes(di);
  const int32_t* cp[R];
  const int32_t* xp[T];
  for (size_t i = 0; i < R; ++i) cp[i] = reinterpret_cast<const int32_t*>(codes[i]);
  for (size_t j = 0; j < T; ++j) xp[j] = reinterpret_cast<const int32_t*>(x[j]);
  for (size_t b = 0; b < blocks16; b += N) {
    const size_t off = b * kQ8Quads;
    Q8VI isum[R][T];
    for (size_t j = 0; j < T; ++j) {
      const Q8VI init = hn::LoadU(di, ncx[j] + b);
      for (size_t i = 0; i < R; ++i) isum[i][j] = init;
    }
    for (size_t k = 0; k < kQ8Quads; ++k) {
      Q8VI c[R];
      for (size_t i = 0; i < R; ++i) c[i] = hn::Load(di, cp[i] + off + k * N);
      for (size_t j = 0; j < T; ++j) {
        const Q8VI xv = hn::Load(di, xp[j] + off + k * N);
        for (size_t i = 0; i < R; ++i) isum[i][j] = Q8DotQuads(c[i], xv, isum[i][j]);
      }
    }
    Q8VF dv[T];
    for (size_t j = 0; j < T; ++j) dv[j] = hn::LoadU(df, d[j] + b);
    for (size_t i = 0; i < R; ++i) {
      const Q8VF sv = hn::Load(df, sblk[i] + b);
      for (size_t j = 0; j < T; ++j) {
        // The lanes start at +0 (the first segment adds to a zero register instead of a zeroed array).
        float* l = lanes[i][j] + b % kQ8Lanes;
        const Q8VF prev = b < kQ8Lanes ? hn::Zero(df) : hn::Load(df, l);
        hn::Store(hn::MulAdd(hn::ConvertTo(df, isum[i][j]), hn::Mul(sv, dv[j]), prev), df, l);
      }
    }
  }
}

template <size_t R>
HWY_INLINE void Q8TileTokens(size_t nt, const uint32_t* const* codes, const uint32_t* const* x,
                             const int32_t* const* ncx, const float* const* sblk, const float* const* d,
                             size_t blocks16, float (*lanes)[kQ8TileTokens][kQ8Lanes]) {
  switch (nt) {
    case 4: Q8Tile<R, 4>(codes, x, ncx, sblk, d, blocks16, lanes); break;
    case 3: Q8Tile<R, 3>(codes, x, ncx, sblk, d, blocks16, lanes); break;
    case 2: Q8Tile<R, 2>(codes, x, ncx, sblk, d, blocks16, lanes); break;
    default: Q8Tile<R, 1>(codes, x, ncx, sblk, d, blocks16, lanes); break;
  }
}

#if HWY_TARGET <= HWY_AVX3
// The 16 outputs of a full 4 × 4 tile at once: lanes F + B of pair p = 4i + j, then q16::reduce16 transposed — the
// same pairs (i, i+8), (i, i+4), (i, i+2), (i, i+1) of every pair's lanes, 16 pairs per vector add. Lane k of the
// result is pair kTreeOrder[k].
HWY_INLINE void Q8TileOutputs(const float (*lanes)[kQ8TileTokens][kQ8Lanes], const float* const* bias,
                              const float* const* xsum, size_t groups16, float* out) {
  __m512 S[16];
  for (size_t i = 0; i < 4; ++i)
    for (size_t j = 0; j < 4; ++j) {
      __m512 b = _mm512_setzero_ps();
      for (size_t g = 0; g < groups16; g += kQ8Lanes)
        b = _mm512_fmadd_ps(_mm512_load_ps(bias[i] + g), _mm512_loadu_ps(xsum[j] + g), b);
      S[4 * i + j] = _mm512_add_ps(_mm512_load_ps(lanes[i][j]), b);
    }
  __m512 C[8], D[4], E[2];
  for (int q = 0; q < 8; ++q)
    C[q] = _mm512_add_ps(_mm512_shuffle_f32x4(S[2 * q], S[2 * q + 1], 0x44), _mm512_shuffle_f32x4(S[2 * q], S[2 * q + 1], 0xEE));
  for (int q = 0; q < 4; ++q)
    D[q] = _mm512_add_ps(_mm512_shuffle_f32x4(C[2 * q], C[2 * q + 1], 0x88), _mm512_shuffle_f32x4(C[2 * q], C[2 * q + 1], 0xDD));
  for (int q = 0; q < 2; ++q)
    E[q] = _mm512_add_ps(_mm512_shuffle_ps(D[2 * q], D[2 * q + 1], 0x44), _mm512_shuffle_ps(D[2 * q], D[2 * q + 1], 0xEE));
  _mm512_store_ps(out, _mm512_add_ps(_mm512_shuffle_ps(E[0], E[1], 0x88), _mm512_shuffle_ps(E[0], E[1], 0xDD)));
}
constexpr uint8_t kTreeOrder[16] = {0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15};
#endif

// Rows [r0, r1) of W for every token of `a`; xs: the tokens in the segment layout; ncx: −c·Σxq per token and block.
template <int BITS>
void Q8TiledRows(const WeightMatrix& W, const q8::Activations& a, const uint32_t* xs, const int32_t* ncx, size_t r0,
                 size_t r1, float* Y) {
  const size_t rows = W.rows, n = a.n, seg_words = a.blocks16 * kQ8Quads;
  uint32_t* codes = Scratch<uint32_t>(kQ8TileRows * seg_words, 0);
  float* sblk = Scratch<float>(kQ8TileRows * a.blocks16, 1);
  float* bias = Scratch<float>(kQ8TileRows * a.groups16, 2);
  HWY_ALIGN float lanesB[kQ8Lanes];
  const size_t token_block = std::max<size_t>(kQ8TileTokens, kTokenBlockBytes / (seg_words * sizeof(uint32_t)));
  for (size_t tb = 0; tb < n; tb += token_block)
    for (size_t r = r0; r < r1; r += kQ8TileRows) {
      const size_t nr = std::min(kQ8TileRows, r1 - r), t_end = std::min(n, tb + token_block);
      const uint32_t* cp[kQ8TileRows] = {};
      const float* sp[kQ8TileRows] = {};
      for (size_t i = 0; i < nr; ++i) {
        Q8CodesLayout<BITS>(W, r + i, a.blocks16, codes + i * seg_words);
        LoadRowScales(W, r + i, a.blocks16, a.groups16, sblk + i * a.blocks16, bias + i * a.groups16);
        cp[i] = codes + i * seg_words;
        sp[i] = sblk + i * a.blocks16;
      }
      for (size_t t = tb; t < t_end; t += kQ8TileTokens) {
        const size_t nt = std::min(kQ8TileTokens, t_end - t);
        const uint32_t* xp[kQ8TileTokens] = {};
        const float* dp[kQ8TileTokens] = {};
        const int32_t* np[kQ8TileTokens] = {};
        for (size_t j = 0; j < nt; ++j)
          xp[j] = xs + (t + j) * seg_words, dp[j] = &a.d[(t + j) * a.blocks16], np[j] = ncx + (t + j) * a.blocks16;
        HWY_ALIGN float lanes[kQ8TileRows][kQ8TileTokens][kQ8Lanes];  // written by the first segment
        if (nr == kQ8TileRows) {
          Q8TileTokens<kQ8TileRows>(nt, cp, xp, np, sp, dp, a.blocks16, lanes);
        } else {
          for (size_t i = 0; i < nr; ++i) Q8TileTokens<1>(nt, &cp[i], xp, np, &sp[i], dp, a.blocks16, &lanes[i]);
        }
#if HWY_TARGET <= HWY_AVX3
        if (nr == 4 && nt == 4) {
          const float* bp[4] = {bias, bias + a.groups16, bias + 2 * a.groups16, bias + 3 * a.groups16};
          const float* sp2[4];
          for (size_t j = 0; j < 4; ++j) sp2[j] = &a.xsum[(t + j) * a.groups16];
          HWY_ALIGN float out[16];
          Q8TileOutputs(lanes, bp, sp2, a.groups16, out);
          for (size_t k = 0; k < 16; ++k) Y[(t + kTreeOrder[k] % 4) * rows + r + kTreeOrder[k] / 4] = out[k];
          continue;
        }
#endif
        for (size_t i = 0; i < nr; ++i)
          for (size_t j = 0; j < nt; ++j) {
            BiasLanes(bias + i * a.groups16, &a.xsum[(t + j) * a.groups16], a.groups16, lanesB);
            Y[(t + j) * rows + r + i] = Reduce16(lanes[i][j], lanesB);
          }
      }
    }
}

// ---- one to a few tokens (AVX-512 VNNI) ---------------------------------------------------------------------------

#if HWY_TARGET == HWY_AVX3_DL
// Up to this many tokens stream the packed rows (decode, batched decode): each row is read once and meets the
// tokens two at a time while it sits in L1; more tokens go to the tiles.
constexpr size_t kQ8StreamMax = 8;

HWY_INLINE __m512i Q8Dp(__m512i acc, __m512i u, __m512i s) {
  asm("vpdpbusd %2, %1, %0" : "+v"(acc) : "v"(u), "v"(s));
  return acc;
}

// The 16 block sums of one 512-column segment of packed codes `p` against NX tokens' activations in the decode
// layout (x[n] + off). 8-bit: a 64-byte load is columns 64c..64c+63 in order, so lanes 0..7 of V[c] sum block 2c and
// lanes 8..15 block 2c+1. 4-bit: a 64-byte load holds 128 columns, low nibbles the even ones and high nibbles the
// odd ones (the activations are split to match), so lane j sums columns 8j..8j+7 and quarter q of V[c] is block
// 4c+q. The codes are cut out once for all NX tokens.
template <int BITS, size_t NX>
HWY_INLINE void Q8SegmentSums(const uint8_t* HWY_RESTRICT p, const int8_t* const* x, size_t off, __m512i* out) {
  const __m512i zero = _mm512_setzero_si512();
  if constexpr (BITS == 4) {
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    __m512i V[NX][4];
    for (int c = 0; c < 4; ++c) {
      const __m512i w = _mm512_loadu_si512(p + 64 * c);
      const __m512i lo = _mm512_and_si512(w, m4), hi = _mm512_and_si512(_mm512_srli_epi16(w, 4), m4);
      for (size_t n = 0; n < NX; ++n)
        V[n][c] = Q8Dp(Q8Dp(zero, lo, _mm512_load_si512(x[n] + off + 128 * c)), hi,
                       _mm512_load_si512(x[n] + off + 128 * c + 64));
    }
    for (size_t n = 0; n < NX; ++n) {
      const __m512i W01 = _mm512_add_epi32(_mm512_unpacklo_epi32(V[n][0], V[n][1]), _mm512_unpackhi_epi32(V[n][0], V[n][1]));
      const __m512i W23 = _mm512_add_epi32(_mm512_unpacklo_epi32(V[n][2], V[n][3]), _mm512_unpackhi_epi32(V[n][2], V[n][3]));
      // X lane 4q+m = Σ quarter q of V[m] = block 4m+q.
      const __m512i X = _mm512_add_epi32(_mm512_unpacklo_epi64(W01, W23), _mm512_unpackhi_epi64(W01, W23));
      const __m512i order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
      out[n] = _mm512_permutexvar_epi32(order, X);
    }
  } else {
    __m512i V[NX][8];
    for (int c = 0; c < 8; ++c) {
      const __m512i w = _mm512_loadu_si512(p + 64 * c);
      for (size_t n = 0; n < NX; ++n) V[n][c] = Q8Dp(zero, w, _mm512_load_si512(x[n] + off + 64 * c));
    }
    for (size_t n = 0; n < NX; ++n) {
      __m512i W[4], X[2];
      for (int i = 0; i < 4; ++i)
        W[i] = _mm512_add_epi32(_mm512_unpacklo_epi32(V[n][2 * i], V[n][2 * i + 1]),
                                _mm512_unpackhi_epi32(V[n][2 * i], V[n][2 * i + 1]));
      for (int i = 0; i < 2; ++i)
        X[i] = _mm512_add_epi32(_mm512_unpacklo_epi64(W[2 * i], W[2 * i + 1]), _mm512_unpackhi_epi64(W[2 * i], W[2 * i + 1]));
      // Per quarter q, X[i] lane m = Σ of quarter q of V[4i+m]; blocks 2c are quarters 0+1, blocks 2c+1 are 2+3.
      const __m512i S = _mm512_add_epi32(_mm512_shuffle_i32x4(X[0], X[1], 0x88), _mm512_shuffle_i32x4(X[0], X[1], 0xDD));
      const __m512i order = _mm512_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7, 8, 12, 9, 13, 10, 14, 11, 15);
      out[n] = _mm512_permutexvar_epi32(order, S);
    }
  }
}

// The activations of every token in the decode layout ([n][blocks16 · 32]): 8-bit in column order; 4-bit per 128
// columns, the even columns then the odd ones.
template <int BITS>
hwy::AlignedFreeUniquePtr<int8_t[]> Q8DecodeLayout(const q8::Activations& a) {
  const size_t stride = a.blocks16 * kQ8Block;
  auto out = hwy::AllocateAligned<int8_t>(a.n * stride);
  for (size_t t = 0; t < a.n; ++t) {
    const int8_t* x = &a.xq[t * stride];
    int8_t* o = out.get() + t * stride;
    if constexpr (BITS == 8) {
      std::memcpy(o, x, stride);
    } else {
      for (size_t c = 0; c < stride; c += 128)
        for (size_t i = 0; i < 64; ++i) o[c + i] = x[c + 2 * i], o[c + 64 + i] = x[c + 2 * i + 1];
    }
  }
  return out;
}

// Row r for tokens t0 … t0+NX−1: the same integer block sums and fp32 sequence per token as Q8TiledRows.
// kDirect (F16 scales, groups of 32, whole segments): scales and biases are converted where they are used and the
// bias term accumulates alongside (the operations of LoadRowScales + BiasLanes, in the same order).
template <int BITS, bool kDirect, size_t NX>
HWY_INLINE void Q8DecodeRowTokens(const WeightMatrix& W, const q8::Activations& a, size_t r, const uint8_t* row,
                                  const uint8_t* tail, const int8_t* xp, const int32_t* ncx, const float* sblk,
                                  const float* bias, size_t t0, float* Y) {
  const Q8DF df;
  const Q8DH dh;
  const size_t seg_bytes = kQ8Block * kQ8Lanes * BITS / 8, segs = a.blocks16 / kQ8Lanes;
  const size_t full_segs = a.blocks / kQ8Lanes, stride = a.blocks16 * kQ8Block;
  const auto* sp = reinterpret_cast<const hwy::float16_t*>(static_cast<const uint8_t*>(W.scales) + r * W.scale_row_bytes);
  const auto* bp = reinterpret_cast<const hwy::float16_t*>(static_cast<const uint8_t*>(W.biases) + r * W.scale_row_bytes);
  const Q8VF centre = hn::Set(df, static_cast<float>(q16::code_centre(BITS)));
  const int8_t* x[NX];
  const float *d[NX], *xsum[NX];
  const int32_t* nc[NX];
  Q8VF acc[NX], accB[NX];
  for (size_t j = 0; j < NX; ++j) {
    const size_t t = t0 + j;
    x[j] = xp + t * stride, d[j] = &a.d[t * a.blocks16], xsum[j] = &a.xsum[t * a.groups16];
    nc[j] = ncx + t * a.blocks16;
    acc[j] = hn::Zero(df), accB[j] = hn::Zero(df);
  }
  for (size_t s = 0; s < segs; ++s) {
    const size_t b = s * kQ8Lanes;
    __m512i isum[NX];
    Q8SegmentSums<BITS, NX>(s < full_segs ? row + s * seg_bytes : tail, x, s * kQ8Block * kQ8Lanes, isum);
    if constexpr (kDirect) {
      const Q8VF sv = hn::PromoteTo(df, hn::LoadU(dh, sp + b));
      const Q8VF bias_c = hn::MulAdd(centre, sv, hn::PromoteTo(df, hn::LoadU(dh, bp + b)));
      for (size_t j = 0; j < NX; ++j) {
        const Q8VF f = hn::ConvertTo(df, Q8VI{_mm512_add_epi32(isum[j], _mm512_loadu_si512(nc[j] + b))});
        acc[j] = hn::MulAdd(f, hn::Mul(sv, hn::LoadU(df, d[j] + b)), acc[j]);
        accB[j] = hn::MulAdd(bias_c, hn::LoadU(df, xsum[j] + b), accB[j]);
      }
    } else {
      const Q8VF sv = hn::Load(df, sblk + b);
      for (size_t j = 0; j < NX; ++j) {
        const Q8VF f = hn::ConvertTo(df, Q8VI{_mm512_add_epi32(isum[j], _mm512_loadu_si512(nc[j] + b))});
        acc[j] = hn::MulAdd(f, hn::Mul(sv, hn::LoadU(df, d[j] + b)), acc[j]);
      }
    }
  }
  HWY_ALIGN float lanesF[kQ8Lanes], lanesB[kQ8Lanes];
  for (size_t j = 0; j < NX; ++j) {
    hn::Store(acc[j], df, lanesF);
    if constexpr (kDirect) hn::Store(accB[j], df, lanesB);
    else BiasLanes(bias, xsum[j], a.groups16, lanesB);
    Y[(t0 + j) * W.rows + r] = Reduce16(lanesF, lanesB);
  }
}

// Rows [r0, r1) of W for the (≤ kQ8StreamMax) tokens of `a`, two at a time per row.
template <int BITS, bool kDirect>
void Q8DecodeRowsT(const WeightMatrix& W, const q8::Activations& a, const int8_t* xp, const int32_t* ncx, size_t r0,
                   size_t r1, float* Y) {
  const size_t seg_bytes = kQ8Block * kQ8Lanes * BITS / 8, full_segs = a.blocks / kQ8Lanes;
  float* sblk = Scratch<float>(a.blocks16, 0);
  float* bias = Scratch<float>(a.groups16, 1);
  uint8_t* tail = Scratch<uint8_t>(seg_bytes, 2);
  for (size_t r = r0; r < r1; ++r) {
    const uint8_t* row = static_cast<const uint8_t*>(W.data) + r * W.row_bytes;
    // Keep misses in flight while this row's shuffle trees run.
    PrefetchAhead(row, W.row_bytes, static_cast<const uint8_t*>(W.data) + r1 * W.row_bytes);
    if (full_segs * kQ8Lanes < a.blocks16) {  // last, partial segment: zero-padded copy
      std::memset(tail, 0, seg_bytes);
      std::memcpy(tail, row + full_segs * seg_bytes, (a.blocks - full_segs * kQ8Lanes) * kQ8Block * BITS / 8);
    }
    if constexpr (!kDirect) LoadRowScales(W, r, a.blocks16, a.groups16, sblk, bias);
    size_t t = 0;
    for (; t + 2 <= a.n; t += 2) Q8DecodeRowTokens<BITS, kDirect, 2>(W, a, r, row, tail, xp, ncx, sblk, bias, t, Y);
    if (t < a.n) Q8DecodeRowTokens<BITS, kDirect, 1>(W, a, r, row, tail, xp, ncx, sblk, bias, t, Y);
  }
}

template <int BITS>
void Q8DecodeRows(const WeightMatrix& W, const q8::Activations& a, const int8_t* xp, const int32_t* ncx, size_t r0,
                  size_t r1, float* Y) {
  if (W.scale_dtype == DType::F16 && W.group_size == static_cast<int>(kQ8Block) && a.blocks % kQ8Lanes == 0)
    Q8DecodeRowsT<BITS, true>(W, a, xp, ncx, r0, r1, Y);
  else
    Q8DecodeRowsT<BITS, false>(W, a, xp, ncx, r0, r1, Y);
}
#endif  // HWY_AVX3_DL

// −c·Σxq per token and block (the start of every integer block sum).
hwy::AlignedFreeUniquePtr<int32_t[]> Q8CentreTerms(const q8::Activations& a, int bits) {
  auto ncx = hwy::AllocateAligned<int32_t>(a.n * a.blocks16);
  for (size_t i = 0; i < a.n * a.blocks16; ++i) ncx[i] = -q16::code_centre(bits) * a.xqsum[i];
  return ncx;
}

// Ys[k] = X·Ws[k]ᵀ for matrices of one input width and group size: the activations are quantized once, one parallel
// loop runs over the rows of all of them. `path` (kPathStream, kPathTiles, kPathEngine) is normally picked by token
// count and CPU; tests force each.
bool Q8Multi(const WeightMatrix* const* Ws, size_t m, const float* X, size_t n_tokens, float* const* Ys,
             ThreadPool& pool, int path) {
  const bool tiled = path != kPathStream;
  if (m == 0) return true;
  const size_t cols = Ws[0]->cols, G = Ws[0]->group_size;
  bool has4 = false, has8 = false;
  for (size_t k = 0; k < m; ++k) {
    const WeightMatrix& W = *Ws[k];
    if (!q8::supported(W) || static_cast<size_t>(W.cols) != cols || static_cast<size_t>(W.group_size) != G) return false;
    (W.bits == 4 ? has4 : has8) = true;
  }
  q8::Activations a;
  q8::prepare_activations(n_tokens, cols, G, a);
  if (path == kPathEngine)
    return AffineEngine(Ws, m, X, n_tokens, Ys, pool, a, [&](const float* x, size_t t) { Q8QuantizeToken(x, t, a); });
  const StackedRows rows(Ws, m, cols * n_tokens, !tiled, pool.size(), kQ8TileRows);
  hwy::AlignedFreeUniquePtr<int32_t[]> ncx4, ncx8;
#if HWY_TARGET == HWY_AVX3_DL
  if (!tiled) {
    if (n_tokens > kQ8StreamMax) return false;
    for (size_t t = 0; t < n_tokens; ++t) Q8QuantizeToken(X + t * cols, t, a);
    hwy::AlignedFreeUniquePtr<int8_t[]> xp4, xp8;
    if (has4) ncx4 = Q8CentreTerms(a, 4), xp4 = Q8DecodeLayout<4>(a);
    if (has8) ncx8 = Q8CentreTerms(a, 8), xp8 = Q8DecodeLayout<8>(a);
    rows.run(pool, [&](size_t k, size_t lo, size_t hi) {
      if (Ws[k]->bits == 4) Q8DecodeRows<4>(*Ws[k], a, xp4.get(), ncx4.get(), lo, hi, Ys[k]);
      else Q8DecodeRows<8>(*Ws[k], a, xp8.get(), ncx8.get(), lo, hi, Ys[k]);
    });
    return true;
  }
#endif
  const size_t seg_words = a.blocks16 * kQ8Quads;
  auto xs = hwy::AllocateAligned<uint32_t>(n_tokens * seg_words);
  pool.parallel_for(n_tokens, std::max<size_t>(1, 16384 / cols), [&](size_t t0, size_t t1) {
    for (size_t t = t0; t < t1; ++t) Q8QuantizeToken(X + t * cols, t, a), Q8TokenLayout(a, t, xs.get() + t * seg_words);
  });
  if (has4) ncx4 = Q8CentreTerms(a, 4);
  if (has8) ncx8 = Q8CentreTerms(a, 8);
  rows.run(pool, [&](size_t k, size_t lo, size_t hi) {
    if (Ws[k]->bits == 4) Q8TiledRows<4>(*Ws[k], a, xs.get(), ncx4.get(), lo, hi, Ys[k]);
    else Q8TiledRows<8>(*Ws[k], a, xs.get(), ncx8.get(), lo, hi, Ys[k]);
  });
  return true;
}

bool Q8MultiT(const WeightMatrix* const* Ws, size_t m, const float* X, size_t n_tokens, float* const* Ys,
              ThreadPool& pool) {
#if HWY_TARGET == HWY_AVX3_DL
  const size_t stream_max = kQ8StreamMax;
#else
  const size_t stream_max = 1;
#endif
  return Q8Multi(Ws, m, X, n_tokens, Ys, pool, AffinePath(n_tokens, stream_max));
}

// Forces one path (tests): 0 = the one-token path, token by token; 1 = the tiled path for all tokens.
bool Q8PathT(const WeightMatrix& W, const float* X, size_t n_tokens, float* Y, int path, ThreadPool& pool) {
  return ForcedPath(Q8Multi, W, X, n_tokens, Y, path, pool);
}

#else  // HWY_SCALAR: the scalar reference is the kernel.

bool Q8MultiT(const WeightMatrix* const*, size_t, const float*, size_t, float* const*, ThreadPool&) { return false; }
bool Q8PathT(const WeightMatrix&, const float*, size_t, float*, int, ThreadPool&) { return false; }

#endif

}  // namespace HWY_NAMESPACE
}  // namespace zaya
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace zaya {
HWY_EXPORT(Q8MultiT);
HWY_EXPORT(Q8PathT);

bool affine_q8_accepts(const WeightMatrix& W) { return q8::supported(W); }

void affine_q8_product(const WeightMatrix& W, const float* X, size_t n_tokens, float* Y, ThreadPool& pool) {
  const WeightMatrix* w = &W;
  if (HWY_DYNAMIC_DISPATCH(Q8MultiT)(&w, 1, X, n_tokens, &Y, pool)) return;
  // A target without the SIMD path still uses the canonical arithmetic.
  reference_by_rows(W, X, n_tokens, Y, pool, affine_q8_reference);
}

bool affine_q8_multi(const WeightMatrix* const* Ws, size_t m, const float* X, size_t n_tokens, float* const* Ys,
                     ThreadPool& pool) {
  return HWY_DYNAMIC_DISPATCH(Q8MultiT)(Ws, m, X, n_tokens, Ys, pool);
}

void affine_q8_reference(const WeightMatrix& W, const float* X, size_t n_tokens, float* Y) {
  q8::matmul_ref(W, X, n_tokens, Y);
}

bool affine_q8_path(const WeightMatrix& W, const float* X, size_t n_tokens, float* Y, int path, ThreadPool& pool) {
  return HWY_DYNAMIC_DISPATCH(Q8PathT)(W, X, n_tokens, Y, path, pool);
}
}  // namespace zaya
#endif
