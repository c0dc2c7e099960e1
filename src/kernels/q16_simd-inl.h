// Shared SIMD pieces of the int16-activation products (affine_q16.h, mxtq_q16.h): activation quantization and
// layouts, the exact integer block sums of the one-token path, and the multi-token register tile. Included by the
// Highway kernel files after foreach_target.h, once per target (Highway's -inl.h convention, hence the toggling
// include guard instead of #pragma once).
#if defined(ZAYA_KERNELS_Q16_SIMD_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef ZAYA_KERNELS_Q16_SIMD_INL_H_
#undef ZAYA_KERNELS_Q16_SIMD_INL_H_
#else
#define ZAYA_KERNELS_Q16_SIMD_INL_H_
#endif

#include <algorithm>
#include <cstring>
#include <limits>
#include <vector>

#include <hwy/highway.h>
#include <hwy/aligned_allocator.h>

#include "kernels/affine_q16.h"
#include "tensor/weight_matrix.h"
#include "util/thread_pool.h"

HWY_BEFORE_NAMESPACE();
namespace zaya {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

using q16::kBlock;
using q16::kLanes;

#if HWY_TARGET != HWY_SCALAR

using DI = hn::ScalableTag<int32_t>;
using D16 = hn::Repartition<int16_t, DI>;
using DU16 = hn::RebindToUnsigned<D16>;
using DU8H = hn::Rebind<uint8_t, DU16>;  // one byte per 16-bit lane
using DF = hn::Repartition<float, DI>;
using DH = hn::Rebind<hwy::float16_t, DF>;
using VI = hn::Vec<DI>;
using V16 = hn::Vec<D16>;
using VF = hn::Vec<DF>;


// Per-thread scratch that grows to the largest size asked for: the kernels run once per pool chunk, hundreds of
// thousands of times per generated token, so they must not allocate.
// Slots 0–3 are the kernels' own; 4–9 the engine path's (affine_amx_hwy.cpp), whose packed activations stay in use on
// the calling thread while its row kernels take 0–3 and 8–9.
constexpr int kScratchSlots = 10;
template <class T>
T* Scratch(size_t n, int slot) {
  thread_local hwy::AlignedFreeUniquePtr<uint8_t[]> buf[kScratchSlots];
  thread_local size_t cap[kScratchSlots] = {};
  const size_t bytes = n * sizeof(T) + 64;
  if (cap[slot] < bytes) buf[slot] = hwy::AllocateAligned<uint8_t>(bytes), cap[slot] = bytes;
  return reinterpret_cast<T*>(buf[slot].get());
}

// acc + Σ of the two int16 products in every 32-bit lane (a[2j]·b[2j] + a[2j+1]·b[2j+1]).
HWY_INLINE VI MulAddPairs(V16 a, V16 b, VI acc) {
#if HWY_TARGET == HWY_AVX3_DL
  // Inline asm: hwy 1.0.3's AVX3_DL attribute string lacks avx512vnni, so the intrinsic is not available here.
  __m512i r = acc.raw;
  asm("vpdpwssd %2, %1, %0" : "+v"(r) : "v"(a.raw), "v"(b.raw));
  return VI{r};
#elif HWY_TARGET == HWY_AVX3 || HWY_TARGET == HWY_AVX2 || HWY_TARGET == HWY_SSE4
  VI unused = hn::Zero(DI());
  return hn::ReorderWidenMulAccumulate(DI(), a, b, acc, unused);  // pmaddwd + add
#else
  const DI di;
  const VI a32 = hn::BitCast(di, a), b32 = hn::BitCast(di, b);
  const VI ae = hn::ShiftRight<16>(hn::ShiftLeft<16>(a32)), be = hn::ShiftRight<16>(hn::ShiftLeft<16>(b32));
  const VI ao = hn::ShiftRight<16>(a32), bo = hn::ShiftRight<16>(b32);
  return hn::Add(acc, hn::Add(hn::Mul(ae, be), hn::Mul(ao, bo)));
#endif
}

// The two int16 products of every 32-bit lane added (a[2j]·b[2j] + a[2j+1]·b[2j+1]): MulAddPairs onto zero, but as
// one vpmaddwd on AVX-512 (the VNNI form would need a zeroed register first).
HWY_INLINE VI MulPairs(V16 a, V16 b) {
#if HWY_TARGET <= HWY_AVX3
  return VI{_mm512_madd_epi16(a.raw, b.raw)};
#else
  return MulAddPairs(a, b, hn::Zero(DI()));
#endif
}

// q16::reduce16 of lanes F + B, with 4-lane vectors: (i, i+8), (i, i+4), then (0, 2)(1, 3), then (0, 1).
HWY_INLINE float Reduce16(const float* HWY_RESTRICT f, const float* HWY_RESTRICT b) {
  const hn::FixedTag<float, 4> d4;
  using V4 = hn::Vec<decltype(d4)>;
  V4 v[4];
  for (int i = 0; i < 4; ++i) v[i] = hn::Add(hn::Load(d4, f + 4 * i), hn::Load(d4, b + 4 * i));
  const V4 c = hn::Add(hn::Add(v[0], v[2]), hn::Add(v[1], v[3]));
  const V4 e = hn::Add(c, hn::Shuffle1032(c));
  return hn::GetLane(hn::Add(e, hn::Shuffle2301(e)));
}

// q16::reduce16 of lanes F alone, the same tree.
HWY_INLINE float Reduce16(const float* HWY_RESTRICT f) {
  const hn::FixedTag<float, 4> d4;
  using V4 = hn::Vec<decltype(d4)>;
  const V4 c = hn::Add(hn::Add(hn::Load(d4, f), hn::Load(d4, f + 8)), hn::Add(hn::Load(d4, f + 4), hn::Load(d4, f + 12)));
  const V4 e = hn::Add(c, hn::Shuffle1032(c));
  return hn::GetLane(hn::Add(e, hn::Shuffle2301(e)));
}

// Per-row scale/bias arrays as fp32: scales expanded to one per 32-column block, biases one per group; both
// zero-padded to the 16-lane segments.
HWY_INLINE void LoadRowScales(const WeightMatrix& W, size_t r, size_t blocks16, size_t groups16, float* sblk,
                              float* bias) {
  const float c = static_cast<float>(q16::code_centre(W.bits));
  const size_t G = W.group_size, groups = W.cols / G, per_group = G / kBlock;
  const uint8_t* sp = static_cast<const uint8_t*>(W.scales) + r * W.scale_row_bytes;
  const uint8_t* bp = static_cast<const uint8_t*>(W.biases) + r * W.scale_row_bytes;
  const DF df;
  const size_t N = hn::Lanes(df);
  size_t g = 0;
  if (W.scale_dtype == DType::F16 && per_group == 1) {
    const DH dh;
    for (; g + N <= groups; g += N) {
      const VF s = hn::PromoteTo(df, hn::LoadU(dh, reinterpret_cast<const hwy::float16_t*>(sp) + g));
      hn::Store(s, df, sblk + g);
      hn::Store(hn::MulAdd(hn::Set(df, c), s, hn::PromoteTo(df, hn::LoadU(dh, reinterpret_cast<const hwy::float16_t*>(bp) + g))), df, bias + g);
    }
  }
  for (; g < groups; ++g) {
    const float s = stored_scale(sp, W.scale_dtype, g);
    for (size_t k = 0; k < per_group; ++k) sblk[g * per_group + k] = s;
    bias[g] = std::fma(c, s, stored_scale(bp, W.scale_dtype, g));
  }
  std::fill(sblk + groups * per_group, sblk + blocks16, 0.0f);
  std::fill(bias + groups, bias + groups16, 0.0f);
}

// Σ over groups of bias·xsum into the 16 virtual lanes (B of affine_q16.h).
HWY_INLINE void BiasLanes(const float* bias, const float* xsum, size_t groups16, float* lanes) {
  const DF df;
  const size_t N = hn::Lanes(df);
  VF acc[kLanes];
  for (size_t u = 0; u < kLanes / N; ++u) acc[u] = hn::Zero(df);
  for (size_t g = 0; g < groups16; g += kLanes)
    for (size_t u = 0; u < kLanes / N; ++u)
      acc[u] = hn::MulAdd(hn::Load(df, bias + g + u * N), hn::LoadU(df, xsum + g + u * N), acc[u]);
  for (size_t u = 0; u < kLanes / N; ++u) hn::Store(acc[u], df, lanes + u * N);
}




// The rows of m matrices that share one activation, as one parallel loop (a row's result does not depend on how the
// rows are split). Grain: enough work per pool chunk; streaming (a few tokens) gets a few long runs of rows per
// thread, so the prefetch stream is rarely restarted (each pool chunk starts cold), with enough chunks left to even
// out a late thread; whole tiles of tile_rows.
struct StackedRows {
  std::vector<size_t> offset;  // [m + 1]: first row of each matrix
  size_t grain = 0;
  StackedRows(const WeightMatrix* const* Ws, size_t m, size_t work_per_row, bool streaming, size_t threads,
              size_t tile_rows)
      : offset(m + 1, 0) {
    for (size_t k = 0; k < m; ++k) offset[k + 1] = offset[k] + Ws[k]->rows;
    grain = std::max<size_t>(4, 65536 / std::max<size_t>(1, work_per_row));
    if (streaming) grain = std::max(grain, offset[m] / (threads * 4));
    grain = (grain + tile_rows - 1) / tile_rows * tile_rows;
  }
  // fn(k, lo, hi) for every run of rows [lo, hi) of matrix k, in parallel.
  template <class Fn>
  void run(ThreadPool& pool, const Fn& fn) const {
    const size_t m = offset.size() - 1;
    pool.parallel_for(offset[m], grain, [&](size_t r0, size_t r1) {
      for (size_t k = 0; k < m; ++k) {
        const size_t lo = std::max(r0, offset[k]), hi = std::min(r1, offset[k + 1]);
        if (lo < hi) fn(k, lo - offset[k], hi - offset[k]);
      }
    });
  }
};

// Forces one path of a Multi(Ws, m, X, n, Ys, pool, path) kernel (tests): 0 = the one-token path, token by token;
// 1 = the tiled path for all tokens; 2 = the matrix engine (affine_amx_hwy.cpp) for all tokens, where the kernel
// has one (else as 1).
template <class Multi>
bool ForcedPath(const Multi& multi, const WeightMatrix& W, const float* X, size_t n_tokens, float* Y, int path,
                ThreadPool& pool) {
  const WeightMatrix* w = &W;
  if (path >= 1) return multi(&w, 1, X, n_tokens, &Y, pool, path);
  std::vector<float> y(W.rows);
  for (size_t t = 0; t < n_tokens; ++t) {
    float* yp = y.data();
    if (!multi(&w, 1, X + t * W.cols, 1, &yp, pool, false)) return false;
    std::copy(y.begin(), y.end(), Y + t * W.rows);
  }
  return true;
}

// ---- one token --------------------------------------------------------------------------------------------------

#if HWY_TARGET <= HWY_AVX3
// V[c] (c = 0..7) hold 8 lanes of block 2c then 8 lanes of block 2c+1; returns the 16 block sums in order.
HWY_INLINE __m512i FoldPairsOfBlocks(const __m512i* V) {
  __m512i W[4], X[2];
  for (int i = 0; i < 4; ++i)
    W[i] = _mm512_add_epi32(_mm512_unpacklo_epi32(V[2 * i], V[2 * i + 1]), _mm512_unpackhi_epi32(V[2 * i], V[2 * i + 1]));
  for (int i = 0; i < 2; ++i)
    X[i] = _mm512_add_epi32(_mm512_unpacklo_epi64(W[2 * i], W[2 * i + 1]), _mm512_unpackhi_epi64(W[2 * i], W[2 * i + 1]));
  // Per 128-bit quarter q, X[i] lane m = Σ of quarter q of V[4i+m]; blocks 2c are quarters 0+1, blocks 2c+1 are 2+3.
  const __m512i S = _mm512_add_epi32(_mm512_shuffle_i32x4(X[0], X[1], 0x88), _mm512_shuffle_i32x4(X[0], X[1], 0xDD));
  const __m512i order = _mm512_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7, 8, 12, 9, 13, 10, 14, 11, 15);
  return _mm512_permutexvar_epi32(order, S);
}
#endif

