// SIMD kernels for MLX affine 4- and 8-bit weights (the widths of the published ZAYA bundles), in the canonical
// int16-activation arithmetic of affine_q16.h: exact integer dot products per 32-column block (VNNI vpdpwssd where
// the CPU has it, pmaddwd otherwise), then one fp32 FMA per block into 16 virtual lanes.
//
// Two paths compute the same integer block sums and the same fp32 sequence, so they agree bit for bit:
//  * one token (generation): the packed row is streamed once; code words meet the activations in their natural
//    order and the per-lane partial sums are folded into per-block sums (a short shuffle tree).
//  * several tokens (prefill, batched decode): rows are first rearranged so that lane j of every vector holds
//    block j of a 16-block segment; then each (row, token) pair accumulates 16 products per lane before its single
//    fp32 step, and a 4-row × 4-token register tile (1 × 4 on 16-register targets) reuses every load.
// Ice Lake / Zen 4 and later: the VNNI integer dot product is what makes prefill faster than fp32 FMAs.
#define HWY_WANT_AVX3_DL 1

#include <algorithm>
#include <cstring>
#include <limits>
#include <vector>

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/quant_matmul_hwy.cpp"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>
#include <hwy/aligned_allocator.h>

#include "kernels/affine_q16.h"
#include "kernels/quant_matmul.h"
#include "io/safetensors.h"
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
template <class T>
T* Scratch(size_t n, int slot) {
  thread_local hwy::AlignedFreeUniquePtr<uint8_t[]> buf[4];
  thread_local size_t cap[4] = {};
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

// Block sums of one 16-block segment: codes `p` (packed, bits per code), activations `xp` in the decode layout.
template <int BITS>
HWY_INLINE void SegmentBlockSums(const uint8_t* HWY_RESTRICT p, const int16_t* HWY_RESTRICT xp, int32_t* isum) {
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
  auto chunk_sum = [&](size_t c) HWY_ATTR -> VI {
    const auto codes = hn::PromoteTo(du16, hn::LoadU(du8, p + c * N16));
    if constexpr (BITS == 4) {
      const auto lo = hn::And(codes, hn::Set(du16, 0x0F)), hi = hn::ShiftRight<4>(codes);
      const VI acc = MulAddPairs(hn::BitCast(d16, lo), hn::Load(d16, xp + c * 2 * N16), hn::Zero(di));
      return MulAddPairs(hn::BitCast(d16, hi), hn::Load(d16, xp + c * 2 * N16 + N16), acc);
    } else {
      return MulAddPairs(hn::BitCast(d16, codes), hn::Load(d16, xp + c * N16), hn::Zero(di));
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
    __m512i V[4];
    for (size_t c = 0; c < 4; ++c) {
      const auto w = w_at(c);
      const int16_t* x = xp + 128 * c;
      VI acc = MulAddPairs(hn::BitCast(d16, hn::And(w, m4)), hn::Load(d16, x), hn::Zero(di));
      acc = MulAddPairs(hn::BitCast(d16, hn::And(hn::ShiftRight<4>(w), m4)), hn::Load(d16, x + 32), acc);
      acc = MulAddPairs(hn::BitCast(d16, hn::And(hn::ShiftRight<8>(w), m4)), hn::Load(d16, x + 64), acc);
      V[c] = MulAddPairs(hn::BitCast(d16, hn::ShiftRight<12>(w)), hn::Load(d16, x + 96), acc).raw;
    }
    const __m512i W01 = _mm512_add_epi32(_mm512_unpacklo_epi32(V[0], V[1]), _mm512_unpackhi_epi32(V[0], V[1]));
    const __m512i W23 = _mm512_add_epi32(_mm512_unpacklo_epi32(V[2], V[3]), _mm512_unpackhi_epi32(V[2], V[3]));
    // X lane 4q+m = Σ quarter q of V[m] = block 4m+q.
    const __m512i X = _mm512_add_epi32(_mm512_unpacklo_epi64(W01, W23), _mm512_unpackhi_epi64(W01, W23));
    const __m512i order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    _mm512_store_si512(isum, _mm512_permutexvar_epi32(order, X));
  } else {
    // Word i of chunk c (64 columns) holds columns 2i (low byte) and 2i+1; lane j sums columns 4j..4j+3, so V[c]
    // has 8 lanes of block 2c, then 8 of block 2c+1.
    const auto m8 = hn::Set(du16, 0xFF);
    __m512i V[8];
    for (size_t c = 0; c < 8; ++c) {
      const auto w = w_at(c);
      const VI acc = MulAddPairs(hn::BitCast(d16, hn::And(w, m8)), hn::Load(d16, xp + 64 * c), hn::Zero(di));
      V[c] = MulAddPairs(hn::BitCast(d16, hn::ShiftRight<8>(w)), hn::Load(d16, xp + 64 * c + 32), acc).raw;
    }
    _mm512_store_si512(isum, FoldPairsOfBlocks(V));
  }
  (void)chunk_sum;
  (void)chunks;
  (void)N32;
#elif HWY_TARGET == HWY_AVX2
  // 8 lanes per block (4-bit: one chunk; 8-bit: two chunks added); three hadd levels give 8 block sums in order.
  for (size_t half = 0; half < 2; ++half) {
    __m256i V[8];
    for (size_t b = 0; b < 8; ++b) {
      const size_t blk = half * 8 + b;
      V[b] = BITS == 4 ? chunk_sum(blk).raw : _mm256_add_epi32(chunk_sum(2 * blk).raw, chunk_sum(2 * blk + 1).raw);
    }
    const __m256i h0 = _mm256_hadd_epi32(V[0], V[1]), h1 = _mm256_hadd_epi32(V[2], V[3]);
    const __m256i h2 = _mm256_hadd_epi32(V[4], V[5]), h3 = _mm256_hadd_epi32(V[6], V[7]);
    const __m256i g0 = _mm256_hadd_epi32(h0, h1), g1 = _mm256_hadd_epi32(h2, h3);
    // g0 lane q·4+m: half q of V[m]'s sum (m = 0..3); g1 likewise for V[4..7].
    const __m256i sum = _mm256_add_epi32(_mm256_permute2x128_si256(g0, g1, 0x20), _mm256_permute2x128_si256(g0, g1, 0x31));
    _mm256_store_si256(reinterpret_cast<__m256i*>(isum + half * 8), sum);
  }
  (void)chunks;
  (void)N32;
#else
  HWY_ALIGN int32_t lanes[HWY_MAX_BYTES / 4];
  for (size_t b = 0; b < kLanes; ++b) isum[b] = 0;
  // Lane j of a chunk sum covers columns (4-bit) 4j..4j+3 or (8-bit) 2j, 2j+1 of the chunk.
  const size_t cols_per_lane = BITS == 4 ? 4 : 2;
  for (size_t c = 0; c < chunks; ++c) {
    hn::Store(chunk_sum(c), di, lanes);
    for (size_t j = 0; j < N32; ++j) isum[(c * chunk_cols + j * cols_per_lane) / kBlock] += lanes[j];
  }
#endif
}

// Token t of `a` from x (SIMD; the same numbers as q16::quantize_token). With `seg` set, also writes the token's
// activations in the segment layout of the multi-token path.
void QuantizeToken(const float* HWY_RESTRICT x, size_t t, q16::Activations& a, uint32_t* HWY_RESTRICT seg) {
  const DF df;
  const DI di;
  const hn::Rebind<int16_t, DI> d16h;
  const size_t N = hn::Lanes(df), N32 = N;
  int16_t* q = &a.xq[t * a.blocks16 * kBlock];
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
    d = amax / q16::kQMax;
    const VF id = hn::Set(df, q16::kQMax / amax);
    VI sum = hn::Zero(di);
    for (size_t i = 0; i < kBlock; i += N) {
      const VI v = hn::NearestInt(hn::Mul(hn::LoadU(df, xb + i), id));
      sum = hn::Add(sum, v);
      hn::StoreU(hn::DemoteTo(d16h, v), d16h, q + b * kBlock + i);
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
  if (!seg) return;
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

constexpr size_t kAhead = 4;  // rows of software prefetch in the one-token path

template <int BITS, bool kDirect>
void DecodeRowsT(const WeightMatrix& W, const q16::Activations& a, const int16_t* xp, const int32_t* cx, size_t r0,
                 size_t r1, float* Y) {
  const DF df;
  const DI di;
  const size_t N = hn::Lanes(df);
  const size_t seg_bytes = kBlock * kLanes * BITS / 8, blocks = a.blocks, segs = a.blocks16 / kLanes;
  const size_t full_segs = blocks / kLanes;
  float* sblk = Scratch<float>(a.blocks16, 0);
  float* bias = Scratch<float>(a.groups16, 1);
  uint8_t* tail = Scratch<uint8_t>(seg_bytes, 2);
  HWY_ALIGN int32_t isum[kLanes];
  HWY_ALIGN float lanesF[kLanes], lanesB[kLanes];
  const float* d = &a.d[0];
  // The bundles' case (F16 scales, groups of 32, whole segments): scales and biases are converted where they are
  // used, the bias term accumulates alongside (same operations in the same order as LoadRowScales + BiasLanes).
  constexpr bool direct = kDirect;
  const float* xsum = &a.xsum[0];
  const DH dh;
  const VF centre = hn::Set(df, static_cast<float>(q16::code_centre(BITS)));
  for (size_t r = r0; r < r1; ++r) {
    const auto* sp = reinterpret_cast<const hwy::float16_t*>(static_cast<const uint8_t*>(W.scales) + r * W.scale_row_bytes);
    const auto* bp = reinterpret_cast<const hwy::float16_t*>(static_cast<const uint8_t*>(W.biases) + r * W.scale_row_bytes);
    if constexpr (!direct) LoadRowScales(W, r, a.blocks16, a.groups16, sblk, bias);
    const uint8_t* row = static_cast<const uint8_t*>(W.data) + r * W.row_bytes;
    VF acc[kLanes], accB[kLanes];
    for (size_t u = 0; u < kLanes / N; ++u) acc[u] = hn::Zero(df), accB[u] = hn::Zero(df);
    for (size_t s = 0; s < segs; ++s) {
      const uint8_t* p = row + s * seg_bytes;
      // Keep misses in flight while the segment's shuffle tree runs: fetch the same segment of the row kAhead on.
      if (r + kAhead < r1)
        for (size_t l = 0; l < seg_bytes; l += 64) __builtin_prefetch(p + kAhead * W.row_bytes + l);
      if (s >= full_segs) {  // last, partial segment: zero-padded copy
        std::memset(tail, 0, seg_bytes);
        std::memcpy(tail, p, (blocks - s * kLanes) * kBlock * BITS / 8);
        p = tail;
      }
      SegmentBlockSums<BITS>(p, xp + s * kBlock * kLanes, isum);
      for (size_t u = 0; u < kLanes / N; ++u) {
        const size_t b = s * kLanes + u * N;
        const VI centred = hn::Sub(hn::Load(di, isum + u * N), hn::LoadU(di, cx + b));
        if constexpr (direct) {
          const VF sv = hn::PromoteTo(df, hn::LoadU(dh, sp + b));
          acc[u] = hn::MulAdd(hn::ConvertTo(df, centred), hn::Mul(sv, hn::LoadU(df, d + b)), acc[u]);
          const VF bias_c = hn::MulAdd(centre, sv, hn::PromoteTo(df, hn::LoadU(dh, bp + b)));
          accB[u] = hn::MulAdd(bias_c, hn::LoadU(df, xsum + b), accB[u]);
        } else {
          const VF m = hn::Mul(hn::Load(df, sblk + b), hn::LoadU(df, d + b));
          acc[u] = hn::MulAdd(hn::ConvertTo(df, centred), m, acc[u]);
        }
      }
    }
    for (size_t u = 0; u < kLanes / N; ++u) hn::Store(acc[u], df, lanesF + u * N);
    if constexpr (direct) {
      for (size_t u = 0; u < kLanes / N; ++u) hn::Store(accB[u], df, lanesB + u * N);
    } else {
      BiasLanes(bias, xsum, a.groups16, lanesB);
    }
    Y[r] = Reduce16(lanesF, lanesB);
  }
}

template <int BITS>
void DecodeRows(const WeightMatrix& W, const q16::Activations& a, const int16_t* xp, const int32_t* cx, size_t r0,
                size_t r1, float* Y) {
  if (W.scale_dtype == DType::F16 && W.group_size == static_cast<int>(kBlock) && a.blocks % kLanes == 0)
    DecodeRowsT<BITS, true>(W, a, xp, cx, r0, r1, Y);
  else
    DecodeRowsT<BITS, false>(W, a, xp, cx, r0, r1, Y);
}

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

// R rows × T tokens over every segment; lanes[i][j] receive the 16 fp32 lanes of F. The fp32 accumulators stay in
// memory (one update per segment) so the inner loop keeps its R·T integer accumulators in registers.
template <size_t R, size_t T>
HWY_INLINE void TileRowsTokens(const uint32_t* const* codes, const uint32_t* const* x, const float* const* sblk,
                               const float* const* d, const int32_t* const* cx, size_t blocks16,
                               float (*lanes)[kTileTokensMax][kLanes]) {
  const DF df;
  const DI di;
  const D16 d16;
  const size_t N = hn::Lanes(di), subs = kLanes / N;
  for (size_t i = 0; i < R; ++i)
    for (size_t j = 0; j < T; ++j)
      for (size_t u = 0; u < subs; ++u) hn::Store(hn::Zero(df), df, lanes[i][j] + u * N);
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
      const size_t b = s * kLanes + u * N;
      for (size_t i = 0; i < R; ++i) {
        const VF sv = hn::Load(df, sblk[i] + b);
        for (size_t j = 0; j < T; ++j) {
          float* l = lanes[i][j] + u * N;
          const VF f = hn::ConvertTo(df, hn::Sub(isum[i][j], hn::Load(di, cx[j] + b)));
          hn::Store(hn::MulAdd(f, hn::Mul(sv, hn::LoadU(df, d[j] + b)), hn::Load(df, l)), df, l);
        }
      }
    }
  }
}


// R rows × nt (≤ 4) tokens.
template <size_t R>
HWY_INLINE void TileTokens(size_t nt, const uint32_t* const* codes, const uint32_t* const* x, const float* const* sblk,
                           const float* const* d, const int32_t* const* cx, size_t blocks16,
                           float (*lanes)[kTileTokensMax][kLanes]) {
  switch (nt) {
    case 4: TileRowsTokens<R, 4>(codes, x, sblk, d, cx, blocks16, lanes); break;
    case 3: TileRowsTokens<R, 3>(codes, x, sblk, d, cx, blocks16, lanes); break;
    case 2: TileRowsTokens<R, 2>(codes, x, sblk, d, cx, blocks16, lanes); break;
    default: TileRowsTokens<R, 1>(codes, x, sblk, d, cx, blocks16, lanes); break;
  }
}

template <int BITS>
void TiledRows(const WeightMatrix& W, const q16::Activations& a, const uint32_t* xs, const int32_t* cx, size_t r0,
               size_t r1, float* Y) {
  const size_t rows = W.rows, n = a.n, seg_words = a.blocks16 * kLanes;
  uint32_t* codes = Scratch<uint32_t>(kTileRows * seg_words, 0);
  float* sblk = Scratch<float>(kTileRows * a.blocks16, 1);
  float* bias = Scratch<float>(kTileRows * a.groups16, 2);
  HWY_ALIGN float lanesB[kLanes];
  for (size_t r = r0; r < r1; r += kTileRows) {
    const size_t nr = std::min(kTileRows, r1 - r);
    const uint32_t* cp[kTileRows] = {};
    const float* sp[kTileRows] = {};
    for (size_t i = 0; i < nr; ++i) {
      CodesToSegmentLayout<BITS>(W, r + i, a.blocks16, codes + i * seg_words);
      LoadRowScales(W, r + i, a.blocks16, a.groups16, sblk + i * a.blocks16, bias + i * a.groups16);
      cp[i] = codes + i * seg_words;
      sp[i] = sblk + i * a.blocks16;
    }
    for (size_t t = 0; t < n; t += kTileTokens) {
      const size_t nt = std::min(kTileTokens, n - t);
      const uint32_t* xp[kTileTokens] = {};
      const float* dp[kTileTokens] = {};
      const int32_t* cp2[kTileTokens] = {};
      for (size_t j = 0; j < nt; ++j)
        xp[j] = xs + (t + j) * seg_words, dp[j] = &a.d[(t + j) * a.blocks16], cp2[j] = cx + (t + j) * a.blocks16;
      HWY_ALIGN float lanes[kTileRows][kTileTokensMax][kLanes];
      if (nr == kTileRows) {
        TileTokens<kTileRows>(nt, cp, xp, sp, dp, cp2, a.blocks16, lanes);
      } else {
        for (size_t i = 0; i < nr; ++i) TileTokens<1>(nt, &cp[i], xp, &sp[i], dp, cp2, a.blocks16, &lanes[i]);
      }
      for (size_t i = 0; i < nr; ++i)
        for (size_t j = 0; j < nt; ++j) {
          BiasLanes(bias + i * a.groups16, &a.xsum[(t + j) * a.groups16], a.groups16, lanesB);
          Y[(t + j) * rows + r + i] = Reduce16(lanes[i][j], lanesB);
        }
    }
  }
}

// c·Σxq per token and block (aligned for the tile loads).
hwy::AlignedFreeUniquePtr<int32_t[]> CentreTerms(const q16::Activations& a, int bits) {
  auto cx = hwy::AllocateAligned<int32_t>(a.n * a.blocks16);
  for (size_t i = 0; i < a.n * a.blocks16; ++i) cx[i] = q16::code_centre(bits) * a.xqsum[i];
  return cx;
}

bool Q16Eligible(const WeightMatrix& W) { return q16::supported(W) && (W.bits == 4 || W.bits == 8); }

// Ys[k] = X·Ws[k]ᵀ for matrices of one input width and group size: the activations are quantized once and one
// parallel loop runs over the rows of all of them (a row's result does not depend on how rows are split). `tiled`
// picks the multi-token path (normally: more than one token); tests force it to compare the two paths.
bool AffineMulti(const WeightMatrix* const* Ws, size_t m, const float* X, size_t n_tokens, float* const* Ys,
                 ThreadPool& pool, bool tiled) {
  if (m == 0) return true;
  const size_t cols = Ws[0]->cols, G = Ws[0]->group_size;
  bool has4 = false, has8 = false;
  std::vector<size_t> offset(m + 1, 0);
  for (size_t k = 0; k < m; ++k) {
    const WeightMatrix& W = *Ws[k];
    if (!Q16Eligible(W) || static_cast<size_t>(W.cols) != cols || static_cast<size_t>(W.group_size) != G) return false;
    (W.bits == 4 ? has4 : has8) = true;
    offset[k + 1] = offset[k] + W.rows;
  }
  q16::Activations a;
  q16::prepare_activations(n_tokens, cols, G, a);
  const size_t work = cols * n_tokens;
  size_t grain = std::max<size_t>(4, 65536 / std::max<size_t>(1, work));
  // One token: a few long runs of rows per thread, so the prefetch stream is rarely restarted (each pool chunk starts
  // cold), with enough chunks left to even out a late thread.
  if (!tiled) grain = std::max(grain, offset[m] / (pool.size() * 4));
  grain = (grain + kTileRows - 1) / kTileRows * kTileRows;
  // Calls fn(k, lo, hi) for the rows [lo, hi) of matrix k inside the pool chunk [r0, r1).
  auto for_rows = [&](size_t r0, size_t r1, auto&& fn) {
    for (size_t k = 0; k < m; ++k) {
      const size_t lo = std::max(r0, offset[k]), hi = std::min(r1, offset[k + 1]);
      if (lo < hi) fn(k, lo - offset[k], hi - offset[k]);
    }
  };
  hwy::AlignedFreeUniquePtr<int32_t[]> cx4, cx8;
  if (!tiled) {
    if (n_tokens != 1) return false;
    QuantizeToken(X, 0, a, nullptr);
    hwy::AlignedFreeUniquePtr<int16_t[]> xp4, xp8;
    if (has4) cx4 = CentreTerms(a, 4), xp4 = hwy::AllocateAligned<int16_t>(a.blocks16 * kBlock), DecodeLayout<4>(a, 0, xp4.get());
    if (has8) cx8 = CentreTerms(a, 8), xp8 = hwy::AllocateAligned<int16_t>(a.blocks16 * kBlock), DecodeLayout<8>(a, 0, xp8.get());
    pool.parallel_for(offset[m], grain, [&](size_t r0, size_t r1) {
      for_rows(r0, r1, [&](size_t k, size_t lo, size_t hi) {
        if (Ws[k]->bits == 4) DecodeRows<4>(*Ws[k], a, xp4.get(), cx4.get(), lo, hi, Ys[k]);
        else DecodeRows<8>(*Ws[k], a, xp8.get(), cx8.get(), lo, hi, Ys[k]);
      });
    });
    return true;
  }
  const size_t seg_words = a.blocks16 * kLanes;
  auto xs = hwy::AllocateAligned<uint32_t>(n_tokens * seg_words);
  pool.parallel_for(n_tokens, std::max<size_t>(1, 16384 / cols), [&](size_t t0, size_t t1) {
    for (size_t t = t0; t < t1; ++t) QuantizeToken(X + t * cols, t, a, xs.get() + t * seg_words);
  });
  if (has4) cx4 = CentreTerms(a, 4);
  if (has8) cx8 = CentreTerms(a, 8);
  pool.parallel_for(offset[m], grain, [&](size_t r0, size_t r1) {
    for_rows(r0, r1, [&](size_t k, size_t lo, size_t hi) {
      if (Ws[k]->bits == 4) TiledRows<4>(*Ws[k], a, xs.get(), cx4.get(), lo, hi, Ys[k]);
      else TiledRows<8>(*Ws[k], a, xs.get(), cx8.get(), lo, hi, Ys[k]);
    });
  });
  return true;
}

bool AffineMultiT(const WeightMatrix* const* Ws, size_t m, const float* X, size_t n_tokens, float* const* Ys,
                  ThreadPool& pool) {
  return AffineMulti(Ws, m, X, n_tokens, Ys, pool, n_tokens > 1);
}

bool AffineMatmulT(const WeightMatrix& W, const float* X, size_t n_tokens, float* Y, ThreadPool& pool) {
  const WeightMatrix* w = &W;
  return AffineMultiT(&w, 1, X, n_tokens, &Y, pool);
}

// Forces one path (tests): 0 = the one-token path, token by token; 1 = the tiled path for all tokens.
bool AffineMatmulPathT(const WeightMatrix& W, const float* X, size_t n_tokens, float* Y, int path) {
  const WeightMatrix* w = &W;
  ThreadPool& pool = default_pool();
  if (path == 1) return AffineMulti(&w, 1, X, n_tokens, &Y, pool, true);
  std::vector<float> y(W.rows);
  for (size_t t = 0; t < n_tokens; ++t) {
    float* yp = y.data();
    if (!AffineMulti(&w, 1, X + t * W.cols, 1, &yp, pool, false)) return false;
    std::copy(y.begin(), y.end(), Y + t * W.rows);
  }
  return true;
}

// MXTQ 4-bit row decode: 16 codebook values per step (vpermps over the 16-entry codebook). Same values as the
// scalar decode (table lookups), so products keep their bits. Whole 16-element steps only; the caller does the rest.
size_t Mxtq4DecodeRowT(const uint32_t* HWY_RESTRICT words, size_t cols, const float* HWY_RESTRICT codebook,
                       float* HWY_RESTRICT out) {
#if HWY_TARGET <= HWY_AVX3
  const __m512 table = _mm512_loadu_ps(codebook);
  const __m512i pick = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
  const __m512i shifts = _mm512_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28, 0, 4, 8, 12, 16, 20, 24, 28);
  const __m512i mask = _mm512_set1_epi32(0xF);
  size_t i = 0;
  for (; i + 16 <= cols; i += 16) {
    const __m512i w = _mm512_castsi128_si512(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(words + i / 8)));
    const __m512i idx = _mm512_and_si512(_mm512_srlv_epi32(_mm512_permutexvar_epi32(pick, w), shifts), mask);
    _mm512_storeu_ps(out + i, _mm512_permutexvar_ps(idx, table));
  }
  return i;
#else
  (void)words, (void)cols, (void)codebook, (void)out;
  return 0;
#endif
}

