#include "quant/convert_plan.h"

#include <algorithm>
#include <cmath>
#include <map>

#include "zaya/error.h"
#include "tensor/quant_formats.h"

namespace zaya::bundle {
using ojson = nlohmann::ordered_json;

namespace {

bool contains(const std::string& s, const char* part) { return s.find(part) != std::string::npos; }
bool ends_with(const std::string& s, const std::string& suf) {
  return s.size() >= suf.size() && s.compare(s.size() - suf.size(), suf.size(), suf) == 0;
}
bool starts_with(const std::string& s, const std::string& pre) { return s.compare(0, pre.size(), pre) == 0; }

std::string strip_weight(const std::string& name) { return ends_with(name, ".weight") ? name.substr(0, name.size() - 7) : name; }

bool float_profile(Profile p) { return p == Profile::Bf16 || p == Profile::F16 || p == Profile::F32; }

DType float_dtype_of(Profile p) {
  if (p == Profile::Bf16) return DType::BF16;
  if (p == Profile::F32) return DType::F32;
  return DType::F16;
}

// The encoding a profile gives a quantizable tensor of `role`.
void choose_encoding(Item& it, Profile p) {
  if (float_profile(p)) {
    it.enc = Enc::Float;
    it.float_dtype = float_dtype_of(p);
    return;
  }
  if (is_passthrough(it.name, it.shape.size()) || is_vision_or_lora(it.name)) {
    it.enc = Enc::Float;
    it.float_dtype = DType::F16;
    return;
  }
  const bool embed = it.role == ExpectedTensor::Embedding;
  switch (p) {
    case Profile::Mxfp4: it.enc = Enc::Affine, it.bits = embed ? 8 : 4, it.group = 32; break;
    case Profile::Jangtq4:
      if (it.role == ExpectedTensor::Expert) it.enc = Enc::Mxtq, it.bits = 4, it.group = 0;
      else it.enc = Enc::Affine, it.bits = 8, it.group = 32;
      break;
    case Profile::Q8: it.enc = Enc::Affine, it.bits = 8, it.group = 64; break;
    case Profile::Q4: it.enc = Enc::Affine, it.bits = 4, it.group = 64; break;
    case Profile::Mxfp4E2m1: it.enc = Enc::Fp, it.bits = 4, it.group = 32; break;
    default: break;
  }
  // A width the group does not divide cannot be quantized (mx.quantize refuses): F16 under the original name, as
  // mlx-lm's quantize_model skips such modules.
  if ((it.enc == Enc::Affine || it.enc == Enc::Fp) && it.cols() % it.group != 0) {
    it.enc = Enc::Float;
    it.float_dtype = DType::F16;
    it.bits = it.group = 0;
  }
}

void choose_init(Item& it, const ModelConfig& cfg) {
  const std::string& n = it.name;
  it.init_std = 0.02f;
  if (ends_with(n, "conv_qk.0.weight")) {
    it.init = Init::Conv0;
    it.init_std = 0.5f;
  } else if (ends_with(n, "conv_qk.1.weight")) {
    it.init = Init::Conv1;
    it.init_std = static_cast<float>(1.0 / std::sqrt(2.0 * static_cast<double>(cfg.head_dim)));
  } else if (ends_with(n, ".balancing_biases")) {
    it.init = Init::Small;
    it.init_std = 0.01f;
  } else if (ends_with(n, "_bias") || ends_with(n, ".bias")) {
    it.init = Init::Zeros;
  } else if (ends_with(n, "_scale") || ends_with(n, ".temp") || ends_with(n, ".ln_q.weight") ||
             (contains(n, "norm") && it.shape.size() == 1)) {
    it.init = Init::Ones;
  } else {
    it.init = Init::Normal;
  }
}

std::string S(int64_t v) { return std::to_string(v); }

}  // namespace

bool is_passthrough(const std::string& name, size_t ndim) {
  if (ndim < 2) return true;
  if (contains(name, "norm") || contains(name, ".res_scale.") || contains(name, ".router.") || contains(name, ".conv_qk."))
    return true;
  for (const char* suf : {".temp", ".bias", ".balancing_biases", ".router_states_scale", ".hidden_states_scale",
                          ".hidden_states_bias", ".residual_scale", ".residual_bias"})
    if (ends_with(name, suf)) return true;
  return false;
}

bool is_vision_or_lora(const std::string& name) {
  for (const char* pre : {"model.visual", "model.vision", "vision_tower", "visual.", "vision.", "mm_projector"})
    if (starts_with(name, pre)) return true;
  for (const char* part : {".lora_", ".lora.", "_lora", "vision_projection", "vision_tower."})
    if (contains(name, part)) return true;
  return false;
}

int64_t Item::rows() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return cols() ? n / cols() : 0;
}

