#include "kernels/mxtq_q16.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "io/dtype.h"
#include "kernels/affine_q16.h"
#include "tensor/quant_formats.h"

namespace zaya::mxtq16 {

namespace {

float codebook_amax(const std::vector<float>& c) {
  float amax = 0.0f;
  for (float v : c) amax = std::max(amax, std::fabs(v));
  return amax;
}

}  // namespace

bool supported(const WeightMatrix& W) {
  if (W.format != WeightFormat::Mxtq || W.bits != 4 || !W.mxtq || !W.norms || !W.data) return false;
  if (W.cols <= 0 || W.cols % static_cast<int64_t>(q16::kBlock) != 0) return false;
  const MxtqTables& t = *W.mxtq;
  if (t.codebook.size() != 16 || t.signs.size() < static_cast<size_t>(W.cols)) return false;
  for (float v : t.codebook)
    if (!std::isfinite(v)) return false;
  return codebook_amax(t.codebook) > 0.0f;
}

Codebook int16_codebook(const WeightMatrix& W) {
  const std::vector<float>& c = W.mxtq->codebook;
  const float amax = codebook_amax(c);
  const float k = static_cast<float>(kCodeMax) / amax;
  Codebook cb;
  for (size_t i = 0; i < 16; ++i)
    cb.cq[i] = static_cast<int16_t>(std::clamp<long>(std::lrintf(c[i] * k), -kCodeMax, kCodeMax));
  cb.inv_k = amax / static_cast<float>(kCodeMax);
  return cb;
}

void matmul_ref(const WeightMatrix& W, const float* X, size_t n_tokens, float* Y) {
  const size_t rows = W.rows, cols = W.cols;
  const Codebook cb = int16_codebook(W);
  std::vector<float> xr(n_tokens * cols);
  for (size_t t = 0; t < n_tokens; ++t)
    quant::mxtq_rotate(X + t * cols, static_cast<int64_t>(cols), W.mxtq->signs.data(), &xr[t * cols]);
  q16::Activations a;
  q16::quantize_activations(xr.data(), n_tokens, cols, cols, a);
  const size_t stride = a.blocks16 * q16::kBlock;
  std::vector<int32_t> cq(cols);
  for (size_t r = 0; r < rows; ++r) {
    const auto* w = reinterpret_cast<const uint32_t*>(W.row(static_cast<int64_t>(r)));
    for (size_t i = 0; i < cols; ++i) cq[i] = cb.cq[quant::mxtq_unpack_index(w, static_cast<int64_t>(i), 4)];
    const float scale = f16_to_f32(W.norms[r]) * cb.inv_k;
    for (size_t t = 0; t < n_tokens; ++t) {
      const int16_t* xq = &a.xq[t * stride];
      float F[q16::kLanes] = {};
      // The padding blocks of the last 16-block segment add fma(0, 0, F) like the SIMD paths' whole segments.
      for (size_t b = 0; b < a.blocks16; ++b) {
        int64_t isum = 0;
        if (b < a.blocks)
          for (size_t i = b * q16::kBlock; i < (b + 1) * q16::kBlock; ++i) isum += int64_t{cq[i]} * xq[i];
        F[b % q16::kLanes] = std::fma(static_cast<float>(isum), a.d[t * a.blocks16 + b], F[b % q16::kLanes]);
      }
      Y[t * rows + r] = q16::reduce16(F) * scale;
    }
  }
}

}  // namespace zaya::mxtq16
