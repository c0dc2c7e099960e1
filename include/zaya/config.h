#pragma once
// ZAYA1 model configuration, read from config.json in either checkpoint layout (spec §1, §2).
#include <cstdint>
#include <string>
#include <vector>

namespace zaya {

// legacy: 80 alternating attention/MoE layers with Megatron-style names; native: 40 hybrid layers (transformers v5);
// fused: 40 blocks named model.layers.i.{attn,mlp}.<legacy names> (the ZAYA1-VL decoder, Zyphra format).
enum class Layout { Legacy, Native, Fused };
const char* layout_name(Layout l);

// What a token routed to the MOD skip route contributes (spec §3.4.4, §7-P1).
enum class SkipRoute { ScaledInput /* p·x, release-time reference */, Zero /* transformers-v5 / current upstream */ };
const char* skip_route_name(SkipRoute s);

// ZAYA1-VL (model_type zaya1_vl): the image tokens and the decoder's vision-LoRA (ZAYA1-VL spec §1, §6.4).
struct VisionLanguageConfig {
  bool enabled = false;
  int64_t image_token_id = -1, start_token_id = -1, end_token_id = -1;
  int64_t lora_rank_attn = 0, lora_rank_mlp = 0;  // 0: no LoRA tensors
};

struct ModelConfig {
  Layout layout = Layout::Legacy;
  int64_t hidden = 0;         // H
  int64_t n_blocks = 0;       // attention+MoE pairs (legacy layers / 2 = native layers)
  int64_t n_heads = 0;        // nq
  int64_t n_kv_heads = 0;     // nk
  int64_t head_dim = 0;       // dh
  int64_t conv_kernel0 = 2;   // cca_time0
  int64_t conv_kernel1 = 2;   // cca_time1
  int64_t n_experts = 0;      // E routed experts
  int64_t router_hidden = 0;  // D
  int64_t expert_ffn = 0;     // I (legacy ffn_hidden_size / 2)
  int64_t vocab = 0;          // V
  int64_t max_positions = 0;
  double norm_eps = 1e-5;
  double router_norm_eps = 1e-5;  // the router's RMSNorm (text: norm_epsilon; VL: layernorm_epsilon, else 1e-6)
  double rope_theta = 0;
  double partial_rotary_factor = 0;
  bool use_mod = true;  // the skip route exists (router has E+1 outputs)
  bool use_eda = true;  // router depth state
  bool tie_embeddings = true;
  bool high_precision = true;  // zaya_high_prec: fp32 logits (we always compute fp32)
  int64_t bos_token_id = -1, pad_token_id = -1;
  std::vector<int64_t> eos_token_ids;
  VisionLanguageConfig vl;
  std::string dtype;   // checkpoint dtype as stated by the config
  std::string source;  // the file it came from

  int64_t q_width() const { return n_heads * head_dim; }
  int64_t kv_width() const { return n_kv_heads * head_dim; }
  int64_t conv_channels() const { return q_width() + kv_width(); }  // C
  int64_t rotary_dims() const;
  int64_t router_outputs() const { return n_experts + (use_mod ? 1 : 0); }
  int64_t legacy_layers() const { return 2 * n_blocks; }
  SkipRoute default_skip_route() const { return layout == Layout::Native ? SkipRoute::Zero : SkipRoute::ScaledInput; }

  // Reads <dir>/config.json (or a path to a config file). Throws zaya::Error saying what is wrong.
  static ModelConfig load(const std::string& path);
  static ModelConfig parse(const std::string& json_text, const std::string& source = "config.json");
};

}  // namespace zaya
