#include "model/moe.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "zaya/kernels.h"
#include "zaya/thread_pool.h"

namespace zaya {

namespace {

inline float gelu_erf(float v) { return 0.5f * v * (1.0f + std::erf(v * 0.70710678118654752f)); }

// Tokens are independent: split over the pool in blocks.
void add_bias_gelu(float* a, const std::vector<float>& b, size_t n, size_t d) {
  default_pool().parallel_for(n, std::max<size_t>(1, 4096 / std::max<size_t>(d, 1)), [&](size_t t0, size_t t1) {
    for (size_t t = t0; t < t1; ++t)
      for (size_t i = 0; i < d; ++i) a[t * d + i] = gelu_erf(a[t * d + i] + b[i]);
  });
}

}  // namespace

void moe_layer(const MoeWeights& w, const ModelConfig& cfg, SkipRoute skip, const float* x, size_t n, float* rho,
               float* out, ForwardTrace* trace, int64_t layer) {
  const size_t H = cfg.hidden, D = cfg.router_hidden, E = cfg.n_experts, R = cfg.router_outputs(),
               I = cfg.expert_ffn;

  // Router down-projection and EDA: h = W·x + b (+ ρ_prev ⊙ scale); ρ ← h.
  std::vector<float> h(n * D);
  matmul(w.router_down, x, n, h.data());
  for (size_t t = 0; t < n; ++t)
    for (size_t i = 0; i < D; ++i) {
      float v = h[t * D + i] + w.router_down_bias[i];
      if (!w.router_states_scale.empty()) v += rho[t * D + i] * w.router_states_scale[i];
      h[t * D + i] = v;
    }
  std::memcpy(rho, h.data(), n * D * sizeof(float));

  // Router MLP: RMSNorm → GELU(fc1) → GELU(fc2) → logits over E (+ skip).
  std::vector<float> zn(n * D), a1(n * D), a2(n * D), logits(n * R);
  default_pool().parallel_for(n, std::max<size_t>(1, 16384 / D), [&](size_t t0, size_t t1) {
    for (size_t t = t0; t < t1; ++t)
      rmsnorm(&h[t * D], w.router_norm.data(), D, static_cast<float>(cfg.norm_eps), &zn[t * D]);
  });
  matmul(w.router_fc1, zn.data(), n, a1.data());
  add_bias_gelu(a1.data(), w.router_fc1_bias, n, D);
  matmul(w.router_fc2, a1.data(), n, a2.data());
  add_bias_gelu(a2.data(), w.router_fc2_bias, n, D);
  matmul(w.router_out, a2.data(), n, logits.data());

  // Selection: argmax of probability + balancing bias (ties → lowest index); the mixing weight is the unbiased
  // probability, not renormalized.
  std::vector<int64_t> choice(n);
  std::vector<float> prob(n);
  std::vector<float> P(R);
  for (size_t t = 0; t < n; ++t) {
    std::memcpy(P.data(), &logits[t * R], R * sizeof(float));
    softmax(P.data(), R);
    size_t best = 0;
    float best_score = P[0] + w.balancing_biases[0];
    for (size_t r = 1; r < R; ++r) {
      const float s = P[r] + w.balancing_biases[r];
      if (s > best_score) best = r, best_score = s;
    }
    choice[t] = static_cast<int64_t>(best);
    prob[t] = P[best];
  }

  // Experts: gather each expert's tokens so its weights are read once (matrix-matrix over its tokens).
  std::vector<std::vector<size_t>> tokens_of(E);
  for (size_t t = 0; t < n; ++t) {
    if (static_cast<size_t>(choice[t]) < E) {
      tokens_of[choice[t]].push_back(t);
    } else if (skip == SkipRoute::ScaledInput) {
      for (size_t i = 0; i < H; ++i) out[t * H + i] = prob[t] * x[t * H + i];
    } else {
      std::memset(out + t * H, 0, H * sizeof(float));
    }
  }
  for (size_t e = 0; e < E; ++e) {
    const auto& toks = tokens_of[e];
    if (toks.empty()) continue;
    const size_t m = toks.size();
    std::vector<float> xe(m * H), gate(m * I), up(m * I), act(m * I), ye(m * H);
    for (size_t i = 0; i < m; ++i) std::memcpy(&xe[i * H], x + toks[i] * H, H * sizeof(float));
    const ExpertWeights& ew = w.experts[e];
    matmul_multi({&ew.gate, &ew.up}, xe.data(), m, {gate.data(), up.data()});
    silu_mul(gate.data(), up.data(), m * I, act.data());
    matmul(ew.down, act.data(), m, ye.data());
    for (size_t i = 0; i < m; ++i) {
      const float p = prob[toks[i]];
      float* o = out + toks[i] * H;
      for (size_t c = 0; c < H; ++c) o[c] = p * ye[i * H + c];
    }
  }

  if (trace) {
    const std::string p = "router." + std::to_string(layer);
    trace->put(p + ".logits", logits.data(), logits.size());
    std::vector<float> cf(choice.begin(), choice.end());
    trace->put(p + ".choice", cf.data(), cf.size());
    trace->put(p + ".prob", prob.data(), prob.size());
    trace->put(p + ".eda_state", h.data(), h.size());
  }
}

}  // namespace zaya
