// Affine 4/8-bit products of many tokens (prefill) on the AMX matrix engine, in the canonical arithmetic of
// affine_q16.h (int16 activations) and affine_q8.h (int8): bit for bit what the AVX-512 paths and the scalar
// reference give, because the engine only computes the exact integer block sums and the fp32 work that follows is
// the canonical sequence, vectorized over 16 tokens.
//
//   isum[b]  Σ_{i∈b} (q_i − c)·xq_i = Σ q·xq − c·Σ xq for 16 rows × 16 tokens per instruction pair: the centred codes
//            (s8) are the A operand, the activations the B operand. int16 activations are split into a signed high
//            and an unsigned low byte (xq = 256·hi + lo): TDPBSSD gives Σ (q−c)·hi, TDPBSUD Σ (q−c)·lo, both exact
//            in int32. int8 activations are the B operand as they are (one TDPBSSD).
//   then     F[b mod 16] = fma(float(isum), s_g·d_b, F[b mod 16]) in block order, the bias lanes, the 16-lane tree:
//            the same operations as block_matmul_ref, 16 tokens per vector.
//
// Weights are unpacked once per 16-row tile and token block into a buffer of centred codes in L1/L2; activations are
// packed once per product into the engine's layout (per 32-column block: 8 rows of 16 tokens × 4 bytes), a
// 16×16-dword transpose per pair of blocks. Per tile and 16 tokens the engine's stores and the vector units' scaling
// run as a pipeline one block apart, and the 16 × 16 outputs leave through one more transpose, a store per token.
#define HWY_WANT_AVX3_DL 1

#include <algorithm>
#include <cstring>
#include <vector>

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/affine_amx_hwy.cpp"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>
#include <hwy/aligned_allocator.h>

#include "kernels/affine_q16.h"
#include "kernels/amx.h"
#include "kernels/q16_simd-inl.h"
#include "util/thread_pool.h"

