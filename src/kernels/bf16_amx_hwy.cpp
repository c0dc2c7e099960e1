// BF16 weights on the AMX matrix engine (Intel Sapphire Rapids and later: AMX-TILE + AMX-BF16), the `matrix` slot
// of the BF16 row (Precision::Fast). The activations are rounded to bf16 once per product (as bf16-dot does) and
// every 32 columns of 16 rows × up to 16 tokens meet in one TDPBF16PS, fp32 accumulation in the tile.
//
// The engine's summation inside one instruction is not the sequential one its manual's pseudo-code shows (products
// of a 32-column chunk are added with more precision than fp32, measured on this project's Sapphire Rapids VM), so
// no scalar code reproduces its bits. bf16_amx_reference() is the arithmetic up to that: per 32-column chunk the
// exact sum of the products, added to the fp32 accumulator with one rounding; tests bound the kernel against it.
// What the model needs holds bitwise: every output is one accumulator tile element fed by the same chunks in the same
// order whatever the token count, the output's position in its tile or the thread count, so decode (one token),
// batched decode and prefill give the same bits, and every token count runs on the engine (one token streams
// 32 rows per step at memory speed).
//
// Layout: weights are the A operand straight from the stored rows (16 rows × 64 bytes per tile); activations are
// the B operand, packed once per product as pairs of columns per token (the engine's "VNNI" layout):
// chunk k of token group g is 16 rows of `tn` dwords, row i dword n = (x_n[32k+2i], x_n[32k+2i+1]).
#define HWY_WANT_AVX3_DL 1

#include <algorithm>
#include <cstring>
#include <vector>

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/bf16_amx_hwy.cpp"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>
#include <hwy/aligned_allocator.h>

#include "io/dtype.h"
#include "kernels/amx.h"
#include "kernels/quant_matmul.h"
#include "util/thread_pool.h"

#ifndef ZAYA_BF16_AMX_ONCE
#define ZAYA_BF16_AMX_ONCE
namespace zaya::bf16amx {
constexpr size_t kChunk = 32;       // columns per TDPBF16PS (K)
constexpr size_t kTileRows = 16;    // weight rows per tile (M)
constexpr size_t kGroup = 16;       // tokens per activation tile (N)
constexpr size_t kBlockRows = 32;   // rows per work item: two weight tiles share each activation tile
constexpr size_t kBlockBytes = size_t{256} << 10;  // packed activations kept in L2 while a block's rows pass

}  // namespace zaya::bf16amx

#endif

