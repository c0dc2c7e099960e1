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

constexpr size_t kConvSlice = 16;  // rows of the grouped conv per parallel item in decode (a multiple of every tile)

// Two-stage causal conv over the packed u = [q ‖ k] (spec §3.3 step 2). Sequence i's rows of u_ext start at
// seqs[i].row + 2i and hold [u_{t0-2}, u_{t0-1}, u_t0 …] (its n+2 rows of C); z receives the n rows of every
// sequence at their stacked rows.
void causal_conv(const AttentionWeights& w, size_t C, size_t dh, std::span<const AttentionInput> seqs, size_t n,
                 AttentionScratch& s, const Compute& c) {
  const float* u_ext = s.u_ext.data();
  float* y = s.conv_mid.data();
  // Depthwise stage, y_ext[j] for j = 1 … n_i+1 (stored at row row_i + i + j-1): y_j = b0 + w0[·,0]·u_{j-1} +
  // w0[·,1]·u_j.
  for (size_t i = 0; i < seqs.size(); ++i) {
    const float* u = u_ext + (seqs[i].row + 2 * i) * C;
    float* ys = y + (seqs[i].row + i) * C;
    for_rows(seqs[i].n + 1, C, [&](size_t j0, size_t j1) {
      for (size_t j = j0 + 1; j <= j1; ++j) {
        const float* older = u + (j - 1) * C;
        const float* newer = u + j * C;
        float* yj = ys + (j - 1) * C;
        for (size_t ch = 0; ch < C; ++ch)
          yj[ch] = w.conv0_b[ch] + w.conv0_w[2 * ch] * older[ch] + w.conv0_w[2 * ch + 1] * newer[ch];
      }
    });
  }
  // Grouped stage: each head group of dh channels mixes densely over two taps (older, newer). Per group this is a
  // matrix product: the weights [dh out, dh in × 2 taps] are laid out exactly as the conv weight rows, so the inputs
  // are interleaved the same way (y_{t-1}[i], y_t[i]) and the product kernel does the work, for all rows at once.
  const size_t n_groups = C / dh, gs = n * 2 * dh;
  float* xin = s.conv_in.data();
  float* zg = s.conv_out.data();
  for (size_t i = 0; i < seqs.size(); ++i) {
    const size_t row = seqs[i].row;
    const float* ys = y + (row + i) * C;
    for_rows(seqs[i].n, C, [&](size_t t0, size_t t1) {
      for (size_t t = t0; t < t1; ++t)
        for (size_t grp = 0; grp < n_groups; ++grp) {
          const float* y_old = ys + t * C + grp * dh;
          const float* y_new = y_old + C;
          float* xi = xin + grp * gs + (row + t) * 2 * dh;
          for (size_t k = 0; k < dh; ++k) xi[2 * k] = y_old[k], xi[2 * k + 1] = y_new[k];
        }
    });
  }
  // Rows [r0, r0 + nr) of group grp. Whole groups for any n; a slice only for one token, whose outputs are then its
  // group's outputs at the slice's rows (a row's result does not depend on the rows computed with it).
  auto slice_product = [&](size_t grp, size_t r0, size_t nr) {
    matmul(w.conv1.slice_rows(static_cast<int64_t>(grp * dh + r0), static_cast<int64_t>(nr)), xin + grp * gs, n,
           zg + grp * n * dh + r0, c);
  };
  if (n < 16) {
    // A few tokens: each group's product is too small to split, so the groups are the parallel work (a product
    // inside a pool task runs on its thread; results do not depend on the split). One token (decode) cuts them
    // into kConvSlice-row slices, so two threads share 10 groups evenly instead of 6:4.
    const size_t per_group = n == 1 && dh % kConvSlice == 0 ? dh / kConvSlice : 1, nr = dh / per_group;
    profile::ProductScope timed(pick_kernel(w.conv1, c.precision).name, w.conv1);  // the group products together
    default_pool().parallel_for(n_groups * per_group, 1, [&](size_t i0, size_t i1) {
      for (size_t i = i0; i < i1; ++i) slice_product(i / per_group, (i % per_group) * nr, nr);
    });
  } else {
    for (size_t grp = 0; grp < n_groups; ++grp) slice_product(grp, 0, dh);
  }
  for_rows(n, C, [&](size_t t0, size_t t1) {
    for (size_t t = t0; t < t1; ++t)
      for (size_t grp = 0; grp < n_groups; ++grp) {
        const size_t g0 = grp * dh;
        const float* zgt = zg + grp * n * dh + t * dh;
        for (size_t k = 0; k < dh; ++k) s.z[t * C + g0 + k] = w.conv1_b[g0 + k] + zgt[k];
      }
  });
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

void cca_attention(const AttentionWeights& w, const ModelConfig& cfg, const Rope& rope,
                   std::span<const AttentionInput> seqs, const float* x, size_t n, const uint8_t* image, float* out,
                   AttentionScratch& s, const Compute& c, ForwardTrace* trace, int64_t layer) {
  profile::PartScope part(profile::Part::Attention);
  const size_t H = cfg.hidden, nq = cfg.n_heads, nk = cfg.n_kv_heads, dh = cfg.head_dim;
  const size_t qw = cfg.q_width(), kw = cfg.kv_width(), C = cfg.conv_channels(), g = nq / nk, half = kw / 2;
  // The last image token of each sequence (-1: none); the vision-LoRA acts at image tokens only.
  std::vector<int64_t>& last_image = s.last_image;
  last_image.assign(seqs.size(), -1);
  bool any_image = false;
  for (size_t i = 0; i < seqs.size(); ++i)
    if (seqs[i].image)
      for (size_t t = 0; t < seqs[i].n; ++t)
        if (seqs[i].image[t]) last_image[i] = static_cast<int64_t>(t), any_image = true;
  const uint8_t* lora_rows = any_image ? image : nullptr;

  // 1. Projections (q, k and the current-token value half read the same x: one pass over all rows), packed after
  // each sequence's two conv-state rows; the vision-LoRA deltas join before the conv.
  matmul_multi({&w.q, &w.k, &w.v_current}, x, n, {s.q.data(), s.k.data(), s.v_cur.data()}, c);
  lora_add(w.q_lora, x, n, lora_rows, s.q.data(), s.lora, c);
  lora_add(w.k_lora, x, n, lora_rows, s.k.data(), s.lora, c);
  lora_add(w.v_current_lora, x, n, lora_rows, s.v_cur.data(), s.lora, c);
  for (size_t i = 0; i < seqs.size(); ++i) {
    float* u = &s.u_ext[(seqs[i].row + 2 * i) * C];
    std::memcpy(u, seqs[i].state->conv_state.data(), 2 * C * sizeof(float));
    for_rows(seqs[i].n, C, [&](size_t t0, size_t t1) {
      for (size_t t = t0; t < t1; ++t) {
        const size_t r = seqs[i].row + t;
        std::memcpy(u + (t + 2) * C, &s.q[r * qw], qw * sizeof(float));
        std::memcpy(u + (t + 2) * C + qw, &s.k[r * kw], kw * sizeof(float));
      }
    });
  }

  // 2. Causal conv.
  causal_conv(w, C, dh, seqs, n, s, c);

  // 3-5. q/k mean coupling on the raw projections, then L2 norm ×√dh (keys also × temp).
  qk_coupling(s.q.data(), s.k.data(), s.z.data(), n, nq, nk, dh, w.temp.data(), s.Q.data(), s.K.data());

  // 4. Values: the current token's half and the previous token's half (prev_x carries across calls).
  if (seqs.size() == 1 && seqs[0].n > 1 && !lora_rows) {
    // One sequence: its previous-token inputs are prev_x and x shifted by a row, so the product reads x in place
    // (a row's result does not depend on the rows computed with it) instead of a copy of the whole prompt.
    const AttentionInput& in = seqs[0];
    matmul(w.v_delayed, in.state->prev_x.data(), 1, s.v_del.data() + in.row * half, c);
    matmul(w.v_delayed, x + in.row * H, in.n - 1, s.v_del.data() + (in.row + 1) * half, c);
  } else {
    for (const AttentionInput& in : seqs) {
      std::memcpy(&s.x_prev[in.row * H], in.state->prev_x.data(), H * sizeof(float));
      if (in.n > 1)
        for_rows(in.n - 1, H, [&](size_t t0, size_t t1) {
          std::memcpy(&s.x_prev[(in.row + 1 + t0) * H], x + (in.row + t0) * H, (t1 - t0) * H * sizeof(float));
        });
    }
    matmul(w.v_delayed, s.x_prev.data(), n, s.v_del.data(), c);
    // Zyphra gates the previous token's value LoRA by the *current* token's flag (VL spec §6.2 step 5, pitfall P3).
    lora_add(w.v_delayed_lora, s.x_prev.data(), n, lora_rows, s.v_del.data(), s.lora, c);
  }
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

  // 6. RoPE at absolute positions; then the cache append and the state roll: conv_state ← last two u rows,
  // prev_x ← x of the last token.
  for (const AttentionInput& in : seqs) {
    for_rows(in.n, C, [&](size_t t0, size_t t1) {
      for (size_t t = t0; t < t1; ++t) {
        const int64_t pos = in.pos0 + static_cast<int64_t>(t);
        rope.apply_heads(&s.Q[(in.row + t) * qw], static_cast<int64_t>(nq), static_cast<int64_t>(dh), pos);
        rope.apply_heads(&s.K[(in.row + t) * kw], static_cast<int64_t>(nk), static_cast<int64_t>(dh), pos);
      }
    });
  }
  for (size_t i = 0; i < seqs.size(); ++i) {
    const AttentionInput& in = seqs[i];
    AttentionLayerState& st = *in.state;
    const size_t pos0 = static_cast<size_t>(in.pos0);
    st.reserve_positions(pos0, pos0 + in.n, nk, dh);
    for (size_t t = 0; t < in.n; ++t)
      for (size_t j = 0; j < nk; ++j) {
        std::memcpy(st.key(j, pos0 + t, dh), &s.K[(in.row + t) * kw + j * dh], dh * sizeof(float));
        std::memcpy(st.value(j, pos0 + t, dh), &s.V[(in.row + t) * kw + j * dh], dh * sizeof(float));
      }
    std::memcpy(st.conv_state.data(), &s.u_ext[(in.row + 2 * i + in.n) * C], 2 * C * sizeof(float));
    std::memcpy(st.prev_x.data(), x + (in.row + in.n - 1) * H, H * sizeof(float));
  }

  // 7. Causal GQA attention, softmax in fp32; a task covers the g query heads of one (token, kv head), so each
  // key/value row is read once for all of them. With fewer (token, kv head) pairs than threads each head is its own
  // task instead; a head's result does not depend on which heads share its call, so the bits are the same.
  s.image_keys.resize(seqs.size());
  for (size_t i = 0; i < seqs.size(); ++i) {
    const AttentionInput& in = seqs[i];
    s.image_keys[i].clear();
    if (last_image[i] >= 0 && in.mask == AttentionMask::ImagePairs) {
      s.image_keys[i].assign(static_cast<size_t>(in.pos0) + in.n, 1);  // earlier context: all before any query
      for (size_t t = 0; t < in.n; ++t) s.image_keys[i][in.pos0 + t] = in.image[t];
    }
  }
  const float scale = 1.0f / std::sqrt(static_cast<float>(dh));
  const size_t heads_per_task = n * nk >= default_pool().size() ? g : 1;
  const size_t tasks_per_token = nq / heads_per_task;
  // Tasks run from the last row down: within a sequence the longest ones are handed out first, so the pool's
  // chunks finish together.
  const size_t n_tasks = n * tasks_per_token;
  s.seq_of_row.resize(n);
  for (size_t i = 0; i < seqs.size(); ++i)
    std::fill(s.seq_of_row.begin() + static_cast<std::ptrdiff_t>(seqs[i].row),
              s.seq_of_row.begin() + static_cast<std::ptrdiff_t>(seqs[i].row + seqs[i].n), i);
  const size_t* seq_of_row = s.seq_of_row.data();
  default_pool().parallel_for(n_tasks, 1, [&](size_t b, size_t e) {
    for (size_t k = b; k < e; ++k) {
      const size_t task = n_tasks - 1 - k;
      const size_t row = task / tasks_per_token;
      const size_t i = seq_of_row[row];
      const AttentionInput& in = seqs[i];
      const size_t t = row - in.row;
      const size_t h0 = (task % tasks_per_token) * heads_per_task;
      const size_t j = h0 / g;
      const float* kc = in.state->key(j, 0, dh);
      const float* vc = in.state->value(j, 0, dh);
      const KeySpan keys = keys_for(in, t, last_image[i], s.image_keys[i].empty() ? nullptr : s.image_keys[i].data());
      const size_t at = row * qw + h0 * dh;
      if (!keys.mask) {
        gqa_attention(&s.Q[at], heads_per_task, kc, vc, dh, keys.n_keys, dh, scale, &s.attn[at]);
        continue;
      }
      // Image pairs: this query's keys are the causal prefix plus the call's image keys after it.
      thread_local std::vector<uint8_t> mask;
      mask.assign(keys.mask, keys.mask + keys.n_keys);
      std::fill(mask.begin(), mask.begin() + static_cast<std::ptrdiff_t>(in.pos0 + t + 1), 1);
      gqa_attention(&s.Q[at], heads_per_task, kc, vc, dh, keys.n_keys, dh, scale, &s.attn[at], mask.data());
    }
  });

  // 8. Output projection.
  matmul(w.o, s.attn.data(), n, out, c);
  lora_add(w.o_lora, s.attn.data(), n, lora_rows, out, s.lora, c);
}

}  // namespace zaya