HWY_BEFORE_NAMESPACE();
namespace zaya {
namespace HWY_NAMESPACE {

#if HWY_TARGET == HWY_AVX3 || HWY_TARGET == HWY_AVX3_DL
// GCC 12 reports its own intrinsics' `__Y = __Y` (undefined passthrough) idiom as maybe-uninitialized once they are
// inlined here (GCC bug 105593); the values are defined.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

namespace {

constexpr size_t kGroup = 16;      // tokens per tile (N)
constexpr size_t kRowTile = 16;    // rows per tile (M)
constexpr size_t kBlockDw = 8 * kGroup;  // dwords of one block's activation tile (K = 32 bytes: 8 rows)
// Packed activations a row tile meets before the next is unpacked: the engine reads them from L2 (2 MiB per core
// on Sapphire Rapids), so a larger block than the AVX-512 tiles' means fewer unpackings of each row.
constexpr size_t kAmxTokenBlockBytes = size_t{1} << 20;

// One product's activations in the engine's layout, per group of 16 tokens (zeros past n). The buffers are per-thread
// Scratch slots (kept between calls): a prefill runs hundreds of products, and fresh multi-megabyte allocations would
// cost a page fault and a page clear per 4 KiB each time.
enum : int { kSlotHi = 4, kSlotLo, kSlotD, kSlotXsum, kSlotScalesByBlock, kSlotBlockOrder };
template <class Q>
struct Packed {
  size_t groups = 0, blocks16 = 0, groups16 = 0;
  uint32_t *hi = nullptr, *lo = nullptr;  // [group][block][8][16]; int8: only `hi` (the bytes themselves)
  float* d = nullptr;                     // [group][block][16]
  float* xsum = nullptr;                  // [group][g][16]
};

// The bytes of 64 activations (two blocks) of one token: int16 → (high, low) bytes; int8 → the bytes in `hi`.
template <class Q>
HWY_INLINE void TokenBytes(const Q* q, __m512i& hi, __m512i& lo) {
  if constexpr (sizeof(Q) == 2) {
    const __m512i a = _mm512_loadu_si512(q), b = _mm512_loadu_si512(q + 32);
    lo = _mm512_inserti64x4(_mm512_castsi256_si512(_mm512_cvtepi16_epi8(a)), _mm512_cvtepi16_epi8(b), 1);
    hi = _mm512_inserti64x4(_mm512_castsi256_si512(_mm512_cvtepi16_epi8(_mm512_srai_epi16(a, 8))),
                            _mm512_cvtepi16_epi8(_mm512_srai_epi16(b, 8)), 1);
  } else {
    hi = _mm512_loadu_si512(q);
    lo = _mm512_setzero_si512();
  }
}

template <class Q>
void PackGroup(const q16::BlockActivations<Q>& a, size_t g, Packed<Q>& p) {
  const size_t stride = a.blocks16 * kBlock, t0 = g * kGroup, nt = std::min(kGroup, a.n - t0);
  for (size_t b = 0; b < a.blocks16; b += 2) {
    __m512i hi[16], lo[16];
    for (size_t n = 0; n < kGroup; ++n) {
      if (n < nt) TokenBytes(&a.xq[(t0 + n) * stride + b * kBlock], hi[n], lo[n]);
      else hi[n] = lo[n] = _mm512_setzero_si512();
    }
    // Row i of the transpose: dword i of every token = bytes 4i..4i+3 of block b (i < 8) or block b+1.
    const size_t at = (g * a.blocks16 + b) * kBlockDw;
    amx::transpose16(hi);
    for (size_t i = 0; i < 16; ++i) _mm512_store_si512(p.hi + at + i * kGroup, hi[i]);
    if constexpr (sizeof(Q) == 2) {
      amx::transpose16(lo);
      for (size_t i = 0; i < 16; ++i) _mm512_store_si512(p.lo + at + i * kGroup, lo[i]);
    }
  }
  for (size_t n = 0; n < kGroup; ++n) {
    const bool real = n < nt;
    for (size_t b = 0; b < a.blocks16; ++b) {
      const size_t i = (g * a.blocks16 + b) * kGroup + n, s = (t0 + n) * a.blocks16 + b;
      p.d[i] = real ? a.d[s] : 0.0f;
    }
    for (size_t k = 0; k < a.groups16; ++k)
      p.xsum[(g * a.groups16 + k) * kGroup + n] = real ? a.xsum[(t0 + n) * a.groups16 + k] : 0.0f;
  }
}

template <class Q>
void Pack(const q16::BlockActivations<Q>& a, Packed<Q>& p, ThreadPool& pool) {
  p.groups = (a.n + kGroup - 1) / kGroup, p.blocks16 = a.blocks16, p.groups16 = a.groups16;
  const size_t dw = p.groups * a.blocks16 * kBlockDw;
  p.hi = Scratch<uint32_t>(dw, kSlotHi);
  if constexpr (sizeof(Q) == 2) p.lo = Scratch<uint32_t>(dw, kSlotLo);
  p.d = Scratch<float>(p.groups * a.blocks16 * kGroup, kSlotD);
  p.xsum = Scratch<float>(p.groups * a.groups16 * kGroup, kSlotXsum);
  pool.parallel_for(p.groups, 1, [&](size_t g0, size_t g1) {
    for (size_t g = g0; g < g1; ++g) PackGroup(a, g, p);
  });
}

// Rows r .. r+nr (nr ≤ 16) of W as centred codes q − c (s8), `ld` bytes per row, zeros past the columns and the
// rows. Centred codes give the block sum Σ (q − c)·xq = Σ q·xq − c·Σ xq, the same integer as the canonical sequence,
// from the engine alone.
template <int BITS>
void UnpackCodes(const WeightMatrix& W, size_t r, size_t nr, size_t ld, uint8_t* out) {
  const size_t cols = W.cols;
  for (size_t i = 0; i < kRowTile; ++i) {
    uint8_t* o = out + i * ld;
    if (i >= nr) {
      std::memset(o, 0, ld);
      continue;
    }
    const uint8_t* w = static_cast<const uint8_t*>(W.data) + (r + i) * W.row_bytes;
    size_t c = 0;
    if constexpr (BITS == 8) {
      const __m512i flip = _mm512_set1_epi8(static_cast<char>(0x80));  // q − 128 as s8
      for (; c + 64 <= cols; c += 64) _mm512_storeu_si512(o + c, _mm512_xor_si512(_mm512_loadu_si512(w + c), flip));
      for (; c < cols; ++c) o[c] = static_cast<uint8_t>(w[c] ^ 0x80);
    } else {
      // 32 packed bytes → 64 codes: each byte's low nibble first (MLX packs 8 codes per word, lowest first).
      const __m512i lo4 = _mm512_set1_epi16(0x000F), hi4 = _mm512_set1_epi16(0x0F00), centre = _mm512_set1_epi8(8);
      for (; c + 64 <= cols; c += 64) {
        const __m512i z = _mm512_cvtepu8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + c / 2)));
        const __m512i v = _mm512_or_si512(_mm512_and_si512(z, lo4), _mm512_and_si512(_mm512_slli_epi16(z, 4), hi4));
        _mm512_storeu_si512(o + c, _mm512_sub_epi8(v, centre));
      }
      for (; c < cols; c += 2)
        o[c] = static_cast<uint8_t>((w[c / 2] & 0xF) - 8), o[c + 1] = static_cast<uint8_t>((w[c / 2] >> 4) - 8);
    }
    std::memset(o + cols, 0, ld - cols);
  }
}