HWY_BEFORE_NAMESPACE();
namespace zaya {
namespace HWY_NAMESPACE {

using namespace bf16amx;

#if HWY_TARGET == HWY_AVX3 || HWY_TARGET == HWY_AVX3_DL

bool HasBf16AmxT() { return amx::usable(); }

// bf16_dot_hwy.cpp (same target): tokens [t0, t1) of X as bf16 rows of `ld` columns, zeros past `cols`.
void ConvertTokens(const float* X, size_t cols, size_t ld, size_t t0, size_t t1, uint16_t* xb);

// Token group g into the B layout: n_chunks tiles of 16 rows × tn dwords. `rowbuf` holds tn bf16 rows.
void PackGroup(const float* X, size_t cols, size_t n_tokens, size_t g, size_t tn, size_t n_chunks, uint16_t* rowbuf,
               uint32_t* out) {
  const size_t padded = n_chunks * kChunk, t0 = g * kGroup;
  const size_t real = std::min(tn, n_tokens - t0);
  ConvertTokens(X + t0 * cols, cols, padded, 0, real, rowbuf);
  std::fill(rowbuf + real * padded, rowbuf + tn * padded, uint16_t{0});
  const auto* rows = reinterpret_cast<const uint32_t*>(rowbuf);  // [n][d], d = column pair
  const size_t pairs = padded / 2;                               // = 16 · n_chunks
  if (tn == kGroup) {
    for (size_t d = 0; d < pairs; d += 16) {
      __m512i r[16];
      for (size_t n = 0; n < 16; ++n) r[n] = _mm512_loadu_si512(rows + n * pairs + d);
      amx::transpose16(r);
      for (size_t i = 0; i < 16; ++i) _mm512_storeu_si512(out + (d + i) * 16, r[i]);
    }
  } else {
    for (size_t d = 0; d < pairs; ++d)
      for (size_t n = 0; n < tn; ++n) out[d * tn + n] = rows[n * pairs + d];
  }
}

// Tiles: C(i, j) = tmm(2i + j) accumulates weight tile i (rows 16i..16i+15 of the block) × token group j;
// A(i) = tmm(4 + i); B(j) = tmm(6 + j).
void Configure(size_t tn) {
  amx::TileConfig cfg;
  for (int t = 0; t < 8; ++t) {
    cfg.rows[t] = kTileRows;
    cfg.colsb[t] = static_cast<uint16_t>(t == 4 || t == 5 ? 64 : 4 * tn);
  }
  amx::configure(cfg);
}

// One block of RT·16 rows (weights at w, `ldw` bytes apart) against GT token groups of packed activations (b, `ldb`
// bytes per group): C tiles written to out[i][j] (16 × tn floats, 64-byte rows).
template <int RT, int GT>
HWY_INLINE void Block(const uint8_t* w, size_t ldw, const uint8_t* b, size_t ldb, size_t n_chunks, size_t tn,
                      float (*out)[2][kTileRows * kGroup]) {
  ZAYA_TILE_ZERO(0);
  if constexpr (GT == 2) ZAYA_TILE_ZERO(1);
  if constexpr (RT == 2) ZAYA_TILE_ZERO(2);
  if constexpr (RT == 2 && GT == 2) ZAYA_TILE_ZERO(3);
  const size_t bstride = 4 * tn, btile = kTileRows * bstride;
  for (size_t k = 0; k < n_chunks; ++k) {
    const uint8_t* wk = w + k * 64;
    ZAYA_TILE_LOAD(6, b + k * btile, bstride);
    if constexpr (GT == 2) ZAYA_TILE_LOAD(7, b + ldb + k * btile, bstride);
    ZAYA_TILE_LOAD(4, wk, ldw);
    ZAYA_TILE_DPBF16PS(0, 4, 6);
    if constexpr (GT == 2) ZAYA_TILE_DPBF16PS(1, 4, 7);
    if constexpr (RT == 2) {
      ZAYA_TILE_LOAD(5, wk + kTileRows * ldw, ldw);
      ZAYA_TILE_DPBF16PS(2, 5, 6);
      if constexpr (GT == 2) ZAYA_TILE_DPBF16PS(3, 5, 7);
    }
  }
  ZAYA_TILE_STORE(0, out[0][0], 64);
  if constexpr (GT == 2) ZAYA_TILE_STORE(1, out[0][1], 64);
  if constexpr (RT == 2) ZAYA_TILE_STORE(2, out[1][0], 64);
  if constexpr (RT == 2 && GT == 2) ZAYA_TILE_STORE(3, out[1][1], 64);
}

void Bf16AmxT(const WeightMatrix& W, const float* X, size_t n_tokens, float* Y, ThreadPool& pool) {
  const size_t rows = static_cast<size_t>(W.rows), cols = static_cast<size_t>(W.cols);
  const size_t n_chunks = std::max<size_t>(1, (cols + kChunk - 1) / kChunk), padded = n_chunks * kChunk;
  const size_t tn = std::min(kGroup, n_tokens), n_groups = (n_tokens + kGroup - 1) / kGroup;
  const size_t group_dwords = n_chunks * kTileRows * tn;

  // The activations once per product, in the B layout, in parallel over token groups when there are many.
  thread_local hwy::AlignedFreeUniquePtr<uint32_t[]> packed;
  thread_local size_t cap = 0;
  if (cap < n_groups * group_dwords)
    packed = hwy::AllocateAligned<uint32_t>(n_groups * group_dwords), cap = n_groups * group_dwords;
  uint32_t* B = packed.get();
  auto pack = [&](size_t g0, size_t g1) {
    thread_local std::vector<uint16_t> rowbuf;  // kept: decode packs one token per product, hundreds per step
    rowbuf.resize(tn * padded);
    for (size_t g = g0; g < g1; ++g) PackGroup(X, cols, n_tokens, g, tn, n_chunks, rowbuf.data(), B + g * group_dwords);
  };
  if (n_groups > 1 && n_tokens * cols >= (size_t{1} << 16)) pool.parallel_for(n_groups, 1, pack);
  else pack(0, n_groups);

  // Whole chunks of whole tiles are read in place; a block with a ragged edge (rows or columns) is first copied
  // into a zero-padded buffer, so no tile reads past a row or the matrix.
  const bool direct_cols = cols % kChunk == 0;
  const size_t groups_per_block = std::max<size_t>(2, kBlockBytes / (group_dwords * 4)) / 2 * 2;
  const size_t n_blocks = (rows + kBlockRows - 1) / kBlockRows;
  const size_t grain = std::max<size_t>(1, (size_t{1} << 17) / (kBlockRows * padded * std::max<size_t>(tn, 4)));
  const auto* base = static_cast<const uint8_t*>(W.data);
  pool.parallel_for(n_blocks, grain, [&](size_t b0, size_t b1) {
    Configure(tn);
    alignas(64) float out[2][2][kTileRows * kGroup];
    thread_local std::vector<uint16_t> pad;
    for (size_t gb = 0; gb < n_groups; gb += groups_per_block) {
      const size_t gend = std::min(n_groups, gb + groups_per_block);
      for (size_t blk = b0; blk < b1; ++blk) {
        const size_t r0 = blk * kBlockRows, nr = std::min(kBlockRows, rows - r0);
        const int rt = nr > kTileRows ? 2 : 1;
        const uint8_t* w = base + r0 * W.row_bytes;
        size_t ldw = W.row_bytes;
        if (!direct_cols || nr % kTileRows != 0) {
          pad.assign(static_cast<size_t>(rt) * kTileRows * padded, 0);
          for (size_t r = 0; r < nr; ++r) std::memcpy(&pad[r * padded], w + r * W.row_bytes, cols * 2);
          w = reinterpret_cast<const uint8_t*>(pad.data()), ldw = padded * 2;
        }
        for (size_t g = gb; g < gend; g += 2) {
          const int gt = g + 1 < gend ? 2 : 1;
          const auto* b = reinterpret_cast<const uint8_t*>(B + g * group_dwords);
          const size_t ldb = group_dwords * 4;
          if (rt == 2 && gt == 2) Block<2, 2>(w, ldw, b, ldb, n_chunks, tn, out);
          else if (rt == 2) Block<2, 1>(w, ldw, b, ldb, n_chunks, tn, out);
          else if (gt == 2) Block<1, 2>(w, ldw, b, ldb, n_chunks, tn, out);
          else Block<1, 1>(w, ldw, b, ldb, n_chunks, tn, out);
          for (int j = 0; j < gt; ++j) {
            const size_t t0 = (g + j) * kGroup, nt = std::min(tn, n_tokens - t0);
            for (int i = 0; i < rt; ++i) {
              const size_t ri = r0 + i * kTileRows, mr = std::min(kTileRows, rows - ri);
              for (size_t n = 0; n < nt; ++n)
                for (size_t m = 0; m < mr; ++m) Y[(t0 + n) * rows + ri + m] = out[i][j][m * kGroup + n];
            }
          }
        }
      }
    }
    amx::release();
  });
}

#else  // no AMX on this target

bool HasBf16AmxT() { return false; }
void Bf16AmxT(const WeightMatrix& W, const float* X, size_t n_tokens, float* Y, ThreadPool&) {
  bf16_amx_reference(W, X, n_tokens, Y);
}

#endif

}  // namespace HWY_NAMESPACE
}  // namespace zaya
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace zaya {

HWY_EXPORT(Bf16AmxT);
HWY_EXPORT(HasBf16AmxT);

bool bf16_amx_accepts(const WeightMatrix& W) {
  return W.format == WeightFormat::BF16 && W.rows > 0 && HWY_DYNAMIC_DISPATCH(HasBf16AmxT)();
}

void bf16_amx_product(const WeightMatrix& W, const float* X, size_t n_tokens, float* Y, ThreadPool& pool) {
  if (n_tokens == 0 || W.rows <= 0) return;
  if (!HWY_DYNAMIC_DISPATCH(HasBf16AmxT)()) return bf16_amx_reference(W, X, n_tokens, Y);
  HWY_DYNAMIC_DISPATCH(Bf16AmxT)(W, X, n_tokens, Y, pool);
}

namespace {
// A bf16 as the engine reads it: subnormals are zero.
double bf16_daz(uint16_t h) { return (h & 0x7F80) == 0 ? 0.0 : static_cast<double>(bf16_to_f32(h)); }
}  // namespace

void bf16_amx_reference(const WeightMatrix& W, const float* X, size_t n_tokens, float* Y) {
  using namespace bf16amx;
  const size_t rows = static_cast<size_t>(W.rows), cols = static_cast<size_t>(W.cols);
  std::vector<double> x(cols);
  for (size_t t = 0; t < n_tokens; ++t) {
    for (size_t c = 0; c < cols; ++c) x[c] = bf16_daz(f32_to_bf16(X[t * cols + c]));
    for (size_t r = 0; r < rows; ++r) {
      const auto* p = reinterpret_cast<const uint16_t*>(W.row(static_cast<int64_t>(r)));
      float acc = 0.0f;
      for (size_t k = 0; k < cols; k += kChunk) {
        double s = 0;  // 32 products of 8-bit significands: exact unless their magnitudes span > 2^37
        for (size_t c = k; c < std::min(cols, k + kChunk); ++c) s += bf16_daz(p[c]) * x[c];
        acc = static_cast<float>(static_cast<double>(acc) + s);
      }
      Y[t * rows + r] = acc;
    }
  }
}

}  // namespace zaya
#endif  // HWY_ONCE
