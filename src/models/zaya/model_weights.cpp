#include "models/zaya/model_weights.h"

#include <algorithm>

#include "models/weight_resolver.h"
#include "zaya/error.h"

namespace zaya {

namespace {

std::string S(int64_t v) { return std::to_string(v); }

// Tensor names of one layout, addressed by legacy layer index n (spec §2). The fused (ZAYA1-VL) layout uses the
// legacy names under model.layers.{n/2}.attn / .mlp (VL spec §2).
struct Names {
  Layout layout;
  int64_t n_blocks;

  bool native() const { return layout == Layout::Native; }
  std::string prefix(int64_t n) const {
    if (layout == Layout::Fused) return "model.layers." + S(n / 2) + (n % 2 == 0 ? ".attn." : ".mlp.");
    return "model.layers." + S(n) + ".";
  }
  std::string embedding() const { return "model.embed_tokens.weight"; }
  std::string final_norm() const { return native() ? "model.norm.weight" : "model.final_norm.weight"; }
  std::string input_norm(int64_t n) const {
    if (!native()) return prefix(n) + "input_norm.weight";
    return "model.layers." + S(n / 2) + (n % 2 == 0 ? ".input_layernorm.weight" : ".post_attention_layernorm.weight");
  }
  // Merge before legacy layer n; n = 2B is the final merge. `part` is hidden_states_scale, hidden_states_bias,
  // residual_scale or residual_bias.
  std::string merge(int64_t n, const std::string& part) const {
    if (!native()) return (n == 2 * n_blocks ? std::string("model.res_scale.") : prefix(n) + "res_scale.") + part;
    if (n == 0) return "model.input_" + part;  // only hidden_states_{scale,bias}
    if (n % 2 == 1) return "model.layers." + S((n - 1) / 2) + ".post_attention_residual_scale." + part;
    return "model.layers." + S(n / 2 - 1) + ".post_mlp_residual_scale." + part;
  }
  std::string attn(int64_t n, const std::string& legacy_part, const std::string& native_part) const {
    if (!native()) return prefix(n) + "self_attn.qkv." + legacy_part;
    return "model.layers." + S(n / 2) + ".self_attn.qkv_proj." + native_part;
  }
  std::string temp(int64_t n) const {
    return native() ? "model.layers." + S(n / 2) + ".self_attn.qk_norm.temp" : prefix(n) + "self_attn.qkv.temp";
  }
  std::string o_proj(int64_t n) const {
    return native() ? "model.layers." + S(n / 2) + ".self_attn.o_proj.weight" : prefix(n) + "self_attn.o_proj.weight";
  }
  std::string router(int64_t n, const std::string& legacy_part, const std::string& native_part) const {
    if (!native()) return prefix(n) + "zaya_block.router." + legacy_part;
    return "model.layers." + S(n / 2) + ".mlp.gate." + native_part;
  }
  std::string expert(int64_t n, int64_t e, const std::string& part) const {
    return prefix(n) + "zaya_block.experts.local_experts." + S(e) + "." + part;
  }
  std::string expert_fc1(int64_t n, int64_t e) const { return expert(n, e, "linear_fc1.weight"); }
  std::string expert_fc2(int64_t n, int64_t e) const { return expert(n, e, "linear_fc2.weight"); }
  // MLX/JANG bundles: VL bundles drop the source's `.mlp.` for the expert keys (bundle-formats §6); JANG's loader
  // accepts both spellings, and so do we (switch_mlp_alt).
  std::string switch_mlp(int64_t n) const {
    if (layout == Layout::Fused) return "model.layers." + S(n / 2) + ".zaya_block.experts.switch_mlp.";
    return prefix(n) + "zaya_block.experts.switch_mlp.";
  }
  std::string switch_mlp_alt(int64_t n) const { return prefix(n) + "zaya_block.experts.switch_mlp."; }
  std::string experts_gate_up(int64_t n) const { return "model.layers." + S(n / 2) + ".mlp.experts.gate_up_proj"; }
  std::string experts_down(int64_t n) const { return "model.layers." + S(n / 2) + ".mlp.experts.down_proj"; }
  // Vision-LoRA pair `name` (lora_linear_q, …) of attention layer n: A = .0, B = .1.
  std::string attn_lora(int64_t n, const std::string& name, int ab) const {
    const std::string where = name == "lora_linear_o" ? "self_attn." : "self_attn.qkv.";
    return prefix(n) + where + name + "." + S(ab) + ".weight";
  }
};

// Layer n's MoE has the EDA input scale unless it is the first MoE layer (n = 1).
bool has_eda_scale(const ModelConfig& c, int64_t n) { return c.use_eda && n > 1; }

}  // namespace

Layout detect_layout(const TensorStore& store) {
  if (store.find("model.layers.0.attn.input_norm.weight") || store.find("model.layers.0.mlp.input_norm.weight"))
    return Layout::Fused;
  if (store.find("model.layers.0.mlp.experts.gate_up_proj") || store.find("model.norm.weight")) return Layout::Native;
  if (store.find("model.layers.1.zaya_block.router.down_proj.weight") || store.find("model.final_norm.weight"))
    return Layout::Legacy;
  throw Error(cat(store.root(), ": cannot tell the checkpoint layout: neither model.layers.1.zaya_block.* (legacy) nor "
                                "model.layers.0.mlp.experts.gate_up_proj (native) is present"));
}

std::vector<ExpectedTensor> expected_tensors(const ModelConfig& c) {
  const Names nm{c.layout, c.n_blocks};
  const int64_t H = c.hidden, V = c.vocab, C = c.conv_channels(), dh = c.head_dim, D = c.router_hidden,
                I = c.expert_ffn, E = c.n_experts, R = c.router_outputs();
  std::vector<ExpectedTensor> out;
  auto add = [&](std::string name, std::vector<int64_t> shape, ExpectedTensor::Role role) {
    out.push_back({std::move(name), std::move(shape), role});
  };
  add(nm.embedding(), {V, H}, ExpectedTensor::Embedding);
  if (!c.tie_embeddings) add("lm_head.weight", {V, H}, ExpectedTensor::Embedding);
  for (int64_t n = 0; n <= 2 * c.n_blocks; ++n) {
    add(nm.merge(n, "hidden_states_scale"), {H}, ExpectedTensor::Norm);
    add(nm.merge(n, "hidden_states_bias"), {H}, ExpectedTensor::Norm);
    if (n > 0) {
      add(nm.merge(n, "residual_scale"), {H}, ExpectedTensor::Norm);
      add(nm.merge(n, "residual_bias"), {H}, ExpectedTensor::Norm);
    }
    if (n == 2 * c.n_blocks) break;
    add(nm.input_norm(n), {H}, ExpectedTensor::Norm);
    if (n % 2 == 0) {
      add(nm.attn(n, "linear_q.weight", "q_proj.weight"), {c.q_width(), H}, ExpectedTensor::Attention);
      add(nm.attn(n, "linear_k.weight", "k_proj.weight"), {c.kv_width(), H}, ExpectedTensor::Attention);
      add(nm.attn(n, "val_proj1.weight", "v_proj_current.weight"), {c.kv_width() / 2, H}, ExpectedTensor::Attention);
      add(nm.attn(n, "val_proj2.weight", "v_proj_delayed.weight"), {c.kv_width() / 2, H}, ExpectedTensor::Attention);
      add(nm.attn(n, "conv_qk.0.weight", "conv_qk_depthwise.weight"), {C, 1, 2}, ExpectedTensor::Attention);
      add(nm.attn(n, "conv_qk.0.bias", "conv_qk_depthwise.bias"), {C}, ExpectedTensor::Attention);
      add(nm.attn(n, "conv_qk.1.weight", "conv_qk_grouped.weight"), {C, dh, 2}, ExpectedTensor::Attention);
      add(nm.attn(n, "conv_qk.1.bias", "conv_qk_grouped.bias"), {C}, ExpectedTensor::Attention);
      add(nm.temp(n), {c.n_kv_heads}, ExpectedTensor::Attention);
      add(nm.o_proj(n), {H, c.q_width()}, ExpectedTensor::Attention);
      if (const int64_t r = c.vl.lora_rank_attn; r > 0) {
        const std::pair<const char*, int64_t> pairs[] = {{"lora_linear_q", c.q_width()}, {"lora_linear_k", c.kv_width()},
                                                         {"lora_val_proj1", c.kv_width() / 2},
                                                         {"lora_val_proj2", c.kv_width() / 2}, {"lora_linear_o", H}};
        for (auto [name, out_dim] : pairs) {
          const int64_t in_dim = std::string(name) == "lora_linear_o" ? c.q_width() : H;
          add(nm.attn_lora(n, name, 0), {r, in_dim}, ExpectedTensor::Lora);
          add(nm.attn_lora(n, name, 1), {out_dim, r}, ExpectedTensor::Lora);
        }
      }
    } else {
      add(nm.router(n, "down_proj.weight", "down_proj.weight"), {D, H}, ExpectedTensor::Router);
      add(nm.router(n, "down_proj.bias", "down_proj.bias"), {D}, ExpectedTensor::Router);
      if (has_eda_scale(c, n)) add(nm.router(n, "router_states_scale", "router_states_scale"), {D}, ExpectedTensor::Router);
      add(nm.router(n, "rmsnorm_eda.weight", "router_mlp.norm.weight"), {D}, ExpectedTensor::Router);
      add(nm.router(n, "router_mlp.0.weight", "router_mlp.fc1.weight"), {D, D}, ExpectedTensor::Router);
      add(nm.router(n, "router_mlp.0.bias", "router_mlp.fc1.bias"), {D}, ExpectedTensor::Router);
      add(nm.router(n, "router_mlp.2.weight", "router_mlp.fc2.weight"), {D, D}, ExpectedTensor::Router);
      add(nm.router(n, "router_mlp.2.bias", "router_mlp.fc2.bias"), {D}, ExpectedTensor::Router);
      add(nm.router(n, "router_mlp.4.weight", "router_mlp.out_proj.weight"), {R, D}, ExpectedTensor::Router);
      add(nm.router(n, "balancing_biases", "balancing_biases"), {R}, ExpectedTensor::Router);
      if (c.layout != Layout::Native) {
        for (int64_t e = 0; e < E; ++e) {
          add(nm.expert_fc1(n, e), {2 * I, H}, ExpectedTensor::Expert);
          add(nm.expert_fc2(n, e), {H, I}, ExpectedTensor::Expert);
          if (const int64_t r = c.vl.lora_rank_mlp; r > 0) {
            add(nm.expert(n, e, "lora_fc1.0.weight"), {r, H}, ExpectedTensor::Lora);
            add(nm.expert(n, e, "lora_fc1.1.weight"), {2 * I, r}, ExpectedTensor::Lora);
            add(nm.expert(n, e, "lora_fc2.0.weight"), {r, I}, ExpectedTensor::Lora);
            add(nm.expert(n, e, "lora_fc2.1.weight"), {H, r}, ExpectedTensor::Lora);
          }
        }
      } else {
        add(nm.experts_gate_up(n), {E, 2 * I, H}, ExpectedTensor::Expert);
        add(nm.experts_down(n), {E, H, I}, ExpectedTensor::Expert);
      }
    }
  }
  add(nm.final_norm(), {H}, ExpectedTensor::Norm);
  return out;
}

namespace {

struct Loader {
  const TensorStore& store;
  const ModelConfig& cfg;
  const WeightResolver& resolver;