std::vector<TensorSpec> Item::outputs() const {
  std::vector<int64_t> lead(shape.begin(), shape.end() - (shape.empty() ? 0 : 1));
  auto with = [&](int64_t last) {
    std::vector<int64_t> s = lead;
    s.push_back(last);
    return s;
  };
  switch (enc) {
    case Enc::Float: return {{name, float_dtype, shape}};
    case Enc::Affine:
      return {{base + ".weight", DType::U32, with(quant::packed_words(cols(), bits))},
              {base + ".scales", DType::F16, with(cols() / group)},
              {base + ".biases", DType::F16, with(cols() / group)}};
    case Enc::Fp:
      return {{base + ".weight", DType::U32, with(quant::packed_words(cols(), bits))},
              {base + ".scales", DType::U8, with(cols() / group)}};
    case Enc::Mxtq:
      return {{base + ".tq_packed", DType::U32, with(quant::mxtq_words(cols(), bits))},
              {base + ".tq_norms", DType::F16, lead},
              {base + ".tq_bits", DType::U8, {1}}};
  }
  return {};
}

ModelConfig as_legacy(const ModelConfig& cfg) {
  ModelConfig c = cfg;
  c.layout = Layout::Legacy;
  return c;
}

std::vector<Item> build_plan(const ModelConfig& cfg, Profile profile, Layout source) {
  const ModelConfig L = as_legacy(cfg);
  ModelConfig srccfg = cfg;
  srccfg.layout = source;
  const std::vector<ExpectedTensor> out = expected_tensors(L), src = expected_tensors(srccfg);
  // Non-expert tensors appear in the same order in both layouts' lists: zip them for the name map.
  std::vector<std::string> src_names;
  for (const auto& t : src)
    if (t.role != ExpectedTensor::Expert) src_names.push_back(t.name);
  const int64_t E = cfg.n_experts, I = cfg.expert_ffn, H = cfg.hidden;
  const bool float_out = float_profile(profile);

  std::vector<Item> plan, experts;
  size_t k = 0;
  for (const auto& t : out) {
    if (t.role == ExpectedTensor::Expert) {
      if (!float_out) continue;  // quantized bundles stack the experts (below)
      // Unquantized output keeps the legacy per-expert tensors: local_experts.{e}.linear_fc1 / linear_fc2.
      Item it;
      it.name = t.name;
      it.base = strip_weight(t.name);
      it.shape = t.shape;
      it.role = t.role;
      const auto pos = t.name.find(".local_experts.");
      const int64_t n = std::stoll(t.name.substr(13, t.name.find('.', 13) - 13));
      const int64_t e = std::stoll(t.name.substr(pos + 15, t.name.find('.', pos + 15) - (pos + 15)));
      const bool fc1 = contains(t.name, "linear_fc1");
      it.part_rows = fc1 ? 2 * I : H;
      if (source == Layout::Legacy) it.parts = {{t.name, 0}};
      else if (fc1) it.parts = {{"model.layers." + S(n / 2) + ".mlp.experts.gate_up_proj", e * 2 * I}};
      else it.parts = {{"model.layers." + S(n / 2) + ".mlp.experts.down_proj", e * H}};
      choose_encoding(it, profile);
      choose_init(it, cfg);
      plan.push_back(std::move(it));
      continue;
    }
    Item it;
    it.name = t.name;
    it.base = strip_weight(t.name);
    it.shape = t.shape;
    it.role = t.role;
    if (k >= src_names.size()) throw Error("bundle plan: source and output tensor lists do not line up");
    it.parts = {{src_names[k++], 0}};
    it.part_rows = it.rows();
    choose_encoding(it, profile);
    choose_init(it, cfg);
    plan.push_back(std::move(it));
  }
  std::sort(plan.begin(), plan.end(), [](const Item& a, const Item& b) { return a.name < b.name; });
  if (float_out) return plan;

  // Experts pre-stacked as switch_mlp.{gate,up,down}_proj [E, out, in] (§6): gate = fc1 rows [0, I), up = rows
  // [I, 2I), down = fc2.
  for (int64_t n = 1; n < 2 * cfg.n_blocks; n += 2) {
    const std::string sw = "model.layers." + S(n) + ".zaya_block.experts.switch_mlp.";
    for (int proj = 0; proj < 3; ++proj) {
      Item it;
      it.base = sw + (proj == 0 ? "gate_proj" : proj == 1 ? "up_proj" : "down_proj");
      it.name = it.base + ".weight";
      it.role = ExpectedTensor::Expert;
      it.shape = proj < 2 ? std::vector<int64_t>{E, I, H} : std::vector<int64_t>{E, H, I};
      it.part_rows = proj < 2 ? I : H;
      for (int64_t e = 0; e < E; ++e) {
        if (source == Layout::Legacy) {
          const std::string le = "model.layers." + S(n) + ".zaya_block.experts.local_experts." + S(e);
          it.parts.push_back({le + (proj < 2 ? ".linear_fc1.weight" : ".linear_fc2.weight"), proj == 1 ? I : 0});
        } else {
          const std::string ne = "model.layers." + S(n / 2) + ".mlp.experts.";
          if (proj < 2) it.parts.push_back({ne + "gate_up_proj", e * 2 * I + (proj == 1 ? I : 0)});
          else it.parts.push_back({ne + "down_proj", e * H});
        }
      }
      choose_encoding(it, profile);
      choose_init(it, cfg);
      experts.push_back(std::move(it));
    }
  }
  plan.insert(plan.end(), experts.begin(), experts.end());
  return plan;
}