// Tiles, double-buffered so the engine computes block j+1 while the vector units scale block j: set s (0, 1) holds
// C_hi = tmm(2s), C_lo = tmm(2s + 1) and A = tmm(4 + s); B hi = tmm6 and B lo = tmm7 are shared (int8: B = tmm(6 + s),
// one per set).
void Configure() {
  amx::TileConfig cfg;
  for (int t = 0; t < 8; ++t) {
    cfg.rows[t] = t >= 6 ? 8 : kRowTile;        // B: K/4 = 8 rows
    cfg.colsb[t] = t == 4 || t == 5 ? 32 : 64;  // A: K = 32 bytes; B and C: 16 tokens × 4 bytes
  }
  amx::configure(cfg);
}

// The integer block sums of one block for 16 rows × 16 tokens, through tile set S: Issue starts them (zero, loads,
// products), Drain stores them into c[0] (Σ (q−c)·hi, or Σ (q−c)·xq for int8) and c[1] (Σ (q−c)·lo). The engine runs
// its instructions in order, so the next block's products are issued before a block's results are drained.
template <class Q, int S>
HWY_INLINE void Issue(const uint8_t* codes, size_t ld, const uint32_t* bhi, const uint32_t* blo) {
  static_assert(S == 0 || S == 1);
  constexpr bool kSplit = sizeof(Q) == 2;
  if constexpr (S == 0) {
    ZAYA_TILE_ZERO(0);
    ZAYA_TILE_LOAD(4, codes, ld);
    ZAYA_TILE_LOAD(6, bhi, 64);
    ZAYA_TILE_DPBSSD(0, 4, 6);
    if constexpr (kSplit) {
      ZAYA_TILE_ZERO(1);
      ZAYA_TILE_LOAD(7, blo, 64);
      ZAYA_TILE_DPBSUD(1, 4, 7);
    }
  } else if constexpr (!kSplit) {
    // int8: set 1 has its own B tile (tmm7), so neither set waits for the other.
    ZAYA_TILE_ZERO(2);
    ZAYA_TILE_LOAD(5, codes, ld);
    ZAYA_TILE_LOAD(7, bhi, 64);
    ZAYA_TILE_DPBSSD(2, 5, 7);
  } else {
    ZAYA_TILE_ZERO(2);
    ZAYA_TILE_LOAD(5, codes, ld);
    ZAYA_TILE_LOAD(6, bhi, 64);
    ZAYA_TILE_DPBSSD(2, 5, 6);
    {
      ZAYA_TILE_ZERO(3);
      ZAYA_TILE_LOAD(7, blo, 64);
      ZAYA_TILE_DPBSUD(3, 5, 7);
    }
  }
}

template <class Q, int S>
HWY_INLINE void Drain(int32_t (*c)[kRowTile * kGroup]) {
  constexpr bool kSplit = sizeof(Q) == 2;
  if constexpr (S == 0) {
    ZAYA_TILE_STORE(0, c[0], 64);
    if constexpr (kSplit) ZAYA_TILE_STORE(1, c[1], 64);
  } else {
    ZAYA_TILE_STORE(2, c[0], 64);
    if constexpr (kSplit) ZAYA_TILE_STORE(3, c[1], 64);
  }
}

