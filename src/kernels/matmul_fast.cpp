// Fast fp32-accumulating matmul / dot with Highway runtime dispatch (AVX3, AVX2, SSE4, NEON, scalar fallback).
//
// Batch and thread invariance: every output Y[t, r] is computed by the same sequence of vector operations, which
// depends only on `cols` (and the dispatched target): one accumulator vector, a fused multiply-add per full vector
// of columns in increasing order, one more for the zero-padded tail, then the fixed lane tree of sum_lanes-inl.h. Register tiles (several rows x
// several tokens) only interleave independent accumulators, and the thread pool only splits rows, so neither the
// thread count nor the batch size nor a token's position in the batch can change a single bit of the result.

// SSSE3 adds nothing over SSE4 here (saves compile time); the tile code keeps arrays of vectors, which sizeless
// SVE/RVV vectors do not allow, so those fall back to NEON / scalar.

#include <algorithm>
#include <cstring>

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/matmul_fast.cpp"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>

#include "kernels/kernels_testing.h"
#include "kernels/sum_lanes-inl.h"
#include "kernels/quant_matmul.h"
#include "kernels/kernels.h"
#include "util/thread_pool.h"

HWY_BEFORE_NAMESPACE();
namespace zaya {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

using DF = hn::ScalableTag<float>;
using VF = hn::Vec<DF>;

// Upper bound of Lanes(DF()) for this target: sizes the zero-padded tail buffers.
constexpr size_t kMaxLanes = HWY_MAX_BYTES / sizeof(float);

// Rows per register tile when 4 tokens share it: 4x4 accumulators need 32 vector registers (AVX-512, NEON);
// 16-register targets (AVX2, SSE4) use 2x4 so the tile does not spill.
#if HWY_ARCH_X86 && HWY_TARGET > HWY_AVX3
constexpr size_t kTileRows = 2;
#else
constexpr size_t kTileRows = 4;
#endif
constexpr size_t kBlockRows = 4;    // rows per work item of the thread pool (a multiple of kTileRows)
constexpr size_t kTileTokens = 4;   // tokens sharing one pass over a row tile's weights
constexpr size_t kTokenBlock = 64;  // tokens whose activations stay cache-resident while rows stream past

// IEEE half -> float from integer ops, exact for zero/subnormal/normal/inf/nan. Used where there is no hardware
// conversion: Highway 1.0's emulated PromoteTo maps inf/nan (exponent 31) to large finite numbers.
template <class VU16>
HWY_INLINE VF F16BitsToF32(DF df, VU16 h) {
  const hn::RebindToUnsigned<DF> du;
  const hn::RebindToSigned<DF> di;
  const auto b = hn::PromoteTo(du, h);
  const auto sign = hn::ShiftLeft<16>(hn::And(b, hn::Set(du, 0x8000u)));
  const auto exp = hn::And(hn::ShiftRight<10>(b), hn::Set(du, 0x1Fu));
  const auto mant = hn::And(b, hn::Set(du, 0x3FFu));
  const auto normal = hn::Or(hn::ShiftLeft<23>(hn::Add(exp, hn::Set(du, 112u))), hn::ShiftLeft<13>(mant));
  const auto infnan = hn::Or(hn::Set(du, 0x7F800000u), hn::ShiftLeft<13>(mant));
  // Subnormal (and zero): mant * 2^-24, exact in fp32.
  const auto sub = hn::BitCast(du, hn::Mul(hn::ConvertTo(df, hn::BitCast(di, mant)), hn::Set(df, 1.0f / 16777216.0f)));
  const auto mag = hn::IfThenElse(hn::Eq(exp, hn::Zero(du)), sub,
                                  hn::IfThenElse(hn::Eq(exp, hn::Set(du, 0x1Fu)), infnan, normal));
  return hn::BitCast(df, hn::Or(mag, sign));
}

// Storage format -> element type and a load of Lanes(DF) consecutive weights as fp32.
template <WeightFormat F>
struct Fmt;

template <>
struct Fmt<WeightFormat::F32> {
  using Elem = float;
  static HWY_INLINE VF Load(DF df, const float* HWY_RESTRICT p) { return hn::LoadU(df, p); }
};

template <>
struct Fmt<WeightFormat::BF16> {
  using Elem = uint16_t;
  static HWY_INLINE VF Load(DF df, const uint16_t* HWY_RESTRICT p) {
    const hn::Rebind<uint16_t, DF> du16;
    const hn::RebindToUnsigned<DF> du32;
    return hn::BitCast(df, hn::ShiftLeft<16>(hn::PromoteTo(du32, hn::LoadU(du16, p))));
  }
};

template <>
struct Fmt<WeightFormat::F16> {
  using Elem = uint16_t;
  static HWY_INLINE VF Load(DF df, const uint16_t* HWY_RESTRICT p) {
#if ((HWY_ARCH_X86 && HWY_TARGET <= HWY_AVX2) || (HWY_ARCH_ARM_A64 && HWY_TARGET == HWY_NEON)) && \
    !defined(HWY_DISABLE_F16C)
    const hn::Rebind<hwy::float16_t, DF> dh;
    return hn::PromoteTo(df, hn::LoadU(dh, reinterpret_cast<const hwy::float16_t*>(p)));
#else
    const hn::Rebind<uint16_t, DF> du16;
    return F16BitsToF32(df, hn::LoadU(du16, p));
#endif
  }
};

// One column step of an R x T tile: acc[r][t] += w_r[c..c+N) * x_t[c..c+N).
template <WeightFormat F, size_t R, size_t T>
HWY_INLINE void Step(DF df, const typename Fmt<F>::Elem* HWY_RESTRICT w, size_t ldw, const float* HWY_RESTRICT x,
                     size_t ldx, VF (&acc)[R][T]) {
  VF xv[T];
  for (size_t t = 0; t < T; ++t) xv[t] = hn::LoadU(df, x + t * ldx);
  for (size_t r = 0; r < R; ++r) {
    const VF wv = Fmt<F>::Load(df, w + r * ldw);
    for (size_t t = 0; t < T; ++t) acc[r][t] = hn::MulAdd(wv, xv[t], acc[r][t]);
  }
}

// y[t * ldy + r] = dot(w row r, x row t) for an R-row x T-token tile; w rows and x rows are `cols` long.
template <WeightFormat F, size_t R, size_t T>
HWY_NOINLINE void Tile(const typename Fmt<F>::Elem* HWY_RESTRICT w, const float* HWY_RESTRICT x, size_t cols,
                       float* HWY_RESTRICT y, size_t ldy) {
  using Elem = typename Fmt<F>::Elem;
  const DF df;
  const size_t N = hn::Lanes(df);
  VF acc[R][T];
  for (size_t r = 0; r < R; ++r)
    for (size_t t = 0; t < T; ++t) acc[r][t] = hn::Zero(df);

  size_t c = 0;
  if constexpr (T == 1) {
    // One token streams the weights: fetch the next row block's bytes at the same column into L2 while this one
    // runs (small matrices end before the hardware prefetcher ramps up).
    constexpr size_t kLine = 64 / sizeof(Elem);
    for (; c + kLine <= cols; c += kLine) {
      for (size_t r = 0; r < R; ++r) __builtin_prefetch(w + (R + r) * cols + c, 0, 2);
      for (size_t k = 0; k < kLine; k += N) Step<F, R, T>(df, w + c + k, cols, x + c + k, cols, acc);
    }
  }
  for (; c + N <= cols; c += N) Step<F, R, T>(df, w + c, cols, x + c, cols, acc);
  if (c < cols) {
    // Ragged tail: copy into zero-padded buffers instead of reading past the end (no masked loads on every target).
    const size_t rem = cols - c;
    HWY_ALIGN Elem wt[R * kMaxLanes] = {};
    HWY_ALIGN float xt[T * kMaxLanes] = {};
    for (size_t r = 0; r < R; ++r) std::memcpy(wt + r * kMaxLanes, w + r * cols + c, rem * sizeof(Elem));
    for (size_t t = 0; t < T; ++t) std::memcpy(xt + t * kMaxLanes, x + t * cols + c, rem * sizeof(float));
    Step<F, R, T>(df, wt, kMaxLanes, xt, kMaxLanes, acc);
  }
  HWY_ALIGN float o[R * T];
  sum_lanes::SumTile(acc, o);
  for (size_t r = 0; r < R; ++r)
    for (size_t t = 0; t < T; ++t) y[t * ldy + r] = o[r * T + t];
}

// Rows [r0, r0 + nr) (nr <= kBlockRows) for tokens [t0, t1).
template <WeightFormat F>
void RowBlock(const typename Fmt<F>::Elem* HWY_RESTRICT W, size_t cols, size_t rows, size_t r0, size_t nr,
              const float* HWY_RESTRICT X, size_t t0, size_t t1, float* HWY_RESTRICT Y) {
  const auto* w = W + r0 * cols;
  if (nr == kBlockRows) {
    size_t t = t0;
    for (; t + kTileTokens <= t1; t += kTileTokens)
      for (size_t i = 0; i < kBlockRows; i += kTileRows)
        Tile<F, kTileRows, kTileTokens>(w + i * cols, X + t * cols, cols, Y + t * rows + r0 + i, rows);
    for (; t < t1; ++t) Tile<F, kBlockRows, 1>(w, X + t * cols, cols, Y + t * rows + r0, rows);
    return;
  }
  for (size_t i = 0; i < nr; ++i) {
    size_t t = t0;
    for (; t + kTileTokens <= t1; t += kTileTokens)
      Tile<F, 1, kTileTokens>(w + i * cols, X + t * cols, cols, Y + t * rows + r0 + i, rows);
    for (; t < t1; ++t) Tile<F, 1, 1>(w + i * cols, X + t * cols, cols, Y + t * rows + r0 + i, rows);
  }
}

template <WeightFormat F>
void MatmulFmt(const WeightMatrix& Wm, const float* X, size_t n_tokens, float* Y, ThreadPool& pool) {
  const auto* W = static_cast<const typename Fmt<F>::Elem*>(Wm.data);
  const size_t rows = static_cast<size_t>(Wm.rows), cols = static_cast<size_t>(Wm.cols);
  const size_t n_blocks = (rows + kBlockRows - 1) / kBlockRows;
  // Enough multiply-adds per chunk that scheduling stays cheap next to the work.
  const size_t work_per_block = kBlockRows * std::max<size_t>(cols, 1) * n_tokens;
  const size_t grain = std::max<size_t>(1, (size_t{1} << 16) / work_per_block);
  pool.parallel_for(n_blocks, grain, [&](size_t b0, size_t b1) {
    for (size_t t0 = 0; t0 < n_tokens; t0 += kTokenBlock) {
      const size_t t1 = std::min(n_tokens, t0 + kTokenBlock);
      for (size_t b = b0; b < b1; ++b) {
        const size_t r0 = b * kBlockRows;
        RowBlock<F>(W, cols, rows, r0, std::min(kBlockRows, rows - r0), X, t0, t1, Y);
      }
    }
  });
}

void MatmulF32T(const WeightMatrix& W, const float* X, size_t n, float* Y, ThreadPool& p) {
  MatmulFmt<WeightFormat::F32>(W, X, n, Y, p);
}
void MatmulF16T(const WeightMatrix& W, const float* X, size_t n, float* Y, ThreadPool& p) {
  MatmulFmt<WeightFormat::F16>(W, X, n, Y, p);
}
void MatmulBF16T(const WeightMatrix& W, const float* X, size_t n, float* Y, ThreadPool& p) {
  MatmulFmt<WeightFormat::BF16>(W, X, n, Y, p);
}

// Same operation sequence as a one-row, one-token F32 matmul tile, so dot(w, x) == matmul of that row.
float DotT(const float* a, const float* b, size_t n) {
  float out;
  Tile<WeightFormat::F32, 1, 1>(a, b, n, &out, 1);
  return out;
}

const char* TargetNameT() { return hwy::TargetName(HWY_TARGET); }

}  // namespace HWY_NAMESPACE
}  // namespace zaya
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace zaya {

HWY_EXPORT(MatmulF32T);
HWY_EXPORT(MatmulF16T);
HWY_EXPORT(MatmulBF16T);
HWY_EXPORT(DotT);
HWY_EXPORT(TargetNameT);

void f32_product(const WeightMatrix& W, const float* X, size_t n, float* Y, ThreadPool& pool) {
  HWY_DYNAMIC_DISPATCH(MatmulF32T)(W, X, n, Y, pool);
}
void f16_product(const WeightMatrix& W, const float* X, size_t n, float* Y, ThreadPool& pool) {
  HWY_DYNAMIC_DISPATCH(MatmulF16T)(W, X, n, Y, pool);
}
void bf16_product(const WeightMatrix& W, const float* X, size_t n, float* Y, ThreadPool& pool) {
  HWY_DYNAMIC_DISPATCH(MatmulBF16T)(W, X, n, Y, pool);
}

float dot(const float* a, const float* b, size_t n) { return HWY_DYNAMIC_DISPATCH(DotT)(a, b, n); }

const char* simd_target_name() { return HWY_DYNAMIC_DISPATCH(TargetNameT)(); }

namespace kernels_testing {

std::vector<int64_t> available_targets() { return hwy::SupportedAndGeneratedTargets(); }

void force_target(int64_t target) { hwy::SetSupportedTargetsForTest(target); }

}  // namespace kernels_testing
}  // namespace zaya
#endif  // HWY_ONCE