// Code values as stored (affine: the code itself; its centre is taken off later, through Σxq). A map whose
// kLow4BitsOnly is set looks at the low 4 bits of a lane only, so 4-bit codes need no masking before it.
struct CodesAsValues {
  static constexpr bool kLow4BitsOnly = false;
  HWY_INLINE V16 operator()(V16 codes) const { return codes; }
};

// Block sums of one 16-block segment: codes `p` (packed, bits per code), turned into int16 values by `map`, against
// NX activation vectors in the decode layout (xp, xp + xstride, …); the 16 block sums of vector n go to isum + 16n.
template <int BITS, size_t NX = 1, class Map = CodesAsValues>
HWY_INLINE void SegmentBlockSums(const uint8_t* HWY_RESTRICT p, const int16_t* HWY_RESTRICT xp, int32_t* isum,
                                 size_t xstride = 0, const Map& map = Map()) {
  const D16 d16;
  const DU16 du16;
  const DU8H du8;
  const DI di;
  const size_t N16 = hn::Lanes(d16), N32 = hn::Lanes(di);
  // Columns per chunk: 4-bit loads N16 bytes = 2·N16 codes (low nibbles meet the even columns, high the odd ones);
  // 8-bit loads N16 codes.
  constexpr size_t kCols = kBlock * kLanes;
  const size_t chunk_cols = BITS == 4 ? 2 * N16 : N16;
  const size_t chunks = kCols / chunk_cols;
  auto chunk_sums = [&](size_t c, VI* out) HWY_ATTR {
    const auto codes = hn::PromoteTo(du16, hn::LoadU(du8, p + c * N16));
    if constexpr (BITS == 4) {
      const V16 lo = map(hn::BitCast(d16, hn::And(codes, hn::Set(du16, 0x0F))));
      const V16 hi = map(hn::BitCast(d16, hn::ShiftRight<4>(codes)));
      for (size_t n = 0; n < NX; ++n) {
        const int16_t* x = xp + n * xstride + c * 2 * N16;
        out[n] = MulAddPairs(hi, hn::Load(d16, x + N16), MulPairs(lo, hn::Load(d16, x)));
      }
    } else {
      const V16 v = map(hn::BitCast(d16, codes));
      for (size_t n = 0; n < NX; ++n) out[n] = MulPairs(v, hn::Load(d16, xp + n * xstride + c * N16));
    }
  };
#if HWY_TARGET <= HWY_AVX3
  // No byte-widening shuffles: 64 packed bytes are read as 32 words and the codes are cut out with and/shift, the
  // activations being laid out to match (DecodeLayout). Only the block-sum fold uses the shuffle unit.
  const auto w_at = [&](size_t c) HWY_ATTR { return hn::LoadU(du16, reinterpret_cast<const uint16_t*>(p + 64 * c)); };
  if constexpr (BITS == 4) {
    // Word i of chunk c (128 columns) holds columns 4i..4i+3, one per nibble; lane j sums columns 8j..8j+7, so
    // quarter q of V[c] is block 4c+q.
    const auto m4 = hn::Set(du16, 0x0F);
    const auto code = [&](decltype(m4) v) HWY_ATTR {
      if constexpr (Map::kLow4BitsOnly) return map(hn::BitCast(d16, v));
      else return map(hn::BitCast(d16, hn::And(v, m4)));
    };
    __m512i V[NX][4];
    for (size_t c = 0; c < 4; ++c) {
      const auto w = w_at(c);
      const V16 v0 = code(w), v1 = code(hn::ShiftRight<4>(w)), v2 = code(hn::ShiftRight<8>(w));
      const V16 v3 = map(hn::BitCast(d16, hn::ShiftRight<12>(w)));
      for (size_t n = 0; n < NX; ++n) {
        const int16_t* x = xp + n * xstride + 128 * c;
        VI acc = MulPairs(v0, hn::Load(d16, x));
        acc = MulAddPairs(v1, hn::Load(d16, x + 32), acc);
        acc = MulAddPairs(v2, hn::Load(d16, x + 64), acc);
        V[n][c] = MulAddPairs(v3, hn::Load(d16, x + 96), acc).raw;
      }
    }
    for (size_t n = 0; n < NX; ++n) {
      const __m512i W01 = _mm512_add_epi32(_mm512_unpacklo_epi32(V[n][0], V[n][1]), _mm512_unpackhi_epi32(V[n][0], V[n][1]));
      const __m512i W23 = _mm512_add_epi32(_mm512_unpacklo_epi32(V[n][2], V[n][3]), _mm512_unpackhi_epi32(V[n][2], V[n][3]));
      // X lane 4q+m = Σ quarter q of V[m] = block 4m+q.
      const __m512i X = _mm512_add_epi32(_mm512_unpacklo_epi64(W01, W23), _mm512_unpackhi_epi64(W01, W23));
      const __m512i order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
      _mm512_store_si512(isum + kLanes * n, _mm512_permutexvar_epi32(order, X));
    }
  } else {
    // Word i of chunk c (64 columns) holds columns 2i (low byte) and 2i+1; lane j sums columns 4j..4j+3, so V[c]
    // has 8 lanes of block 2c, then 8 of block 2c+1.
    const auto m8 = hn::Set(du16, 0xFF);
    __m512i V[NX][8];
    for (size_t c = 0; c < 8; ++c) {
      const auto w = w_at(c);
      const V16 v0 = map(hn::BitCast(d16, hn::And(w, m8))), v1 = map(hn::BitCast(d16, hn::ShiftRight<8>(w)));
      for (size_t n = 0; n < NX; ++n) {
        const int16_t* x = xp + n * xstride + 64 * c;
        V[n][c] = MulAddPairs(v1, hn::Load(d16, x + 32), MulPairs(v0, hn::Load(d16, x))).raw;
      }
    }
    for (size_t n = 0; n < NX; ++n) _mm512_store_si512(isum + kLanes * n, FoldPairsOfBlocks(V[n]));
  }
  (void)chunk_sums;
  (void)chunks;
  (void)N32;
#elif HWY_TARGET == HWY_AVX2
  // 8 lanes per block (4-bit: one chunk; 8-bit: two chunks added); three hadd levels give 8 block sums in order.
  for (size_t half = 0; half < 2; ++half) {
    __m256i V[NX][8];
    for (size_t b = 0; b < 8; ++b) {
      const size_t blk = half * 8 + b;
      VI s0[NX], s1[NX];
      if constexpr (BITS == 4) {
        chunk_sums(blk, s0);
        for (size_t n = 0; n < NX; ++n) V[n][b] = s0[n].raw;
      } else {
        chunk_sums(2 * blk, s0);
        chunk_sums(2 * blk + 1, s1);
        for (size_t n = 0; n < NX; ++n) V[n][b] = _mm256_add_epi32(s0[n].raw, s1[n].raw);
      }
    }
    for (size_t n = 0; n < NX; ++n) {
      const __m256i h0 = _mm256_hadd_epi32(V[n][0], V[n][1]), h1 = _mm256_hadd_epi32(V[n][2], V[n][3]);
      const __m256i h2 = _mm256_hadd_epi32(V[n][4], V[n][5]), h3 = _mm256_hadd_epi32(V[n][6], V[n][7]);
      const __m256i g0 = _mm256_hadd_epi32(h0, h1), g1 = _mm256_hadd_epi32(h2, h3);
      // g0 lane q·4+m: half q of V[m]'s sum (m = 0..3); g1 likewise for V[4..7].
      const __m256i sum = _mm256_add_epi32(_mm256_permute2x128_si256(g0, g1, 0x20), _mm256_permute2x128_si256(g0, g1, 0x31));
      _mm256_store_si256(reinterpret_cast<__m256i*>(isum + kLanes * n + half * 8), sum);
    }
  }
  (void)chunks;
  (void)N32;
#else
  HWY_ALIGN int32_t lanes[HWY_MAX_BYTES / 4];
  for (size_t b = 0; b < NX * kLanes; ++b) isum[b] = 0;
  // Lane j of a chunk sum covers columns (4-bit) 4j..4j+3 or (8-bit) 2j, 2j+1 of the chunk.
  const size_t cols_per_lane = BITS == 4 ? 4 : 2;
  for (size_t c = 0; c < chunks; ++c) {
    VI sums[NX];
    chunk_sums(c, sums);
    for (size_t n = 0; n < NX; ++n) {
      hn::Store(sums[n], di, lanes);
      for (size_t j = 0; j < N32; ++j) isum[kLanes * n + (c * chunk_cols + j * cols_per_lane) / kBlock] += lanes[j];
    }
  }
#endif
}

