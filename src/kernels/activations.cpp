// Element-wise activations with Highway runtime dispatch. Every output element is a function of its own inputs
// only, so splitting the work over threads cannot change a bit.

#include <algorithm>
#include <cmath>
#include <cstring>

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/activations.cpp"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>
#include <hwy/contrib/math/math-inl.h>

#include "kernels/kernels.h"
#include "util/thread_pool.h"

HWY_BEFORE_NAMESPACE();
namespace zaya {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

using DF = hn::ScalableTag<float>;
using VF = hn::Vec<DF>;

constexpr size_t kMaxLanes = HWY_MAX_BYTES / sizeof(float);

// g / (1 + e^-g) · u. Highway's Exp is only valid up to +104 (it wraps beyond), so -g is clamped there: e^100
// already overflows to inf, and g / inf is the same ∓0 that std::exp gives.
HWY_INLINE VF SiluMul(DF df, VF g, VF u) {
  const VF e = hn::Exp(df, hn::Min(hn::Neg(g), hn::Set(df, 100.0f)));
  return hn::Mul(hn::Div(g, hn::Add(hn::Set(df, 1.0f), e)), u);
}

void SiluMulT(const float* gate, const float* up, size_t n, float* out) {
  const DF df;
  const size_t N = hn::Lanes(df);
  size_t i = 0;
  for (; i + N <= n; i += N)
    hn::StoreU(SiluMul(df, hn::LoadU(df, gate + i), hn::LoadU(df, up + i)), df, out + i);
  if (i < n) {
    const size_t rem = n - i;
    HWY_ALIGN float g[kMaxLanes] = {}, u[kMaxLanes] = {};
    std::memcpy(g, gate + i, rem * sizeof(float));
    std::memcpy(u, up + i, rem * sizeof(float));
    hn::Store(SiluMul(df, hn::Load(df, g), hn::Load(df, u)), df, g);
    std::memcpy(out + i, g, rem * sizeof(float));
  }
}

}  // namespace HWY_NAMESPACE
}  // namespace zaya
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace zaya {

HWY_EXPORT(SiluMulT);

void silu_mul(const float* gate, const float* up, size_t n, float* out) {
  // Chunks large enough that scheduling stays cheap next to the exps.
  constexpr size_t kGrain = 1 << 14;
  if (n <= kGrain) return HWY_DYNAMIC_DISPATCH(SiluMulT)(gate, up, n, out);
  default_pool().parallel_for(n, kGrain, [&](size_t b, size_t e) {
    HWY_DYNAMIC_DISPATCH(SiluMulT)(gate + b, up + b, e - b, out + b);
  });
}

void silu_mul_ref(const float* gate, const float* up, size_t n, float* out) {
  for (size_t i = 0; i < n; ++i) {
    const double g = gate[i];
    out[i] = static_cast<float>(g / (1.0 + std::exp(-g)) * up[i]);
  }
}

}  // namespace zaya
#endif  // HWY_ONCE
