// The whole ZAYA1 forward pass (spec §3.6): embedding, then per legacy layer a residual merge, an RMSNorm and a
// mixer (CCA attention on even layers, MoE on odd ones), then the final merge, final norm and the tied lm_head.
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "model/cca_attention.h"
#include "model/model_weights.h"
#include "model/moe.h"
#include "model/residual_merge.h"
#include "model/rope.h"
#include "zaya/error.h"
#include "zaya/kernels.h"
#include "zaya/model.h"
#include "zaya/safetensors.h"
#include "zaya/thread_pool.h"

namespace zaya {

Model::~Model() = default;

std::unique_ptr<Model> Model::load(const std::string& dir, const LoadOptions& opts) {
  std::unique_ptr<Model> m(new Model());
  m->cfg_ = ModelConfig::load(dir);
  m->store_ = std::make_unique<TensorStore>(TensorStore::open(dir, /*prefetch=*/true));
  m->weights_ = std::make_unique<ModelWeights>(ModelWeights::load(*m->store_, m->cfg_));
  if (opts.exact) for_each_matrix(*m->weights_, [](WeightMatrix& w) { w.exact_activations = true; });
  m->skip_route_ = opts.override_skip_route ? opts.skip_route : m->cfg_.default_skip_route();
  if (opts.verbose) {
    std::fprintf(stderr, "zaya: %s layout, %lld attention + %lld MoE layers, hidden %lld, vocab %lld\n",
                 layout_name(m->cfg_.layout), static_cast<long long>(m->cfg_.n_blocks),
                 static_cast<long long>(m->cfg_.n_blocks), static_cast<long long>(m->cfg_.hidden),
                 static_cast<long long>(m->cfg_.vocab));
    if (m->cfg_.use_mod) {
      std::fprintf(stderr, "zaya: skip route semantics: %s (%s)\n", skip_route_name(m->skip_route_),
                   opts.override_skip_route ? "set by option" : "layout default");
      std::string reach;
      int n_reachable = 0;
      for (auto [layer, ok] : m->skip_route_reachability()) {
        reach += cat(" ", layer, ok ? ":yes" : ":no");
        n_reachable += ok;
      }
      std::fprintf(stderr, "zaya: skip route reachable in %d MoE layers (layer:reachable)%s\n", n_reachable,
                   reach.c_str());
    }
  }
  return m;
}

std::vector<std::pair<int64_t, bool>> Model::skip_route_reachability() const {
  std::vector<std::pair<int64_t, bool>> out;
  if (!cfg_.use_mod) return out;
  const size_t E = cfg_.n_experts;
  for (size_t n = 1; n < weights_->layers.size(); n += 2) {
    const auto& b = weights_->layers[n].moe.balancing_biases;
    float max_expert = b[0];
    for (size_t e = 1; e < E; ++e) max_expert = std::max(max_expert, b[e]);
    // Probabilities lie in [0, 1], so skip can only win if b_skip + 1 > max_e b_e.
    out.emplace_back(static_cast<int64_t>(n), b[E] + 1.0f > max_expert);
  }
  return out;
}

std::vector<float> Model::forward(std::span<const int32_t> ids, DecodeState& st, LogitsMode mode,
                                  ForwardTrace* trace) const {
  BatchItem item{ids, &st, mode, {}};
  forward_batch(std::span(&item, 1), trace);
  return std::move(item.logits);
}

void Model::forward_batch(std::span<BatchItem> items, ForwardTrace* trace) const {
  const size_t H = cfg_.hidden, V = cfg_.vocab, D = cfg_.router_hidden;
  // Validate everything before any state changes.
  std::vector<size_t> offset(items.size() + 1, 0);
  for (size_t b = 0; b < items.size(); ++b) {
    const BatchItem& it = items[b];
    if (!it.state) throw Error("forward_batch: item without a decode state");
    for (size_t c = 0; c < b; ++c)
      if (items[c].state == it.state) throw Error("forward_batch: the same decode state appears twice");
    for (size_t t = 0; t < it.ids.size(); ++t)
      if (it.ids[t] < 0 || it.ids[t] >= static_cast<int64_t>(V))
        throw Error(cat("token id ", it.ids[t], " at position ", t, " is outside the vocabulary [0, ", V, ")"));
    if (it.state->n_attention_layers() != static_cast<size_t>(cfg_.n_blocks))
      throw Error("decode state was made for a different model");
    if (it.state->position() + static_cast<int64_t>(it.ids.size()) > cfg_.max_positions)
      throw Error(cat("context overflow: ", it.state->position(), " tokens in the state + ", it.ids.size(),
                      " new exceed the model's max_position_embeddings = ", cfg_.max_positions));
    offset[b + 1] = offset[b] + it.ids.size();
  }
  const size_t n = offset.back();
  for (auto& it : items) it.logits.clear();
  if (n == 0) return;
  if (trace && items.size() != 1) throw Error("forward_batch: a trace needs a single sequence");
  const ModelWeights& w = *weights_;
  const Rope rope(cfg_);

  // Embedding lookup, then the first merge (no residual term). Rows of all sequences are stacked.
  std::vector<float> m(n * H), r(n * H), x(n * H), rho(n * D, 0.0f);
  for (size_t b = 0; b < items.size(); ++b)
    for (size_t t = 0; t < items[b].ids.size(); ++t) w.embedding.row_to_f32(items[b].ids[t], &m[(offset[b] + t) * H]);

  // Per-token element-wise work (norms) is split over the pool in blocks of tokens.
  const size_t token_grain = std::max<size_t>(1, 16384 / H);
  for (size_t l = 0; l < w.layers.size(); ++l) {
    const LayerWeights& lw = w.layers[l];
    residual_merge(lw.merge, m.data(), r.data(), n, H);
    if (trace) trace->put(cat("residual_in.", l), r.data(), r.size());
    default_pool().parallel_for(n, token_grain, [&](size_t t0, size_t t1) {
      for (size_t t = t0; t < t1; ++t)
        rmsnorm(&r[t * H], lw.input_norm.data(), H, static_cast<float>(cfg_.norm_eps), &x[t * H]);
    });
    if (lw.is_attention) {
      for (size_t b = 0; b < items.size(); ++b) {
        const size_t nb = items[b].ids.size();
        if (nb == 0) continue;
        DecodeState& st = *items[b].state;
        cca_attention(lw.attn, cfg_, rope, &x[offset[b] * H], nb, st.position(), st.layer(l / 2), &m[offset[b] * H],
                      trace, static_cast<int64_t>(l));
      }
    } else {
      moe_layer(lw.moe, cfg_, skip_route_, x.data(), n, rho.data(), m.data(), trace, static_cast<int64_t>(l));
    }
    if (trace) trace->put(cat("mixer_out.", l), m.data(), m.size());
  }
  for (auto& it : items) it.state->advance(static_cast<int64_t>(it.ids.size()));

  residual_merge(w.final_merge, m.data(), r.data(), n, H);
  if (trace) trace->put("final_residual", r.data(), r.size());

  // Final norm and lm_head only for the rows someone asked for (the 262k-row head is the largest single read).
  std::vector<size_t> rows;
  for (size_t b = 0; b < items.size(); ++b) {
    const size_t nb = items[b].ids.size();
    if (nb == 0) continue;
    const bool all = items[b].mode == LogitsMode::All || trace;
    if (all) for (size_t t = 0; t < nb; ++t) rows.push_back(offset[b] + t);
    else if (items[b].mode == LogitsMode::Last) rows.push_back(offset[b] + nb - 1);
  }
  std::vector<float> y(rows.size() * H);
  for (size_t i = 0; i < rows.size(); ++i)
    rmsnorm(&r[rows[i] * H], w.final_norm.data(), H, static_cast<float>(cfg_.norm_eps), &y[i * H]);
  if (trace) trace->put("final_hidden", y.data(), y.size());
  if (rows.empty()) return;
  std::vector<float> logits(rows.size() * V);
  matmul(w.lm_head, y.data(), rows.size(), logits.data());
  size_t at = 0;
  for (size_t b = 0; b < items.size(); ++b) {
    const size_t nb = items[b].ids.size();
    if (nb == 0 || items[b].mode == LogitsMode::None) {
      if (trace && nb) at += nb;
      continue;
    }
    const size_t k = (items[b].mode == LogitsMode::All || trace) ? nb : 1;
    if (items[b].mode == LogitsMode::Last && k > 1) {
      items[b].logits.assign(logits.begin() + (at + k - 1) * V, logits.begin() + (at + k) * V);
    } else {
      items[b].logits.assign(logits.begin() + at * V, logits.begin() + (at + k) * V);
    }
    at += k;
  }
}

}  // namespace zaya