  const TensorView& get(const std::string& name, const std::vector<int64_t>& shape) const {
    return store.require(name, shape);
  }
  std::vector<float> vec(const std::string& name, const std::vector<int64_t>& shape) const {
    const TensorView& t = get(name, shape);
    switch (t.dtype) {
      case DType::F32: case DType::F16: case DType::BF16: case DType::F64: break;
      default: throw Error(cat(t.file, ": tensor '", name, "' has dtype ", dtype_name(t.dtype), ", expected a float type"));
    }
    return to_f32(t);
  }
  // `name` ends in ".weight"; the resolver finds how the base path is stored (float, affine, fp mode, MXTQ).
  WeightMatrix mat(const std::string& name, int64_t rows, int64_t cols, int64_t stack = 0) const {
    const std::string suffix = ".weight";
    const std::string base = name.size() > suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0
                                 ? name.substr(0, name.size() - suffix.size()) : name;
    return resolver.matrix(base, rows, cols, stack);
  }
};

ResidualMergeWeights load_merge(const Loader& L, const Names& nm, int64_t n) {
  const int64_t H = L.cfg.hidden;
  ResidualMergeWeights m;
  m.hidden_scale = L.vec(nm.merge(n, "hidden_states_scale"), {H});
  m.hidden_bias = L.vec(nm.merge(n, "hidden_states_bias"), {H});
  if (n > 0) {
    m.residual_scale = L.vec(nm.merge(n, "residual_scale"), {H});
    m.residual_bias = L.vec(nm.merge(n, "residual_bias"), {H});
  }
  return m;
}

}  // namespace

ModelWeights ModelWeights::load(const TensorStore& store, const ModelConfig& c) {
  const Layout found = detect_layout(store);
  if (found != c.layout)
    throw Error(cat(store.root(), ": config.json describes the ", layout_name(c.layout), " layout but the tensors are in the ",
                    layout_name(found), " layout"));
  const Names nm{c.layout, c.n_blocks};
  const WeightResolver resolver(store, store.root());
  const Loader L{store, c, resolver};
  const int64_t H = c.hidden, V = c.vocab, C = c.conv_channels(), dh = c.head_dim, D = c.router_hidden,
                I = c.expert_ffn, E = c.n_experts, R = c.router_outputs();
  ModelWeights w;
  w.embedding = L.mat(nm.embedding(), V, H);
  w.lm_head = c.tie_embeddings ? w.embedding : L.mat("lm_head.weight", V, H);
  w.blocks.resize(static_cast<size_t>(c.n_blocks));
  for (int64_t n = 0; n < 2 * c.n_blocks; ++n) {
    BlockWeights& bw = w.blocks[n / 2];
    const bool is_attention = n % 2 == 0;
    (is_attention ? bw.attn_merge : bw.moe_merge) = load_merge(L, nm, n);
    (is_attention ? bw.attn_norm : bw.moe_norm) = L.vec(nm.input_norm(n), {H});
    if (is_attention) {
      AttentionWeights& a = bw.attn;
      a.q = L.mat(nm.attn(n, "linear_q.weight", "q_proj.weight"), c.q_width(), H);
      a.k = L.mat(nm.attn(n, "linear_k.weight", "k_proj.weight"), c.kv_width(), H);
      a.v_current = L.mat(nm.attn(n, "val_proj1.weight", "v_proj_current.weight"), c.kv_width() / 2, H);
      a.v_delayed = L.mat(nm.attn(n, "val_proj2.weight", "v_proj_delayed.weight"), c.kv_width() / 2, H);
      a.o = L.mat(nm.o_proj(n), H, c.q_width());
      a.conv0_w = L.vec(nm.attn(n, "conv_qk.0.weight", "conv_qk_depthwise.weight"), {C, 1, 2});
      a.conv0_b = L.vec(nm.attn(n, "conv_qk.0.bias", "conv_qk_depthwise.bias"), {C});
      // Kept in its stored dtype (F16 in bundles): per head group it is a [dh, dh·2] matrix for the matmul kernel.
      a.conv1 = weight_from_tensor(L.get(nm.attn(n, "conv_qk.1.weight", "conv_qk_grouped.weight"), {C, dh, 2}), C, 2 * dh);
      a.conv1_b = L.vec(nm.attn(n, "conv_qk.1.bias", "conv_qk_grouped.bias"), {C});
      a.temp = L.vec(nm.temp(n), {c.n_kv_heads});
      if (const int64_t r = c.vl.lora_rank_attn; r > 0) {
        auto lora = [&](const char* name, int64_t out_dim, int64_t in_dim) {
          return LoraWeights{L.mat(nm.attn_lora(n, name, 0), r, in_dim), L.mat(nm.attn_lora(n, name, 1), out_dim, r)};
        };
        a.q_lora = lora("lora_linear_q", c.q_width(), H);
        a.k_lora = lora("lora_linear_k", c.kv_width(), H);
        a.v_current_lora = lora("lora_val_proj1", c.kv_width() / 2, H);
        a.v_delayed_lora = lora("lora_val_proj2", c.kv_width() / 2, H);
        a.o_lora = lora("lora_linear_o", H, c.q_width());
      }
    } else {
      MoeWeights& m = bw.moe;
      m.router_down = L.mat(nm.router(n, "down_proj.weight", "down_proj.weight"), D, H);
      m.router_down_bias = L.vec(nm.router(n, "down_proj.bias", "down_proj.bias"), {D});
      if (has_eda_scale(c, n)) m.router_states_scale = L.vec(nm.router(n, "router_states_scale", "router_states_scale"), {D});
      m.router_norm = L.vec(nm.router(n, "rmsnorm_eda.weight", "router_mlp.norm.weight"), {D});
      m.router_fc1 = L.mat(nm.router(n, "router_mlp.0.weight", "router_mlp.fc1.weight"), D, D);
      m.router_fc1_bias = L.vec(nm.router(n, "router_mlp.0.bias", "router_mlp.fc1.bias"), {D});
      m.router_fc2 = L.mat(nm.router(n, "router_mlp.2.weight", "router_mlp.fc2.weight"), D, D);
      m.router_fc2_bias = L.vec(nm.router(n, "router_mlp.2.bias", "router_mlp.fc2.bias"), {D});
      m.router_out = L.mat(nm.router(n, "router_mlp.4.weight", "router_mlp.out_proj.weight"), R, D);
      m.balancing_biases = L.vec(nm.router(n, "balancing_biases", "balancing_biases"), {R});
      m.experts.resize(static_cast<size_t>(E));
      const std::string sw = resolver.has(nm.switch_mlp(n) + "gate_proj") ? nm.switch_mlp(n) : nm.switch_mlp_alt(n);
      if (c.layout != Layout::Native && resolver.has(sw + "gate_proj")) {
        // MLX/JANG bundles: experts pre-stacked as switch_mlp.{gate,up,down}_proj [E, out, in].
        WeightMatrix gate = L.mat(sw + "gate_proj.weight", I, H, E);
        WeightMatrix up = L.mat(sw + "up_proj.weight", I, H, E);
        WeightMatrix down = L.mat(sw + "down_proj.weight", H, I, E);
        for (int64_t e = 0; e < E; ++e) {
          m.experts[e].gate = gate.slice_rows(e * I, I);
          m.experts[e].up = up.slice_rows(e * I, I);
          m.experts[e].down = down.slice_rows(e * H, H);
        }
      } else if (c.layout != Layout::Native) {
        for (int64_t e = 0; e < E; ++e) {
          WeightMatrix fc1 = L.mat(nm.expert_fc1(n, e), 2 * I, H);
          m.experts[e].gate = fc1.slice_rows(0, I);
          m.experts[e].up = fc1.slice_rows(I, I);
          m.experts[e].down = L.mat(nm.expert_fc2(n, e), H, I);
        }
      } else {
        const TensorView& gu = L.get(nm.experts_gate_up(n), {E, 2 * I, H});
        const TensorView& dn = L.get(nm.experts_down(n), {E, H, I});
        WeightMatrix gate_up = weight_from_tensor(gu, E * 2 * I, H);
        WeightMatrix down = weight_from_tensor(dn, E * H, I);
        for (int64_t e = 0; e < E; ++e) {
          m.experts[e].gate = gate_up.slice_rows(e * 2 * I, I);
          m.experts[e].up = gate_up.slice_rows(e * 2 * I + I, I);
          m.experts[e].down = down.slice_rows(e * H, H);
        }
      }
      if (const int64_t r = c.vl.lora_rank_mlp; r > 0) {
        for (int64_t e = 0; e < E; ++e) {
          // fc1's B rows 0…I-1 belong to the gate half, I…2I-1 to the up half (same split as fc1 itself).
          const WeightMatrix a1 = L.mat(nm.expert(n, e, "lora_fc1.0.weight"), r, H);
          const WeightMatrix b1 = L.mat(nm.expert(n, e, "lora_fc1.1.weight"), 2 * I, r);
          m.experts[e].gate_lora = {a1, b1.slice_rows(0, I)};
          m.experts[e].up_lora = {a1, b1.slice_rows(I, I)};
          m.experts[e].down_lora = {L.mat(nm.expert(n, e, "lora_fc2.0.weight"), r, I),
                                    L.mat(nm.expert(n, e, "lora_fc2.1.weight"), H, r)};
        }
      }
    }
  }
  w.final_merge = load_merge(L, nm, 2 * c.n_blocks);
  w.final_norm = L.vec(nm.final_norm(), {H});
  return w;
}

size_t ModelWeights::bytes_per_token() const {
  size_t b = lm_head.bytes() + embedding.bytes() / static_cast<size_t>(std::max<int64_t>(1, embedding.rows));
  auto vec = [](const std::vector<float>& v) { return v.size() * sizeof(float); };
  auto merge = [&](const ResidualMergeWeights& m) {
    return vec(m.hidden_scale) + vec(m.hidden_bias) + vec(m.residual_scale) + vec(m.residual_bias);
  };
  for (const BlockWeights& bw : blocks) {
    const AttentionWeights& a = bw.attn;
    b += merge(bw.attn_merge) + vec(bw.attn_norm) + merge(bw.moe_merge) + vec(bw.moe_norm);
    b += a.q.bytes() + a.k.bytes() + a.v_current.bytes() + a.v_delayed.bytes() + a.o.bytes();
    b += vec(a.conv0_w) + a.conv1.bytes() + vec(a.conv0_b) + vec(a.conv1_b) + vec(a.temp);
    const MoeWeights& m = bw.moe;
    b += m.router_down.bytes() + m.router_fc1.bytes() + m.router_fc2.bytes() + m.router_out.bytes();
    b += vec(m.router_down_bias) + vec(m.router_states_scale) + vec(m.router_norm) + vec(m.router_fc1_bias) +
         vec(m.router_fc2_bias) + vec(m.balancing_biases);
    size_t experts = 0;
    for (const ExpertWeights& e : m.experts) experts += e.gate.bytes() + e.up.bytes() + e.down.bytes();
    b += experts / std::max<size_t>(1, m.experts.size());
  }
  return b + merge(final_merge) + vec(final_norm);
}

}  // namespace zaya