// Token t's blocks and group sums in `a` from x (SIMD; the same numbers as q16::quantize_block_token: the max and
// the scaling are exact IEEE operations, NearestInt rounds half to even like lrintf). Q = int16_t or int8_t.
template <class Q>
HWY_INLINE void QuantizeBlocks(const float* HWY_RESTRICT x, size_t t, float qmax, q16::BlockActivations<Q>& a) {
  const DF df;
  const DI di;
  const hn::Rebind<Q, DI> dq;
  const size_t N = hn::Lanes(df);
  Q* q = &a.xq[t * a.blocks16 * kBlock];
  for (size_t b = 0; b < a.blocks; ++b) {
    const float* xb = x + b * kBlock;
    VF vmax = hn::Zero(df);
    auto finite = hn::FirstN(df, N);  // all lanes
    for (size_t i = 0; i < kBlock; i += N) {
      const VF v = hn::LoadU(df, xb + i);
      finite = hn::And(finite, hn::IsFinite(v));
      vmax = hn::Max(vmax, hn::Abs(v));
    }
    float& d = a.d[t * a.blocks16 + b];
    if (!hn::AllTrue(df, finite)) {
      d = std::numeric_limits<float>::quiet_NaN();
      continue;
    }
    const float amax = hn::GetLane(hn::MaxOfLanes(df, vmax));
    if (amax == 0.0f) continue;
    d = amax / qmax;
    const VF id = hn::Set(df, qmax / amax);
    VI sum = hn::Zero(di);
    for (size_t i = 0; i < kBlock; i += N) {
      const VI v = hn::NearestInt(hn::Mul(hn::LoadU(df, xb + i), id));
      sum = hn::Add(sum, v);
      hn::StoreU(hn::DemoteTo(dq, v), dq, q + b * kBlock + i);
    }
    a.xqsum[t * a.blocks16 + b] = hn::GetLane(hn::SumOfLanes(di, sum));
  }
  // Group sums: 8 column-interleaved partial sums, then the fixed tree (q16::group_sum).
  const hn::CappedTag<float, 8> d8;
  const size_t N8 = hn::Lanes(d8);
  HWY_ALIGN float p[8];
  for (size_t g = 0; g < a.groups; ++g) {
    const float* xg = x + g * a.group_size;
    hn::Vec<decltype(d8)> acc[8];
    for (size_t u = 0; u < 8 / N8; ++u) acc[u] = hn::Zero(d8);
    for (size_t i = 0; i < a.group_size; i += 8)
      for (size_t u = 0; u < 8 / N8; ++u) acc[u] = hn::Add(acc[u], hn::LoadU(d8, xg + i + u * N8));
    for (size_t u = 0; u < 8 / N8; ++u) hn::Store(acc[u], d8, p + u * N8);
    for (size_t l = 0; l < 4; ++l) p[l] += p[l + 4];
    a.xsum[t * a.groups16 + g] = (p[0] + p[2]) + (p[1] + p[3]);
  }
}