std::string switch_mlp_prefix(const ModelConfig& cfg, int64_t n) {
  return "model.layers." + S(cfg.layout == Layout::Fused ? n / 2 : n) + ".zaya_block.experts.switch_mlp.";
}

std::vector<ExpectedTensor> vl_tensors(const ModelConfig& cfg, const vit::VisionConfig& vision, bool stacked) {
  std::vector<ExpectedTensor> out;
  for (auto& t : expected_tensors(cfg))
    if (!(stacked && t.role == ExpectedTensor::Expert)) out.push_back(std::move(t));
  for (auto& v : vit::expected_vision_tensors(vision)) out.push_back({v.name, v.shape, ExpectedTensor::Other});
  if (!stacked) return out;
  const int64_t E = cfg.n_experts, I = cfg.expert_ffn, H = cfg.hidden;
  for (int64_t n = 1; n < 2 * cfg.n_blocks; n += 2) {
    const std::string sw = switch_mlp_prefix(cfg, n);
    out.push_back({sw + "gate_proj.weight", {E, I, H}, ExpectedTensor::Expert});
    out.push_back({sw + "up_proj.weight", {E, I, H}, ExpectedTensor::Expert});
    out.push_back({sw + "down_proj.weight", {E, H, I}, ExpectedTensor::Expert});
  }
  return out;
}

