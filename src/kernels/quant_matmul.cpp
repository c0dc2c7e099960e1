// Products of the packed formats that decode each row once into a small fp32 buffer (L1-resident) and combine it
// with every token: affine and the MLX fp modes as Σ_g scale_g·Σ(v·x) (+ bias_g·Σx for affine: MLX's own per-group
// form), MXTQ as norm·Σ c[idx]·x̃ with x̃ = H(s ⊙ x) computed once per token (the fast path of the JANG runtimes; the
// inverse rotation is never applied to the weights). What a row's codes and scales are comes from the format table.
#include "kernels/quant_matmul.h"

#include <algorithm>
#include <vector>

#include "kernels/format_table.h"
#include "kernels/kernels.h"
#include "tensor/quant_formats.h"
#include "util/thread_pool.h"
#include "zaya/error.h"

namespace zaya {

void reference_by_rows(const WeightMatrix& W, const float* X, size_t n_tokens, float* Y, ThreadPool& pool,
                       void (*reference)(const WeightMatrix&, const float*, size_t, float*)) {
  pool.parallel_for(W.rows, 16, [&](size_t r0, size_t r1) {
    WeightMatrix part = W.slice_rows(static_cast<int64_t>(r0), static_cast<int64_t>(r1 - r0));
    std::vector<float> y((r1 - r0) * n_tokens);
    reference(part, X, n_tokens, y.data());
    for (size_t t = 0; t < n_tokens; ++t)
      std::copy(y.begin() + static_cast<std::ptrdiff_t>(t * (r1 - r0)),
                y.begin() + static_cast<std::ptrdiff_t>((t + 1) * (r1 - r0)), Y + t * W.rows + r0);
  });
}

void mxtq_product(const WeightMatrix& W, const float* X, size_t n_tokens, float* Y, ThreadPool& pool) {
  const size_t rows = W.rows, cols = W.cols;
  const RowDecodeFn codes_of = format_row(W.format).decode_codes;
  // Rotate every token once: x̃ = H(s ⊙ x).
  std::vector<float> xr(n_tokens * cols);
  const float* s = W.mxtq->signs.data();
  for (size_t t = 0; t < n_tokens; ++t) {
    float* v = &xr[t * cols];
    for (size_t i = 0; i < cols; ++i) v[i] = s[i] * X[t * cols + i];
    quant::hadamard_blocks_inplace(v, static_cast<int64_t>(cols));
  }
  pool.parallel_for(rows, std::max<size_t>(1, 8192 / std::max<size_t>(1, cols * n_tokens)), [&](size_t r0, size_t r1) {
    std::vector<float> codes(cols);
    for (size_t r = r0; r < r1; ++r) {
      codes_of(W, static_cast<int64_t>(r), codes.data());
      const float norm = f16_to_f32(W.norms[r]);
      for (size_t t = 0; t < n_tokens; ++t) Y[t * rows + r] = norm * dot(codes.data(), &xr[t * cols], cols);
    }
  });
}

void grouped_product(const WeightMatrix& W, const float* X, size_t n_tokens, float* Y, ThreadPool& pool) {
  const size_t rows = W.rows, cols = W.cols;
  const size_t G = static_cast<size_t>(W.group_size), groups = cols / G;
  const FormatRow& fmt = format_row(W.format);
  if (!fmt.decode_codes || !fmt.row_scales) throw Error(cat(W.name, ": ", weight_format_name(W.format), " has no group scales"));
  const bool has_bias = W.biases != nullptr;
  // Σx per group per token (the bias term).
  std::vector<float> xsum;
  if (has_bias) {
    xsum.resize(n_tokens * groups);
    for (size_t t = 0; t < n_tokens; ++t)
      for (size_t g = 0; g < groups; ++g) {
        float s = 0;
        for (size_t i = 0; i < G; ++i) s += X[t * cols + g * G + i];
        xsum[t * groups + g] = s;
      }
  }
  pool.parallel_for(rows, std::max<size_t>(1, 8192 / std::max<size_t>(1, cols * n_tokens)), [&](size_t r0, size_t r1) {
    std::vector<float> codes(cols), sc(groups), bi(groups);
    for (size_t r = r0; r < r1; ++r) {
      fmt.decode_codes(W, static_cast<int64_t>(r), codes.data());
      fmt.row_scales(W, static_cast<int64_t>(r), sc.data(), bi.data());
      for (size_t t = 0; t < n_tokens; ++t) {
        const float* x = X + t * cols;
        float acc = 0;
        for (size_t g = 0; g < groups; ++g) {
          float part = sc[g] * dot(&codes[g * G], x + g * G, G);
          if (has_bias) part += bi[g] * xsum[t * groups + g];
          acc += part;
        }
        Y[t * rows + r] = acc;
      }
    }
  });
}

}  // namespace zaya
