#include "zaya/config.h"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "util/json_limits.h"
#include "zaya/error.h"
#include "zaya/limits.h"

namespace zaya {
using json = nlohmann::json;

const char* layout_name(Layout l) {
  return l == Layout::Legacy ? "legacy" : l == Layout::Native ? "native" : "fused (ZAYA1-VL)";
}
const char* skip_route_name(SkipRoute s) { return s == SkipRoute::ScaledInput ? "p*x" : "zero"; }

int64_t ModelConfig::rotary_dims() const {
  return static_cast<int64_t>(std::floor(static_cast<double>(head_dim) * partial_rotary_factor));
}

namespace {

// Typed access to config keys with errors that name the file and key.
struct Reader {
  const json& j;
  const std::string& src;

  Error err(const std::string& key, const std::string& why) const {
    return Error(cat(src, ": '", key, "' ", why));
  }
  bool has(const std::string& k) const { return j.contains(k) && !j.at(k).is_null(); }
  int64_t integer(const std::string& k) const {
    if (!has(k)) throw err(k, "is missing");
    const json& v = j.at(k);
    if (v.is_number_unsigned() && v.get<uint64_t>() > uint64_t(INT64_MAX)) throw err(k, cat("= ", v.dump(), " is out of range"));
    if (v.is_number_integer()) return v.get<int64_t>();
    if (v.is_number_float() && std::floor(v.get<double>()) == v.get<double>()) {
      // 1e300 is a whole number too, but no int64: casting it would be undefined (and read as negative).
      if (std::fabs(v.get<double>()) >= 9.2e18) throw err(k, cat("= ", v.dump(), " is out of range"));
      return static_cast<int64_t>(v.get<double>());
    }
    throw err(k, cat("must be an integer, got ", v.dump()));
  }
  int64_t integer(const std::string& k, int64_t def) const { return has(k) ? integer(k) : def; }
  int64_t positive(const std::string& k) const {
    int64_t v = integer(k);
    if (v <= 0) throw err(k, cat("must be positive, got ", v));
    return v;
  }
  int64_t positive(const std::string& k, int64_t def) const { return has(k) ? positive(k) : def; }
  double number(const std::string& k) const {
    if (!has(k)) throw err(k, "is missing");
    if (!j.at(k).is_number()) throw err(k, cat("must be a number, got ", j.at(k).dump()));
    return j.at(k).get<double>();
  }
  double number(const std::string& k, double def) const { return has(k) ? number(k) : def; }
  bool boolean(const std::string& k, bool def) const {
    if (!has(k)) return def;
    if (!j.at(k).is_boolean()) throw err(k, cat("must be true or false, got ", j.at(k).dump()));
    return j.at(k).get<bool>();
  }
  std::string string(const std::string& k, const std::string& def) const {
    if (!has(k)) return def;
    if (!j.at(k).is_string()) throw err(k, cat("must be a string, got ", j.at(k).dump()));
    return j.at(k).get<std::string>();
  }
  void require_value(const std::string& k, const json& want, const std::string& why) const {
    if (has(k) && j.at(k) != want) throw err(k, cat("= ", j.at(k).dump(), " is not supported: ", why));
  }
};

void parse_legacy(const Reader& r, ModelConfig& c) {
  const int64_t L = r.positive("num_hidden_layers");
  if (c.layout == Layout::Fused) {
    c.n_blocks = L;  // ZAYA1-VL counts blocks (attention + MoE each)
  } else {
    if (L % 2 != 0) throw r.err("num_hidden_layers", cat("= ", L, " must be even in the legacy layout (attention and MoE layers alternate)"));
    c.n_blocks = L / 2;
  }
  c.n_kv_heads = r.has("num_query_groups") ? r.positive("num_query_groups") : r.positive("num_key_value_heads");
  if (r.has("num_key_value_heads") && r.integer("num_key_value_heads") != c.n_kv_heads)
    throw r.err("num_key_value_heads", cat("= ", r.integer("num_key_value_heads"), " differs from num_query_groups = ", c.n_kv_heads));
  c.head_dim = r.has("head_dim") ? r.positive("head_dim") : r.positive("kv_channels");
  const int64_t ffn = r.positive("ffn_hidden_size");
  const bool gated = r.boolean("gated_linear_unit", true);
  if (!gated) throw r.err("gated_linear_unit", "= false is not supported (ZAYA experts are SwiGLU)");
  if (ffn % 2 != 0) throw r.err("ffn_hidden_size", cat("= ", ffn, " must be even (gate and up halves)"));
  c.expert_ffn = ffn / 2;
  c.router_hidden = r.positive("zaya_mlp_expansion");
  c.norm_eps = r.number("norm_epsilon", 1e-5);
  c.router_norm_eps = c.norm_eps;
  if (c.layout == Layout::Fused) {
    // ZAYA1-VL spec §1.2: rotary_base overrides rope_theta; partial_rotary_factor defaults to 0.5; the router norm
    // reads layernorm_epsilon, else 1e-6; rope_scaling is never applied.
    c.rope_theta = r.has("rotary_base") ? r.number("rotary_base") : r.number("rope_theta");
    c.partial_rotary_factor = r.number("partial_rotary_factor", 0.5);
    c.router_norm_eps = r.number("layernorm_epsilon", 1e-6);
  } else {
    c.rope_theta = r.number("rope_theta");
    c.partial_rotary_factor = r.number("partial_rotary_factor", 1.0);
  }
  c.use_mod = r.boolean("zaya_use_mod", true);
  c.use_eda = r.boolean("zaya_use_eda", true);
  if (r.integer("moe_router_topk", 1) != 1) throw r.err("moe_router_topk", "must be 1 (ZAYA routes each token to one expert)");
  if (!r.boolean("scale_residual_merge", true)) throw r.err("scale_residual_merge", "= false is not supported");
  r.require_value("activation_func", "swiglu", "experts are SwiGLU");
  if (r.boolean("add_bias_linear", false)) throw r.err("add_bias_linear", "= true is not supported");
  if (c.layout != Layout::Fused && r.has("rope_scaling") && r.j.at("rope_scaling") != json(false))
    throw r.err("rope_scaling", cat("= ", r.j.at("rope_scaling").dump(), " is not supported (only no scaling)"));
  if (r.boolean("clamp_temp", false)) throw r.err("clamp_temp", "= true is not supported");
  if (r.has("swa_layers")) throw r.err("swa_layers", "sliding-window layers are not supported");
}

void parse_native(const Reader& r, ModelConfig& c) {
  c.n_blocks = r.positive("num_hidden_layers");
  c.n_kv_heads = r.positive("num_key_value_heads");
  c.head_dim = r.positive("head_dim");
  c.expert_ffn = r.positive("moe_intermediate_size");
  c.router_hidden = r.positive("router_hidden_size");
  c.norm_eps = r.number("rms_norm_eps", 1e-5);
  c.router_norm_eps = c.norm_eps;
  if (r.integer("num_experts_per_tok", 1) != 1) throw r.err("num_experts_per_tok", "must be 1 (ZAYA routes each token to one expert)");
  r.require_value("hidden_act", "silu", "experts are SwiGLU");
  if (r.has("layer_types")) {
    const json& lt = r.j.at("layer_types");
    if (!lt.is_array()) throw r.err("layer_types", "must be a list");
    if (static_cast<int64_t>(lt.size()) != c.n_blocks)
      throw r.err("layer_types", cat("has ", lt.size(), " entries but num_hidden_layers is ", c.n_blocks));
    for (const auto& t : lt)
      if (t != "hybrid") throw r.err("layer_types", cat("entry ", t.dump(), " is not supported (only \"hybrid\")"));
  }
  // rope parameters live under rope_parameters.hybrid; fall back to top-level keys.
  double theta = -1, partial = r.number("partial_rotary_factor", -1);
  if (r.has("rope_parameters")) {
    const json& rp = r.j.at("rope_parameters");
    if (!rp.is_object()) throw r.err("rope_parameters", "must be an object");
    const json* h = rp.contains("hybrid") ? &rp.at("hybrid") : &rp;
    if (!h->is_object()) throw r.err("rope_parameters.hybrid", "must be an object");
    if (h->contains("rope_type") && h->at("rope_type") != "default")
      throw r.err("rope_parameters.hybrid.rope_type", cat("= ", h->at("rope_type").dump(), " is not supported"));
    if (h->contains("rope_theta")) {
      if (!h->at("rope_theta").is_number()) throw r.err("rope_parameters.hybrid.rope_theta", "must be a number");
      theta = h->at("rope_theta").get<double>();
    }
    if (h->contains("partial_rotary_factor")) {
      if (!h->at("partial_rotary_factor").is_number()) throw r.err("rope_parameters.hybrid.partial_rotary_factor", "must be a number");
      partial = h->at("partial_rotary_factor").get<double>();
    }
  }
  if (theta < 0) theta = r.number("rope_theta");
  c.rope_theta = theta;
  c.partial_rotary_factor = partial < 0 ? 1.0 : partial;
  c.use_mod = true;
  c.use_eda = true;
}

std::vector<int64_t> id_list(const Reader& r, const std::string& k) {
  if (!r.has(k)) return {};
  const json& v = r.j.at(k);
  if (v.is_number_integer()) return {v.get<int64_t>()};
  if (v.is_array()) {
    std::vector<int64_t> out;
    for (const auto& x : v) {
      if (!x.is_number_integer()) throw r.err(k, "must be an integer or a list of integers");
      out.push_back(x.get<int64_t>());
    }
    return out;
  }
  throw r.err(k, "must be an integer or a list of integers");
}

// The geometry limits of zaya/limits.h, checked before any size is computed from the config (docs/limits.md).
void check_limits(const ModelConfig& c, const std::string& source) {
  const bool legacy = c.layout == Layout::Legacy;
  const struct {
    const char* key;
    int64_t value, max;
    const char* limit;
  } dims[] = {
      {"hidden_size", c.hidden, limits::kMaxHiddenSize, "kMaxHiddenSize"},
      {"num_hidden_layers", legacy ? 2 * c.n_blocks : c.n_blocks, limits::kMaxLayers, "kMaxLayers"},
      {"num_attention_heads", c.n_heads, limits::kMaxHeads, "kMaxHeads"},
      {legacy ? "num_query_groups" : "num_key_value_heads", c.n_kv_heads, limits::kMaxHeads, "kMaxHeads"},
      {"head_dim", c.head_dim, limits::kMaxHeadDim, "kMaxHeadDim"},
      {"num_experts", c.n_experts, limits::kMaxExperts, "kMaxExperts"},
      {legacy ? "ffn_hidden_size / 2" : "moe_intermediate_size", c.expert_ffn, limits::kMaxFfnSize, "kMaxFfnSize"},
      {legacy ? "zaya_mlp_expansion" : "router_hidden_size", c.router_hidden, limits::kMaxFfnSize, "kMaxFfnSize"},
      {"vocab_size", c.vocab, limits::kMaxVocab, "kMaxVocab"},
      {"max_position_embeddings", c.max_positions, limits::kMaxPositions, "kMaxPositions"},
  };
  for (const auto& d : dims)
    if (d.value > d.max)
      throw Error(cat(source, ": '", d.key, "' = ", d.value, " exceeds the limit ", d.max, " (zaya::limits::", d.limit,
                      ", docs/limits.md)"));
}

void check_consistency(const Reader& r, ModelConfig& c) {
  // After the limits, which keep every product of dimensions below in range.
  check_limits(c, r.src);
  if (c.n_heads % c.n_kv_heads != 0)
    throw Error(cat(r.src, ": num_attention_heads = ", c.n_heads, " is not a multiple of the KV heads = ", c.n_kv_heads));
  if (c.conv_kernel0 != 2 || c.conv_kernel1 != 2)
    throw Error(cat(r.src, ": cca_time0/cca_time1 = ", c.conv_kernel0, "/", c.conv_kernel1, " not supported (only 2/2)"));
  if (!(c.partial_rotary_factor > 0 && c.partial_rotary_factor <= 1))
    throw Error(cat(r.src, ": partial_rotary_factor = ", c.partial_rotary_factor, " must be in (0, 1]"));
  if (c.rotary_dims() % 2 != 0 || c.rotary_dims() == 0)
    throw Error(cat(r.src, ": rotary dims = head_dim * partial_rotary_factor = ", c.rotary_dims(), " must be even and > 0"));
  if (!(c.rope_theta > 0)) throw Error(cat(r.src, ": rope_theta = ", c.rope_theta, " must be positive"));
  if (!(c.norm_eps > 0) || c.norm_eps > 1) throw Error(cat(r.src, ": norm epsilon = ", c.norm_eps, " out of range"));
  if (!(c.router_norm_eps > 0) || c.router_norm_eps > 1)
    throw Error(cat(r.src, ": router norm epsilon = ", c.router_norm_eps, " out of range"));
  if (c.kv_width() % 2 != 0)
    throw Error(cat(r.src, ": KV width ", c.kv_width(), " must be even (the value is split into current/delayed halves)"));
  for (int64_t id : {c.bos_token_id, c.pad_token_id})
    if (id >= c.vocab || id < -1) throw Error(cat(r.src, ": special token id ", id, " is outside [0, ", c.vocab, ")"));
  for (int64_t id : c.eos_token_ids)
    if (id < 0 || id >= c.vocab) throw Error(cat(r.src, ": eos_token_id ", id, " out of range [0, ", c.vocab, ")"));
}

// Keys every layout names the same way.
void parse_common(const Reader& r, ModelConfig& c) {
  c.hidden = r.positive("hidden_size");
  c.n_heads = r.positive("num_attention_heads");
  c.n_experts = r.positive("num_experts");
  c.vocab = r.positive("vocab_size");
  c.max_positions = r.positive("max_position_embeddings");
  c.conv_kernel0 = r.positive("cca_time0", 2);
  c.conv_kernel1 = r.positive("cca_time1", 2);
  c.tie_embeddings = r.boolean("tie_word_embeddings", true);
  c.high_precision = r.boolean("zaya_high_prec", true);
  c.dtype = r.string("dtype", r.string("torch_dtype", "float32"));
}

// ZAYA1-VL: the flat Zyphra config of the legacy text model with 40 fused blocks, plus the image tokens and the
// vision-LoRA ranks (the vision tower's own config is read by the vision model).
ModelConfig parse_vl(const Reader& r, ModelConfig& c) {
  c.layout = Layout::Fused;
  parse_common(r, c);
  parse_legacy(r, c);
  if (r.boolean("fused_add_norm", false)) throw r.err("fused_add_norm", "= true is not supported");
  if (r.boolean("use_lora_att", false)) throw r.err("use_lora_att", "= true (a text LoRA) is not supported");
  VisionLanguageConfig& v = c.vl;
  v.enabled = true;
  v.image_token_id = r.integer("image_token_id");
  v.start_token_id = r.integer("vision_start_token_id", -1);
  v.end_token_id = r.integer("vision_end_token_id", -1);
  if (r.boolean("vision_lora", false)) {
    v.lora_rank_attn = r.positive("vision_lora_rank_attn");
    v.lora_rank_mlp = r.positive("vision_lora_rank_mlp");
    constexpr int64_t kMaxRank = 4096;
    if (v.lora_rank_attn > kMaxRank || v.lora_rank_mlp > kMaxRank)
      throw r.err("vision_lora_rank_attn", cat("LoRA ranks above ", kMaxRank, " are not supported"));
  }
  c.bos_token_id = r.integer("bos_token_id", -1);
  c.pad_token_id = r.integer("pad_token_id", -1);
  c.eos_token_ids = id_list(r, "eos_token_id");
  check_consistency(r, c);
  for (int64_t id : {v.start_token_id, v.end_token_id})
    if (id >= c.vocab || id < -1) throw Error(cat(r.src, ": vision start/end token id ", id, " out of range [0, ", c.vocab, ")"));
  if (v.image_token_id < 0 || v.image_token_id >= c.vocab)
    throw r.err("image_token_id", cat("= ", v.image_token_id, " is outside the vocabulary [0, ", c.vocab, ")"));
  return c;
}

}  // namespace

ModelConfig ModelConfig::parse(const std::string& text, const std::string& source) {
  const json j = parse_json<json>(text, source);
  if (!j.is_object()) throw Error(cat(source, ": must be a JSON object"));
  Reader r{j, source};
  const std::string mt = r.string("model_type", "");
  if (mt != "zaya" && mt != "zaya1_vl")
    throw Error(cat(source, ": model_type is '", mt, "', expected 'zaya' or 'zaya1_vl'"));

  ModelConfig c;
  c.source = source;
  if (mt == "zaya1_vl") {
    // VL bundles nest the language model's keys under text_config (bundle-formats §7.2); the original checkpoint
    // is flat. Either way the decoder reads one flat object (text_config wins where a key is in both).
    if (!r.has("text_config")) return parse_vl(r, c);
    if (!j.at("text_config").is_object()) throw r.err("text_config", "must be an object");
    json flat = j;
    flat.erase("text_config");
    for (auto it = j.at("text_config").begin(); it != j.at("text_config").end(); ++it)
      if (it.key() != "model_type") flat[it.key()] = it.value();
    return parse_vl(Reader{flat, source}, c);
  }
  // The legacy (Megatron-style) file has ffn_hidden_size / zaya_mlp_expansion; the native one has
  // moe_intermediate_size / router_hidden_size.
  const bool legacy = r.has("ffn_hidden_size") || r.has("zaya_mlp_expansion");
  const bool native = r.has("moe_intermediate_size") || r.has("router_hidden_size");
  if (legacy && native) throw Error(cat(source, ": mixes legacy (ffn_hidden_size/zaya_mlp_expansion) and native (moe_intermediate_size/router_hidden_size) keys"));
  if (!legacy && !native) throw Error(cat(source, ": neither legacy (ffn_hidden_size, zaya_mlp_expansion) nor native (moe_intermediate_size, router_hidden_size) expert keys are present"));
  c.layout = legacy ? Layout::Legacy : Layout::Native;

  parse_common(r, c);
  if (legacy) parse_legacy(r, c);
  else parse_native(r, c);
  if (r.boolean("attention_bias", false)) throw r.err("attention_bias", "= true is not supported");
  if (r.boolean("lm_head_bias", false)) throw r.err("lm_head_bias", "= true is not supported");
  if (r.has("sliding_window")) throw r.err("sliding_window", "sliding-window attention is not supported (must be null)");

  c.bos_token_id = r.integer("bos_token_id", -1);
  c.pad_token_id = r.integer("pad_token_id", -1);
  c.eos_token_ids = id_list(r, "eos_token_id");

  check_consistency(r, c);
  return c;
}

ModelConfig ModelConfig::load(const std::string& path) {
  namespace fs = std::filesystem;
  fs::path p = fs::is_directory(path) ? fs::path(path) / "config.json" : fs::path(path);
  std::ifstream in(p);
  if (!in) throw Error(cat(p.string(), ": cannot read config (does the folder hold a model?)"));
  std::stringstream ss;
  ss << in.rdbuf();
  return parse(ss.str(), p.string());
}

}  // namespace zaya
