// BF16 weights in BF16 arithmetic (the `reduced` slot of the BF16 row, Precision::Fast): the activations are rounded
// to bf16 once per product and every 32 columns meet the stored weights in one AVX-512 BF16 dot product
// (vdpbf16ps), fp32 accumulation. The canonical arithmetic, which bf16_dot_reference() computes in scalar code:
//
//   xb      = bf16(x), round to nearest even (f32_to_bf16); x and w zero-padded to a multiple of 32 columns
//   acc[j]  = 0 for the 16 lanes j; for every 32-column chunk k in increasing order, lane j takes the column pair
//             (32k + 2j, 32k + 2j + 1): acc[j] += w·x of the odd column, then += w·x of the even column — each
//             product exact in fp32, each sum rounded to nearest even, bf16 subnormal inputs read as zero and
//             subnormal sums flushed to zero (what vdpbf16ps does: DAZ/FTZ, MXCSR ignored)
//   y       = q16::reduce16(acc): pairs (i, i+8), (i, i+4), (i, i+2), (i, i+1)
//
// One token (decode) streams each row once, four rows per pass; several tokens run a 4-row × 4-token register
// tile over a block of up to 64 cache-resident tokens. Both issue the same instruction sequence per output, so
// results do not depend on the batch or the thread count. Only the AVX3 / AVX3_DL targets of a CPU with
// AVX512_BF16 have the path (bf16_dot_accepts); elsewhere the format table falls back to the fp32 tiles, and a
// direct call runs the scalar reference.
#define HWY_WANT_AVX3_DL 1

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/bf16_dot_hwy.cpp"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>
#include <hwy/aligned_allocator.h>

#if HWY_ARCH_X86
#include <cpuid.h>
#endif

#include "io/dtype.h"
#include "kernels/affine_q16.h"
#include "kernels/quant_matmul.h"
#include "util/thread_pool.h"

#ifndef ZAYA_BF16_DOT_ONCE
#define ZAYA_BF16_DOT_ONCE
namespace zaya::bf16dot {
constexpr size_t kChunk = 32;        // columns per dot-product instruction
constexpr size_t kBlockRows = 4;     // rows per thread-pool work item and per register tile
constexpr size_t kTileTokens = 4;    // tokens sharing one pass over a tile's weights
constexpr size_t kTokenBlock = 64;   // tokens whose bf16 activations stay in L2 while rows stream past
inline size_t padded(size_t cols) { return (cols + kChunk - 1) / kChunk * kChunk; }

// Whether the CPU executes AVX512_BF16 (CPUID.(7,1):EAX bit 5).
inline bool cpu_has_avx512_bf16() {
#if HWY_ARCH_X86
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (!__get_cpuid_count(7, 1, &a, &b, &c, &d)) return false;
  return (a >> 5) & 1;
#else
  return false;
#endif
}
}  // namespace zaya::bf16dot
#endif

HWY_BEFORE_NAMESPACE();
namespace zaya {
namespace HWY_NAMESPACE {

using namespace bf16dot;

#if HWY_TARGET == HWY_AVX3 || HWY_TARGET == HWY_AVX3_DL

// acc += the bf16 pair products of a and b per fp32 lane. Inline asm: hwy 1.0.3's target attributes lack
// avx512bf16, so the intrinsic is not available here; callers check cpu_has_avx512_bf16() first.
HWY_INLINE __m512 Dp(__m512 acc, __m512i a, __m512i b) {
  asm("vdpbf16ps %2, %1, %0" : "+v"(acc) : "v"(a), "v"(b));
  return acc;
}

// q16::reduce16 of the 16 lanes: (i, i+8), (i, i+4), (0, 2)(1, 3), then (0, 1).
HWY_INLINE float Reduce16(__m512 v) {
  const __m256 a = _mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1));
  __m128 b = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
  b = _mm_add_ps(b, _mm_movehl_ps(b, b));
  b = _mm_add_ss(b, _mm_movehdup_ps(b));
  return _mm_cvtss_f32(b);
}

// f32_to_bf16 of 16 values (round to nearest even; NaN stays a quiet NaN).
HWY_INLINE __m256i RoundToBf16(__m512i u) {
  const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
  const __m512i rounded = _mm512_add_epi32(u, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7FFF)));
  const __mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(u, _mm512_set1_epi32(0x7FFFFFFF)),
                                                _mm512_set1_epi32(0x7F800000));
  const __m512i quiet = _mm512_or_si512(u, _mm512_set1_epi32(0x400000));
  return _mm512_cvtepi32_epi16(_mm512_srli_epi32(_mm512_mask_mov_epi32(rounded, nan, quiet), 16));
}

