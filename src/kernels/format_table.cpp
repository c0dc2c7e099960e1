// The format table (see format_table.h) and the product entry points that consult it.
#include "kernels/format_table.h"

#include <cstring>
#include <vector>

#include "kernels/profile.h"
#include "kernels/quant_matmul.h"
#include "tensor/quant_formats.h"
#include "util/thread_pool.h"
#include "zaya/error.h"

namespace zaya {

namespace {

// ---- row sizes --------------------------------------------------------------------------------------------------

template <size_t kElem>
size_t float_row_bytes(int64_t cols, int) { return static_cast<size_t>(cols) * kElem; }
size_t affine_row_bytes(int64_t cols, int bits) { return static_cast<size_t>(quant::packed_words(cols, bits)) * 4; }
size_t fp_row_bytes(int64_t cols, int bits) { return static_cast<size_t>(cols * bits / 32) * 4; }
size_t mxtq_row_bytes(int64_t cols, int bits) { return static_cast<size_t>(quant::mxtq_words(cols, bits)) * 4; }

// ---- dequantized rows (the scalar definitions, from the codecs in tensor/) ----------------------------------------

const uint32_t* words(const WeightMatrix& W, int64_t r) { return reinterpret_cast<const uint32_t*>(W.row(r)); }

void f32_row(const WeightMatrix& W, int64_t r, float* out) { std::memcpy(out, W.row(r), W.cols * sizeof(float)); }
void bf16_row(const WeightMatrix& W, int64_t r, float* out) {
  const uint16_t* p = reinterpret_cast<const uint16_t*>(W.row(r));
  for (int64_t c = 0; c < W.cols; ++c) out[c] = bf16_to_f32(p[c]);
}
void f16_row(const WeightMatrix& W, int64_t r, float* out) {
  const uint16_t* p = reinterpret_cast<const uint16_t*>(W.row(r));
  for (int64_t c = 0; c < W.cols; ++c) out[c] = f16_to_f32(p[c]);
}

void affine_scales(const WeightMatrix& W, int64_t r, float* scale, float* bias) {
  const uint8_t* sp = static_cast<const uint8_t*>(W.scales) + static_cast<size_t>(r) * W.scale_row_bytes;
  const uint8_t* bp = static_cast<const uint8_t*>(W.biases) + static_cast<size_t>(r) * W.scale_row_bytes;
  for (int64_t g = 0; g < W.cols / W.group_size; ++g)
    scale[g] = stored_scale(sp, W.scale_dtype, g), bias[g] = stored_scale(bp, W.scale_dtype, g);
}
void affine_row(const WeightMatrix& W, int64_t r, float* out) {
  std::vector<float> s(W.cols / W.group_size), b(s.size());
  affine_scales(W, r, s.data(), b.data());
  quant::affine_dequantize_row(words(W, r), s.data(), b.data(), W.cols, W.bits, W.group_size, out);
}

// MLX fp modes: one U8 scale per group (E4M3 for nvfp4, E8M0 otherwise), no bias.
template <WeightFormat F>
void fp_scales(const WeightMatrix& W, int64_t r, float* scale, float* bias) {
  const uint8_t* sp = static_cast<const uint8_t*>(W.scales) + static_cast<size_t>(r) * W.scale_row_bytes;
  for (int64_t g = 0; g < W.cols / W.group_size; ++g)
    scale[g] = F == WeightFormat::NvFp4 ? e4m3_to_f32(sp[g]) : e8m0_to_f32(sp[g]), bias[g] = 0.0f;
}
template <WeightFormat F>
void fp_row(const WeightMatrix& W, int64_t r, float* out) {
  const uint8_t* sp = static_cast<const uint8_t*>(W.scales) + static_cast<size_t>(r) * W.scale_row_bytes;
  quant::fp_dequantize_row(F, words(W, r), sp, W.cols, out);
}

void mxtq_row(const WeightMatrix& W, int64_t r, float* out) {
  quant::mxtq_dequantize_row(words(W, r), f16_to_f32(W.norms[r]), W.cols, W.bits, W.mxtq->signs.data(),
                             W.mxtq->codebook.data(), out);
}

// ---- element values before the group scale (for the grouped kernels) ---------------------------------------------

// Affine codes as floats; 4- and 8-bit (the bundles' widths) and 2-bit have straight-line loops.
void affine_codes(const WeightMatrix& W, int64_t r, float* out) {
  const uint32_t* w = words(W, r);
  const int64_t n = W.cols;
  if (W.bits == 4) {
    for (int64_t j = 0; j < n / 8; ++j)
      for (int k = 0; k < 8; ++k) out[8 * j + k] = static_cast<float>((w[j] >> (4 * k)) & 0xF);
  } else if (W.bits == 8) {
    const uint8_t* b = reinterpret_cast<const uint8_t*>(w);
    for (int64_t i = 0; i < n; ++i) out[i] = static_cast<float>(b[i]);
  } else if (W.bits == 2) {
    for (int64_t j = 0; j < n / 16; ++j)
      for (int k = 0; k < 16; ++k) out[16 * j + k] = static_cast<float>((w[j] >> (2 * k)) & 0x3);
  } else {
    for (int64_t i = 0; i < n; ++i) out[i] = static_cast<float>(quant::unpack_code(w, i, W.bits));
  }
}
void e2m1_codes(const WeightMatrix& W, int64_t r, float* out) {
  const uint32_t* w = words(W, r);
  for (int64_t i = 0; i < W.cols; ++i) out[i] = e2m1_to_f32(static_cast<uint8_t>((w[i / 8] >> (4 * (i % 8))) & 0xF));
}
void e4m3_codes(const WeightMatrix& W, int64_t r, float* out) {
  const uint8_t* b = W.row(r);
  for (int64_t i = 0; i < W.cols; ++i) out[i] = e4m3_to_f32(b[i]);
}
void mxtq_codes(const WeightMatrix& W, int64_t r, float* out) {
  const float* cb = W.mxtq->codebook.data();
  const uint32_t* w = words(W, r);
  int64_t i = W.bits == 4 ? static_cast<int64_t>(mxtq4_decode_row_simd(w, W.cols, cb, out)) : 0;
  for (; i < W.cols; ++i) out[i] = cb[quant::mxtq_unpack_index(w, i, W.bits)];
}

// ---- the table ----------------------------------------------------------------------------------------------------

constexpr ProductKernel kF32{"f32-tiles", f32_product, nullptr, nullptr, matmul_ref};
constexpr ProductKernel kF16{"f16-tiles", f16_product, nullptr, nullptr, matmul_ref};
constexpr ProductKernel kBF16{"bf16-tiles", bf16_product, nullptr, nullptr, matmul_ref};
constexpr ProductKernel kGrouped{"grouped", grouped_product, nullptr, nullptr, matmul_ref};
constexpr ProductKernel kNone{};

const FormatRow kFormats[kWeightFormatCount] = {
    {WeightFormat::F32, float_row_bytes<4>, f32_row, nullptr, nullptr, kF32, kNone, kF32, kNone, kNone},
    {WeightFormat::F16, float_row_bytes<2>, f16_row, nullptr, nullptr, kF16, kNone, kF16, kNone, kNone},
    {WeightFormat::BF16, float_row_bytes<2>, bf16_row, nullptr, nullptr, kBF16,
     {"bf16-dot", bf16_dot_product, nullptr, bf16_dot_accepts, bf16_dot_reference}, kBF16, kNone,
     {"bf16-amx", bf16_amx_product, nullptr, bf16_amx_accepts, bf16_amx_reference}},
    {WeightFormat::Affine, affine_row_bytes, affine_row, affine_codes, affine_scales,
     {"affine-f32", affine_f32_product, nullptr, affine_f32_accepts, matmul_ref},
     {"affine-int16", affine_q16_product, affine_q16_multi, affine_q16_accepts, affine_q16_reference}, kGrouped,
     {"affine-int8", affine_q8_product, affine_q8_multi, affine_q8_accepts, affine_q8_reference}, kNone},
    {WeightFormat::MxFp4, fp_row_bytes, fp_row<WeightFormat::MxFp4>, e2m1_codes, fp_scales<WeightFormat::MxFp4>,
     kGrouped, kNone, kGrouped, kNone, kNone},
    {WeightFormat::NvFp4, fp_row_bytes, fp_row<WeightFormat::NvFp4>, e2m1_codes, fp_scales<WeightFormat::NvFp4>,
     kGrouped, kNone, kGrouped, kNone, kNone},
    {WeightFormat::MxFp8, fp_row_bytes, fp_row<WeightFormat::MxFp8>, e4m3_codes, fp_scales<WeightFormat::MxFp8>,
     kGrouped, kNone, kGrouped, kNone, kNone},
    {WeightFormat::Mxtq, mxtq_row_bytes, mxtq_row, mxtq_codes, nullptr,
     {"mxtq-rotated", mxtq_product, nullptr, nullptr, matmul_ref},
     {"mxtq-int16", mxtq_q16_product, mxtq_q16_multi, mxtq_q16_accepts, mxtq_q16_reference},
     {"mxtq-rotated", mxtq_product, nullptr, nullptr, matmul_ref}, kNone, kNone},
};

bool takes(const ProductKernel& k, const WeightMatrix& W) { return k.run && (!k.accepts || k.accepts(W)); }

}  // namespace

const FormatRow& format_row(WeightFormat f) {
  const int i = static_cast<int>(f);
  if (i < 0 || i >= kWeightFormatCount) throw Error(cat("unknown weight format ", i));
  return kFormats[i];
}

const ProductKernel& pick_kernel(const WeightMatrix& W, Precision precision) {
  const FormatRow& row = format_row(W.format);
  if (precision == Precision::Int8 && takes(row.int8, W)) return row.int8;
  if (precision != Precision::Exact && takes(row.matrix, W)) return row.matrix;
  if (precision != Precision::Exact && takes(row.reduced, W)) return row.reduced;
  if (takes(row.fp32, W)) return row.fp32;
  return row.portable;
}

void decode_row(const WeightMatrix& W, int64_t r, float* out) {
  if (r < 0 || r >= W.rows) throw Error(cat(W.name, ": row ", r, " out of range [0, ", W.rows, ")"));
  format_row(W.format).decode_row(W, r, out);
}

size_t stored_row_bytes(WeightFormat f, int64_t cols, int bits) { return format_row(f).row_bytes(cols, bits); }

void matmul(const WeightMatrix& W, const float* X, size_t n_tokens, float* Y, const Compute& c) {
  if (n_tokens == 0 || W.rows <= 0) return;
  const ProductKernel& k = pick_kernel(W, c.precision);
  profile::ProductScope timed(k.name, W);
  k.run(W, X, n_tokens, Y, c.pool ? *c.pool : default_pool());
}

void matmul_multi(std::initializer_list<const WeightMatrix*> Ws, const float* X, size_t n_tokens,
                  std::initializer_list<float*> Ys, const Compute& c) {
  if (Ws.size() != Ys.size()) throw Error("matmul_multi: as many outputs as matrices are needed");
  if (Ws.size() == 0 || n_tokens == 0) return;
  std::vector<const WeightMatrix*> ws(Ws);
  std::vector<float*> ys(Ys);
  // Fused only when every matrix gets the same kernel and that kernel can run several at once.
  const ProductKernel& k = pick_kernel(*ws[0], c.precision);
  bool same = k.multi != nullptr;
  for (const WeightMatrix* w : ws) same = same && &pick_kernel(*w, c.precision) == &k;
  if (same) {
    profile::ProductScope timed(k.name, ws.data(), ws.size());
    if (k.multi(ws.data(), ws.size(), X, n_tokens, ys.data(), c.pool ? *c.pool : default_pool())) return;
  }
  for (size_t i = 0; i < ws.size(); ++i) matmul(*ws[i], X, n_tokens, ys[i], c);
}

void matmul_ref(const WeightMatrix& W, const float* X, size_t n_tokens, float* Y) {
  std::vector<float> row(W.cols);
  for (int64_t r = 0; r < W.rows; ++r) {
    decode_row(W, r, row.data());
    for (size_t t = 0; t < n_tokens; ++t) {
      double acc = 0;
      const float* x = X + t * W.cols;
      for (int64_t c = 0; c < W.cols; ++c) acc += static_cast<double>(row[c]) * x[c];
      Y[t * W.rows + r] = static_cast<float>(acc);
    }
  }
}

}  // namespace zaya
