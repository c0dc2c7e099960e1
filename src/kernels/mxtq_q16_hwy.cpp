// SIMD kernels for MXTQ 4-bit weights (the JANGTQ4 experts) in the canonical int16-activation arithmetic of
// mxtq_q16.h. They are the affine 4-bit kernels (q16_simd-inl.h) with two changes: every 4-bit index goes through
// the int16 codebook (a 16-entry lane permute: vpermw on AVX-512, two byte lookups elsewhere) before the integer dot
// product, and each activation vector is split into xh and xl (xq = 2048·xh + xl) so the block sums stay exact
// int32 values; a block's float(isum) is then one fma (BlockSumsToFloat).
//
//  * one token (generation): the packed row is streamed once; each extracted index vector meets xh and xl.
//  * several tokens (prefill): rows are converted once to the segment layout of codebook values, and the 4-row ×
//    4-token register tile runs with xh and xl of two tokens as its four token columns.
// Both paths give the same integer block sums and the same fp32 sequence as the scalar reference, bit for bit.
#define HWY_WANT_AVX3_DL 1

#include <algorithm>
#include <cstring>
#include <type_traits>
#include <vector>

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/mxtq_q16_hwy.cpp"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>
#include <hwy/aligned_allocator.h>

#include "io/dtype.h"
#include "kernels/mxtq_q16.h"
#include "kernels/q16_simd-inl.h"
#include "kernels/quant_matmul.h"
#include "tensor/quant_formats.h"
#include "util/thread_pool.h"