// Tokens [t0, t1) of X as bf16 rows of `ld` (padded) columns, zeros past `cols`.
void ConvertTokens(const float* X, size_t cols, size_t ld, size_t t0, size_t t1, uint16_t* xb) {
  for (size_t t = t0; t < t1; ++t) {
    const float* x = X + t * cols;
    uint16_t* o = xb + t * ld;
    size_t c = 0;
    for (; c + 16 <= cols; c += 16)
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(o + c), RoundToBf16(_mm512_loadu_si512(x + c)));
    for (; c < cols; ++c) o[c] = f32_to_bf16(x[c]);
    std::fill(o + cols, o + ld, uint16_t{0});
  }
}

// y[t·ldy + r] for an R-row × T-token tile: weight rows at w + r·ldw (cols long, the tail read masked),
// activation rows at x + t·ldx (padded with zeros).
template <size_t R, size_t T>
HWY_INLINE void Tile(const uint16_t* HWY_RESTRICT w, size_t ldw, const uint16_t* HWY_RESTRICT x, size_t ldx,
                     size_t cols, float* HWY_RESTRICT y, size_t ldy) {
  __m512 acc[R][T];
  for (size_t r = 0; r < R; ++r)
    for (size_t t = 0; t < T; ++t) acc[r][t] = _mm512_setzero_ps();
  size_t c = 0;
  for (; c + kChunk <= cols; c += kChunk) {
    __m512i xv[T];
    for (size_t t = 0; t < T; ++t) xv[t] = _mm512_loadu_si512(x + t * ldx + c);
    for (size_t r = 0; r < R; ++r) {
      const __m512i wv = _mm512_loadu_si512(w + r * ldw + c);
      for (size_t t = 0; t < T; ++t) acc[r][t] = Dp(acc[r][t], wv, xv[t]);
    }
  }
  if (c < cols) {
    const __mmask32 m = static_cast<__mmask32>((uint64_t{1} << (cols - c)) - 1);
    __m512i xv[T];
    for (size_t t = 0; t < T; ++t) xv[t] = _mm512_loadu_si512(x + t * ldx + c);
    for (size_t r = 0; r < R; ++r) {
      const __m512i wv = _mm512_maskz_loadu_epi16(m, w + r * ldw + c);
      for (size_t t = 0; t < T; ++t) acc[r][t] = Dp(acc[r][t], wv, xv[t]);
    }
  }
  for (size_t r = 0; r < R; ++r)
    for (size_t t = 0; t < T; ++t) y[t * ldy + r] = Reduce16(acc[r][t]);
}

template <size_t R>
HWY_NOINLINE void Rows(const uint16_t* w, size_t ldw, const uint16_t* xb, size_t ldx, size_t cols, size_t t0,
                       size_t t1, float* Y, size_t rows) {
  size_t t = t0;
  for (; t + kTileTokens <= t1; t += kTileTokens)
    Tile<R, kTileTokens>(w, ldw, xb + t * ldx, ldx, cols, Y + t * rows, rows);
  for (; t < t1; ++t) Tile<R, 1>(w, ldw, xb + t * ldx, ldx, cols, Y + t * rows, rows);
}

bool HasBf16DotT() {
  static const bool has = cpu_has_avx512_bf16();
  return has;
}

