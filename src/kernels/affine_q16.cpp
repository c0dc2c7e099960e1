#include "kernels/affine_q16.h"

#include <cmath>
#include <limits>

#include "tensor/quant_formats.h"

namespace zaya::q16 {

template <class Q>
void prepare_block_activations(size_t n, size_t cols, size_t group_size, BlockActivations<Q>& a) {
  a.n = n;
  a.cols = cols;
  a.group_size = group_size;
  a.blocks = cols / kBlock;
  a.blocks16 = round_up(a.blocks, kLanes);
  a.groups = cols / group_size;
  a.groups16 = round_up(a.groups, kLanes);
  a.xq.assign(n * a.blocks16 * kBlock, 0);
  a.d.assign(n * a.blocks16, 0.0f);
  a.xsum.assign(n * a.groups16, 0.0f);
  a.xqsum.assign(n * a.blocks16, 0);
}

template <class Q>
void quantize_block_token(const float* x, size_t t, float qmax, BlockActivations<Q>& a) {
  Q* q = &a.xq[t * a.blocks16 * kBlock];
  for (size_t b = 0; b < a.blocks; ++b) {
    const float* xb = x + b * kBlock;
    float amax = 0.0f;
    bool finite = true;
    for (size_t i = 0; i < kBlock; ++i) {
      finite = finite && std::isfinite(xb[i]);
      amax = std::max(amax, std::fabs(xb[i]));
    }
    float& d = a.d[t * a.blocks16 + b];
    if (!finite) {
      d = std::numeric_limits<float>::quiet_NaN();
      continue;
    }
    if (amax == 0.0f) continue;
    d = amax / qmax;
    const float id = qmax / amax;
    int32_t sum = 0;
    for (size_t i = 0; i < kBlock; ++i) {
      q[b * kBlock + i] = static_cast<Q>(std::lrintf(xb[i] * id));  // |x·id| ≤ qmax (+1 ulp): no clamp needed
      sum += q[b * kBlock + i];
    }
    a.xqsum[t * a.blocks16 + b] = sum;
  }
  for (size_t g = 0; g < a.groups; ++g) a.xsum[t * a.groups16 + g] = group_sum(x + g * a.group_size, a.group_size);
}

template void prepare_block_activations(size_t, size_t, size_t, BlockActivations<int16_t>&);
template void prepare_block_activations(size_t, size_t, size_t, BlockActivations<int8_t>&);
template void quantize_block_token(const float*, size_t, float, BlockActivations<int16_t>&);
template void quantize_block_token(const float*, size_t, float, BlockActivations<int8_t>&);

void quantize_activations(const float* X, size_t n, size_t cols, size_t group_size, Activations& a) {
  prepare_activations(n, cols, group_size, a);
  for (size_t t = 0; t < n; ++t) quantize_token(X + t * cols, t, a);
}

float group_sum(const float* x, size_t n) {
  float p[8] = {};
  for (size_t i = 0; i < n; i += 8)
    for (size_t l = 0; l < 8; ++l) p[l] += x[i + l];
  for (size_t l = 0; l < 4; ++l) p[l] += p[l + 4];
  return (p[0] + p[2]) + (p[1] + p[3]);
}

float reduce16(const float* lanes) {
  float v[kLanes];
  for (size_t i = 0; i < kLanes; ++i) v[i] = lanes[i];
  for (size_t h = kLanes / 2; h >= 1; h /= 2)
    for (size_t i = 0; i < h; ++i) v[i] = v[i] + v[i + h];
  return v[0];
}

bool supported(const WeightMatrix& W) {
  return W.format == WeightFormat::Affine && W.bits >= 1 && W.bits <= 8 && W.group_size > 0 &&
         W.group_size % static_cast<int>(kBlock) == 0 && W.cols % W.group_size == 0;
}

template <class Q>
void block_matmul_ref(const WeightMatrix& W, const BlockActivations<Q>& a, float* Y) {
  const size_t rows = W.rows, cols = W.cols, G = W.group_size, stride = a.blocks16 * kBlock;
  const size_t blocks_per_group = G / kBlock;
  const int32_t c = code_centre(W.bits);
  std::vector<int32_t> codes(cols);
  for (size_t r = 0; r < rows; ++r) {
    const auto* w = reinterpret_cast<const uint32_t*>(static_cast<const uint8_t*>(W.data) + r * W.row_bytes);
    for (size_t i = 0; i < cols; ++i) codes[i] = static_cast<int32_t>(quant::unpack_code(w, static_cast<int64_t>(i), W.bits));
    const uint8_t* sp = static_cast<const uint8_t*>(W.scales) + r * W.scale_row_bytes;
    const uint8_t* bp = static_cast<const uint8_t*>(W.biases) + r * W.scale_row_bytes;
    for (size_t t = 0; t < a.n; ++t) {
      const Q* xq = &a.xq[t * stride];
      float accF[kLanes] = {}, accB[kLanes] = {};
      for (size_t b = 0; b < a.blocks16; ++b) {
        int32_t isum = 0;
        float m = 0.0f;
        if (b < a.blocks) {
          for (size_t i = 0; i < kBlock; ++i) isum += codes[b * kBlock + i] * xq[b * kBlock + i];
          isum -= c * a.xqsum[t * a.blocks16 + b];
          m = stored_scale(sp, W.scale_dtype, b / blocks_per_group) * a.d[t * a.blocks16 + b];
        }
        accF[b % kLanes] = std::fma(static_cast<float>(isum), m, accF[b % kLanes]);
      }
      for (size_t g = 0; g < a.groups16; ++g) {
        const float bias =
            g < a.groups ? std::fma(static_cast<float>(c), stored_scale(sp, W.scale_dtype, g), stored_scale(bp, W.scale_dtype, g)) : 0.0f;
        accB[g % kLanes] = std::fma(bias, a.xsum[t * a.groups16 + g], accB[g % kLanes]);
      }
      for (size_t i = 0; i < kLanes; ++i) accF[i] += accB[i];
      Y[t * rows + r] = reduce16(accF);
    }
  }
}

template void block_matmul_ref(const WeightMatrix&, const BlockActivations<int16_t>&, float*);
template void block_matmul_ref(const WeightMatrix&, const BlockActivations<int8_t>&, float*);

void matmul_ref(const WeightMatrix& W, const Activations& a, float* Y) { block_matmul_ref(W, a, Y); }

void matmul_ref(const WeightMatrix& W, const float* X, size_t n_tokens, float* Y) {
  Activations a;
  quantize_activations(X, n_tokens, static_cast<size_t>(W.cols), static_cast<size_t>(W.group_size), a);
  matmul_ref(W, a, Y);
}

}  // namespace zaya::q16