HWY_BEFORE_NAMESPACE();
namespace zaya {
namespace HWY_NAMESPACE {

#if HWY_TARGET != HWY_SCALAR

using mxtq16::kSplit;

// Index lanes (0..15 in each int16 lane) → the int16 codebook values.
struct CodebookMap {
#if HWY_TARGET <= HWY_AVX3
  // vpermw reads the low 5 bits of an index: with cq twice (k and k + 16), bit 4 does not matter and the packed words
  // need shifting only, no masking.
  static constexpr bool kLow4BitsOnly = true;
  __m512i table;
  explicit CodebookMap(const mxtq16::Codebook& cb) {
    const __m256i t = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(cb.cq));
    table = _mm512_inserti64x4(_mm512_castsi256_si512(t), t, 1);
  }
  HWY_INLINE V16 operator()(V16 idx) const { return V16{_mm512_permutexvar_epi16(idx.raw, table)}; }
#else
  static constexpr bool kLow4BitsOnly = false;
  using DU8 = hn::Repartition<uint8_t, D16>;
  hn::Vec<DU8> lo, hi;  // low and high bytes of the 16 values, repeated in every 128-bit block
  explicit CodebookMap(const mxtq16::Codebook& cb) {
    HWY_ALIGN uint8_t l[16], h[16];
    for (size_t k = 0; k < 16; ++k)
      l[k] = static_cast<uint8_t>(cb.cq[k] & 0xFF), h[k] = static_cast<uint8_t>(static_cast<uint16_t>(cb.cq[k]) >> 8);
    lo = hn::LoadDup128(DU8(), l);
    hi = hn::LoadDup128(DU8(), h);
  }
  // Two byte lookups (pshufb): an index byte picks a table byte, an index byte with its top bit set gives 0.
  HWY_INLINE V16 operator()(V16 idx) const {
    const D16 d16;
    const DU8 du8;
    const V16 lo_idx = hn::Or(idx, hn::Set(d16, static_cast<int16_t>(-0x8000)));  // bytes [idx, 0x80]
    const V16 hi_idx = hn::Or(hn::ShiftLeft<8>(idx), hn::Set(d16, int16_t{0x80}));  // bytes [0x80, idx]
    return hn::Or(hn::BitCast(d16, hn::TableLookupBytesOr0(lo, hn::BitCast(du8, lo_idx))),
                  hn::BitCast(d16, hn::TableLookupBytesOr0(hi, hn::BitCast(du8, hi_idx))));
  }
#endif
};

// xh = xq >> 11 and xl = xq & 2047, element by element (any layout); n a multiple of the vector length.
HWY_INLINE void SplitActivations(const int16_t* HWY_RESTRICT xq, size_t n, int16_t* HWY_RESTRICT xh,
                                 int16_t* HWY_RESTRICT xl) {
  const D16 d16;
  const size_t N = hn::Lanes(d16);
  const V16 low = hn::Set(d16, int16_t{(1 << kSplit) - 1});
  for (size_t i = 0; i < n; i += N) {
    const V16 v = hn::LoadU(d16, xq + i);
    hn::StoreU(hn::ShiftRight<kSplit>(v), d16, xh + i);
    hn::StoreU(hn::And(v, low), d16, xl + i);
  }
}

// float(2048·Sh + Sl) rounded once (mxtq_q16.h): 2048·T + R with T = Sh + (Sl >> 11) exact in fp32, R = Sl & 2047.
HWY_INLINE VF BlockSumsToFloat(VI sh, VI sl) {
  const DF df;
  const DI di;
  const VI t = hn::Add(sh, hn::ShiftRight<kSplit>(sl));
  const VI r = hn::And(sl, hn::Set(di, (1 << kSplit) - 1));
  return hn::MulAdd(hn::Set(df, static_cast<float>(1 << kSplit)), hn::ConvertTo(df, t), hn::ConvertTo(df, r));
}

// Row scales norm_r · invK.
HWY_INLINE float RowScale(const WeightMatrix& W, size_t r, float inv_k) { return f16_to_f32(W.norms[r]) * inv_k; }

// ---- one token (or a few) --------------------------------------------------------------------------------------------------

// Rows [r0, r1) for nt tokens (one, or a few: a batched decode step), each row read from memory once. Token t's xh
// and xl are at xs + 2t·stride and xs + (2t+1)·stride (stride = blocks16·32) in the 4-bit decode layout; its
// outputs at Y + t·rows. Tokens go two at a time, sharing the code extraction, with the one-token arithmetic.
void DecodeRows(const WeightMatrix& W, const CodebookMap& map, float inv_k, const q16::Activations& a, size_t nt,
                const int16_t* xs, size_t r0, size_t r1, float* Y) {
  const DF df;
  const DI di;
  const size_t N = hn::Lanes(df);
  const size_t seg_bytes = kBlock * kLanes / 2, blocks = a.blocks, segs = a.blocks16 / kLanes;
  const size_t full_segs = blocks / kLanes, stride = a.blocks16 * kBlock, rows = W.rows;
  uint8_t* tail = Scratch<uint8_t>(seg_bytes, 2);
  HWY_ALIGN int32_t isum[4 * kLanes];
  HWY_ALIGN float lanes[kLanes];
  const uint8_t* end = static_cast<const uint8_t*>(W.data) + r1 * W.row_bytes;  // the prefetch stops here
  for (size_t r = r0; r < r1; ++r) {
    const uint8_t* row = W.row(static_cast<int64_t>(r));
    auto tokens = [&](size_t t0, auto nx) HWY_ATTR {
      constexpr size_t NT = decltype(nx)::value;
      VF acc[NT][kLanes];
      for (size_t j = 0; j < NT; ++j)
        for (size_t u = 0; u < kLanes / N; ++u) acc[j][u] = hn::Zero(df);
      for (size_t s = 0; s < segs; ++s) {
        const uint8_t* p = row + s * seg_bytes;
        // Keep misses in flight while the segment's shuffle tree runs.
        if (t0 == 0) PrefetchAhead(p, seg_bytes, end);
        if (s >= full_segs) {  // last, partial segment: zero-padded copy (index 0 meets xq = 0 there)
          std::memset(tail, 0, seg_bytes);
          std::memcpy(tail, p, (blocks - s * kLanes) * kBlock / 2);
          p = tail;
        }
        SegmentBlockSums<4, 2 * NT>(p, xs + 2 * t0 * stride + s * kBlock * kLanes, isum, stride, map);
        for (size_t j = 0; j < NT; ++j) {
          const float* d = &a.d[(t0 + j) * a.blocks16];
          for (size_t u = 0; u < kLanes / N; ++u) {
            const VF f = BlockSumsToFloat(hn::Load(di, isum + 2 * j * kLanes + u * N),
                                          hn::Load(di, isum + (2 * j + 1) * kLanes + u * N));
            acc[j][u] = hn::MulAdd(f, hn::LoadU(df, d + s * kLanes + u * N), acc[j][u]);
          }
        }
      }
      for (size_t j = 0; j < NT; ++j) {
        for (size_t u = 0; u < kLanes / N; ++u) hn::Store(acc[j][u], df, lanes + u * N);
        Y[(t0 + j) * rows + r] = Reduce16(lanes) * RowScale(W, r, inv_k);
      }
    };
    size_t t = 0;
    for (; t + 2 <= nt; t += 2) tokens(t, std::integral_constant<size_t, 2>());
    if (t < nt) tokens(t, std::integral_constant<size_t, 1>());
  }
}

// ---- several tokens ---------------------------------------------------------------------------------------------

// The fp32 step of a tile whose token columns are (xh, xl) pairs: lane += float(isum) · d per block.
struct MxtqTileStep {
  const float* const* d;                   // [token] activation steps
  float (*lanes)[kTileTokensMax][kLanes];  // [row][token] fp32 lanes of F
  template <size_t R, size_t T>
  HWY_INLINE void operator()(const VI (&isum)[R][T], size_t b) const {
    const DF df;
    for (size_t i = 0; i < R; ++i)
      for (size_t j = 0; j < T / 2; ++j) {
        float* l = lanes[i][j] + b % kLanes;
        const VF f = BlockSumsToFloat(isum[i][2 * j], isum[i][2 * j + 1]);
        hn::Store(hn::MulAdd(f, hn::LoadU(df, d[j] + b), hn::Load(df, l)), df, l);
      }
  }
};

// Rows [r0, r1) for every token; xs holds each token's xh then xl in the segment layout (2·blocks16·16 words).
void TiledRows(const WeightMatrix& W, const CodebookMap& map, float inv_k, const q16::Activations& a,
               const uint32_t* xs, size_t r0, size_t r1, float* Y) {
  constexpr size_t kPairs = kTileTokens / 2;  // real tokens per tile
  const D16 d16;
  const size_t rows = W.rows, n = a.n, seg_words = a.blocks16 * kLanes, N16 = hn::Lanes(d16);
  uint32_t* codes = Scratch<uint32_t>(kTileRows * seg_words, 0);
  // Token blocks kept in L2 while the rows pass (each token is xh and xl: two segment-layout vectors).
  const size_t token_block = std::max<size_t>(kPairs, kTokenBlockBytes / (2 * seg_words * sizeof(uint32_t)));
  for (size_t tb = 0; tb < n; tb += token_block)
  for (size_t r = r0; r < r1; r += kTileRows) {
    const size_t nr = std::min(kTileRows, r1 - r);
    const size_t t_end = std::min(n, tb + token_block);
    const uint32_t* cp[kTileRows] = {};
    for (size_t i = 0; i < nr; ++i) {
      uint32_t* c = codes + i * seg_words;
      CodesToSegmentLayout<4>(W, r + i, a.blocks16, c);
      int16_t* v = reinterpret_cast<int16_t*>(c);
      for (size_t k = 0; k < 2 * seg_words; k += N16) hn::Store(map(hn::Load(d16, v + k)), d16, v + k);
      cp[i] = c;
    }
    for (size_t t = tb; t < t_end; t += kPairs) {
      const size_t nt = std::min(kPairs, t_end - t);
      const uint32_t* xp[kTileTokens] = {};
      const float* dp[kPairs] = {};
      for (size_t j = 0; j < nt; ++j) {
        xp[2 * j] = xs + (t + j) * 2 * seg_words;
        xp[2 * j + 1] = xp[2 * j] + seg_words;
        dp[j] = &a.d[(t + j) * a.blocks16];
      }
      HWY_ALIGN float lanes[kTileRows][kTileTokensMax][kLanes] = {};
      if (nr == kTileRows) {
        TileTokens<kTileRows>(2 * nt, cp, xp, a.blocks16, MxtqTileStep{dp, lanes});
      } else {
        for (size_t i = 0; i < nr; ++i) TileTokens<1>(2 * nt, &cp[i], xp, a.blocks16, MxtqTileStep{dp, &lanes[i]});
      }
      for (size_t i = 0; i < nr; ++i) {
        const float scale = RowScale(W, r + i, inv_k);
        for (size_t j = 0; j < nt; ++j) Y[(t + j) * rows + r + i] = Reduce16(lanes[i][j]) * scale;
      }
    }
  }
}

// Ys[k] = X·Ws[k]ᵀ for supported matrices of one width and one rotation (the experts' gate and up): the tokens are
// rotated and quantized once, and one parallel loop runs over the rows of all of them. `tiled` picks the
// multi-token path (normally: more than one token); tests force it to compare the paths.
bool MxtqMulti(const WeightMatrix* const* Ws, size_t m, const float* X, size_t n_tokens, float* const* Ys,
               ThreadPool& pool, bool tiled) {
  if (m == 0) return true;
  if (!mxtq16::supported(*Ws[0])) return false;
  const size_t cols = Ws[0]->cols;
  const float* signs = Ws[0]->mxtq->signs.data();
  std::vector<mxtq16::Codebook> cbs;  // plain arrays: the vector maps are built where they run
  for (size_t k = 0; k < m; ++k) {
    const WeightMatrix& W = *Ws[k];
    if (!mxtq16::supported(W) || static_cast<size_t>(W.cols) != cols) return false;
    if (W.mxtq != Ws[0]->mxtq && !std::equal(signs, signs + cols, W.mxtq->signs.begin())) return false;
    cbs.push_back(mxtq16::int16_codebook(W));
  }
  q16::Activations a;
  q16::prepare_activations(n_tokens, cols, cols, a);
  const size_t stride = a.blocks16 * kBlock;
  const StackedRows rows(Ws, m, cols * n_tokens, !tiled, pool.size(), kTileRows);
  if (!tiled) {
    if (n_tokens > kStreamTokens) return false;
    std::vector<float> xr(cols);
    auto xp = hwy::AllocateAligned<int16_t>(stride), xs = hwy::AllocateAligned<int16_t>(2 * stride * n_tokens);
    for (size_t t = 0; t < n_tokens; ++t) {
      quant::mxtq_rotate(X + t * cols, static_cast<int64_t>(cols), signs, xr.data());
      QuantizeToken(xr.data(), t, a, nullptr);
      DecodeLayout<4>(a, t, xp.get());
      SplitActivations(xp.get(), stride, xs.get() + 2 * t * stride, xs.get() + (2 * t + 1) * stride);
    }
    rows.run(pool, [&](size_t k, size_t lo, size_t hi) {
      DecodeRows(*Ws[k], CodebookMap(cbs[k]), cbs[k].inv_k, a, n_tokens, xs.get(), lo, hi, Ys[k]);
    });
    return true;
  }
  const size_t seg_words = a.blocks16 * kLanes;
  auto xs = hwy::AllocateAligned<uint32_t>(n_tokens * 2 * seg_words);
  pool.parallel_for(n_tokens, std::max<size_t>(1, 4096 / cols), [&](size_t t0, size_t t1) {
    std::vector<float> xr(cols);
    auto seg = hwy::AllocateAligned<uint32_t>(seg_words);
    for (size_t t = t0; t < t1; ++t) {
      quant::mxtq_rotate(X + t * cols, static_cast<int64_t>(cols), signs, xr.data());
      QuantizeToken(xr.data(), t, a, seg.get());
      uint32_t* o = xs.get() + t * 2 * seg_words;
      SplitActivations(reinterpret_cast<const int16_t*>(seg.get()), 2 * seg_words, reinterpret_cast<int16_t*>(o),
                       reinterpret_cast<int16_t*>(o + seg_words));
    }
  });
  rows.run(pool, [&](size_t k, size_t lo, size_t hi) {
    TiledRows(*Ws[k], CodebookMap(cbs[k]), cbs[k].inv_k, a, xs.get(), lo, hi, Ys[k]);
  });
  return true;
}

bool MxtqMultiT(const WeightMatrix* const* Ws, size_t m, const float* X, size_t n_tokens, float* const* Ys,
                ThreadPool& pool) {
  return MxtqMulti(Ws, m, X, n_tokens, Ys, pool, n_tokens > kStreamTokens);
}

// Forces one path (tests): 0 = the one-token path, token by token; 1 = the tiled path for all tokens.
bool MxtqMatmulPathT(const WeightMatrix& W, const float* X, size_t n_tokens, float* Y, int path) {
  return ForcedPath(MxtqMulti, W, X, n_tokens, Y, path, default_pool());
}

#else  // HWY_SCALAR: the scalar reference is the kernel.

bool MxtqMultiT(const WeightMatrix* const*, size_t, const float*, size_t, float* const*, ThreadPool&) { return false; }
bool MxtqMatmulPathT(const WeightMatrix&, const float*, size_t, float*, int) { return false; }

#endif

}  // namespace HWY_NAMESPACE
}  // namespace zaya
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace zaya {
HWY_EXPORT(MxtqMultiT);
HWY_EXPORT(MxtqMatmulPathT);

bool mxtq_q16_accepts(const WeightMatrix& W) { return mxtq16::supported(W); }

void mxtq_q16_product(const WeightMatrix& W, const float* X, size_t n_tokens, float* Y, ThreadPool& pool) {
  const WeightMatrix* w = &W;
  if (HWY_DYNAMIC_DISPATCH(MxtqMultiT)(&w, 1, X, n_tokens, &Y, pool)) return;
  // A target without the SIMD path still uses the canonical arithmetic (same results everywhere on this machine).
  reference_by_rows(W, X, n_tokens, Y, pool, mxtq_q16_reference);
}

bool mxtq_q16_multi(const WeightMatrix* const* Ws, size_t m, const float* X, size_t n_tokens, float* const* Ys,
                    ThreadPool& pool) {
  return HWY_DYNAMIC_DISPATCH(MxtqMultiT)(Ws, m, X, n_tokens, Ys, pool);
}

void mxtq_q16_reference(const WeightMatrix& W, const float* X, size_t n_tokens, float* Y) {
  mxtq16::matmul_ref(W, X, n_tokens, Y);
}

bool mxtq_matmul_path(const WeightMatrix& W, const float* X, size_t n_tokens, float* Y, int path) {
  return HWY_DYNAMIC_DISPATCH(MxtqMatmulPathT)(W, X, n_tokens, Y, path);
}
}  // namespace zaya
#endif