std::vector<Item> build_vl_plan(const ModelConfig& cfg, const vit::VisionConfig& vision, Profile profile) {
  if (cfg.layout != Layout::Fused) throw Error("bundle plan: a VL plan needs the fused (ZAYA1-VL) layout");
  const bool stacked = !float_profile(profile);
  const int64_t I = cfg.expert_ffn, H = cfg.hidden;
  std::vector<Item> plan, experts;
  for (const auto& t : vl_tensors(cfg, vision, stacked)) {
    Item it;
    it.name = t.name;
    it.base = strip_weight(t.name);
    it.shape = t.shape;
    it.role = t.role;
    if (stacked && t.role == ExpectedTensor::Expert) {
      // model.layers.{b}.zaya_block.experts.switch_mlp.{gate,up,down}_proj ← the source's
      // model.layers.{b}.mlp.zaya_block.experts.local_experts.{e}.linear_fc1 rows [0, I) / [I, 2I), linear_fc2.
      const int64_t b = std::stoll(t.name.substr(13, t.name.find('.', 13) - 13));
      const bool down = contains(t.name, "down_proj"), up = contains(t.name, "up_proj");
      it.part_rows = down ? H : I;
      for (int64_t e = 0; e < cfg.n_experts; ++e)
        it.parts.push_back({"model.layers." + S(b) + ".mlp.zaya_block.experts.local_experts." + S(e) +
                                (down ? ".linear_fc2.weight" : ".linear_fc1.weight"),
                            up ? I : 0});
    } else {
      it.parts = {{t.name, 0}};
      it.part_rows = it.rows();
    }
    choose_encoding(it, profile);
    choose_init(it, cfg);
    (stacked && t.role == ExpectedTensor::Expert ? experts : plan).push_back(std::move(it));
  }
  std::sort(plan.begin(), plan.end(), [](const Item& a, const Item& b) { return a.name < b.name; });
  plan.insert(plan.end(), experts.begin(), experts.end());  // already layer by layer, gate/up/down
  return plan;
}

bool is_vl_sidecar(const std::string& f) {
  if (f == "preprocessor_config.json" || f == "video_preprocessor_config.json" || f == "configuration.json") return true;
  return ends_with(f, ".py") && (starts_with(f, "configuration_") || starts_with(f, "modeling_"));
}

ojson legacy_config_json(const ModelConfig& c) {
  ojson j;
  j["activation_func"] = "swiglu";
  j["activation_func_fp8_input_store"] = false;
  j["add_bias_linear"] = false;
  j["architectures"] = ojson::array({"ZayaForCausalLM"});
  j["attention_bias"] = false;
  j["attention_dropout"] = 0.0;
  j["bias_activation_fusion"] = true;
  if (c.bos_token_id >= 0) j["bos_token_id"] = c.bos_token_id;
  j["cca"] = true;
  j["dtype"] = c.dtype.empty() ? "bfloat16" : c.dtype;
  if (c.eos_token_ids.size() == 1) j["eos_token_id"] = c.eos_token_ids[0];
  else if (!c.eos_token_ids.empty()) j["eos_token_id"] = c.eos_token_ids;
  j["ffn_hidden_size"] = 2 * c.expert_ffn;
  j["gated_linear_unit"] = true;
  j["head_dim"] = c.head_dim;
  j["hidden_size"] = c.hidden;
  j["kv_channels"] = c.head_dim;
  j["lm_head_bias"] = false;
  j["mamba_cache_dtype"] = "float32";
  j["max_position_embeddings"] = c.max_positions;
  j["model_type"] = "zaya";
  j["moe_router_topk"] = 1;
  j["norm_epsilon"] = c.norm_eps;
  j["normalization"] = "RMSNorm";
  j["num_attention_heads"] = c.n_heads;
  j["num_experts"] = c.n_experts;
  j["num_hidden_layers"] = 2 * c.n_blocks;
  j["num_key_value_heads"] = c.n_kv_heads;
  j["num_query_groups"] = c.n_kv_heads;
  if (c.pad_token_id >= 0) j["pad_token_id"] = c.pad_token_id;
  j["partial_rotary_factor"] = c.partial_rotary_factor;
  j["residual_in_fp32"] = true;
  j["rope_scaling"] = false;
  if (std::floor(c.rope_theta) == c.rope_theta && c.rope_theta < 9e15) j["rope_theta"] = static_cast<int64_t>(c.rope_theta);
  else j["rope_theta"] = c.rope_theta;
  j["scale_residual_merge"] = true;
  j["sliding_window"] = nullptr;
  j["tie_word_embeddings"] = c.tie_embeddings;
  j["use_cache"] = true;
  j["vocab_size"] = c.vocab;
  j["zaya_high_prec"] = c.high_precision;
  j["zaya_mlp_expansion"] = c.router_hidden;
  j["zaya_use_eda"] = c.use_eda;
  j["zaya_use_mod"] = c.use_mod;
  return j;
}