// Rows [r0, r1) of W for every token, from the packed activations: 16-row tiles, each against every token group.
// Blocks run lane by lane (b = l, l+16, …) so a lane's 16 row accumulators stay in registers.
template <class Q, int BITS>
void Rows(const WeightMatrix& W, const Packed<Q>& p, size_t n_tokens, size_t r0, size_t r1, float* Y) {
  constexpr bool kSplit = sizeof(Q) == 2;
  const size_t rows = W.rows, blocks16 = p.blocks16, groups16 = p.groups16, ld = blocks16 * kBlock;
  uint8_t* codes = Scratch<uint8_t>(kRowTile * ld, 0);
  float* sblk = Scratch<float>(kRowTile * blocks16, 1);
  float* bias = Scratch<float>(kRowTile * groups16, 2);
  float* sT = Scratch<float>(blocks16 * kRowTile, kSlotScalesByBlock);  // [block][row]: a block's 16 row scales
  uint32_t* order = Scratch<uint32_t>(blocks16, kSlotBlockOrder);      // step j → block: l·per_lane + k ↦ k·16 + l
  __m512* F = Scratch<__m512>(kLanes * kRowTile, 3);  // [lane][row]: 16 tokens each
  alignas(64) int32_t c[2][2][kRowTile * kGroup];     // [set][hi/lo]
  const size_t group_bytes = blocks16 * kBlockDw * 4 * (kSplit ? 2 : 1);
  const size_t groups_per_block = std::max<size_t>(1, kAmxTokenBlockBytes / group_bytes);
  const size_t per_lane = blocks16 / kLanes;
  for (size_t l = 0, j = 0; l < kLanes; ++l)
    for (size_t k = 0; k < per_lane; ++k, ++j) order[j] = static_cast<uint32_t>(k * kLanes + l);
  Configure();
  for (size_t gb = 0; gb < p.groups; gb += groups_per_block) {
    const size_t gend = std::min(p.groups, gb + groups_per_block);
    for (size_t r = r0; r < r1; r += kRowTile) {
      const size_t nr = std::min(kRowTile, r1 - r);
      UnpackCodes<BITS>(W, r, nr, ld, codes);
      for (size_t i = 0; i < kRowTile; ++i) {
        if (i < nr) {
          LoadRowScales(W, r + i, blocks16, groups16, sblk + i * blocks16, bias + i * groups16);
        } else {
          std::fill(sblk + i * blocks16, sblk + (i + 1) * blocks16, 0.0f);
          std::fill(bias + i * groups16, bias + (i + 1) * groups16, 0.0f);
        }
      }
      for (size_t b = 0; b < blocks16; ++b)
        for (size_t i = 0; i < kRowTile; ++i) sT[b * kRowTile + i] = sblk[i * blocks16 + b];
      for (size_t g = gb; g < gend; ++g) {
        const size_t gblk = g * blocks16;
        auto issue = [&](size_t j) {
          const size_t b = order[j];
          const uint32_t* bhi = p.hi + (gblk + b) * kBlockDw;
          const uint32_t* blo = kSplit ? p.lo + (gblk + b) * kBlockDw : nullptr;
          if (j % 2 == 0) Issue<Q, 0>(codes + b * kBlock, ld, bhi, blo);
          else Issue<Q, 1>(codes + b * kBlock, ld, bhi, blo);
        };
        auto drain = [&](size_t j) {
          if (j % 2 == 0) Drain<Q, 0>(c[0]);
          else Drain<Q, 1>(c[1]);
        };
        // A software pipeline over the two tile sets: step j stores block j+1's sums, issues block j+3 on the set
        // that just emptied and scales block j, stored a step earlier, so the vector loads never wait on the stores.
        issue(0);
        if (blocks16 > 1) issue(1);
        drain(0);
        if (blocks16 > 2) issue(2);
        for (size_t l = 0; l < kLanes; ++l) {
          __m512 acc[kRowTile];
          for (size_t i = 0; i < kRowTile; ++i) acc[i] = _mm512_setzero_ps();
          for (size_t k = 0; k < per_lane; ++k) {
            const size_t j = l * per_lane + k, b = k * kLanes + l;
            if (j + 1 < blocks16) {
              drain(j + 1);
              if (j + 3 < blocks16) issue(j + 3);
            }
            const int32_t(*cj)[kRowTile * kGroup] = c[j % 2];
            const __m512 d = _mm512_load_ps(p.d + (gblk + b) * kGroup);
            for (size_t i = 0; i < kRowTile; ++i) {
              __m512i isum = _mm512_load_si512(cj[0] + i * kGroup);
              if constexpr (kSplit) isum = _mm512_add_epi32(_mm512_slli_epi32(isum, 8), _mm512_load_si512(cj[1] + i * kGroup));
              const __m512 f = _mm512_cvtepi32_ps(isum);
              acc[i] = _mm512_fmadd_ps(f, _mm512_mul_ps(_mm512_set1_ps(sT[b * kRowTile + i]), d), acc[i]);
            }
          }
          for (size_t i = 0; i < kRowTile; ++i) F[l * kRowTile + i] = acc[i];
        }
        // Bias lanes, F + B, the 16-lane tree (q16::reduce16), one vector of 16 tokens per row; the 16 × 16 block is
        // transposed so each token's 16 outputs go out as one store.
        const size_t t0 = g * kGroup, nt = std::min(kGroup, n_tokens - t0);
        const float* xs = p.xsum + g * groups16 * kGroup;
        __m512i out[kRowTile];
        for (size_t i = 0; i < kRowTile; ++i) {
          if (i >= nr) {
            out[i] = _mm512_setzero_si512();
            continue;
          }
          __m512 v[kLanes];
          for (size_t l = 0; l < kLanes; ++l) v[l] = _mm512_setzero_ps();
          for (size_t k0 = 0; k0 < groups16; k0 += kLanes)
            for (size_t l = 0; l < kLanes; ++l)
              v[l] = _mm512_fmadd_ps(_mm512_set1_ps(bias[i * groups16 + k0 + l]), _mm512_load_ps(xs + (k0 + l) * kGroup),
                                     v[l]);
          for (size_t l = 0; l < kLanes; ++l) v[l] = _mm512_add_ps(F[l * kRowTile + i], v[l]);
          for (size_t h = kLanes / 2; h >= 1; h /= 2)
            for (size_t l = 0; l < h; ++l) v[l] = _mm512_add_ps(v[l], v[l + h]);
          out[i] = _mm512_castps_si512(v[0]);
        }
        amx::transpose16(out);
        const __mmask16 live = static_cast<__mmask16>((1u << nr) - 1);
        for (size_t n = 0; n < nt; ++n) _mm512_mask_storeu_ps(Y + (t0 + n) * rows + r, live, _mm512_castsi512_ps(out[n]));
      }
    }
  }
  amx::release();
}

}  // namespace

