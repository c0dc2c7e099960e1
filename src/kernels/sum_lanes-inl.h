// The horizontal sum that ends every fp32 dot product of the float tiles (matmul_fast.cpp) and the attention scores
// (attention.cpp): SumLanes for one accumulator, SumLanes16 for sixteen at once with the same bits, SumTile for a
// register tile. Highway's -inl.h convention (included once per target after foreach_target.h, hence the toggling include guard).
//
// On 512-bit targets the order is fixed here rather than left to the compiler's reduce intrinsic: lanes i and i+8,
// then i and i+4, then i and i+2, then 0 and 1 (the tree GCC's _mm512_reduce_add_ps uses). A 4×4 tile's 16 sums
// then share the shuffles — 30 shuffles and 15 adds instead of ~8 operations per sum, which matters for short dot
// products (head_dim 128, the conv's 256 columns) — and give exactly the bits a single sum gives, so a row's result
// does not depend on which tile computed it. Other targets use Highway's SumOfLanes for both.
#if defined(ZAYA_KERNELS_SUM_LANES_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef ZAYA_KERNELS_SUM_LANES_INL_H_
#undef ZAYA_KERNELS_SUM_LANES_INL_H_
#else
#define ZAYA_KERNELS_SUM_LANES_INL_H_
#endif

#include <cstddef>

#include <hwy/highway.h>

HWY_BEFORE_NAMESPACE();
namespace zaya {
namespace HWY_NAMESPACE {
namespace sum_lanes {
namespace hn = hwy::HWY_NAMESPACE;

using DF = hn::ScalableTag<float>;
using VF = hn::Vec<DF>;

#if HWY_TARGET <= HWY_AVX3 && HWY_ARCH_X86
constexpr bool kBatched = true;

HWY_INLINE float SumLanes(VF v) {
  const __m512 x = v.raw;
  const __m256 a = _mm256_add_ps(_mm512_castps512_ps256(x), _mm512_extractf32x8_ps(x, 1));  // i + (i+8)
  const __m128 b = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));     // i + (i+4)
  const __m128 c = _mm_add_ps(b, _mm_movehl_ps(b, b));                                     // i + (i+2)
  return _mm_cvtss_f32(_mm_add_ss(c, _mm_movehdup_ps(c)));                                 // 0 + 1
}

// out[k] = SumLanes(v[k]) for k < 16, bit for bit.
HWY_INLINE void SumLanes16(const VF* v, float* out) {
  __m512 s1[8], s2[4], s3[2];
  for (int m = 0; m < 8; ++m) {  // [a(v_2m) | a(v_2m+1)], a[i] = v[i] + v[i+8]
    const __m512 A = v[2 * m].raw, B = v[2 * m + 1].raw;
    s1[m] = _mm512_add_ps(_mm512_shuffle_f32x4(A, B, _MM_SHUFFLE(1, 0, 1, 0)),
                          _mm512_shuffle_f32x4(A, B, _MM_SHUFFLE(3, 2, 3, 2)));
  }
  for (int p = 0; p < 4; ++p)  // quad q: b(v_4p+q), b[i] = a[i] + a[i+4]
    s2[p] = _mm512_add_ps(_mm512_shuffle_f32x4(s1[2 * p], s1[2 * p + 1], _MM_SHUFFLE(2, 0, 2, 0)),
                          _mm512_shuffle_f32x4(s1[2 * p], s1[2 * p + 1], _MM_SHUFFLE(3, 1, 3, 1)));
  for (int u = 0; u < 2; ++u)  // quad q: c(v_8u+q), c(v_8u+4+q), c[i] = b[i] + b[i+2]
    s3[u] = _mm512_add_ps(_mm512_shuffle_ps(s2[2 * u], s2[2 * u + 1], _MM_SHUFFLE(1, 0, 1, 0)),
                          _mm512_shuffle_ps(s2[2 * u], s2[2 * u + 1], _MM_SHUFFLE(3, 2, 3, 2)));
  // Lane 4q+m: the sum of v_4m+q.
  const __m512 r = _mm512_add_ps(_mm512_shuffle_ps(s3[0], s3[1], _MM_SHUFFLE(2, 0, 2, 0)),
                                 _mm512_shuffle_ps(s3[0], s3[1], _MM_SHUFFLE(3, 1, 3, 1)));
  const __m512i order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
  _mm512_storeu_ps(out, _mm512_permutexvar_ps(order, r));
}
#else
constexpr bool kBatched = false;

HWY_INLINE float SumLanes(VF v) { return hn::GetLane(hn::SumOfLanes(DF(), v)); }

HWY_INLINE void SumLanes16(const VF* v, float* out) {
  for (size_t k = 0; k < 16; ++k) out[k] = SumLanes(v[k]);
}
#endif

// out[r·T + t] = SumLanes(acc[r][t]) for an R × T register tile: sixteen at a time through the shared tree.
template <size_t R, size_t T>
HWY_INLINE void SumTile(const VF (&acc)[R][T], float* out) {
  size_t i = 0;
  if constexpr (kBatched)
    for (; i + 16 <= R * T; i += 16) SumLanes16(&acc[0][0] + i, out + i);
  for (; i < R * T; ++i) out[i] = SumLanes((&acc[0][0])[i]);
}

}  // namespace sum_lanes
}  // namespace HWY_NAMESPACE
}  // namespace zaya
HWY_AFTER_NAMESPACE();

#endif  // include guard
