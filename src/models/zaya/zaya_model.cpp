// The whole ZAYA1 forward pass (spec §3.6): embedding, then per legacy layer a residual merge, an RMSNorm and a
// mixer (CCA attention on even layers, MoE on odd ones), then the final merge, final norm and the tied lm_head.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "kernels/elementwise.h"
#include "kernels/format_table.h"
#include "kernels/kernels.h"
#include "kernels/profile.h"
#include "models/weight_memory.h"
#include "models/zaya/activations.h"
#include "models/zaya/cca_attention.h"
#include "models/zaya/model_weights.h"
#include "models/zaya/moe.h"
#include "models/zaya/rope.h"
#include "io/safetensors.h"
#include "zaya/error.h"
#include "zaya/model.h"

namespace zaya {

Model::~Model() = default;

const char* attention_mask_name(AttentionMask m) {
  switch (m) {
    case AttentionMask::Causal: return "causal";
    case AttentionMask::ZyphraPrefix: return "zyphra-fa2-prefix";
    case AttentionMask::ImagePairs: return "image-pairs";
  }
  return "?";
}

AttentionMask parse_attention_mask(const std::string& name) {
  for (AttentionMask m : {AttentionMask::Causal, AttentionMask::ZyphraPrefix, AttentionMask::ImagePairs})
    if (name == attention_mask_name(m)) return m;
  throw Error(cat("unknown attention mask '", name, "' (causal, zyphra-fa2-prefix or image-pairs)"));
}

bool Model::weights_copied() const { return store_->copied(); }

std::unique_ptr<Model> Model::load(const std::string& dir, const LoadOptions& opts) {
  std::unique_ptr<Model> m(new Model());
  m->cfg_ = ModelConfig::load(dir);
  const auto t0 = std::chrono::steady_clock::now();
  m->store_ = std::make_unique<TensorStore>(TensorStore::open(dir, file_access(opts.memory)));
  const double read_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  m->weights_ = std::make_unique<ModelWeights>(ModelWeights::load(*m->store_, m->cfg_));
  m->exact_ = opts.exact;
  m->int8_ = opts.int8;
  m->mask_ = opts.mask;
  m->skip_route_ = opts.override_skip_route ? opts.skip_route : m->cfg_.default_skip_route();
  if (opts.verbose) {
    std::fprintf(stderr, "zaya: %s layout, %lld attention + %lld MoE layers, hidden %lld, vocab %lld\n",
                 layout_name(m->cfg_.layout), static_cast<long long>(m->cfg_.n_blocks),
                 static_cast<long long>(m->cfg_.n_blocks), static_cast<long long>(m->cfg_.hidden),
                 static_cast<long long>(m->cfg_.vocab));
    const double gib = static_cast<double>(m->store_->file_bytes()) / (1 << 30);
    if (m->store_->copied())
      std::fprintf(stderr, "zaya: weights read into memory (%.2f GiB in %.2f s; --mmap keeps them mapped instead)\n", gib,
                   read_s);
    else
      std::fprintf(stderr, "zaya: weights mapped from the files (%.2f GiB)\n", gib);
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
  for (size_t blk = 0; blk < weights_->blocks.size(); ++blk) {
    const size_t n = 2 * blk + 1;
    const auto& b = weights_->blocks[blk].moe.balancing_biases;
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

namespace {

// Where each sequence's rows sit in the stacked batch, and which rows get logits.
struct BatchPlan {
  std::vector<size_t> offset;     // [items + 1]: first row of each sequence
  std::vector<size_t> head_rows;  // rows that get the final norm + lm_head, in item order
  size_t tokens() const { return offset.back(); }
};

BatchPlan plan_batch(std::span<Model::BatchItem> items, const ModelConfig& cfg, bool trace) {
  BatchPlan p;
  p.offset.assign(items.size() + 1, 0);
  // Validate everything before any state changes.
  for (size_t b = 0; b < items.size(); ++b) {
    const Model::BatchItem& it = items[b];
    const size_t nb = it.ids.size();
    if (!it.state) throw Error("forward_batch: item without a decode state");
    for (size_t c = 0; c < b; ++c)
      if (items[c].state == it.state) throw Error("forward_batch: the same decode state appears twice");
    for (size_t t = 0; t < nb; ++t)
      if (it.ids[t] < 0 || it.ids[t] >= cfg.vocab)
        throw Error(cat("token id ", it.ids[t], " at position ", t, " is outside the vocabulary [0, ", cfg.vocab, ")"));
    if (!it.embeddings.empty() && it.embeddings.size() != nb * static_cast<size_t>(cfg.hidden))
      throw Error(cat("forward_batch: ", it.embeddings.size(), " embedding values for ", nb, " tokens of width ",
                      cfg.hidden));
    if (!it.flags.empty() && (it.flags.size() != nb || it.embeddings.empty()))
      throw Error("forward_batch: token flags need one flag per token and the embedding rows they select");
    if (it.state->n_attention_layers() != static_cast<size_t>(cfg.n_blocks))
      throw Error("decode state was made for a different model");
    if (it.state->position() + static_cast<int64_t>(nb) > cfg.max_positions)
      throw Error(cat("context overflow: ", it.state->position(), " tokens in the state + ", nb,
                      " new exceed the model's max_position_embeddings = ", cfg.max_positions));
    p.offset[b + 1] = p.offset[b] + nb;
    // Final norm and lm_head only for the rows someone asked for (the 262k-row head is the largest single read).
    if (nb == 0) continue;
    if (it.mode == LogitsMode::All || trace)
      for (size_t t = 0; t < nb; ++t) p.head_rows.push_back(p.offset[b] + t);
    else if (it.mode == LogitsMode::Last)
      p.head_rows.push_back(p.offset[b] + nb - 1);
  }
  return p;
}

// The input rows: the embedding lookup, or the caller's precomputed rows where they are given.
void embed(const ModelWeights& w, std::span<Model::BatchItem> items, const BatchPlan& p, size_t H, float* m) {
  for (size_t b = 0; b < items.size(); ++b) {
    const Model::BatchItem& it = items[b];
    for (size_t t = 0; t < it.ids.size(); ++t) {
      float* row = m + (p.offset[b] + t) * H;
      const bool given = !it.embeddings.empty() && (it.flags.empty() || it.flags[t]);
      if (given) std::memcpy(row, it.embeddings.data() + t * H, H * sizeof(float));
      else decode_row(w.embedding, it.ids[t], row);
    }
  }
}

void merge(const ResidualMergeWeights& w, const float* m, float* r, size_t n, size_t H) {
  residual_merge(m, r, w.hidden_scale.data(), w.hidden_bias.data(),
                 w.has_residual() ? w.residual_scale.data() : nullptr,
                 w.has_residual() ? w.residual_bias.data() : nullptr, n, H);
}

}  // namespace

// The forward pass of spec §3.6: embed, then per block [merge → RMSNorm → CCA attention] and [merge → RMSNorm →
// MoE], then the final merge, the final norm and the lm_head.
void Model::forward_batch(std::span<BatchItem> items, ForwardTrace* trace) const {
  if (trace && items.size() != 1) throw Error("forward_batch: a trace needs a single sequence");
  const BatchPlan plan = plan_batch(items, cfg_, trace != nullptr);
  for (auto& it : items) it.logits.clear();
  const size_t n = plan.tokens();
  if (n == 0) return;
  const size_t H = cfg_.hidden, V = cfg_.vocab;
  const float eps = static_cast<float>(cfg_.norm_eps);
  const ModelWeights& w = *weights_;
  const Compute compute(nullptr, exact_ ? Precision::Exact : int8_ ? Precision::Int8 : Precision::Fast);
  const Rope rope(cfg_);
  ZayaActivations act;
  act.reserve(cfg_, n, items.size());
  std::vector<AttentionInput> seqs;
  seqs.reserve(items.size());
  std::fill(act.rho.begin(), act.rho.begin() + static_cast<std::ptrdiff_t>(n * cfg_.router_hidden), 0.0f);
  float* m = act.m.data();  // mixer output (the embedding before the first merge)
  float* r = act.r.data();  // residual stream
  float* x = act.x.data();  // normalized layer input

  embed(w, items, plan, H, m);
  // Image flags of every row (ZAYA1-VL: the LoRA gate and the mask policy); text models never use them.
  const bool vl_images = cfg_.vl.enabled && std::any_of(items.begin(), items.end(), [](const BatchItem& it) {
    return std::find(it.flags.begin(), it.flags.end(), 1) != it.flags.end();
  });
  if (vl_images)
    for (size_t i = 0; i < items.size(); ++i)
      for (size_t t = 0; t < items[i].ids.size(); ++t)
        act.flags[plan.offset[i] + t] = items[i].flags.empty() ? 0 : items[i].flags[t] != 0;
  const uint8_t* image = vl_images ? act.flags.data() : nullptr;
  for (size_t b = 0; b < w.blocks.size(); ++b) {
    const BlockWeights& bw = w.blocks[b];
    const int64_t attn_layer = static_cast<int64_t>(2 * b), moe_layer_index = attn_layer + 1;

    merge(bw.attn_merge, m, r, n, H);
    if (trace) trace->put(cat("residual_in.", attn_layer), r, n * H);
    rmsnorm_rows(r, bw.attn_norm.data(), n, H, eps, x);
    seqs.clear();
    for (size_t i = 0; i < items.size(); ++i) {  // each sequence attends against its own state
      const size_t nb = items[i].ids.size();
      if (nb == 0) continue;
      DecodeState& st = *items[i].state;
      seqs.push_back({plan.offset[i], nb, st.position(), &st.layer(b), image ? image + plan.offset[i] : nullptr, mask_});
    }
    cca_attention(bw.attn, cfg_, rope, seqs, x, n, image, m, act.attn, compute, trace, attn_layer);
    if (trace) trace->put(cat("mixer_out.", attn_layer), m, n * H);

    merge(bw.moe_merge, m, r, n, H);
    if (trace) trace->put(cat("residual_in.", moe_layer_index), r, n * H);
    rmsnorm_rows(r, bw.moe_norm.data(), n, H, eps, x);
    moe_layer(bw.moe, cfg_, skip_route_, x, n, image, act.rho.data(), m, act.moe, compute, trace, moe_layer_index);
    if (trace) trace->put(cat("mixer_out.", moe_layer_index), m, n * H);
  }
  for (auto& it : items) it.state->advance(static_cast<int64_t>(it.ids.size()));

  merge(w.final_merge, m, r, n, H);
  if (trace) trace->put("final_residual", r, n * H);
  const size_t k = plan.head_rows.size();
  act.head_in.resize(k * H);
  for (size_t i = 0; i < k; ++i) rmsnorm(r + plan.head_rows[i] * H, w.final_norm.data(), H, eps, &act.head_in[i * H]);
  if (trace) trace->put("final_hidden", act.head_in.data(), k * H);
  if (k == 0) return;
  act.logits.resize(k * V);
  {
    profile::PartScope part(profile::Part::LmHead);
    matmul(w.lm_head, act.head_in.data(), k, act.logits.data(), compute);
  }

  // Hand each sequence its rows (a trace computes every row; a Last item keeps only its final one).
  size_t at = 0;
  for (auto& it : items) {
    const size_t nb = it.ids.size();
    if (nb == 0 || (it.mode == LogitsMode::None && !trace)) continue;
    const size_t rows = (it.mode == LogitsMode::All || trace) ? nb : 1;
    if (it.mode == LogitsMode::Last)
      it.logits.assign(act.logits.begin() + (at + rows - 1) * V, act.logits.begin() + (at + rows) * V);
    else if (it.mode == LogitsMode::All)
      it.logits.assign(act.logits.begin() + at * V, act.logits.begin() + (at + rows) * V);
    at += rows;
  }
}

size_t Model::weight_bytes_per_token() const { return weights_->bytes_per_token(); }

}  // namespace zaya
