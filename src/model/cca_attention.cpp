#include "model/cca_attention.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "zaya/kernels.h"
#include "zaya/thread_pool.h"

namespace zaya {

namespace {

// Two-stage causal conv over the packed u = [q ‖ k] (spec §3.3 step 2). u_ext holds [u_{t0-2}, u_{t0-1}, u_t0 …]
// (n+2 rows of C); z receives n rows of C.
void causal_conv(const AttentionWeights& w, int64_t C, int64_t dh, const float* u_ext, size_t n, float* z) {
  // Rows are independent in both stages, so the element-wise loops are split over the pool in blocks of rows.
  ThreadPool& pool = default_pool();
  const size_t row_grain = std::max<size_t>(1, 16384 / static_cast<size_t>(C));
  // Depthwise stage, y_ext[j] for j = 1 … n+1 (stored at y[j-1]): y_j = b0 + w0[·,0]·u_{j-1} + w0[·,1]·u_j.
  std::vector<float> y((n + 1) * C);
  pool.parallel_for(n + 1, row_grain, [&](size_t j0, size_t j1) {
    for (size_t j = j0 + 1; j <= j1; ++j) {
      const float* older = u_ext + (j - 1) * C;
      const float* newer = u_ext + j * C;
      float* yj = y.data() + (j - 1) * C;
      for (int64_t c = 0; c < C; ++c) yj[c] = w.conv0_b[c] + w.conv0_w[2 * c] * older[c] + w.conv0_w[2 * c + 1] * newer[c];
    }
  });
  // Grouped stage: each head group of dh channels mixes densely over two taps (older, newer). Per group this is a
  // matrix product: the weights [dh out, dh in × 2 taps] are laid out exactly as the conv weight rows, so the inputs
  // are interleaved the same way (y_{t-1}[i], y_t[i]) and the fast matmul kernel does the work. All groups' inputs
  // are interleaved in one pass over the rows.
  const int64_t n_groups = C / dh;
  const size_t gs = n * 2 * dh;  // one group's interleaved inputs
  std::vector<float> xin(n_groups * gs), zg(n_groups * n * dh);
  pool.parallel_for(n, row_grain, [&](size_t t0, size_t t1) {
    for (size_t t = t0; t < t1; ++t)
      for (int64_t grp = 0; grp < n_groups; ++grp) {
        const float* y_old = y.data() + t * C + grp * dh;
        const float* y_new = y_old + C;
        float* xi = &xin[grp * gs + t * 2 * dh];
        for (int64_t i = 0; i < dh; ++i) xi[2 * i] = y_old[i], xi[2 * i + 1] = y_new[i];
      }
  });
  auto group_matmul = [&](int64_t grp) {
    matmul(w.conv1.slice_rows(grp * dh, dh), &xin[grp * gs], n, &zg[grp * n * dh]);
  };
  if (n < 16) {
    // A few tokens: each group's product is too small to split, so the groups are the parallel work (a matmul
    // inside a pool task runs on its thread; results do not depend on the split).
    pool.parallel_for(static_cast<size_t>(n_groups), 1, [&](size_t g0, size_t g1) {
      for (size_t grp = g0; grp < g1; ++grp) group_matmul(static_cast<int64_t>(grp));
    });
  } else {
    for (int64_t grp = 0; grp < n_groups; ++grp) group_matmul(grp);
  }
  for (int64_t grp = 0; grp < n_groups; ++grp) {
    const int64_t g0 = grp * dh;
    const float* zgg = &zg[grp * n * dh];
    for (size_t t = 0; t < n; ++t)
      for (int64_t i = 0; i < dh; ++i) z[t * C + g0 + i] = w.conv1_b[g0 + i] + zgg[t * dh + i];
  }
}

// v ← v · scale / ‖v‖₂ (no epsilon, as the legacy reference).
void l2_normalize(float* v, int64_t n, float scale) {
  const float norm = std::sqrt(dot(v, v, static_cast<size_t>(n)));
  const float f = scale / norm;
  for (int64_t i = 0; i < n; ++i) v[i] *= f;
}

}  // namespace

void cca_attention(const AttentionWeights& w, const ModelConfig& cfg, const Rope& rope, const float* x, size_t n,
                   int64_t pos0, AttentionLayerState& st, float* out, ForwardTrace* trace, int64_t layer) {
  const int64_t H = cfg.hidden, nq = cfg.n_heads, nk = cfg.n_kv_heads, dh = cfg.head_dim;
  const int64_t qw = cfg.q_width(), kw = cfg.kv_width(), C = cfg.conv_channels(), g = nq / nk;
  const float sqrt_dh = std::sqrt(static_cast<float>(dh));

  // 1. Projections (q, k and the current-token value half read the same x: one pass), packed after the two
  // conv-state rows.
  const int64_t half = kw / 2;
  std::vector<float> q(n * qw), k(n * kw), v_cur(n * half);
  matmul_multi({&w.q, &w.k, &w.v_current}, x, n, {q.data(), k.data(), v_cur.data()});
  std::vector<float> u_ext((n + 2) * C);
  std::memcpy(u_ext.data(), st.conv_state.data(), 2 * C * sizeof(float));
  for (size_t t = 0; t < n; ++t) {
    std::memcpy(&u_ext[(t + 2) * C], &q[t * qw], qw * sizeof(float));
    std::memcpy(&u_ext[(t + 2) * C + qw], &k[t * kw], kw * sizeof(float));
  }

  // 2. Causal conv.
  std::vector<float> z(n * C);
  causal_conv(w, C, dh, u_ext.data(), n, z.data());

  // 3-5. q/k mean coupling on the raw projections, then L2 norm ×√dh (keys also × temp). Tokens are independent, so
  // they are split over the pool (in blocks, as this is light work).
  std::vector<float> Q(n * qw), K(n * kw);
  const size_t token_grain = std::max<size_t>(1, 16384 / static_cast<size_t>(C));
  default_pool().parallel_for(n, token_grain, [&](size_t t0, size_t t1) {
    for (size_t t = t0; t < t1; ++t) {
      const float* qt = &q[t * qw];
      const float* kt = &k[t * kw];
      const float* zt = &z[t * C];
      for (int64_t j = 0; j < nk; ++j) {
        float* Kj = &K[t * kw + j * dh];
        for (int64_t i = 0; i < dh; ++i) Kj[i] = 0;
        for (int64_t h = j * g; h < (j + 1) * g; ++h) {
          float* Qh = &Q[t * qw + h * dh];
          for (int64_t i = 0; i < dh; ++i) {
            const float mq = 0.5f * (qt[h * dh + i] + kt[j * dh + i]);
            Qh[i] = zt[h * dh + i] + mq;
            Kj[i] += mq;
          }
        }
        for (int64_t i = 0; i < dh; ++i) Kj[i] = zt[qw + j * dh + i] + Kj[i] / static_cast<float>(g);
        l2_normalize(Kj, dh, sqrt_dh);
        for (int64_t i = 0; i < dh; ++i) Kj[i] *= w.temp[j];
      }
      for (int64_t h = 0; h < nq; ++h) l2_normalize(&Q[t * qw + h * dh], dh, sqrt_dh);
    }
  });

  // 4. Values: the current token's half and the previous token's half (prev_x carries across calls).
  std::vector<float> x_prev(n * H);
  std::memcpy(x_prev.data(), st.prev_x.data(), H * sizeof(float));
  if (n > 1) std::memcpy(x_prev.data() + H, x, (n - 1) * H * sizeof(float));
  std::vector<float> v_del(n * half), V(n * kw);
  matmul(w.v_delayed, x_prev.data(), n, v_del.data());
  for (size_t t = 0; t < n; ++t) {
    std::memcpy(&V[t * kw], &v_cur[t * half], half * sizeof(float));
    std::memcpy(&V[t * kw + half], &v_del[t * half], half * sizeof(float));
  }

  if (trace) {
    const std::string p = "cca." + std::to_string(layer);
    trace->put(p + ".q", Q.data(), Q.size());
    trace->put(p + ".k", K.data(), K.size());
    trace->put(p + ".v", V.data(), V.size());
  }

  // 6. RoPE at absolute positions.
  default_pool().parallel_for(n, token_grain, [&](size_t t0, size_t t1) {
    for (size_t t = t0; t < t1; ++t) {
      const int64_t pos = pos0 + static_cast<int64_t>(t);
      rope.apply_heads(&Q[t * qw], nq, dh, pos);
      rope.apply_heads(&K[t * kw], nk, dh, pos);
    }
  });

  // Cache append, then the state roll: conv_state ← last two u rows, prev_x ← x of the last token.
  st.k_cache.insert(st.k_cache.end(), K.begin(), K.end());
  st.v_cache.insert(st.v_cache.end(), V.begin(), V.end());
  std::memcpy(st.conv_state.data(), &u_ext[n * C], 2 * C * sizeof(float));
  std::memcpy(st.prev_x.data(), x + (n - 1) * H, H * sizeof(float));

  // 7. Causal GQA attention, softmax in fp32; a task covers the g query heads of one (token, kv head), so each
  // key/value row is read once for all of them. With too few tokens to keep the pool busy (decode) each head is its
  // own task instead; a head's result does not depend on which heads share its call, so the bits are the same.
  std::vector<float> attn(n * qw);
  const float* kc = st.k_cache.data();
  const float* vc = st.v_cache.data();
  const size_t heads_per_task = n * static_cast<size_t>(nk) >= 2 * default_pool().size() ? static_cast<size_t>(g) : 1;
  const size_t tasks_per_token = static_cast<size_t>(nq) / heads_per_task;
  // Tasks run from the last token down: the longest ones are handed out first, so the pool's chunks finish together.
  const size_t n_tasks = n * tasks_per_token;
  default_pool().parallel_for(n_tasks, 1, [&](size_t b, size_t e) {
    for (size_t i = b; i < e; ++i) {
      const size_t task = n_tasks - 1 - i;
      const size_t t = task / tasks_per_token;
      const size_t h0 = (task % tasks_per_token) * heads_per_task;
      const int64_t j = static_cast<int64_t>(h0) / g;
      const size_t n_keys = static_cast<size_t>(pos0) + t + 1;
      const size_t at = t * qw + h0 * dh;
      gqa_attention(&Q[at], heads_per_task, kc + j * dh, vc + j * dh, kw, n_keys, dh, 1.0f / sqrt_dh, &attn[at]);
    }
  });

  // 8. Output projection.
  matmul(w.o, attn.data(), n, out);
}

}  // namespace zaya
