// zaya info: layout, geometry, parameter counts, dtypes and memory estimate of a model folder. Works on a folder
// that holds only config.json (counts come from the architecture's expected tensor shapes). A ZAYA1-VL folder is
// reported in both parts: the decoder (fused layout, with its vision-LoRA) and the vision tower.
#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/load.h"
#include "zaya/config.h"
#include "zaya/decode_state.h"
#include "zaya/error.h"
#include "zaya/limits.h"
#include "zaya/model.h"
#include "zaya/model_info.h"

namespace zaya::cli {

namespace {

std::string ll(int64_t v) { return std::to_string(v); }

std::string human(double v, const char* unit) {
  char buf[64];
  if (v >= 1e9) std::snprintf(buf, sizeof buf, "%.2f G%s", v / 1e9, unit);
  else if (v >= 1e6) std::snprintf(buf, sizeof buf, "%.2f M%s", v / 1e6, unit);
  else if (v >= 1e3) std::snprintf(buf, sizeof buf, "%.2f k%s", v / 1e3, unit);
  else std::snprintf(buf, sizeof buf, "%.0f %s", v, unit);
  return buf;
}

size_t dtype_bytes_for(const std::string& dtype) {
  if (dtype == "float32") return 4;
  if (dtype == "float64") return 8;
  return 2;  // bfloat16 / float16
}

}  // namespace

Runner add_info(CLI::App& app) {
  struct Opts {
    std::string dir;
    bool json = false;
    int64_t ctx = 0;
  };
  auto o = std::make_shared<Opts>();
  auto* sub = app.add_subcommand("info", "describe a model folder (layout, sizes, parameters, memory)");
  sub->add_option("-m,--model", o->dir, "model folder (or a config.json)")->required();
  sub->add_flag("--json", o->json, "machine-readable output");
  sub->add_option("--ctx", o->ctx, "context length for the memory estimate (default: max_position_embeddings)")
      ->check(CLI::PositiveNumber);
  return [o]() {
    namespace fs = std::filesystem;
    const ModelConfig cfg = ModelConfig::load(o->dir);
    const ParamCounts c = count_parameters(cfg);
    const VisionTowerInfo vis = vision_tower_info(o->dir);
    const int64_t E = cfg.n_experts;
    const int64_t no_embed = c.total - c.embedding;
    // Top-1 routing: one expert (and its LoRA) of E per MoE layer is active.
    const int64_t active_no_embed = no_embed - c.experts + c.experts / E - c.lora_experts + c.lora_experts / E;
    const int64_t ctx = o->ctx > 0 ? o->ctx : cfg.max_positions;
    // The config's geometry is bounded by zaya/limits.h; --ctx is too, so the estimates below cannot overflow.
    if (ctx > limits::kMaxPositions)
      throw Error(cat("--ctx ", ctx, " exceeds the limit ", limits::kMaxPositions, " (zaya::limits::kMaxPositions)"));
    const size_t per_tok = DecodeState::bytes_per_token(cfg), fixed = DecodeState::fixed_bytes(cfg);

    nlohmann::ordered_json j;
    j["model"] = o->dir;
    j["layout"] = layout_name(cfg.layout);
    j["hidden_size"] = cfg.hidden;
    j["attention_layers"] = cfg.n_blocks;
    j["moe_layers"] = cfg.n_blocks;
    j["query_heads"] = cfg.n_heads;
    j["kv_heads"] = cfg.n_kv_heads;
    j["head_dim"] = cfg.head_dim;
    j["rotary_dims"] = cfg.rotary_dims();
    j["experts"] = cfg.n_experts;
    j["expert_ffn"] = cfg.expert_ffn;
    j["router_hidden"] = cfg.router_hidden;
    j["vocab_size"] = cfg.vocab;
    j["max_position_embeddings"] = cfg.max_positions;
    j["rope_theta"] = cfg.rope_theta;
    j["norm_eps"] = cfg.norm_eps;
    j["tie_word_embeddings"] = cfg.tie_embeddings;
    j["skip_route_default"] = skip_route_name(cfg.default_skip_route());
    j["params_total"] = c.total;
    j["params_embedding"] = c.embedding;
    j["params_total_no_embed"] = no_embed;
    j["params_active"] = active_no_embed + c.embedding;
    j["params_active_no_embed"] = active_no_embed;
    j["buffers"] = c.buffers;
    if (cfg.vl.enabled) {
      j["params_lora"] = c.lora;
      j["lora_rank_attn"] = cfg.vl.lora_rank_attn;
      j["lora_rank_mlp"] = cfg.vl.lora_rank_mlp;
      j["image_token_id"] = cfg.vl.image_token_id;
      j["vision_start_token_id"] = cfg.vl.start_token_id;
      j["vision_end_token_id"] = cfg.vl.end_token_id;
      j["attention_mask_default"] = attention_mask_name(LoadOptions{}.mask);
    }
    if (vis.present) {
      nlohmann::ordered_json v;
      v["depth"] = vis.depth;
      v["hidden_size"] = vis.hidden;
      v["heads"] = vis.heads;
      v["head_dim"] = vis.head_dim;
      v["intermediate_size"] = vis.intermediate;
      v["in_channels"] = vis.in_channels;
      v["patch_size"] = vis.patch;
      v["temporal_patch_size"] = vis.temporal_patch;
      v["spatial_merge_size"] = vis.merge;
      v["window_size"] = vis.window_size;
      v["fullatt_block_indexes"] = vis.fullatt_blocks;
      v["out_hidden_size"] = vis.out_hidden;
      v["params"] = vis.parameters;
      if (vis.has_preprocessor) {
        v["min_pixels"] = vis.min_pixels;
        v["max_pixels"] = vis.max_pixels;
      }
      j["vision"] = v;
      j["params_with_vision"] = c.total + vis.parameters;
    }
    j["state_bytes_per_token"] = per_tok;
    j["state_fixed_bytes"] = fixed;

    // Weights: measured from the files when present, else estimated from the config's dtype.
    const WeightFiles files = inspect_weight_files(o->dir);
    const bool have_weights = files.present;
    size_t weight_bytes = files.bytes;
    const std::map<std::string, int64_t>& dtypes = files.dtypes;
    if (have_weights) {
      j["tensors"] = files.tensors;
      j["dtypes"] = dtypes;
    } else {
      weight_bytes = static_cast<size_t>(c.total + c.buffers + vis.parameters) * dtype_bytes_for(cfg.dtype);
    }
    j["weights_on_disk"] = have_weights;
    j["weight_bytes"] = weight_bytes;
    j["memory_estimate"] = {{"context", ctx},
                            {"weights_bytes", weight_bytes},
                            {"state_bytes", fixed + per_tok * static_cast<size_t>(ctx)},
                            {"total_bytes", weight_bytes + fixed + per_tok * static_cast<size_t>(ctx)}};
    if (o->json) {
      std::printf("%s\n", j.dump(2).c_str());
      return 0;
    }
    std::printf("model            %s\n", o->dir.c_str());
    if (vis.present) std::printf("decoder\n");
    std::printf("layout           %s (%lld attention + %lld MoE layers)\n", layout_name(cfg.layout),
                static_cast<long long>(cfg.n_blocks), static_cast<long long>(cfg.n_blocks));
    std::printf("hidden           %lld, heads %lld q / %lld kv x %lld (rotary %lld), vocab %lld\n",
                static_cast<long long>(cfg.hidden), static_cast<long long>(cfg.n_heads),
                static_cast<long long>(cfg.n_kv_heads), static_cast<long long>(cfg.head_dim),
                static_cast<long long>(cfg.rotary_dims()), static_cast<long long>(cfg.vocab));
    std::printf("experts          %lld (+ skip route) x FFN %lld, router hidden %lld, top-1\n",
                static_cast<long long>(cfg.n_experts), static_cast<long long>(cfg.expert_ffn),
                static_cast<long long>(cfg.router_hidden));
    std::printf("parameters       %s total, %s without the embedding\n", human(c.total, "").c_str(),
                human(no_embed, "").c_str());
    std::printf("active / token   %s (%s without the embedding)\n", human(active_no_embed + c.embedding, "").c_str(),
                human(active_no_embed, "").c_str());
    if (cfg.vl.enabled) {
      std::printf("vision-LoRA      rank %lld attention / %lld MLP: %s parameters (in the total), image rows only\n",
                  static_cast<long long>(cfg.vl.lora_rank_attn), static_cast<long long>(cfg.vl.lora_rank_mlp),
                  human(c.lora, "").c_str());
      std::printf("image tokens     image %lld, start %lld, end %lld; attention mask default %s\n",
                  static_cast<long long>(cfg.vl.image_token_id), static_cast<long long>(cfg.vl.start_token_id),
                  static_cast<long long>(cfg.vl.end_token_id), attention_mask_name(LoadOptions{}.mask));
    }
    if (vis.present) {
      std::string full;
      for (int64_t b : vis.fullatt_blocks) full += (full.empty() ? "" : ",") + ll(b);
      std::printf("vision tower (Qwen2.5-VL ViT)\n");
      std::printf("blocks           %lld, hidden %lld, heads %lld x %lld, MLP %lld (SiLU-gated), out %lld\n",
                  static_cast<long long>(vis.depth), static_cast<long long>(vis.hidden), static_cast<long long>(vis.heads),
                  static_cast<long long>(vis.head_dim), static_cast<long long>(vis.intermediate),
                  static_cast<long long>(vis.out_hidden));
      std::printf("patches          %lldx%lld px (x%lld frames, %lld channels), merge %lldx%lld -> one image token, "
                  "window %lld px, full attention in blocks [%s]\n",
                  static_cast<long long>(vis.patch), static_cast<long long>(vis.patch),
                  static_cast<long long>(vis.temporal_patch), static_cast<long long>(vis.in_channels),
                  static_cast<long long>(vis.merge), static_cast<long long>(vis.merge),
                  static_cast<long long>(vis.window_size), full.c_str());
      std::printf("parameters       %s (%lld)\n", human(vis.parameters, "").c_str(), static_cast<long long>(vis.parameters));
      if (vis.has_preprocessor)
        std::printf("image pixels     %lld ... %lld (preprocessor_config.json)\n", static_cast<long long>(vis.min_pixels),
                    static_cast<long long>(vis.max_pixels));
      std::printf("model            %s parameters with the vision tower\n", human(c.total + vis.parameters, "").c_str());
    }
    std::printf("weights          %s%s\n", human(weight_bytes, "B").c_str(),
                have_weights ? "" : " (estimated from the config dtype; no safetensors here)");
    if (!dtypes.empty()) {
      std::printf("dtypes          ");
      for (const auto& [d, n] : dtypes) std::printf(" %s:%lld", d.c_str(), static_cast<long long>(n));
      std::printf("\n");
    }
    std::printf("decode state     %s per token of context + %s fixed (fp32 K/V, conv state, prev input)\n",
                human(per_tok, "B").c_str(), human(fixed, "B").c_str());
    std::printf("memory @ %-7lld %s (weights + state)\n", static_cast<long long>(ctx),
                human(weight_bytes + fixed + per_tok * static_cast<size_t>(ctx), "B").c_str());
    std::printf("skip route       default %s for this layout\n", skip_route_name(cfg.default_skip_route()));
    return 0;
  };
}

}  // namespace zaya::cli