// Token t of `a` from x (SIMD; the same numbers as q16::quantize_token). With `seg` set, also writes the token's
// activations in the segment layout of the multi-token path.
inline void QuantizeToken(const float* HWY_RESTRICT x, size_t t, q16::Activations& a, uint32_t* HWY_RESTRICT seg) {
  QuantizeBlocks(x, t, q16::kQMax, a);
  if (!seg) return;
  const size_t N32 = hn::Lanes(DI());
  const int16_t* q = &a.xq[t * a.blocks16 * kBlock];
  // Segment layout: pair k of block (s·16 + u·N32 + j) at ((s·16 + u·N32)·16 + k·N32 + j).
  const uint32_t* pairs = reinterpret_cast<const uint32_t*>(q);
  for (size_t b = 0; b < a.blocks16; ++b) {
    const size_t s = b / kLanes, u = (b % kLanes) / N32, j = b % N32;
    uint32_t* o = seg + (s * kLanes + u * N32) * kLanes + j;
    const uint32_t* src = pairs + b * (kBlock / 2);
    for (size_t k = 0; k < kLanes; ++k) o[k * N32] = src[k];
  }
}

// Decode layout of the activations, matching how SegmentBlockSums cuts codes out of the packed row.
// AVX-512: 4-bit chunks of 128 columns as four vectors k = 0..3 holding columns 4i+k; 8-bit chunks of 64 columns as
// [even | odd]. Other targets: 4-bit chunks of 2·N16 columns as [even | odd]; 8-bit in column order.
template <int BITS>
void DecodeLayout(const q16::Activations& a, size_t t, int16_t* out) {
  const size_t N16 = hn::Lanes(D16());
  const size_t stride = a.blocks16 * kBlock;
  const int16_t* x = &a.xq[t * stride];
#if HWY_TARGET <= HWY_AVX3
  if (BITS == 4) {
    for (size_t c = 0; c < stride; c += 128)
      for (size_t k = 0; k < 4; ++k)
        for (size_t i = 0; i < 32; ++i) out[c + 32 * k + i] = x[c + 4 * i + k];
  } else {
    for (size_t c = 0; c < stride; c += 64)
      for (size_t i = 0; i < 32; ++i) out[c + i] = x[c + 2 * i], out[c + 32 + i] = x[c + 2 * i + 1];
  }
  (void)N16;
#else
  if (BITS == 8) {
    std::memcpy(out, x, stride * sizeof(int16_t));
    return;
  }
  for (size_t c = 0; c < stride; c += 2 * N16)
    for (size_t l = 0; l < N16; ++l) out[c + l] = x[c + 2 * l], out[c + N16 + l] = x[c + 2 * l + 1];
#endif
}

