// zaya info: layout, geometry, parameter counts, dtypes and memory estimate of a model folder. Works on a folder
// that holds only config.json (counts come from the architecture's expected tensor shapes).
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
#include "zaya/model_info.h"

namespace zaya::cli {

namespace {

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
    const int64_t E = cfg.n_experts;
    const int64_t no_embed = c.total - c.embedding;
    const int64_t active_no_embed = no_embed - c.experts + c.experts / E;
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
      weight_bytes = static_cast<size_t>(c.total + c.buffers) * dtype_bytes_for(cfg.dtype);
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
