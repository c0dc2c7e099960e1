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
// The pieces shared with the MXTQ kernels (quantization, layouts, block sums, the tile) are in q16_simd-inl.h.
#define HWY_WANT_AVX3_DL 1

#include <algorithm>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/quant_matmul_hwy.cpp"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>
#include <hwy/aligned_allocator.h>

#include "kernels/affine_q16.h"
#include "kernels/q16_simd-inl.h"
#include "kernels/quant_matmul.h"
#include "io/safetensors.h"
#include "util/thread_pool.h"

HWY_BEFORE_NAMESPACE();
namespace zaya {
namespace HWY_NAMESPACE {

#if HWY_TARGET != HWY_SCALAR

// ---- one token (or a few) --------------------------------------------------------------------------------------------------

// Rows [r0, r1) for nt tokens (a few: a batched decode step): each row is read from memory once and stays in L1
// while every token meets it, with the one-token arithmetic, so a token's result is the same alone or batched.
// Token t's activations are xp + t·xp_stride (decode layout), its centre terms cx + t·blocks16, its outputs Y + t·rows.
template <int BITS, bool kDirect>
void DecodeRowsT(const WeightMatrix& W, const q16::Activations& a, size_t nt, const int16_t* xp, size_t xp_stride,
                 const int32_t* cx, size_t r0, size_t r1, float* Y) {
  const DF df;
  const DI di;
  const size_t N = hn::Lanes(df);
  const size_t seg_bytes = kBlock * kLanes * BITS / 8, blocks = a.blocks, segs = a.blocks16 / kLanes;
  const size_t full_segs = blocks / kLanes, rows = W.rows;
  float* sblk = Scratch<float>(a.blocks16, 0);
  float* bias = Scratch<float>(a.groups16, 1);
  uint8_t* tail = Scratch<uint8_t>(seg_bytes, 2);
  HWY_ALIGN int32_t isum[2 * kLanes];
  HWY_ALIGN float lanesF[kLanes], lanesB[kLanes];
  // The bundles' case (F16 scales, groups of 32, whole segments): scales and biases are converted where they are
  // used, the bias term accumulates alongside (same operations in the same order as LoadRowScales + BiasLanes).
  constexpr bool direct = kDirect;
  const DH dh;
  const VF centre = hn::Set(df, static_cast<float>(q16::code_centre(BITS)));
  const uint8_t* end = static_cast<const uint8_t*>(W.data) + r1 * W.row_bytes;  // the prefetch stops here
  for (size_t r = r0; r < r1; ++r) {
    const auto* sp = reinterpret_cast<const hwy::float16_t*>(static_cast<const uint8_t*>(W.scales) + r * W.scale_row_bytes);
    const auto* bp = reinterpret_cast<const hwy::float16_t*>(static_cast<const uint8_t*>(W.biases) + r * W.scale_row_bytes);
    if constexpr (!direct) LoadRowScales(W, r, a.blocks16, a.groups16, sblk, bias);
    const uint8_t* row = static_cast<const uint8_t*>(W.data) + r * W.row_bytes;
    // Tokens two at a time: the codes are cut out of the row once for both (SegmentBlockSums with two vectors).
    auto tokens = [&](size_t t0, auto nx) HWY_ATTR {
      constexpr size_t NX = decltype(nx)::value;
      const float* d[NX];
      const float* xsum[NX];
      const int32_t* ct[NX];
      for (size_t j = 0; j < NX; ++j)
        d[j] = &a.d[(t0 + j) * a.blocks16], xsum[j] = &a.xsum[(t0 + j) * a.groups16], ct[j] = cx + (t0 + j) * a.blocks16;
      const int16_t* xt = xp + t0 * xp_stride;
      VF acc[NX][kLanes], accB[NX][kLanes];
      for (size_t j = 0; j < NX; ++j)
        for (size_t u = 0; u < kLanes / N; ++u) acc[j][u] = hn::Zero(df), accB[j][u] = hn::Zero(df);
      for (size_t s = 0; s < segs; ++s) {
        const uint8_t* p = row + s * seg_bytes;
        // Keep misses in flight while the segment's shuffle tree runs.
        if (t0 == 0) PrefetchAhead(p, seg_bytes, end);
        if (s >= full_segs) {  // last, partial segment: zero-padded copy
          std::memset(tail, 0, seg_bytes);
          std::memcpy(tail, p, (blocks - s * kLanes) * kBlock * BITS / 8);
          p = tail;
        }
        SegmentBlockSums<BITS, NX>(p, xt + s * kBlock * kLanes, isum, xp_stride);
        for (size_t j = 0; j < NX; ++j)
          for (size_t u = 0; u < kLanes / N; ++u) {
            const size_t b = s * kLanes + u * N;
            const VI centred = hn::Sub(hn::Load(di, isum + j * kLanes + u * N), hn::LoadU(di, ct[j] + b));
            if constexpr (direct) {
              const VF sv = hn::PromoteTo(df, hn::LoadU(dh, sp + b));
              acc[j][u] = hn::MulAdd(hn::ConvertTo(df, centred), hn::Mul(sv, hn::LoadU(df, d[j] + b)), acc[j][u]);
              const VF bias_c = hn::MulAdd(centre, sv, hn::PromoteTo(df, hn::LoadU(dh, bp + b)));
              accB[j][u] = hn::MulAdd(bias_c, hn::LoadU(df, xsum[j] + b), accB[j][u]);
            } else {
              const VF m = hn::Mul(hn::Load(df, sblk + b), hn::LoadU(df, d[j] + b));
              acc[j][u] = hn::MulAdd(hn::ConvertTo(df, centred), m, acc[j][u]);
            }
          }
      }
      for (size_t j = 0; j < NX; ++j) {
        for (size_t u = 0; u < kLanes / N; ++u) hn::Store(acc[j][u], df, lanesF + u * N);
        if constexpr (direct) {
          for (size_t u = 0; u < kLanes / N; ++u) hn::Store(accB[j][u], df, lanesB + u * N);
        } else {
          BiasLanes(bias, xsum[j], a.groups16, lanesB);
        }
        Y[(t0 + j) * rows + r] = Reduce16(lanesF, lanesB);
      }
    };
    size_t t = 0;
    for (; t + 2 <= nt; t += 2) tokens(t, std::integral_constant<size_t, 2>());
    if (t < nt) tokens(t, std::integral_constant<size_t, 1>());
  }
}

template <int BITS>
void DecodeRows(const WeightMatrix& W, const q16::Activations& a, size_t nt, const int16_t* xp, size_t xp_stride,
                const int32_t* cx, size_t r0, size_t r1, float* Y) {
  if (W.scale_dtype == DType::F16 && W.group_size == static_cast<int>(kBlock) && a.blocks % kLanes == 0)
    DecodeRowsT<BITS, true>(W, a, nt, xp, xp_stride, cx, r0, r1, Y);
  else
    DecodeRowsT<BITS, false>(W, a, nt, xp, xp_stride, cx, r0, r1, Y);
}

// ---- several tokens ---------------------------------------------------------------------------------------------

// The affine fp32 step of a tile: lane += float(isum − c·Σxq) · (s · d) for each block of each (row, token).
struct AffineTileStep {
  const float* const* sblk;                // [row] block scales
  const float* const* d;                   // [token] activation steps
  const int32_t* const* cx;                // [token] c·Σxq
  float (*lanes)[kTileTokensMax][kLanes];  // [row][token] fp32 lanes of F
  template <size_t R, size_t T>
  HWY_INLINE void operator()(const VI (&isum)[R][T], size_t b) const {
    const DF df;
    const DI di;
    for (size_t i = 0; i < R; ++i) {
      const VF sv = hn::Load(df, sblk[i] + b);
      for (size_t j = 0; j < T; ++j) {
        float* l = lanes[i][j] + b % kLanes;
        const VF f = hn::ConvertTo(df, hn::Sub(isum[i][j], hn::Load(di, cx[j] + b)));
        hn::Store(hn::MulAdd(f, hn::Mul(sv, hn::LoadU(df, d[j] + b)), hn::Load(df, l)), df, l);
      }
    }
  }
};

template <int BITS>
void TiledRows(const WeightMatrix& W, const q16::Activations& a, const uint32_t* xs, const int32_t* cx, size_t r0,
               size_t r1, float* Y) {
  const size_t rows = W.rows, n = a.n, seg_words = a.blocks16 * kLanes;
  uint32_t* codes = Scratch<uint32_t>(kTileRows * seg_words, 0);
  float* sblk = Scratch<float>(kTileRows * a.blocks16, 1);
  float* bias = Scratch<float>(kTileRows * a.groups16, 2);
  HWY_ALIGN float lanesB[kLanes];
  // Token blocks whose activations stay in L2 while the rows pass; a row's codes are re-laid out once per block
  // (cheap next to the block's products).
  const size_t token_block = std::max<size_t>(kTileTokens, kTokenBlockBytes / (seg_words * sizeof(uint32_t)));
  for (size_t tb = 0; tb < n; tb += token_block)
  for (size_t r = r0; r < r1; r += kTileRows) {
    const size_t nr = std::min(kTileRows, r1 - r);
    const size_t t_end = std::min(n, tb + token_block);
    const uint32_t* cp[kTileRows] = {};
    const float* sp[kTileRows] = {};
    for (size_t i = 0; i < nr; ++i) {
      CodesToSegmentLayout<BITS>(W, r + i, a.blocks16, codes + i * seg_words);
      LoadRowScales(W, r + i, a.blocks16, a.groups16, sblk + i * a.blocks16, bias + i * a.groups16);
      cp[i] = codes + i * seg_words;
      sp[i] = sblk + i * a.blocks16;
    }
    for (size_t t = tb; t < t_end; t += kTileTokens) {
      const size_t nt = std::min(kTileTokens, t_end - t);
      const uint32_t* xp[kTileTokens] = {};
      const float* dp[kTileTokens] = {};
      const int32_t* cp2[kTileTokens] = {};
      for (size_t j = 0; j < nt; ++j)
        xp[j] = xs + (t + j) * seg_words, dp[j] = &a.d[(t + j) * a.blocks16], cp2[j] = cx + (t + j) * a.blocks16;
      HWY_ALIGN float lanes[kTileRows][kTileTokensMax][kLanes] = {};
      if (nr == kTileRows) {
        TileTokens<kTileRows>(nt, cp, xp, a.blocks16, AffineTileStep{sp, dp, cp2, lanes});
      } else {
        for (size_t i = 0; i < nr; ++i) TileTokens<1>(nt, &cp[i], xp, a.blocks16, AffineTileStep{&sp[i], dp, cp2, &lanes[i]});
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
// parallel loop runs over the rows of all of them (a row's result does not depend on how rows are split). `path`
// (kPathStream, kPathTiles, kPathEngine) is normally picked by token count and CPU; tests force each to compare.
bool AffineMulti(const WeightMatrix* const* Ws, size_t m, const float* X, size_t n_tokens, float* const* Ys,
                 ThreadPool& pool, int path) {
  const bool tiled = path != kPathStream;
  if (m == 0) return true;
  const size_t cols = Ws[0]->cols, G = Ws[0]->group_size;
  bool has4 = false, has8 = false;
  for (size_t k = 0; k < m; ++k) {
    const WeightMatrix& W = *Ws[k];
    if (!Q16Eligible(W) || static_cast<size_t>(W.cols) != cols || static_cast<size_t>(W.group_size) != G) return false;
    (W.bits == 4 ? has4 : has8) = true;
  }
  q16::Activations a;
  q16::prepare_activations(n_tokens, cols, G, a);
  if (path == kPathEngine)
    return AffineEngine(Ws, m, X, n_tokens, Ys, pool, a,
                        [&](const float* x, size_t t) { QuantizeToken(x, t, a, nullptr); });
  const StackedRows rows(Ws, m, cols * n_tokens, !tiled, pool.size(), kTileRows);
  hwy::AlignedFreeUniquePtr<int32_t[]> cx4, cx8;
  if (!tiled) {
    if (n_tokens > kStreamTokens) return false;
    const size_t stride = a.blocks16 * kBlock;
    hwy::AlignedFreeUniquePtr<int16_t[]> xp4, xp8;
    if (has4) xp4 = hwy::AllocateAligned<int16_t>(n_tokens * stride);
    if (has8) xp8 = hwy::AllocateAligned<int16_t>(n_tokens * stride);
    for (size_t t = 0; t < n_tokens; ++t) {
      QuantizeToken(X + t * cols, t, a, nullptr);
      if (has4) DecodeLayout<4>(a, t, xp4.get() + t * stride);
      if (has8) DecodeLayout<8>(a, t, xp8.get() + t * stride);
    }
    if (has4) cx4 = CentreTerms(a, 4);
    if (has8) cx8 = CentreTerms(a, 8);
    rows.run(pool, [&](size_t k, size_t lo, size_t hi) {
      if (Ws[k]->bits == 4) DecodeRows<4>(*Ws[k], a, n_tokens, xp4.get(), stride, cx4.get(), lo, hi, Ys[k]);
      else DecodeRows<8>(*Ws[k], a, n_tokens, xp8.get(), stride, cx8.get(), lo, hi, Ys[k]);
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
  rows.run(pool, [&](size_t k, size_t lo, size_t hi) {
    if (Ws[k]->bits == 4) TiledRows<4>(*Ws[k], a, xs.get(), cx4.get(), lo, hi, Ys[k]);
    else TiledRows<8>(*Ws[k], a, xs.get(), cx8.get(), lo, hi, Ys[k]);
  });
  return true;
}

bool AffineMultiT(const WeightMatrix* const* Ws, size_t m, const float* X, size_t n_tokens, float* const* Ys,
                  ThreadPool& pool) {
  return AffineMulti(Ws, m, X, n_tokens, Ys, pool, AffinePath(n_tokens, kStreamTokens));
}

bool AffineMatmulT(const WeightMatrix& W, const float* X, size_t n_tokens, float* Y, ThreadPool& pool) {
  const WeightMatrix* w = &W;
  return AffineMultiT(&w, 1, X, n_tokens, &Y, pool);
}

// Forces one path (tests): 0 = the one-token path, token by token; 1 = the tiled path for all tokens; 2 = the
// matrix engine for all tokens (false where there is none).
bool AffineMatmulPathT(const WeightMatrix& W, const float* X, size_t n_tokens, float* Y, int path) {
  return ForcedPath(AffineMulti, W, X, n_tokens, Y, path, default_pool());
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
  reference_by_rows(W, X, n_tokens, Y, pool, affine_q16_reference);
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
