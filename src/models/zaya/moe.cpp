// The MoE layer (spec §3.4) as the spec orders it: router (EDA down-projection, MLP, logits), top-1 selection with
// balancing biases, the chosen expert's SwiGLU MLP scaled by its probability, or the skip route.
#include "models/zaya/moe.h"

#include <algorithm>
#include <cstring>
#include <optional>
#include <string>

#include "kernels/elementwise.h"
#include "kernels/profile.h"
#include "models/zaya/lora.h"

namespace zaya {

void moe_layer(const MoeWeights& w, const ModelConfig& cfg, SkipRoute skip, const float* x, size_t n,
               const uint8_t* image, float* rho, float* out, MoeScratch& s, const Compute& c, ForwardTrace* trace,
               int64_t layer) {
  const size_t H = cfg.hidden, D = cfg.router_hidden, E = cfg.n_experts, R = cfg.router_outputs(),
               I = cfg.expert_ffn;
  const float eps = static_cast<float>(cfg.router_norm_eps);

  std::optional<profile::PartScope> part(std::in_place, profile::Part::Router);
  // Router down-projection and EDA: h = W·x + b (+ ρ_prev ⊙ scale); ρ ← h.
  matmul(w.router_down, x, n, s.h.data(), c);
  eda_mix(s.h.data(), w.router_down_bias.data(), w.router_states_scale.empty() ? nullptr : w.router_states_scale.data(),
          rho, n, D);

  // Router MLP: RMSNorm → GELU(fc1) → GELU(fc2) → logits over E (+ skip).
  rmsnorm_rows(s.h.data(), w.router_norm.data(), n, D, eps, s.zn.data());
  matmul(w.router_fc1, s.zn.data(), n, s.a1.data(), c);
  bias_gelu(s.a1.data(), w.router_fc1_bias.data(), n, D);
  matmul(w.router_fc2, s.a1.data(), n, s.a2.data(), c);
  bias_gelu(s.a2.data(), w.router_fc2_bias.data(), n, D);
  matmul(w.router_out, s.a2.data(), n, s.logits.data(), c);

  // Selection: argmax of probability + balancing bias (ties → lowest index); the mixing weight is the unbiased
  // probability, not renormalized. Softmax runs in place on the logits rows (the trace reads them first).
  if (trace) trace->put("router." + std::to_string(layer) + ".logits", s.logits.data(), n * R);
  for (size_t t = 0; t < n; ++t) {
    float* P = &s.logits[t * R];
    softmax(P, R);
    size_t best = 0;
    float best_score = P[0] + w.balancing_biases[0];
    for (size_t r = 1; r < R; ++r) {
      const float score = P[r] + w.balancing_biases[r];
      if (score > best_score) best = r, best_score = score;
    }
    s.choice[t] = static_cast<int32_t>(best);
    s.prob[t] = P[best];
  }

  part.emplace(profile::Part::Experts);
  // Tokens grouped by expert (counting sort), so each expert's weights are read once for all its tokens.
  std::fill(s.expert_begin.begin(), s.expert_begin.end(), 0);
  for (size_t t = 0; t < n; ++t)
    if (static_cast<size_t>(s.choice[t]) < E) ++s.expert_begin[s.choice[t] + 1];
  for (size_t e = 0; e < E; ++e) s.expert_begin[e + 1] += s.expert_begin[e];
  {
    std::vector<size_t>& fill = s.cursor;  // the counting sort's write cursors
    std::copy(s.expert_begin.begin(), s.expert_begin.end() - 1, fill.begin());
    for (size_t t = 0; t < n; ++t) {
      const size_t e = static_cast<size_t>(s.choice[t]);
      if (e < E) {
        s.order[fill[e]++] = static_cast<int32_t>(t);
      } else if (skip == SkipRoute::ScaledInput) {
        for (size_t i = 0; i < H; ++i) out[t * H + i] = s.prob[t] * x[t * H + i];
      } else {
        std::memset(out + t * H, 0, H * sizeof(float));
      }
    }
  }
  for (size_t e = 0; e < E; ++e) {
    const size_t b = s.expert_begin[e], m = s.expert_begin[e + 1] - b;
    if (m == 0) continue;
    const int32_t* toks = &s.order[b];
    bool any_image = false;
    for (size_t i = 0; i < m; ++i) {
      s.flags[i] = image ? image[toks[i]] : 0;
      any_image = any_image || s.flags[i];
    }
    for_rows(m, H, [&](size_t i0, size_t i1) {
      for (size_t i = i0; i < i1; ++i) std::memcpy(&s.xe[i * H], x + toks[i] * H, H * sizeof(float));
    });
    const uint8_t* lora_rows = any_image ? s.flags.data() : nullptr;
    const ExpertWeights& ew = w.experts[e];
    matmul_multi({&ew.gate, &ew.up}, s.xe.data(), m, {s.gate.data(), s.up.data()}, c);
    lora_add(ew.gate_lora, s.xe.data(), m, lora_rows, s.gate.data(), s.lora, c);
    lora_add(ew.up_lora, s.xe.data(), m, lora_rows, s.up.data(), s.lora, c);
    silu_mul(s.gate.data(), s.up.data(), m * I, s.act.data());
    matmul(ew.down, s.act.data(), m, s.ye.data(), c);
    lora_add(ew.down_lora, s.act.data(), m, lora_rows, s.ye.data(), s.lora, c);
    for_rows(m, H, [&](size_t i0, size_t i1) {
      for (size_t i = i0; i < i1; ++i) {
        const float p = s.prob[toks[i]];
        float* o = out + toks[i] * H;
        for (size_t col = 0; col < H; ++col) o[col] = p * s.ye[i * H + col];
      }
    });
  }

  part.reset();
  if (trace) {
    const std::string p = "router." + std::to_string(layer);
    std::vector<float> cf(s.choice.begin(), s.choice.begin() + static_cast<std::ptrdiff_t>(n));
    trace->put(p + ".choice", cf.data(), n);
    trace->put(p + ".prob", s.prob.data(), n);
    trace->put(p + ".eda_state", s.h.data(), n * D);
  }
}

}  // namespace zaya
