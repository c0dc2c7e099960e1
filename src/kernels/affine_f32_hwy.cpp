// The exact (fp32-activation) SIMD kernels for MLX affine 4- and 8-bit weights, used with --exact: every weight is
// dequantized in registers and meets the fp32 activations, as the reference computes. The default path is
// affine_q16 (int16 activations, quant_matmul_hwy.cpp). Per group (same scale and bias), chunks of N bytes are zero-extended to N u32 lanes; for 4 bits
// the low nibbles are the even elements and the high nibbles the odd ones, so the activations are pre-permuted once
// per call into [even | odd] halves of every 2N-element chunk and every FMA reads contiguous memory. A weight is
// dequantized as q·s + b (one FMA) and accumulated as w·x + acc (one FMA). Every output's operation sequence depends
// only on `cols` — the fused decode path and the buffered prefill path do the same arithmetic in the same order —
// so results are thread- and batch-invariant.

#include <algorithm>
#include <cstring>
#include <vector>

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/affine_f32_hwy.cpp"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>
#include <hwy/aligned_allocator.h>

#include "kernels/quant_matmul.h"
#include "io/safetensors.h"
#include "util/thread_pool.h"


HWY_BEFORE_NAMESPACE();
namespace zaya {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

using F32DF = hn::ScalableTag<float>;
using F32DU = hn::RebindToUnsigned<F32DF>;
using F32DI = hn::RebindToSigned<F32DF>;
using F32DU8 = hn::Rebind<uint8_t, F32DF>;
using F32DH = hn::Rebind<hwy::float16_t, F32DF>;
using F32VF = hn::Vec<F32DF>;
constexpr size_t kF32Tile = 4;       // tokens sharing one decoded row
constexpr size_t kF32RowBlock = 8;   // rows dequantized together for prefill
// Rows per register tile in prefill: 2 rows × 4 tokens × 2 chains = 16 accumulators fit 32-register targets.
#if HWY_ARCH_X86 && HWY_TARGET > HWY_AVX3
constexpr size_t kF32TileRows = 1;
#else
constexpr size_t kF32TileRows = 2;
#endif

// Group scales (or biases) of one row as fp32.
HWY_INLINE void F32LoadScales(const uint8_t* p, DType dt, size_t groups, float* out) {
  const F32DF df;
  const size_t N = hn::Lanes(df);
  size_t g = 0;
  if (dt == DType::F16) {
    const F32DH dh;
    for (; g + N <= groups; g += N)
      hn::StoreU(hn::PromoteTo(df, hn::LoadU(dh, reinterpret_cast<const hwy::float16_t*>(p) + g)), df, out + g);
  }
  for (; g < groups; ++g) out[g] = stored_scale(p, dt, g);
}

// Calls fn(w0, w1, offset) for every pair of N-lane vectors of dequantized weights of one row, in activation (xp)
// order: w0 covers [offset, offset+N), w1 [offset+N, offset+2N). Pairs feed two independent accumulator chains, so
// the FMA latency does not serialize the loop.
template <int BITS, class Fn>
HWY_INLINE void F32ForEachWeightPair(const uint8_t* HWY_RESTRICT row, const float* HWY_RESTRICT sg,
                                  const float* HWY_RESTRICT bg, size_t groups, size_t G, Fn&& fn) {
  const F32DF df;
  const F32DU du;
  const F32DI di;
  const F32DU8 du8;
  const size_t N = hn::Lanes(df);
  const size_t bytes_per_group = G * BITS / 8;
  const auto mask = hn::Set(du, 0xFu);
  size_t off = 0;
  for (size_t g = 0; g < groups; ++g) {
    const auto s = hn::Set(df, sg[g]);
    const auto b = hn::Set(df, bg[g]);
    const uint8_t* p = row + g * bytes_per_group;
    if constexpr (BITS == 4) {
      for (size_t c = 0; c < bytes_per_group; c += N, off += 2 * N) {
        const auto codes = hn::PromoteTo(du, hn::LoadU(du8, p + c));
        const auto lo = hn::ConvertTo(df, hn::BitCast(di, hn::And(codes, mask)));
        const auto hi = hn::ConvertTo(df, hn::BitCast(di, hn::ShiftRight<4>(codes)));
        fn(hn::MulAdd(lo, s, b), hn::MulAdd(hi, s, b), off);
      }
    } else {
      for (size_t c = 0; c < bytes_per_group; c += 2 * N, off += 2 * N) {
        const auto c0 = hn::ConvertTo(df, hn::BitCast(di, hn::PromoteTo(du, hn::LoadU(du8, p + c))));
        const auto c1 = hn::ConvertTo(df, hn::BitCast(di, hn::PromoteTo(du, hn::LoadU(du8, p + c + N))));
        fn(hn::MulAdd(c0, s, b), hn::MulAdd(c1, s, b), off);
      }
    }
  }
}

template <int BITS, size_t NT>
HWY_INLINE void F32DecodeDot(const uint8_t* row, const float* sg, const float* bg, size_t groups, size_t G,
                          const float* xp, size_t pcols, float* out) {
  const F32DF df;
  const size_t N = hn::Lanes(df);
  F32VF a0[NT], a1[NT];
  for (size_t j = 0; j < NT; ++j) a0[j] = hn::Zero(df), a1[j] = hn::Zero(df);
  F32ForEachWeightPair<BITS>(row, sg, bg, groups, G, [&](F32VF w0, F32VF w1, size_t off) HWY_ATTR {
    for (size_t j = 0; j < NT; ++j) {
      a0[j] = hn::MulAdd(w0, hn::Load(df, xp + j * pcols + off), a0[j]);
      a1[j] = hn::MulAdd(w1, hn::Load(df, xp + j * pcols + off + N), a1[j]);
    }
  });
  for (size_t j = 0; j < NT; ++j) out[j] = hn::GetLane(hn::SumOfLanes(df, hn::Add(a0[j], a1[j])));
}

// R rows × kTile tokens of dequantized weights against activations, two accumulator chains per output in the same
// order as F32DecodeDot (so every output is bitwise what the one-token path gives).
template <size_t R>
HWY_INLINE void F32TileRowsTokens(const float* HWY_RESTRICT w, const float* HWY_RESTRICT x, size_t cols, float* Y,
                               size_t y_stride) {
  const F32DF df;
  const size_t N = hn::Lanes(df);
  F32VF a0[R][kF32Tile], a1[R][kF32Tile];
  for (size_t i = 0; i < R; ++i)
    for (size_t j = 0; j < kF32Tile; ++j) a0[i][j] = hn::Zero(df), a1[i][j] = hn::Zero(df);
  for (size_t c = 0; c < cols; c += 2 * N) {
    F32VF w0[R], w1[R];
    for (size_t i = 0; i < R; ++i) w0[i] = hn::Load(df, w + i * cols + c), w1[i] = hn::Load(df, w + i * cols + c + N);
    for (size_t j = 0; j < kF32Tile; ++j) {
      const F32VF x0 = hn::Load(df, x + j * cols + c), x1 = hn::Load(df, x + j * cols + c + N);
      for (size_t i = 0; i < R; ++i) {
        a0[i][j] = hn::MulAdd(w0[i], x0, a0[i][j]);
        a1[i][j] = hn::MulAdd(w1[i], x1, a1[i][j]);
      }
    }
  }
  for (size_t i = 0; i < R; ++i)
    for (size_t j = 0; j < kF32Tile; ++j) Y[j * y_stride + i] = hn::GetLane(hn::SumOfLanes(df, hn::Add(a0[i][j], a1[i][j])));
}

template <int BITS>
void AffineF32Impl(const WeightMatrix& W, const float* X, size_t n_tokens, float* Y, ThreadPool& pool) {
  const F32DF df;
  const size_t N = hn::Lanes(df);
  const size_t rows = W.rows, cols = W.cols, G = W.group_size, groups = cols / G;

  // Activations in the order the decoded vectors come out: 4-bit chunks of 2N elements as [even | odd].
  auto xp = hwy::AllocateAligned<float>(n_tokens * cols);
  for (size_t t = 0; t < n_tokens; ++t) {
    const float* x = X + t * cols;
    float* dst = xp.get() + t * cols;
    if (BITS == 4) {
      for (size_t c = 0; c < cols; c += 2 * N)
        for (size_t l = 0; l < N; ++l) dst[c + l] = x[c + 2 * l], dst[c + N + l] = x[c + 2 * l + 1];
    } else {
      std::memcpy(dst, x, cols * sizeof(float));
    }
  }

  const size_t work = cols * std::max<size_t>(1, n_tokens);
  pool.parallel_for(rows, std::max<size_t>(4, 65536 / work), [&](size_t r0, size_t r1) {
    auto sg = hwy::AllocateAligned<float>(groups + N);
    auto bg = hwy::AllocateAligned<float>(groups + N);
    auto wrow = hwy::AllocateAligned<float>(n_tokens > kF32Tile ? kF32RowBlock * cols : 1);
    float out[kF32Tile];
    for (size_t r = r0; r < r1; ++r) {
      F32LoadScales(static_cast<const uint8_t*>(W.scales) + r * W.scale_row_bytes, W.scale_dtype, groups, sg.get());
      F32LoadScales(static_cast<const uint8_t*>(W.biases) + r * W.scale_row_bytes, W.scale_dtype, groups, bg.get());
      const uint8_t* row = static_cast<const uint8_t*>(W.data) + r * W.row_bytes;
      if (n_tokens <= kF32Tile) {
        // Decode fused with the dot products (generation: one token per sequence).
        switch (n_tokens) {
          case 1: F32DecodeDot<BITS, 1>(row, sg.get(), bg.get(), groups, G, xp.get(), cols, out); break;
          case 2: F32DecodeDot<BITS, 2>(row, sg.get(), bg.get(), groups, G, xp.get(), cols, out); break;
          case 3: F32DecodeDot<BITS, 3>(row, sg.get(), bg.get(), groups, G, xp.get(), cols, out); break;
          default: F32DecodeDot<BITS, 4>(row, sg.get(), bg.get(), groups, G, xp.get(), cols, out); break;
        }
        for (size_t j = 0; j < n_tokens; ++j) Y[j * rows + r] = out[j];
        continue;
      }
      // Prefill: dequantize a block of rows once (the same q·s + b), then stream token tiles over it; a token tile's
      // activations stay in L1/L2 while it meets every row of the block.
      const size_t rb = std::min(kF32RowBlock, r1 - r);
      for (size_t i = 0; i < rb; ++i) {
        if (i > 0) {
          F32LoadScales(static_cast<const uint8_t*>(W.scales) + (r + i) * W.scale_row_bytes, W.scale_dtype, groups, sg.get());
          F32LoadScales(static_cast<const uint8_t*>(W.biases) + (r + i) * W.scale_row_bytes, W.scale_dtype, groups, bg.get());
        }
        float* wr = wrow.get() + i * cols;
        F32ForEachWeightPair<BITS>(static_cast<const uint8_t*>(W.data) + (r + i) * W.row_bytes, sg.get(), bg.get(), groups, G,
                                [&](F32VF w0, F32VF w1, size_t off) HWY_ATTR {
                                  hn::Store(w0, df, wr + off);
                                  hn::Store(w1, df, wr + off + N);
                                });
      }
      for (size_t t0 = 0; t0 < n_tokens; t0 += kF32Tile) {
        const size_t nt = std::min(kF32Tile, n_tokens - t0);
        size_t i = 0;
        if (nt == kF32Tile)
          for (; i + kF32TileRows <= rb; i += kF32TileRows) F32TileRowsTokens<kF32TileRows>(wrow.get() + i * cols, xp.get() + t0 * cols, cols, Y + t0 * rows + r + i, rows);
        for (; i < rb; ++i) {
          const float* wr = wrow.get() + i * cols;
          for (size_t j = 0; j < nt; ++j) {
            F32VF a0 = hn::Zero(df), a1 = hn::Zero(df);
            const float* x = xp.get() + (t0 + j) * cols;
            for (size_t c = 0; c < cols; c += 2 * N) {
              a0 = hn::MulAdd(hn::Load(df, wr + c), hn::Load(df, x + c), a0);
              a1 = hn::MulAdd(hn::Load(df, wr + c + N), hn::Load(df, x + c + N), a1);
            }
            Y[(t0 + j) * rows + r + i] = hn::GetLane(hn::SumOfLanes(df, hn::Add(a0, a1)));
          }
        }
      }
      r += rb - 1;
    }
  });
}

bool AffineF32MatmulT(const WeightMatrix& W, const float* X, size_t n_tokens, float* Y, ThreadPool& pool) {
  // Chunks must tile a group: N bytes (4-bit) or 2N bytes (8-bit) per step; groups of 32+ hold any N <= 16.
  const size_t N = hn::Lanes(F32DF());
  if (W.format != WeightFormat::Affine || (W.bits != 4 && W.bits != 8)) return false;
  if ((static_cast<size_t>(W.group_size) * W.bits / 8) % (W.bits == 4 ? N : 2 * N) != 0) return false;
  if (W.bits == 4) AffineF32Impl<4>(W, X, n_tokens, Y, pool);
  else if (W.bits == 8) AffineF32Impl<8>(W, X, n_tokens, Y, pool);
  else return false;
  return true;
}

}  // namespace HWY_NAMESPACE
}  // namespace zaya
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace zaya {
HWY_EXPORT(AffineF32MatmulT);
bool affine_f32_accepts(const WeightMatrix& W) {
  return W.format == WeightFormat::Affine && (W.bits == 4 || W.bits == 8);
}

void affine_f32_product(const WeightMatrix& W, const float* X, size_t n_tokens, float* Y, ThreadPool& pool) {
  if (!HWY_DYNAMIC_DISPATCH(AffineF32MatmulT)(W, X, n_tokens, Y, pool)) grouped_product(W, X, n_tokens, Y, pool);
}
}  // namespace zaya
#endif
