// Error-minimising scale choice for the stored formats (zaya/quant.h: affine_quantize_row_search,
// mxtq_quantize_row_search). The output format is untouched: only which scale/bias/norm and codes are written.
#include <algorithm>
#include <cmath>
#include <vector>

#include "zaya/error.h"
#include "tensor/quant_formats.h"
#include "io/dtype.h"

namespace zaya::quant {

namespace {

float f16_round(float v) { return f16_to_f32(f32_to_f16(v)); }

// Codes for (s, b) as the reader will use them, and the weighted squared error of q·s + b (fp32, as dequantized).
double code_group(const float* x, const float* wt, int g, int nmax, float s, float b, uint8_t* codes) {
  double err = 0;
  const float inv = 1.0f / s;  // any rounding of the code is fine: the error below is measured exactly
  for (int j = 0; j < g; ++j) {
    float q = std::nearbyint((x[j] - b) * inv);
    q = std::min(std::max(q, 0.0f), static_cast<float>(nmax));
    codes[j] = static_cast<uint8_t>(q);
    const float qs = q * s;
    const double d = static_cast<double>(x[j]) - static_cast<double>(qs + b);
    err += wt[j] * d * d;
  }
  return err;
}

// Weighted least-squares (s, b) for fixed codes: minimises Σ wt·(x − (q·s + b))². False when the codes are all equal.
bool fit_group(const float* x, const float* wt, int g, const uint8_t* codes, float* s, float* b) {
  double sw = 0, sq = 0, sqq = 0, sx = 0, sxq = 0;
  for (int j = 0; j < g; ++j) {
    const double w = wt[j], q = codes[j];
    sw += w, sq += w * q, sqq += w * q * q, sx += w * x[j], sxq += w * x[j] * q;
  }
  const double det = sw * sqq - sq * sq;
  if (!(det > 1e-12 * sw * sqq)) return false;
  *s = static_cast<float>((sw * sxq - sx * sq) / det);
  *b = static_cast<float>((sqq * sx - sq * sxq) / det);
  return std::isfinite(*s) && std::isfinite(*b);
}

struct GroupSearch {
  const float* x;
  const float* wt;
  int g, nmax;
  std::vector<uint8_t> codes, trial, best_codes;
  float best_s = 0, best_b = 0;
  double best_err = INFINITY;

  GroupSearch(const float* x_, const float* wt_, int g_, int nmax_)
      : x(x_), wt(wt_), g(g_), nmax(nmax_), codes(g_), trial(g_), best_codes(g_) {}