namespace {

ojson capabilities() {
  ojson c;
  c["reasoning_parser"] = "qwen3";
  c["tool_parser"] = "zaya_xml";
  c["think_in_template"] = false;
  c["supports_tools"] = true;
  c["supports_thinking"] = true;
  c["family"] = "zaya";
  c["modality"] = "text";
  c["cache_type"] = "hybrid";
  return c;
}

ojson mxtq_bits() {
  ojson b;
  b["routed_expert"] = 4;
  b["attention"] = 8;
  b["router"] = 16;
  b["embed_tokens"] = 8;
  b["lm_head"] = 8;
  b["cca_conv"] = 16;
  b["norms_residual"] = 16;
  return b;
}

}  // namespace

ojson bundle_config(ojson j, Profile p, const ModelConfig& cfg, uint64_t mxtq_seed) {
  j.erase("quantization_config");
  j.erase("quantization");
  if (float_profile(p)) {
    j["dtype"] = p == Profile::Bf16 ? "bfloat16" : p == Profile::F16 ? "float16" : "float32";
    if (j.contains("torch_dtype")) j["torch_dtype"] = j["dtype"];
    return j;
  }
  ojson q;
  switch (p) {
    case Profile::Mxfp4:
      j["weight_format"] = "mxfp4";
      j["zaya_expert_layout"] = "split_switch_mlp";
      j["tie_word_embeddings"] = cfg.tie_embeddings;
      q["bits"] = 4;
      q["group_size"] = 32;
      q["mode"] = "affine";
      q["embed_bits"] = 8;
      q["router_bits"] = 16;
      q["expert_layout"] = "split_switch_mlp";
      j["quantization"] = q;
      j["capabilities"] = capabilities();
      return j;
    case Profile::Jangtq4:
      j["weight_format"] = "mxtq";
      j["zaya_expert_layout"] = "split_switch_mlp";
      j["tie_word_embeddings"] = cfg.tie_embeddings;
      j["mxtq_bits"] = mxtq_bits();
      j["mxtq_seed"] = mxtq_seed;
      q["bits"] = 8;
      q["group_size"] = 32;
      q["mode"] = "affine";
      q["routed_expert_bits"] = 4;
      q["mxtq_bits"] = mxtq_bits();
      q["expert_layout"] = "split_switch_mlp";
      j["quantization"] = q;
      j["capabilities"] = capabilities();
      return j;
    default: break;
  }
  // mlx-lm style: one global entry, copied to quantization_config (save_config).
  q["group_size"] = p == Profile::Mxfp4E2m1 ? 32 : 64;
  q["bits"] = p == Profile::Q8 ? 8 : 4;
  q["mode"] = p == Profile::Mxfp4E2m1 ? "mxfp4" : "affine";
  j["zaya_expert_layout"] = "split_switch_mlp";
  j["tie_word_embeddings"] = cfg.tie_embeddings;
  j["quantization"] = q;
  j["quantization_config"] = q;
  return j;
}