// Software prefetch of the one-token paths: the bytes kPrefetchBytes past those about to be read go to L2
// (prefetcht1), never past `end`, the last byte the call streams. Into L1 a few rows ahead (the earlier scheme) the
// prefetches waited for fill buffers the loads needed: the 8-bit lm_head ran ~12 % slower (zaya_bench
// BM_Affine8_LmHead, dev VM); distances of 2–12 KiB into L2 measured alike.
constexpr size_t kPrefetchBytes = 4096;
HWY_INLINE void PrefetchAhead(const uint8_t* p, size_t bytes, const uint8_t* end) {
  const uint8_t* q = p + kPrefetchBytes;
  for (size_t l = 0; l < bytes && q + l < end; l += 64) __builtin_prefetch(q + l, 0, 2);
}
// Tokens up to which a product streams each row once and meets every token with the one-token arithmetic (a batched
// decode step); more take the tiled path, whose per-row re-layout pays off only over more tokens.
constexpr size_t kStreamTokens = 8;

// ---- several tokens ---------------------------------------------------------------------------------------------

#if HWY_TARGET == HWY_AVX3_DL
// Byte indices of the 16×16 transpose of a 4-bit segment (block j's 16 packed bytes are row j): output vector a holds
// bytes k = 4a … 4a+3 of every block, 16 per k, picked from (z0, z1) or (z2, z3) by permutex2var.
struct TransposeIndex {
  alignas(64) uint8_t idx[4][64];
  TransposeIndex() {
    for (int a = 0; a < 4; ++a)
      for (int q = 0; q < 4; ++q)
        for (int j = 0; j < 16; ++j) idx[a][16 * q + j] = static_cast<uint8_t>(((j / 4) % 2) * 64 + 16 * (j % 4) + 4 * a + q);
  }
};