template <class Q>
bool AffineAmx(const WeightMatrix* const* Ws, size_t m, const q16::BlockActivations<Q>& a, size_t n_tokens,
               float* const* Ys, ThreadPool& pool) {
  if (!amx::usable()) return false;
  Packed<Q> p;
  Pack(a, p, pool);
  const StackedRows rows(Ws, m, a.cols * n_tokens, false, pool.size(), kRowTile);
  rows.run(pool, [&](size_t k, size_t lo, size_t hi) {
    if (Ws[k]->bits == 4) Rows<Q, 4>(*Ws[k], p, n_tokens, lo, hi, Ys[k]);
    else Rows<Q, 8>(*Ws[k], p, n_tokens, lo, hi, Ys[k]);
  });
  return true;
}

bool AffineAmxUsable() { return amx::usable(); }

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
#else  // no engine on this target

template <class Q>
bool AffineAmx(const WeightMatrix* const*, size_t, const q16::BlockActivations<Q>&, size_t, float* const*,
               ThreadPool&) {
  return false;
}
bool AffineAmxUsable() { return false; }

#endif

template bool AffineAmx<int16_t>(const WeightMatrix* const*, size_t, const q16::BlockActivations<int16_t>&, size_t,
                                 float* const*, ThreadPool&);
template bool AffineAmx<int8_t>(const WeightMatrix* const*, size_t, const q16::BlockActivations<int8_t>&, size_t,
                                float* const*, ThreadPool&);

}  // namespace HWY_NAMESPACE
}  // namespace zaya
HWY_AFTER_NAMESPACE();