ojson jang_config(Profile p, const std::vector<Item>& items, uint64_t mxtq_seed, bool vl) {
  if (p != Profile::Mxfp4 && p != Profile::Jangtq4) return nullptr;
  ojson j;
  j["version"] = 2;
  j["weight_format"] = p == Profile::Mxfp4 ? "mxfp4" : "mxtq";
  j["profile"] = p == Profile::Mxfp4 ? "MXFP4" : "JANGTQ4";
  j["cache_subtype"] = "zaya_cca";
  if (vl) {
    j["has_vision"] = true;
    j["architecture"] = "zaya1_vl";
  }
  ojson src;
  src["name"] = vl ? "ZAYA1-VL-8B" : "ZAYA1-8B";  // what the JANG converters hard-code
  src["org"] = "Zyphra";
  src["architecture"] = vl ? "zaya1_vl" : "zaya";
  j["source_model"] = src;
  j["expert_layout"] = "split_switch_mlp";
  ojson q;
  if (p == Profile::Mxfp4) {
    q["method"] = "affine";
    q["group_size"] = 32;
    q["bits"] = 4;
    if (!vl) q["embed_bits"] = 8;
  } else {
    j["mxtq_seed"] = mxtq_seed;
    j["mxtq_bits"] = mxtq_bits();
    ojson tq = ojson::object();
    for (const auto& it : items)
      if (it.enc == Enc::Mxtq) tq[it.base] = it.cols();
    j["tq_in_features"] = tq;
    q["method"] = "affine+mxtq";
    q["group_size"] = 32;
    q["bits_default"] = 4;
  }
  j["quantization"] = q;
  j["capabilities"] = capabilities();
  if (vl) j["capabilities"]["modality"] = "vision";
  return j;
}

ojson vl_bundle_config(const ojson& src, Profile p, const ModelConfig& cfg, uint64_t mxtq_seed) {
  ojson flat = bundle_config(src, p, cfg, mxtq_seed);
  if (!profile_is_quantized(p)) return flat;
  if (flat.contains("quantization") && flat["quantization"].is_object()) flat["quantization"].erase("embed_bits");
  if (flat.contains("capabilities") && flat["capabilities"].is_object()) flat["capabilities"]["modality"] = "vision";
  // What stays on top: the model's identity, its image side, and what a bundle loader reads first.
  static const char* kTop[] = {"model_type", "architectures", "image_token_id", "vision_start_token_id",
                               "vision_end_token_id", "vision_lora", "vision_lora_rank_attn", "vision_lora_rank_mlp",
                               "vision_config", "tie_word_embeddings", "bos_token_id", "eos_token_id", "pad_token_id",
                               "weight_format", "zaya_expert_layout", "mxtq_bits", "mxtq_seed", "quantization",
                               "quantization_config", "capabilities"};
  ojson top = ojson::object(), text = ojson::object();
  for (const char* k : kTop)
    if (flat.contains(k)) top[k] = flat[k];
  for (auto it = flat.begin(); it != flat.end(); ++it)
    if (!top.contains(it.key()) && it.key() != "text_config") text[it.key()] = it.value();
  if (flat.contains("text_config") && flat["text_config"].is_object())
    for (auto it = flat["text_config"].begin(); it != flat["text_config"].end(); ++it) text[it.key()] = it.value();
  top["text_config"] = text;
  return top;
}

SafetensorsWriterOptions writer_options(Profile p, uint64_t shard_bytes) {
  SafetensorsWriterOptions o;
  o.shard_bytes = shard_bytes;
  if (p == Profile::Mxfp4 || p == Profile::Jangtq4) {
    // JANG: safetensors.numpy.save_file (no __metadata__), always an index with the format and the file sizes.
    o.always_index = true;
    o.index_metadata = {{"format", p == Profile::Mxfp4 ? "mxfp4" : "jangtq"}};
    o.total_size_is_file_bytes = true;
  } else {
    o.always_index = false;
    o.header_metadata = {{"format", float_profile(p) ? "pt" : "mlx"}};
    o.total_size_is_file_bytes = false;
  }
  return o;
}

}  // namespace zaya::bundle
