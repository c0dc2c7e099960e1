// Quantized matrix products. Per row, the codes are decoded once into a small fp32 buffer (L1-resident) and then
// combined with every token: affine as Σ_g scale_g·Σ(q·x) + bias_g·Σx (MLX's own per-group form), fp modes as
// Σ_g scale_g·Σ(v·x), MXTQ as norm·Σ c[idx]·x̃ with x̃ = H(s ⊙ x) computed once per token (the fast path of the
// JANG runtimes; the inverse rotation is never applied to the weights).
#include "kernels/quant_matmul.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "zaya/error.h"
#include "zaya/kernels.h"
#include "zaya/quant.h"
#include "zaya/thread_pool.h"

namespace zaya {

namespace {

// Affine codes of one row as floats; 4- and 8-bit (the bundles' widths) have straight-line loops.
void decode_affine(const uint32_t* w, int64_t n, int bits, float* out) {
  if (bits == 4) {
    for (int64_t j = 0; j < n / 8; ++j) {
      const uint32_t v = w[j];
      for (int k = 0; k < 8; ++k) out[8 * j + k] = static_cast<float>((v >> (4 * k)) & 0xF);
    }
  } else if (bits == 8) {
    const uint8_t* b = reinterpret_cast<const uint8_t*>(w);
    for (int64_t i = 0; i < n; ++i) out[i] = static_cast<float>(b[i]);
  } else if (bits == 2) {
    for (int64_t j = 0; j < n / 16; ++j) {
      const uint32_t v = w[j];
      for (int k = 0; k < 16; ++k) out[16 * j + k] = static_cast<float>((v >> (2 * k)) & 0x3);
    }
  } else {
    for (int64_t i = 0; i < n; ++i) out[i] = static_cast<float>(quant::unpack_code(w, i, bits));
  }
}

void decode_fp(WeightFormat f, const uint32_t* w, int64_t n, float* out) {
  if (f == WeightFormat::MxFp8) {
    const uint8_t* b = reinterpret_cast<const uint8_t*>(w);
    for (int64_t i = 0; i < n; ++i) out[i] = quant::e4m3_to_f32(b[i]);
  } else {
    for (int64_t i = 0; i < n; ++i) out[i] = quant::e2m1_to_f32(static_cast<uint8_t>((w[i / 8] >> (4 * (i % 8))) & 0xF));
  }
}

void decode_mxtq(const WeightMatrix& W, const uint32_t* w, float* out) {
  const float* cb = W.mxtq->codebook.data();
  int64_t i = W.bits == 4 ? static_cast<int64_t>(mxtq4_decode_row_simd(w, W.cols, cb, out)) : 0;
  for (; i < W.cols; ++i) out[i] = cb[quant::mxtq_unpack_index(w, i, W.bits)];
}

}  // namespace

void decode_row_codes(const WeightMatrix& W, int64_t r, float* out) {
  const uint32_t* w = reinterpret_cast<const uint32_t*>(static_cast<const uint8_t*>(W.data) + r * W.row_bytes);
  switch (W.format) {
    case WeightFormat::Affine: decode_affine(w, W.cols, W.bits, out); break;
    case WeightFormat::MxFp4: case WeightFormat::NvFp4: case WeightFormat::MxFp8: decode_fp(W.format, w, W.cols, out); break;
    case WeightFormat::Mxtq: decode_mxtq(W, w, out); break;
    default: throw Error(cat(W.name, ": decode_row_codes on a float matrix"));
  }
}

void quant_matmul(const WeightMatrix& W, const float* X, size_t n_tokens, float* Y, ThreadPool& pool) {
  if (W.exact_activations ? affine_matmul_f32_simd(W, X, n_tokens, Y, pool) : affine_matmul_simd(W, X, n_tokens, Y, pool))
    return;
  quant_matmul_generic(W, X, n_tokens, Y, pool);
}

void quant_matmul_generic(const WeightMatrix& W, const float* X, size_t n_tokens, float* Y, ThreadPool& pool) {
  const size_t rows = W.rows, cols = W.cols;
  if (W.format == WeightFormat::Mxtq) {
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
        decode_row_codes(W, static_cast<int64_t>(r), codes.data());
        const float norm = f16_to_f32(W.norms[r]);
        for (size_t t = 0; t < n_tokens; ++t) Y[t * rows + r] = norm * dot(codes.data(), &xr[t * cols], cols);
      }
    });
    return;
  }

  const size_t G = static_cast<size_t>(W.group_size), groups = cols / G;
  const bool affine = W.format == WeightFormat::Affine;
  // Σx per group per token (affine bias term).
  std::vector<float> xsum;
  if (affine) {
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
      decode_row_codes(W, static_cast<int64_t>(r), codes.data());
      const uint8_t* sp = static_cast<const uint8_t*>(W.scales) + r * W.scale_row_bytes;
      if (affine) {
        const uint8_t* bp = static_cast<const uint8_t*>(W.biases) + r * W.scale_row_bytes;
        for (size_t g = 0; g < groups; ++g) sc[g] = stored_scale(sp, W.scale_dtype, g), bi[g] = stored_scale(bp, W.scale_dtype, g);
      } else if (W.format == WeightFormat::NvFp4) {
        for (size_t g = 0; g < groups; ++g) sc[g] = quant::e4m3_to_f32(sp[g]);
      } else {
        for (size_t g = 0; g < groups; ++g) sc[g] = quant::e8m0_to_f32(sp[g]);
      }
      for (size_t t = 0; t < n_tokens; ++t) {
        const float* x = X + t * cols;
        float acc = 0;
        for (size_t g = 0; g < groups; ++g) {
          float part = sc[g] * dot(&codes[g * G], x + g * G, G);
          if (affine) part += bi[g] * xsum[t * groups + g];
          acc += part;
        }
        Y[t * rows + r] = acc;
      }
    }
  });
}

void matmul_multi(std::initializer_list<const WeightMatrix*> Ws, const float* X, size_t n_tokens,
                  std::initializer_list<float*> Ys, ThreadPool* pool) {
  if (Ws.size() != Ys.size()) throw Error("matmul_multi: as many outputs as matrices are needed");
  std::vector<const WeightMatrix*> ws(Ws);
  std::vector<float*> ys(Ys);
  bool fused = n_tokens > 0;
  for (const WeightMatrix* w : ws) fused = fused && !w->exact_activations;
  ThreadPool& p = pool ? *pool : default_pool();
  if (fused && affine_matmul_multi_simd(ws.data(), ws.size(), X, n_tokens, ys.data(), p)) return;
  for (size_t k = 0; k < ws.size(); ++k) matmul(*ws[k], X, n_tokens, ys[k], pool);
}

}  // namespace zaya