HWY_INLINE void Segment4ToLayout(const uint8_t* HWY_RESTRICT p, uint32_t* HWY_RESTRICT out) {
  static const TransposeIndex kIdx;
  const __m512i z0 = _mm512_loadu_si512(p), z1 = _mm512_loadu_si512(p + 64), z2 = _mm512_loadu_si512(p + 128),
                z3 = _mm512_loadu_si512(p + 192);
  const __mmask64 upper_blocks = 0xFF00FF00FF00FF00ull;  // j >= 8 in every 16-byte row
  alignas(64) uint8_t t[256];
  for (int a = 0; a < 4; ++a) {
    const __m512i idx = _mm512_load_si512(kIdx.idx[a]);
    const __m512i lo = _mm512_permutex2var_epi8(z0, idx, z1), hi = _mm512_permutex2var_epi8(z2, idx, z3);
    _mm512_store_si512(t + 64 * a, _mm512_mask_blend_epi8(upper_blocks, lo, hi));
  }
  // Byte b → lane (b & 0xF) | (b >> 4) << 16.
  const __m512i mask = _mm512_set1_epi32(0x000F000F);
  for (int k = 0; k < 16; ++k) {
    const __m512i v = _mm512_cvtepu8_epi32(_mm_load_si128(reinterpret_cast<const __m128i*>(t + 16 * k)));
    _mm512_store_si512(out + 16 * k, _mm512_and_si512(_mm512_or_si512(v, _mm512_slli_epi32(v, 12)), mask));
  }
}
#endif

