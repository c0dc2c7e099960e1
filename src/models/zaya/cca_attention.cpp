// CCA attention (spec §3.3), step by step as the spec numbers them. Scratch comes from AttentionScratch; the math
// lives in kernels (products, q/k coupling, RoPE, GQA attention).
#include "models/zaya/cca_attention.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>

#include "kernels/elementwise.h"
#include "kernels/format_table.h"
#include "kernels/profile.h"
#include "models/zaya/lora.h"
#include "util/thread_pool.h"

namespace zaya {

namespace {

// Two-stage causal conv over the packed u = [q ‖ k] (spec §3.3 step 2). u_ext holds [u_{t0-2}, u_{t0-1}, u_t0 …]
// (n+2 rows of C); z receives n rows of C.
void causal_conv(const AttentionWeights& w, size_t C, size_t dh, size_t n, AttentionScratch& s, const Compute& c) {
  const float* u_ext = s.u_ext.data();
  float* y = s.conv_mid.data();
  // Depthwise stage, y_ext[j] for j = 1 … n+1 (stored at y[j-1]): y_j = b0 + w0[·,0]·u_{j-1} + w0[·,1]·u_j.
  for_rows(n + 1, C, [&](size_t j0, size_t j1) {
    for (size_t j = j0 + 1; j <= j1; ++j) {
      const float* older = u_ext + (j - 1) * C;
      const float* newer = u_ext + j * C;
      float* yj = y + (j - 1) * C;
      for (size_t ch = 0; ch < C; ++ch)
        yj[ch] = w.conv0_b[ch] + w.conv0_w[2 * ch] * older[ch] + w.conv0_w[2 * ch + 1] * newer[ch];
    }
  });
  // Grouped stage: each head group of dh channels mixes densely over two taps (older, newer). Per group this is a
  // matrix product: the weights [dh out, dh in × 2 taps] are laid out exactly as the conv weight rows, so the inputs
  // are interleaved the same way (y_{t-1}[i], y_t[i]) and the product kernel does the work.
  const size_t n_groups = C / dh, gs = n * 2 * dh;
  float* xin = s.conv_in.data();
  float* zg = s.conv_out.data();
  for_rows(n, C, [&](size_t t0, size_t t1) {
    for (size_t t = t0; t < t1; ++t)
      for (size_t grp = 0; grp < n_groups; ++grp) {
        const float* y_old = y + t * C + grp * dh;
        const float* y_new = y_old + C;
        float* xi = xin + grp * gs + t * 2 * dh;
        for (size_t i = 0; i < dh; ++i) xi[2 * i] = y_old[i], xi[2 * i + 1] = y_new[i];
      }
  });
  auto group_product = [&](size_t grp) {
    matmul(w.conv1.slice_rows(static_cast<int64_t>(grp * dh), static_cast<int64_t>(dh)), xin + grp * gs, n,
           zg + grp * n * dh, c);
  };
  if (n < 16) {
    // A few tokens: each group's product is too small to split, so the groups are the parallel work (a product
    // inside a pool task runs on its thread; results do not depend on the split).
    profile::ProductScope timed(pick_kernel(w.conv1, c.precision).name, w.conv1);  // the group products together
    default_pool().parallel_for(n_groups, 1, [&](size_t g0, size_t g1) {
      for (size_t grp = g0; grp < g1; ++grp) group_product(grp);
    });
  } else {
    for (size_t grp = 0; grp < n_groups; ++grp) group_product(grp);
  }
  for (size_t grp = 0; grp < n_groups; ++grp) {
    const size_t g0 = grp * dh;
    const float* zgg = zg + grp * n * dh;
    for (size_t t = 0; t < n; ++t)
      for (size_t i = 0; i < dh; ++i) s.z[t * C + g0 + i] = w.conv1_b[g0 + i] + zgg[t * dh + i];
  }
}

// The keys query t (absolute position p) may see under the mask policy: a prefix length, and for image-pairs a
// per-key mask (image_keys) on top of it.
struct KeySpan {
  size_t n_keys;
  const uint8_t* mask;
};

KeySpan keys_for(const AttentionInput& in, size_t t, int64_t last_image, const uint8_t* image_keys) {
  const size_t p = static_cast<size_t>(in.pos0) + t;
  if (!in.image || last_image < 0 || in.mask == AttentionMask::Causal) return {p + 1, nullptr};
  if (in.mask == AttentionMask::ZyphraPrefix) {
    // VL spec §7: last = last image token + 3; positions 1 … last-1 see keys 0 … last-1, position 0 only itself.
    const size_t last = std::min<size_t>(static_cast<size_t>(in.pos0 + last_image) + 3, static_cast<size_t>(in.pos0) + in.n);
    return {p == 0 || p >= last ? p + 1 : last, nullptr};
  }
  // Image pairs: an image query also sees every image key of the call, later ones included.
  if (!in.image[t]) return {p + 1, nullptr};
  return {std::max(p + 1, static_cast<size_t>(in.pos0 + last_image) + 1), image_keys};
}

}  // namespace

void cca_attention(const AttentionWeights& w, const ModelConfig& cfg, const Rope& rope, const AttentionInput& in,
                   AttentionLayerState& st, float* out, AttentionScratch& s, const Compute& c, ForwardTrace* trace,
                   int64_t layer) {
  profile::PartScope part(profile::Part::Attention);
  const size_t H = cfg.hidden, nq = cfg.n_heads, nk = cfg.n_kv_heads, dh = cfg.head_dim;
  const size_t qw = cfg.q_width(), kw = cfg.kv_width(), C = cfg.conv_channels(), g = nq / nk, half = kw / 2;
  const float* x = in.x;
  const size_t n = in.n;
  const int64_t pos0 = in.pos0;
  int64_t last_image = -1;
  if (in.image)
    for (size_t t = 0; t < n; ++t)
      if (in.image[t]) last_image = static_cast<int64_t>(t);
  const uint8_t* lora_rows = last_image >= 0 ? in.image : nullptr;  // the vision-LoRA acts at image tokens only

  // 1. Projections (q, k and the current-token value half read the same x: one pass), packed after the two
  // conv-state rows; the vision-LoRA deltas join before the conv.
  matmul_multi({&w.q, &w.k, &w.v_current}, x, n, {s.q.data(), s.k.data(), s.v_cur.data()}, c);
  lora_add(w.q_lora, x, n, lora_rows, s.q.data(), s.lora, c);
  lora_add(w.k_lora, x, n, lora_rows, s.k.data(), s.lora, c);
  lora_add(w.v_current_lora, x, n, lora_rows, s.v_cur.data(), s.lora, c);
  std::memcpy(s.u_ext.data(), st.conv_state.data(), 2 * C * sizeof(float));
  for (size_t t = 0; t < n; ++t) {
    std::memcpy(&s.u_ext[(t + 2) * C], &s.q[t * qw], qw * sizeof(float));
    std::memcpy(&s.u_ext[(t + 2) * C + qw], &s.k[t * kw], kw * sizeof(float));
  }

  // 2. Causal conv.
  causal_conv(w, C, dh, n, s, c);

  // 3-5. q/k mean coupling on the raw projections, then L2 norm ×√dh (keys also × temp).
  qk_coupling(s.q.data(), s.k.data(), s.z.data(), n, nq, nk, dh, w.temp.data(), s.Q.data(), s.K.data());

  // 4. Values: the current token's half and the previous token's half (prev_x carries across calls).
  std::memcpy(s.x_prev.data(), st.prev_x.data(), H * sizeof(float));
  if (n > 1) std::memcpy(s.x_prev.data() + H, x, (n - 1) * H * sizeof(float));
  matmul(w.v_delayed, s.x_prev.data(), n, s.v_del.data(), c);
  // Zyphra gates the previous token's value LoRA by the *current* token's flag (VL spec §6.2 step 5, pitfall P3).
  lora_add(w.v_delayed_lora, s.x_prev.data(), n, lora_rows, s.v_del.data(), s.lora, c);
  for (size_t t = 0; t < n; ++t) {
    std::memcpy(&s.V[t * kw], &s.v_cur[t * half], half * sizeof(float));
    std::memcpy(&s.V[t * kw + half], &s.v_del[t * half], half * sizeof(float));
  }

  if (trace) {
    const std::string p = "cca." + std::to_string(layer);
    trace->put(p + ".q", s.Q.data(), n * qw);
    trace->put(p + ".k", s.K.data(), n * kw);
    trace->put(p + ".v", s.V.data(), n * kw);
  }

  // 6. RoPE at absolute positions.
  for_rows(n, C, [&](size_t t0, size_t t1) {
    for (size_t t = t0; t < t1; ++t) {
      const int64_t pos = pos0 + static_cast<int64_t>(t);
      rope.apply_heads(&s.Q[t * qw], static_cast<int64_t>(nq), static_cast<int64_t>(dh), pos);
      rope.apply_heads(&s.K[t * kw], static_cast<int64_t>(nk), static_cast<int64_t>(dh), pos);
    }
  });

  // Cache append, then the state roll: conv_state ← last two u rows, prev_x ← x of the last token.
  st.k_cache.insert(st.k_cache.end(), s.K.begin(), s.K.begin() + static_cast<std::ptrdiff_t>(n * kw));
  st.v_cache.insert(st.v_cache.end(), s.V.begin(), s.V.begin() + static_cast<std::ptrdiff_t>(n * kw));
  std::memcpy(st.conv_state.data(), &s.u_ext[n * C], 2 * C * sizeof(float));
  std::memcpy(st.prev_x.data(), x + (n - 1) * H, H * sizeof(float));

  // 7. Causal GQA attention, softmax in fp32; a task covers the g query heads of one (token, kv head), so each
  // key/value row is read once for all of them. With too few tokens to keep the pool busy (decode) each head is its
  // own task instead; a head's result does not depend on which heads share its call, so the bits are the same.
  const float* kc = st.k_cache.data();
  const float* vc = st.v_cache.data();
  const uint8_t* image_keys = nullptr;
  if (last_image >= 0 && in.mask == AttentionMask::ImagePairs) {
    s.image_keys.assign(static_cast<size_t>(pos0) + n, 1);  // earlier context: all before any query of this call
    for (size_t t = 0; t < n; ++t) s.image_keys[pos0 + t] = in.image[t];
    image_keys = s.image_keys.data();
  }
  const float scale = 1.0f / std::sqrt(static_cast<float>(dh));
  const size_t heads_per_task = n * nk >= 2 * default_pool().size() ? g : 1;
  const size_t tasks_per_token = nq / heads_per_task;
  // Tasks run from the last token down: the longest ones are handed out first, so the pool's chunks finish together.
  const size_t n_tasks = n * tasks_per_token;
  default_pool().parallel_for(n_tasks, 1, [&](size_t b, size_t e) {
    for (size_t i = b; i < e; ++i) {
      const size_t task = n_tasks - 1 - i;
      const size_t t = task / tasks_per_token;
      const size_t h0 = (task % tasks_per_token) * heads_per_task;
      const size_t j = h0 / g;
      const KeySpan keys = keys_for(in, t, last_image, image_keys);
      const size_t at = t * qw + h0 * dh;
      if (!keys.mask) {
        gqa_attention(&s.Q[at], heads_per_task, kc + j * dh, vc + j * dh, kw, keys.n_keys, dh, scale, &s.attn[at]);
        continue;
      }
      // Image pairs: this query's keys are the causal prefix plus the call's image keys after it.
      thread_local std::vector<uint8_t> mask;
      mask.assign(keys.mask, keys.mask + keys.n_keys);
      std::fill(mask.begin(), mask.begin() + static_cast<std::ptrdiff_t>(pos0 + t + 1), 1);
      gqa_attention(&s.Q[at], heads_per_task, kc + j * dh, vc + j * dh, kw, keys.n_keys, dh, scale, &s.attn[at],
                    mask.data());
    }
  });

  // 8. Output projection.
  matmul(w.o, s.attn.data(), n, out, c);
  lora_add(w.o_lora, s.attn.data(), n, lora_rows, out, s.lora, c);
}

}  // namespace zaya