  // Tries (s, b) rounded to float16, then refits to its own codes while that lowers the error.
  void consider(float s, float b) {
    for (int round = 0; round < 4; ++round) {
      const float s16 = f16_round(s), b16 = f16_round(b);
      if (!std::isfinite(s16) || !std::isfinite(b16) || s16 == 0.0f) return;
      const double err = code_group(x, wt, g, nmax, s16, b16, trial.data());
      if (err < best_err) best_err = err, best_s = s16, best_b = b16, best_codes = trial;
      else if (round > 0) return;  // the refit stopped helping
      if (!fit_group(x, wt, g, trial.data(), &s, &b)) return;
    }
  }
};

}  // namespace

void affine_quantize_row_search(const float* w, int64_t n, int bits, int group_size, ScaleWeighting weighting,
                                uint32_t* packed_row, float* scales, float* biases) {
  // MLX's choice first (validates bits, group size and n).
  affine_quantize_row(w, n, bits, group_size, /*metal_rules=*/true, packed_row, scales, biases);
  const int nmax = (1 << bits) - 1, g = group_size;
  std::vector<float> wt(static_cast<size_t>(n), 1.0f);
  if (weighting == ScaleWeighting::Magnitude) {
    double ss = 0;
    for (int64_t i = 0; i < n; ++i) ss += static_cast<double>(w[i]) * w[i];
    const float rms = static_cast<float>(std::sqrt(ss / static_cast<double>(std::max<int64_t>(n, 1))));
    for (int64_t i = 0; i < n; ++i) wt[i] = rms + std::fabs(w[i]);
    if (rms == 0.0f) std::fill(wt.begin(), wt.end(), 1.0f);
  }
  std::vector<uint8_t> codes(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) codes[i] = static_cast<uint8_t>(unpack_code(packed_row, i, bits));
  for (int64_t gi = 0; gi < n / g; ++gi) {
    const float* x = w + gi * g;
    GroupSearch gs(x, &wt[gi * g], g, nmax);
    gs.consider(scales[gi], biases[gi]);
    float lo = x[0], hi = x[0];
    for (int j = 1; j < g; ++j) lo = std::min(lo, x[j]), hi = std::max(hi, x[j]);
    if (hi > lo) {
      // Code grids with nmax−1 … nmax+1 steps across [lo, hi] (a grid wider than nmax clips the extremes, which the
      // least-squares refit then weighs against the finer steps it buys).
      for (int k = 0; k <= 20; ++k) {
        const float inv = (static_cast<float>(nmax) - 1.0f + 0.1f * static_cast<float>(k)) / (hi - lo);
        for (int j = 0; j < g; ++j) {
          const float q = std::nearbyint((x[j] - lo) * inv);
          gs.codes[j] = static_cast<uint8_t>(std::min(std::max(q, 0.0f), static_cast<float>(nmax)));
        }
        float s = 0, b = 0;
        if (fit_group(x, gs.wt, g, gs.codes.data(), &s, &b)) gs.consider(s, b);
      }
      // Clipped ranges: each end moved inwards by 0–24 % of the range, independently (an outlier on one side).
      for (int i = 0; i <= 6; ++i)
        for (int j = 0; j <= 6; ++j) {
          const float l2 = lo + (hi - lo) * 0.04f * static_cast<float>(i), h2 = hi - (hi - lo) * 0.04f * static_cast<float>(j);
          if (h2 > l2) gs.consider((h2 - l2) / static_cast<float>(nmax), l2);
        }
    }
    if (!std::isfinite(gs.best_err)) continue;  // nothing fits float16 (|w| > 65504): MLX's choice stays
    scales[gi] = gs.best_s;
    biases[gi] = gs.best_b;
    std::copy(gs.best_codes.begin(), gs.best_codes.end(), codes.begin() + gi * g);
  }
  pack_codes(codes.data(), n, bits, packed_row);
}

void mxtq_quantize_row_search(const float* w, int64_t n, int bits, const float* signs, const float* codebook,
                              uint32_t* packed_row, float* norm) {
  mxtq_quantize_row(w, n, bits, signs, codebook, packed_row, norm);  // JANG's choice (validates bits)
  std::vector<float> r(static_cast<size_t>(n));
  mxtq_rotate(w, n, signs, r.data());
  std::vector<uint8_t> idx(static_cast<size_t>(n)), trial(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) idx[i] = static_cast<uint8_t>(mxtq_unpack_index(packed_row, i, bits));
  auto error = [&](float a, const std::vector<uint8_t>& ix) {
    double e = 0;
    for (int64_t i = 0; i < n; ++i) {
      const double d = static_cast<double>(r[i]) - static_cast<double>(a * codebook[ix[i]]);
      e += d * d;
    }
    return e;
  };
  const int n_codes = 1 << bits;
  float best_norm = f16_round(*norm);
  double best = error(best_norm, idx);
  for (int iter = 0; iter < 8; ++iter) {
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; ++i) num += static_cast<double>(r[i]) * codebook[idx[i]], den += codebook[idx[i]] * codebook[idx[i]];
    const float a = den > 0 ? f16_round(static_cast<float>(num / den)) : 0.0f;
    if (!(a > 0.0f) || !std::isfinite(a)) break;
    bool improved = false;
    if (const double e = error(a, idx); e < best) best = e, best_norm = a, improved = true;
    // Nearest codeword of r/a for every coordinate (the codebook is ascending: the midpoints split it).
    for (int64_t i = 0; i < n; ++i) {
      const float u = r[i] / a;
      int k = 0;
      while (k + 1 < n_codes && u > (codebook[k] + codebook[k + 1]) / 2.0f) ++k;
      trial[i] = static_cast<uint8_t>(k);
    }
    if (const double e = error(a, trial); e < best) best = e, best_norm = a, idx = trial, improved = true;
    if (!improved) break;
  }
  *norm = best_norm;
  const int per = 32 / bits;
  std::fill(packed_row, packed_row + mxtq_words(n, bits), 0u);
  for (int64_t i = 0; i < n; ++i) packed_row[i / per] |= static_cast<uint32_t>(idx[i]) << (static_cast<int>(i % per) * bits);
}

}  // namespace zaya::quant