// Segment layout: for every 16-block segment, sub-vector u (N32 blocks), pair k = 0..15, lane j: the int16 pair
// (column 2k, 2k+1) of block (segment·16 + u·N32 + j), as one 32-bit lane. Rows of codes and tokens of activations
// use the same layout, so lane j always meets block j.
template <int BITS>
void CodesToSegmentLayout(const WeightMatrix& W, size_t r, size_t blocks16, uint32_t* out) {
  const size_t N32 = hn::Lanes(DI());
  const size_t blocks = W.cols / kBlock, block_bytes = kBlock * BITS / 8;
  const uint8_t* row = static_cast<const uint8_t*>(W.data) + r * W.row_bytes;
  for (size_t s = 0; s < blocks16 / kLanes; ++s) {
#if HWY_TARGET == HWY_AVX3_DL
    if (BITS == 4 && (s + 1) * kLanes <= blocks) {
      Segment4ToLayout(row + s * kLanes * block_bytes, out + s * kLanes * kLanes);
      continue;
    }
#endif
    for (size_t u = 0; u < kLanes / N32; ++u)
      for (size_t j = 0; j < N32; ++j) {
        const size_t b = s * kLanes + u * N32 + j;
        uint32_t* o = out + (s * kLanes + u * N32) * kLanes + j;
        if (b >= blocks) {
          for (size_t k = 0; k < kLanes; ++k) o[k * N32] = 0;
          continue;
        }
        const uint8_t* q = row + b * block_bytes;
        if constexpr (BITS == 4) {
          for (size_t k = 0; k < kLanes; ++k) o[k * N32] = (q[k] & 0xFu) | (static_cast<uint32_t>(q[k] >> 4) << 16);
        } else {
          for (size_t k = 0; k < kLanes; ++k) o[k * N32] = q[2 * k] | (static_cast<uint32_t>(q[2 * k + 1]) << 16);
        }
      }
  }
}

#if HWY_TARGET <= HWY_AVX3
constexpr size_t kTileRows = 4;  // 4 rows × 4 tokens: 16 integer accumulators of 32 registers
#else
constexpr size_t kTileRows = 1;  // 16 registers: 1 row × 4 tokens
#endif
constexpr size_t kTileTokens = 4, kTileTokensMax = 4;
// Activation bytes of the tokens a tiled pass keeps in L2 while rows stream past (larger: re-read from L3 for every
// row tile; prefill of 512 tokens ran 27 % faster on the dev VM with 256 KiB blocks than with none).
constexpr size_t kTokenBlockBytes = size_t(256) << 10;