#else  // HWY_SCALAR: the scalar reference is the kernel.

bool AffineMatmulT(const WeightMatrix&, const float*, size_t, float*, ThreadPool&) { return false; }
bool AffineMatmulPathT(const WeightMatrix&, const float*, size_t, float*, int) { return false; }
bool AffineMultiT(const WeightMatrix* const*, size_t, const float*, size_t, float* const*, ThreadPool&) { return false; }
size_t Mxtq4DecodeRowT(const uint32_t*, size_t, const float*, float*) { return 0; }

#endif

const char* AffineTargetNameT() { return hwy::TargetName(HWY_TARGET); }

}  // namespace HWY_NAMESPACE
}  // namespace zaya
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace zaya {
HWY_EXPORT(AffineMatmulT);
HWY_EXPORT(AffineMatmulPathT);
HWY_EXPORT(AffineMultiT);
HWY_EXPORT(Mxtq4DecodeRowT);
HWY_EXPORT(AffineTargetNameT);

bool affine_q16_accepts(const WeightMatrix& W) { return q16::supported(W) && (W.bits == 4 || W.bits == 8); }

void affine_q16_product(const WeightMatrix& W, const float* X, size_t n_tokens, float* Y, ThreadPool& pool) {
  if (HWY_DYNAMIC_DISPATCH(AffineMatmulT)(W, X, n_tokens, Y, pool)) return;
  // A target without the SIMD path still uses the canonical arithmetic (same results everywhere on this machine).
  pool.parallel_for(W.rows, 16, [&](size_t r0, size_t r1) {
    WeightMatrix part = W.slice_rows(static_cast<int64_t>(r0), static_cast<int64_t>(r1 - r0));
    std::vector<float> y((r1 - r0) * n_tokens);
    q16::matmul_ref(part, X, n_tokens, y.data());
    for (size_t t = 0; t < n_tokens; ++t)
      std::memcpy(Y + t * W.rows + r0, &y[t * (r1 - r0)], (r1 - r0) * sizeof(float));
  });
}

bool affine_q16_multi(const WeightMatrix* const* Ws, size_t m, const float* X, size_t n_tokens, float* const* Ys,
                      ThreadPool& pool) {
  return HWY_DYNAMIC_DISPATCH(AffineMultiT)(Ws, m, X, n_tokens, Ys, pool);
}

void affine_q16_reference(const WeightMatrix& W, const float* X, size_t n_tokens, float* Y) {
  q16::matmul_ref(W, X, n_tokens, Y);
}

size_t mxtq4_decode_row_simd(const uint32_t* words, size_t cols, const float* codebook, float* out) {
  return HWY_DYNAMIC_DISPATCH(Mxtq4DecodeRowT)(words, cols, codebook, out);
}

bool affine_matmul_path(const WeightMatrix& W, const float* X, size_t n_tokens, float* Y, int path) {
  return HWY_DYNAMIC_DISPATCH(AffineMatmulPathT)(W, X, n_tokens, Y, path);
}

const char* affine_simd_target_name() { return HWY_DYNAMIC_DISPATCH(AffineTargetNameT)(); }
}  // namespace zaya
#endif