void Bf16DotT(const WeightMatrix& W, const float* X, size_t n_tokens, float* Y, ThreadPool& pool) {
  if (!HasBf16DotT()) return bf16_dot_reference(W, X, n_tokens, Y);
  const size_t rows = static_cast<size_t>(W.rows), cols = static_cast<size_t>(W.cols), ld = padded(cols);
  const size_t ldw = W.row_bytes / sizeof(uint16_t);
  // The activations once per product, in parallel over tokens when there are many.
  thread_local hwy::AlignedFreeUniquePtr<uint16_t[]> buf;
  thread_local size_t cap = 0;
  if (cap < n_tokens * ld) buf = hwy::AllocateAligned<uint16_t>(n_tokens * ld), cap = n_tokens * ld;
  uint16_t* xb = buf.get();
  if (n_tokens * cols >= (size_t{1} << 16))
    pool.parallel_for(n_tokens, 1, [&](size_t a, size_t b) { ConvertTokens(X, cols, ld, a, b, xb); });
  else
    ConvertTokens(X, cols, ld, 0, n_tokens, xb);

  const auto* base = static_cast<const uint16_t*>(W.data);
  const size_t n_blocks = (rows + kBlockRows - 1) / kBlockRows;
  const size_t work_per_block = kBlockRows * std::max<size_t>(cols, 1) * n_tokens;
  const size_t grain = std::max<size_t>(1, (size_t{1} << 16) / work_per_block);
  pool.parallel_for(n_blocks, grain, [&](size_t b0, size_t b1) {
    for (size_t t0 = 0; t0 < n_tokens; t0 += kTokenBlock) {
      const size_t t1 = std::min(n_tokens, t0 + kTokenBlock);
      for (size_t b = b0; b < b1; ++b) {
        const size_t r0 = b * kBlockRows, nr = std::min(kBlockRows, rows - r0);
        const uint16_t* w = base + r0 * ldw;
        if (nr == kBlockRows) {
          Rows<kBlockRows>(w, ldw, xb, ld, cols, t0, t1, Y + r0, rows);
        } else {
          for (size_t i = 0; i < nr; ++i) Rows<1>(w + i * ldw, ldw, xb, ld, cols, t0, t1, Y + r0 + i, rows);
        }
      }
    }
  });
}

#else  // no AVX-512 BF16 path on this target

bool HasBf16DotT() { return false; }
void Bf16DotT(const WeightMatrix& W, const float* X, size_t n_tokens, float* Y, ThreadPool&) {
  bf16_dot_reference(W, X, n_tokens, Y);
}

#endif

}  // namespace HWY_NAMESPACE
}  // namespace zaya
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace zaya {

HWY_EXPORT(Bf16DotT);
HWY_EXPORT(HasBf16DotT);

bool bf16_dot_accepts(const WeightMatrix& W) {
  return W.format == WeightFormat::BF16 && HWY_DYNAMIC_DISPATCH(HasBf16DotT)();
}

void bf16_dot_product(const WeightMatrix& W, const float* X, size_t n_tokens, float* Y, ThreadPool& pool) {
  HWY_DYNAMIC_DISPATCH(Bf16DotT)(W, X, n_tokens, Y, pool);
}

namespace {

// A bf16 as vdpbf16ps reads it: subnormals are zero.
float bf16_daz(uint16_t h) { return (h & 0x7F80) == 0 ? ((h & 0x8000) ? -0.0f : 0.0f) : bf16_to_f32(h); }
// A sum as vdpbf16ps writes it: subnormals flushed to a zero of their sign.
float ftz(float v) { return std::fabs(v) < 1.17549435e-38f && v != 0 ? std::copysign(0.0f, v) : v; }

}  // namespace

void bf16_dot_reference(const WeightMatrix& W, const float* X, size_t n_tokens, float* Y) {
  using namespace bf16dot;
  const size_t rows = static_cast<size_t>(W.rows), cols = static_cast<size_t>(W.cols), ld = padded(cols);
  std::vector<float> x(ld), w(ld);
  for (size_t t = 0; t < n_tokens; ++t) {
    std::fill(x.begin(), x.end(), 0.0f);
    for (size_t c = 0; c < cols; ++c) x[c] = bf16_daz(f32_to_bf16(X[t * cols + c]));
    for (size_t r = 0; r < rows; ++r) {
      const auto* p = reinterpret_cast<const uint16_t*>(W.row(static_cast<int64_t>(r)));
      std::fill(w.begin(), w.end(), 0.0f);
      for (size_t c = 0; c < cols; ++c) w[c] = bf16_daz(p[c]);
      float acc[q16::kLanes] = {};
      for (size_t k = 0; k < ld; k += kChunk)
        for (size_t j = 0; j < q16::kLanes; ++j) {
          acc[j] = ftz(acc[j] + w[k + 2 * j + 1] * x[k + 2 * j + 1]);
          acc[j] = ftz(acc[j] + w[k + 2 * j] * x[k + 2 * j]);
        }
      Y[t * rows + r] = q16::reduce16(acc);
    }
  }
}

}  // namespace zaya
#endif  // HWY_ONCE
