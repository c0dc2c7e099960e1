#include "models/qwen_vit/vision_tower.h"

#include <algorithm>
#include <cmath>

#include "kernels/elementwise.h"
#include "util/thread_pool.h"
#include "zaya/error.h"

namespace zaya::vit {

namespace {

// Query rows per attention work item: bounds the score scratch of a full-attention frame to kQueryTile × frame
// (a max-pixels frame has 16384 patches) and gives the pool enough items; each output row depends only on its
// own query row, so the split changes no bit.
constexpr size_t kQueryTile = 64;

ThreadPool& pool_of(const Compute& c) { return c.pool ? *c.pool : default_pool(); }

void check_input(const VisionConfig& cfg, const ImagePatches& in, const VisionLayout& L) {
  if (in.cols != cfg.patch_dim())
    throw Error(cat("vision tower: pixel_values have ", in.cols, " columns, the config needs channels·tps·patch² = ",
                    cfg.patch_dim()));
  if (in.rows != L.patches)
    throw Error(cat("vision tower: pixel_values have ", in.rows, " rows but the image grids hold ", L.patches, " patches"));
  if (in.pixel_values.size() != static_cast<size_t>(in.rows * in.cols))
    throw Error(cat("vision tower: pixel_values hold ", in.pixel_values.size(), " values, not rows·cols = ", in.rows * in.cols));
}

// dst row block k ← src row block perm[k] (blocks of `block` floats): the window permutation of merge units.
void gather_blocks(const float* src, const std::vector<int64_t>& perm, size_t block, float* dst, ThreadPool& pool) {
  for_rows(perm.size(), block, [&](size_t k0, size_t k1) {
    for (size_t k = k0; k < k1; ++k) std::copy_n(src + perm[k] * block, block, dst + k * block);
  }, &pool);
}

// Rotary cos/sin in window order from the processor-order angles: one [dh/2] row per patch.
void rotary_tables(const VisionLayout& L, size_t mm, size_t half, VisionActivations& a, ThreadPool& pool) {
  for_rows(L.window_index.size(), mm * half, [&](size_t k0, size_t k1) {
    for (size_t k = k0; k < k1; ++k)
      for (size_t j = 0; j < mm; ++j) {
        const float* th = L.angles.data() + (L.window_index[k] * mm + j) * half;
        float* c = a.cos.data() + (k * mm + j) * half;
        float* s = a.sin.data() + (k * mm + j) * half;
        for (size_t i = 0; i < half; ++i) c[i] = std::cos(th[i]), s[i] = std::sin(th[i]);
      }
  }, &pool);
}

// x[t] ← x[t] + (y[t] + b) for n rows of width d: a sublayer's bias, then the residual add (the reference's order).
void add_bias_residual(float* x, const float* y, const float* b, size_t n, size_t d, ThreadPool& pool) {
  for_rows(n, d, [&](size_t t0, size_t t1) {
    for (size_t t = t0; t < t1; ++t)
      for (size_t i = 0; i < d; ++i) x[t * d + i] += y[t * d + i] + b[i];
  }, &pool);
}

// Rows [r0, r0 + n) of the chunk's qkv (+ bias): RoPE (rotate_half) on q and k, then q/k/v into head-major buffers.
void rope_scatter(const VisionConfig& cfg, const float* bias, size_t r0, size_t n, size_t P, VisionActivations& a,
                  ThreadPool& pool) {
  const size_t hv = cfg.hidden, dh = cfg.head_dim(), half = dh / 2, H = cfg.heads;
  for_rows(n, 3 * hv, [&](size_t t0, size_t t1) {
    for (size_t t = t0; t < t1; ++t) {
      const size_t p = r0 + t;
      const float* row = a.qkv.data() + t * 3 * hv;
      const float* c = a.cos.data() + p * half;
      const float* s = a.sin.data() + p * half;
      for (size_t h = 0; h < H; ++h) {
        for (int part = 0; part < 2; ++part) {  // q, then k
          const float* src = row + part * hv + h * dh;
          const float* b = bias + part * hv + h * dh;
          float* dst = (part == 0 ? a.q : a.k).data() + (h * P + p) * dh;
          for (size_t i = 0; i < half; ++i) {
            const float x1 = src[i] + b[i], x2 = src[i + half] + b[i + half];
            dst[i] = x1 * c[i] - x2 * s[i];
            dst[i + half] = x2 * c[i] + x1 * s[i];
          }
        }
        const float* src = row + 2 * hv + h * dh;
        const float* b = bias + 2 * hv + h * dh;
        float* dst = a.v.data() + (h * P + p) * dh;
        for (size_t i = 0; i < dh; ++i) dst[i] = src[i] + b[i];
      }
    }
  }, &pool);
}

// Non-causal attention of every head within each segment, then the heads concatenated into a.xn [P, hv].
void segment_attention(const VisionConfig& cfg, const std::vector<Segment>& segs, size_t P, VisionActivations& a,
                       ThreadPool& pool) {
  const size_t dh = cfg.head_dim(), H = cfg.heads, hv = cfg.hidden;
  struct Item {
    size_t head, q0, q1, k0, k1;
  };
  std::vector<Item> items;  // a few per segment and head; tiny next to the activations
  for (const Segment& s : segs)
    for (size_t h = 0; h < H; ++h)
      for (size_t q0 = s.begin; q0 < static_cast<size_t>(s.end); q0 += kQueryTile)
        items.push_back({h, q0, std::min<size_t>(q0 + kQueryTile, s.end), static_cast<size_t>(s.begin),
                         static_cast<size_t>(s.end)});
  const float scale = 1.0f / std::sqrt(static_cast<float>(dh));
  pool.parallel_for(items.size(), 1, [&](size_t i0, size_t i1) {
    for (size_t i = i0; i < i1; ++i) {
      const Item& it = items[i];
      const size_t base = it.head * P;
      gqa_attention(a.q.data() + (base + it.q0) * dh, it.q1 - it.q0, a.k.data() + (base + it.k0) * dh,
                    a.v.data() + (base + it.k0) * dh, dh, it.k1 - it.k0, dh, scale, a.o.data() + (base + it.q0) * dh);
    }
  });
  for_rows(P, hv, [&](size_t t0, size_t t1) {
    for (size_t t = t0; t < t1; ++t)
      for (size_t h = 0; h < H; ++h) std::copy_n(a.o.data() + (h * P + t) * dh, dh, a.xn.data() + t * hv + h * dh);
  }, &pool);
}

void attention_sublayer(const VisionConfig& cfg, const VisionBlockWeights& b, const std::vector<Segment>& segs,
                        size_t P, VisionActivations& a, const Compute& c) {
  ThreadPool& pool = pool_of(c);
  const size_t hv = cfg.hidden;
  rmsnorm_rows(a.x.data(), b.norm1.data(), P, hv, cfg.norm_eps, a.xn.data());
  for (size_t r0 = 0; r0 < P; r0 += kVisionRowChunk) {
    const size_t n = std::min(kVisionRowChunk, P - r0);
    matmul(b.qkv, a.xn.data() + r0 * hv, n, a.qkv.data(), c);
    rope_scatter(cfg, b.qkv_bias.data(), r0, n, P, a, pool);
  }
  segment_attention(cfg, segs, P, a, pool);
  matmul(b.proj, a.xn.data(), P, a.y.data(), c);
  add_bias_residual(a.x.data(), a.y.data(), b.proj_bias.data(), P, hv, pool);
}

void mlp_sublayer(const VisionConfig& cfg, const VisionBlockWeights& b, size_t P, VisionActivations& a,
                  const Compute& c) {
  ThreadPool& pool = pool_of(c);
  const size_t hv = cfg.hidden, I = cfg.intermediate;
  rmsnorm_rows(a.x.data(), b.norm2.data(), P, hv, cfg.norm_eps, a.xn.data());
  for (size_t r0 = 0; r0 < P; r0 += kVisionRowChunk) {
    const size_t n = std::min(kVisionRowChunk, P - r0);
    matmul_multi({&b.gate, &b.up}, a.xn.data() + r0 * hv, n, {a.gate.data(), a.up.data()}, c);
    for_rows(n, 4 * I, [&](size_t t0, size_t t1) {  // exp costs several plain operations per element
      for (size_t t = t0; t < t1; ++t) {
        float* g = a.gate.data() + t * I;
        const float* u = a.up.data() + t * I;
        for (size_t i = 0; i < I; ++i) {
          const float gi = g[i] + b.gate_bias[i];
          g[i] = gi / (1.0f + std::exp(-gi)) * (u[i] + b.up_bias[i]);
        }
      }
    }, &pool);
    matmul(b.down, a.gate.data(), n, a.y.data() + r0 * hv, c);
  }
  add_bias_residual(a.x.data(), a.y.data(), b.down_bias.data(), P, hv, pool);
}

}  // namespace

void encode(const VisionConfig& cfg, const VisionWeights& w, const ImagePatches& in, VisionActivations& a,
            std::vector<float>& features, const Compute& c, VisionTrace* trace) {
  const VisionLayout L = VisionLayout::plan(cfg, in.grids);
  check_input(cfg, in, L);
  if (w.blocks.size() != static_cast<size_t>(cfg.depth))
    throw Error(cat("vision tower: ", w.blocks.size(), " blocks loaded but the config has depth ", cfg.depth));
  ThreadPool& pool = pool_of(c);
  const size_t P = L.patches, N = L.units, hv = cfg.hidden, mm = cfg.merge_rows(), half = cfg.head_dim() / 2;
  const size_t M = cfg.merged_dim(), out = cfg.out_hidden;
  a.reserve(cfg, P);

  // Patch embedding: the Conv3d with kernel = stride is one product over all patches (processor order in y).
  matmul(w.patch_embed, in.pixel_values.data(), P, a.y.data(), c);
  gather_blocks(a.y.data(), L.window_index, mm * hv, a.x.data(), pool);
  rotary_tables(L, mm, half, a, pool);
  if (trace) {
    trace->patch_embed.assign(a.y.begin(), a.y.begin() + P * hv);
    trace->block_out.clear();
  }

  for (int64_t j = 0; j < cfg.depth; ++j) {
    const VisionBlockWeights& b = w.blocks[static_cast<size_t>(j)];
    attention_sublayer(cfg, b, cfg.full_attention(j) ? L.frames : L.windows, P, a, c);
    mlp_sublayer(cfg, b, P, a, c);
    if (trace) trace->block_out.emplace_back(a.x.begin(), a.x.begin() + P * hv);
  }

  // Merger: RMSNorm per patch; each merge unit's merge² consecutive rows are one M-wide row of xn.
  rmsnorm_rows(a.x.data(), w.merger_norm.data(), P, hv, cfg.norm_eps, a.xn.data());
  matmul(w.merger_fc1, a.xn.data(), N, a.m1.data(), c);
  bias_gelu(a.m1.data(), w.merger_fc1_bias.data(), N, M);
  matmul(w.merger_fc2, a.m1.data(), N, a.m2.data(), c);
  const float* b2 = w.merger_fc2_bias.data();
  for_rows(N, out, [&](size_t t0, size_t t1) {
    for (size_t t = t0; t < t1; ++t)
      for (size_t i = 0; i < out; ++i) a.m2[t * out + i] += b2[i];
  }, &pool);

  // Un-permute: window-order row k is unit window_index[k].
  features.resize(N * out);
  for_rows(N, out, [&](size_t k0, size_t k1) {
    for (size_t k = k0; k < k1; ++k) std::copy_n(a.m2.data() + k * out, out, features.data() + L.window_index[k] * out);
  }, &pool);
  if (trace) {
    trace->merger_out.assign(a.m2.begin(), a.m2.begin() + N * out);
    trace->layout = L;
  }
}

double encode_flops(const VisionConfig& cfg, const VisionLayout& L) {
  const double P = static_cast<double>(L.patches), N = static_cast<double>(L.units), hv = cfg.hidden,
               I = cfg.intermediate, M = cfg.merged_dim();
  const double per_block_products = 2.0 * P * (3 * hv * hv + hv * hv + 3 * hv * I);
  // Scores and P·V: 2 · 2 · S² · hv per segment of S patches.
  auto attention = [&](const std::vector<Segment>& segs) {
    double f = 0;
    for (const Segment& s : segs) f += 4.0 * static_cast<double>(s.end - s.begin) * static_cast<double>(s.end - s.begin) * hv;
    return f;
  };
  const double win = attention(L.windows), full = attention(L.frames);
  double total = 2.0 * P * hv * cfg.patch_dim() + 2.0 * N * (M * M + M * cfg.out_hidden);
  for (int64_t j = 0; j < cfg.depth; ++j) total += per_block_products + (cfg.full_attention(j) ? full : win);
  return total;
}

}  // namespace zaya::vit
