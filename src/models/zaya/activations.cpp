#include "models/zaya/activations.h"

#include <algorithm>

namespace zaya {

void ZayaActivations::reserve(const ModelConfig& cfg, size_t n, size_t seqs) {
  if (n <= capacity && seqs <= capacity_seqs) return;
  n = std::max(n, capacity);
  seqs = std::max(seqs, capacity_seqs);
  const size_t H = cfg.hidden, D = cfg.router_hidden, I = cfg.expert_ffn, R = cfg.router_outputs();
  const size_t qw = cfg.q_width(), kw = cfg.kv_width(), C = cfg.conv_channels(), dh = cfg.head_dim;
  const size_t groups = dh ? C / dh : 0;
  for (auto* v : {&m, &r, &x}) v->resize(n * H);
  rho.resize(n * D);
  attn.q.resize(n * qw);
  attn.k.resize(n * kw);
  attn.v_cur.resize(n * kw / 2);
  attn.u_ext.resize((n + 2 * seqs) * C);
  attn.conv_mid.resize((n + seqs) * C);
  attn.conv_in.resize(groups * n * 2 * dh);
  attn.conv_out.resize(groups * n * dh);
  attn.z.resize(n * C);
  attn.Q.resize(n * qw);
  attn.K.resize(n * kw);
  attn.V.resize(n * kw);
  attn.x_prev.resize(n * H);
  attn.v_del.resize(n * kw / 2);
  attn.attn.resize(n * qw);
  for (auto* v : {&moe.h, &moe.zn, &moe.a1, &moe.a2}) v->resize(n * D);
  moe.logits.resize(n * R);
  moe.prob.resize(n);
  moe.choice.resize(n);
  moe.order.resize(n);
  moe.expert_begin.resize(static_cast<size_t>(cfg.n_experts) + 1);
  moe.cursor.resize(static_cast<size_t>(cfg.n_experts));
  moe.xe.resize(n * H);
  moe.ye.resize(n * H);
  for (auto* v : {&moe.gate, &moe.up, &moe.act}) v->resize(n * I);
  moe.flags.resize(n);
  flags.resize(n);
  if (cfg.vl.lora_rank_attn > 0 || cfg.vl.lora_rank_mlp > 0) {
    const size_t widest = std::max({H, qw, I}), rank = static_cast<size_t>(std::max(cfg.vl.lora_rank_attn, cfg.vl.lora_rank_mlp));
    for (LoraScratch* l : {&attn.lora, &moe.lora}) {
      l->rows.resize(n);
      l->x.resize(n * widest);
      l->low.resize(n * rank);
      l->delta.resize(n * widest);
    }
  }
  capacity = n;
  capacity_seqs = seqs;
}

}  // namespace zaya