// Paths of the multi-token kernels (ForcedPath; the defaults pick by token count and CPU).
constexpr int kPathStream = 0, kPathTiles = 1, kPathEngine = 2;

// affine_amx_hwy.cpp: the affine products of already quantized activations on the AMX engine, bitwise the tiled
// path; false (nothing computed) where this target or process has no engine.
template <class Q>
bool AffineAmx(const WeightMatrix* const* Ws, size_t m, const q16::BlockActivations<Q>& a, size_t n_tokens,
               float* const* Ys, ThreadPool& pool);
bool AffineAmxUsable();

// The default path of an affine Multi kernel: streaming up to stream_max tokens, else the engine where there is one.
inline int AffinePath(size_t n_tokens, size_t stream_max) {
  return n_tokens <= stream_max ? kPathStream : AffineAmxUsable() ? kPathEngine : kPathTiles;
}

// kPathEngine of an affine Multi kernel: the tokens quantized into `a` in parallel (quantize(x, t)), then the
// engine; false (nothing computed) without one.
template <class Q, class Quantize>
bool AffineEngine(const WeightMatrix* const* Ws, size_t m, const float* X, size_t n_tokens, float* const* Ys,
                  ThreadPool& pool, q16::BlockActivations<Q>& a, const Quantize& quantize) {
  if (!AffineAmxUsable()) return false;
  const size_t cols = a.cols;
  pool.parallel_for(n_tokens, std::max<size_t>(1, 16384 / cols), [&](size_t t0, size_t t1) {
    for (size_t t = t0; t < t1; ++t) quantize(X + t * cols, t);
  });
  return AffineAmx(Ws, m, a, n_tokens, Ys, pool);
}

// R rows × T tokens over every segment. For each sub-vector of N blocks (b … b+N−1) the R·T integer accumulators
// stay in registers for the 16 pair steps (each lane: one whole block of one row and one token), then
// `step(isum, b)` does the fp32 work of those blocks (kept in memory by the step, one update per segment).
template <size_t R, size_t T, class Step>
HWY_INLINE void TileRowsTokens(const uint32_t* const* codes, const uint32_t* const* x, size_t blocks16,
                               const Step& step) {
  const DI di;
  const D16 d16;
  const size_t N = hn::Lanes(di), subs = kLanes / N;
  const int32_t* cp[R];
  const int32_t* xp[T];
  for (size_t i = 0; i < R; ++i) cp[i] = reinterpret_cast<const int32_t*>(codes[i]);
  for (size_t j = 0; j < T; ++j) xp[j] = reinterpret_cast<const int32_t*>(x[j]);
  for (size_t s = 0; s < blocks16 / kLanes; ++s) {
    for (size_t u = 0; u < subs; ++u) {
      const size_t off = (s * kLanes + u * N) * kLanes;
      VI isum[R][T];
      for (size_t i = 0; i < R; ++i)
        for (size_t j = 0; j < T; ++j) isum[i][j] = hn::Zero(di);
      for (size_t k = 0; k < kLanes; ++k) {
        V16 c[R];
        for (size_t i = 0; i < R; ++i) c[i] = hn::BitCast(d16, hn::Load(di, cp[i] + off + k * N));
        for (size_t j = 0; j < T; ++j) {
          const V16 xv = hn::BitCast(d16, hn::Load(di, xp[j] + off + k * N));
          for (size_t i = 0; i < R; ++i) isum[i][j] = MulAddPairs(c[i], xv, isum[i][j]);
        }
      }
      step.template operator()<R, T>(isum, s * kLanes + u * N);
    }
  }
}

// R rows × nt (≤ 4) tokens.
template <size_t R, class Step>
HWY_INLINE void TileTokens(size_t nt, const uint32_t* const* codes, const uint32_t* const* x, size_t blocks16,
                           const Step& step) {
  switch (nt) {
    case 4: TileRowsTokens<R, 4>(codes, x, blocks16, step); break;
    case 3: TileRowsTokens<R, 3>(codes, x, blocks16, step); break;
    case 2: TileRowsTokens<R, 2>(codes, x, blocks16, step); break;
    default: TileRowsTokens<R, 1>(codes, x, blocks16, step); break;
  }
}

#endif  // HWY_TARGET != HWY_SCALAR

}  // namespace HWY_NAMESPACE
}  // namespace zaya
HWY_AFTER_NAMESPACE();

#endif  // ZAYA_KERNELS_Q16_SIMD_INL_H_
