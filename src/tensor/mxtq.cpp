// JANG MXTQ (bundle-formats §8): Lloyd-Max codebook, block Walsh–Hadamard rotation, row quantizer and packing.
#include <algorithm>
#include <cmath>
#include <vector>

#include "zaya/error.h"
#include "tensor/quant_formats.h"

namespace zaya::quant {

namespace {

void check_mxtq_bits(int bits) {
  if (bits < 1 || bits > 8) throw Error(cat("MXTQ: unsupported bits ", bits, " (expected 1..8)"));
}

// NumPy's pairwise summation of a contiguous float64 array (what np.add.reduce, hence np.trapz, does): blocks of
// up to 128 summed with 8 interleaved accumulators, larger runs split in halves rounded down to a multiple of 8.
// Reproducing the order matters: the codebook must come out identical to the F32 ulp.
template <typename T>
T pairwise_sum(const T* a, int64_t n) {
  if (n < 8) {
    T r = 0;
    for (int64_t i = 0; i < n; ++i) r += a[i];
    return r;
  }
  if (n <= 128) {
    T r[8];
    for (int j = 0; j < 8; ++j) r[j] = a[j];
    int64_t i = 8;
    for (; i < n - (n % 8); i += 8)
      for (int j = 0; j < 8; ++j) r[j] += a[i + j];
    T res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
    for (; i < n; ++i) res += a[i];
    return res;
  }
  int64_t n2 = n / 2;
  n2 -= n2 % 8;
  return pairwise_sum(a, n2) + pairwise_sum(a + n2, n - n2);
}

// np.trapz(y[a:a+m], x[a:a+m]) = add.reduce(diff(x) · (y[1:] + y[:-1]) / 2.0); the reduction starts from the
// additive identity 0.
double trapz(const std::vector<double>& y, const std::vector<double>& x, int64_t a, int64_t m,
             std::vector<double>& scratch) {
  if (m < 2) return 0.0;
  scratch.resize(static_cast<size_t>(m - 1));
  for (int64_t k = 0; k < m - 1; ++k) {
    const double d = x[a + k + 1] - x[a + k];
    scratch[k] = d * (y[a + k + 1] + y[a + k]) / 2.0;
  }
  return 0.0 + pairwise_sum(scratch.data(), m - 1);
}

// np.linspace(start, stop, num): i · step + start, with the last point set to stop exactly.
std::vector<double> linspace(double start, double stop, int64_t num) {
  std::vector<double> v(static_cast<size_t>(num));
  const double step = (stop - start) / static_cast<double>(num - 1);
  for (int64_t i = 0; i < num; ++i) v[i] = static_cast<double>(i) * step + start;
  if (num > 1) v[num - 1] = stop;
  return v;
}

}  // namespace

std::vector<float> mxtq_codebook(int64_t n, int bits) {
  check_mxtq_bits(bits);
  if (n < 1) throw Error(cat("MXTQ codebook: dimension must be positive, got ", n));
  const int64_t n_codes = int64_t{1} << bits;
  const int64_t n_grid = 10000;
  const std::vector<double> grid = linspace(-1.0, 1.0, n_grid);
  std::vector<double> pdf(static_cast<size_t>(n_grid));
  const double d = static_cast<double>(n);
  if (n <= 2) {
    std::fill(pdf.begin(), pdf.end(), 0.5);
  } else {
    // Density of one coordinate of a uniform unit vector in R^n, evaluated in log space (as JANG does).
    const double log_const = std::lgamma(d / 2.0) - 0.5 * std::log(M_PI) - std::lgamma((d - 1.0) / 2.0);
    const double expo = static_cast<double>(n - 3) / 2.0;
    for (int64_t i = 0; i < n_grid; ++i) {
      const double safe = std::max(1.0 - grid[i] * grid[i], 1e-30);
      pdf[i] = std::exp(log_const + expo * std::log(safe));
    }
  }
  std::vector<double> scratch;
  const double total = trapz(pdf, grid, 0, n_grid, scratch);
  if (total > 0)
    for (auto& p : pdf) p = p / total;
  std::vector<double> xp(static_cast<size_t>(n_grid));
  for (int64_t i = 0; i < n_grid; ++i) xp[i] = grid[i] * pdf[i];

  const double support = 3.0 / std::sqrt(static_cast<double>(std::max<int64_t>(n, 1)));
  std::vector<double> c = linspace(-support, support, n_codes);
  std::vector<double> bounds(static_cast<size_t>(n_codes + 1)), next(static_cast<size_t>(n_codes));
  for (int iter = 0; iter < 200; ++iter) {
    bounds[0] = -1.0;
    bounds[n_codes] = 1.0;
    for (int64_t k = 0; k + 1 < n_codes; ++k) bounds[k + 1] = (c[k] + c[k + 1]) / 2.0;
    for (int64_t k = 0; k < n_codes; ++k) {
      const double lo = bounds[k], hi = bounds[k + 1];
      const bool last = k == n_codes - 1;
      // The cell [lo, hi) (closed for the last one) is a contiguous run of the ascending grid.
      int64_t a = 0;
      while (a < n_grid && !(grid[a] >= lo)) ++a;
      int64_t e = a;
      while (e < n_grid && (last ? grid[e] <= hi : grid[e] < hi)) ++e;
      const int64_t m = e - a;
      if (m <= 1) {
        next[k] = c[k];
        continue;
      }
      const double mass = trapz(pdf, grid, a, m, scratch);
      const double moment = trapz(xp, grid, a, m, scratch);
      next[k] = moment / std::max(mass, 1e-10);
    }
    // np.allclose(old, new, rtol=1e-5, atol=1e-10); on convergence the previous centroids are kept.
    bool close = true;
    for (int64_t k = 0; k < n_codes; ++k)
      if (!(std::fabs(c[k] - next[k]) <= 1e-10 + 1e-5 * std::fabs(next[k]))) close = false;
    if (close) break;
    c = next;
  }
  std::sort(c.begin(), c.end());
  std::vector<float> out(static_cast<size_t>(n_codes));
  for (int64_t k = 0; k < n_codes; ++k) out[k] = static_cast<float>(c[k]);
  return out;
}

std::vector<int64_t> hadamard_blocks(int64_t n) {
  std::vector<int64_t> blocks;
  for (int64_t rem = n; rem > 0;) {
    int64_t p = 1;
    while (p * 2 <= rem) p *= 2;
    blocks.push_back(p);
    rem -= p;
  }
  return blocks;
}

void hadamard_blocks_inplace(float* v, int64_t n) {
  int64_t off = 0;
  for (int64_t b : hadamard_blocks(n)) {
    float* x = v + off;
    for (int64_t h = 1; h < b; h *= 2)
      for (int64_t s = 0; s < b; s += 2 * h)
        for (int64_t i = s; i < s + h; ++i) {
          const float a = x[i], c = x[i + h];
          x[i] = a + c;
          x[i + h] = a - c;
        }
    // JANG multiplies by the Python double 1/√b, which MLX takes as a float32 scalar.
    const float norm = static_cast<float>(1.0 / std::sqrt(static_cast<double>(b)));
    for (int64_t i = 0; i < b; ++i) x[i] *= norm;
    off += b;
  }
}

void mxtq_rotate(const float* x, int64_t n, const float* signs, float* out) {
  for (int64_t i = 0; i < n; ++i) out[i] = x[i] * signs[i];
  hadamard_blocks_inplace(out, n);
}

int mxtq_per_word(int bits) {
  check_mxtq_bits(bits);
  return 32 / bits;
}

int64_t mxtq_words(int64_t n, int bits) {
  const int per = mxtq_per_word(bits);
  return (n + per - 1) / per;
}

uint32_t mxtq_unpack_index(const uint32_t* packed_row, int64_t i, int bits) {
  const int per = 32 / bits;
  const int shift = static_cast<int>(i % per) * bits;
  return (packed_row[i / per] >> shift) & ((1u << bits) - 1u);
}

void mxtq_quantize_row(const float* w, int64_t n, int bits, const float* signs, const float* codebook,
                       uint32_t* packed_row, float* norm) {
  check_mxtq_bits(bits);
  std::vector<float> r(static_cast<size_t>(n));
  mxtq_rotate(w, n, signs, r.data());
  // Sum of squares in fp32 in NumPy's pairwise order. (JANG sums on the MLX GPU, whose order is unknown: a 1-ulp
  // norm difference, hence a rare index flip, is possible against real bundles — bundle-formats §8.5.)
  std::vector<float> sq(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) sq[i] = r[i] * r[i];
  const float nrm = std::sqrt(pairwise_sum(sq.data(), n));
  *norm = nrm;
  const float denom = std::max(nrm, 1e-10f);
  const int n_codes = 1 << bits;
  std::vector<float> beta(static_cast<size_t>(n_codes - 1));
  for (int k = 0; k + 1 < n_codes; ++k) beta[k] = (codebook[k] + codebook[k + 1]) / 2.0f;
  const int per = 32 / bits;
  const int64_t words = (n + per - 1) / per;
  std::fill(packed_row, packed_row + words, 0u);
  for (int64_t i = 0; i < n; ++i) {
    const float u = r[i] / denom;
    uint32_t idx = 0;
    for (float b : beta) idx += u > b ? 1u : 0u;  // strict comparison, as JANG counts boundaries passed
    packed_row[i / per] |= idx << (static_cast<int>(i % per) * bits);
  }
}

void mxtq_dequantize_row(const uint32_t* packed_row, float norm, int64_t n, int bits, const float* signs,
                         const float* codebook, float* out) {
  check_mxtq_bits(bits);
  for (int64_t i = 0; i < n; ++i) out[i] = norm * codebook[mxtq_unpack_index(packed_row, i, bits)];
  hadamard_blocks_inplace(out, n);  // H is its own inverse
  for (int64_t i = 0; i < n; ++i) out[i] *= signs[i];
}

}  // namespace zaya::quant
