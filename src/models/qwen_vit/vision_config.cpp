#include "models/qwen_vit/vision_config.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>

#include "zaya/error.h"

namespace zaya::vit {
using json = nlohmann::json;

namespace {

// Upper bounds far above any real ViT (ZAYA1-VL: depth 32, hidden 1280, MLP 3420) but low enough that products of
// them, and the per-patch scratch they size, stay small.
constexpr int64_t kMaxDepth = 256, kMaxHidden = 16384, kMaxHeads = 512, kMaxIntermediate = 65536,
                  kMaxChannels = 16, kMaxPatch = 64, kMaxTemporal = 16, kMaxMerge = 8, kMaxOut = 65536,
                  kMaxWindow = 8192;
constexpr int64_t kMaxParameters = int64_t{1} << 34;

struct Reader {
  const json& j;
  const std::string& src;

  Error err(const std::string& key, const std::string& why) const { return Error(cat(src, ": vision_config.", key, " ", why)); }
  bool has(const std::string& k) const { return j.contains(k) && !j.at(k).is_null(); }
  int64_t integer(const std::string& k) const {
    if (!has(k)) throw err(k, "is missing");
    const json& v = j.at(k);
    if (v.is_number_integer()) return v.get<int64_t>();
    if (v.is_number_float() && std::isfinite(v.get<double>()) && std::floor(v.get<double>()) == v.get<double>() &&
        std::fabs(v.get<double>()) < 9e15)
      return static_cast<int64_t>(v.get<double>());
    throw err(k, cat("must be an integer, got ", v.dump()));
  }
  int64_t bounded(const std::string& k, int64_t max) const {
    const int64_t v = integer(k);
    if (v <= 0 || v > max) throw err(k, cat("= ", v, " is out of range (1..", max, ")"));
    return v;
  }
  // A value with two spellings (original Zyphra json vs HF): either may be present; both must then agree.
  int64_t either(const std::string& a, const std::string& b, int64_t max) const {
    if (!has(a) && !has(b)) throw err(a, cat("is missing (nor '", b, "')"));
    const int64_t va = has(a) ? bounded(a, max) : 0, vb = has(b) ? bounded(b, max) : 0;
    if (va && vb && va != vb) throw err(a, cat("= ", va, " disagrees with vision_config.", b, " = ", vb));
    return va ? va : vb;
  }
};

}  // namespace

bool VisionConfig::full_attention(int64_t block) const {
  return std::find(fullatt_blocks.begin(), fullatt_blocks.end(), block) != fullatt_blocks.end();
}

int64_t VisionConfig::parameter_count() const {
  const int64_t hv = hidden, I = intermediate, M = merged_dim();
  const int64_t per_block = 2 * hv + (3 * hv * hv + 3 * hv) + (hv * hv + hv) + 2 * (I * hv + I) + (hv * I + hv);
  return hv * patch_dim() + depth * per_block + hv + (M * M + M) + (out_hidden * M + out_hidden);
}

VisionConfig VisionConfig::parse(const json& vc, const std::string& src) {
  if (!vc.is_object()) throw Error(cat(src, ": 'vision_config' must be an object"));
  const Reader r{vc, src};
  VisionConfig c;
  c.depth = r.bounded("depth", kMaxDepth);
  c.hidden = r.bounded("hidden_size", kMaxHidden);
  c.heads = r.bounded("num_heads", kMaxHeads);
  c.intermediate = r.bounded("intermediate_size", kMaxIntermediate);
  c.in_channels = r.either("in_chans", "in_channels", kMaxChannels);
  c.patch = r.either("patch_size", "spatial_patch_size", kMaxPatch);
  c.temporal_patch = r.bounded("temporal_patch_size", kMaxTemporal);
  c.merge = r.bounded("spatial_merge_size", kMaxMerge);
  c.window_size = r.bounded("window_size", kMaxWindow);
  c.out_hidden = r.bounded("out_hidden_size", kMaxOut);

  if (r.has("hidden_act")) {
    const json& a = vc.at("hidden_act");
    if (!a.is_string() || a.get<std::string>() != "silu")
      throw r.err("hidden_act", cat("= ", a.dump(), " is not supported (the Qwen2.5-VL ViT MLP is SiLU-gated)"));
  }
  if (c.hidden % c.heads != 0)
    throw r.err("hidden_size", cat("= ", c.hidden, " is not a multiple of num_heads = ", c.heads));
  // The 2-D rotary splits each head in halves, each half in (h, w) quarters of paired dims.
  if (c.head_dim() % 4 != 0)
    throw r.err("num_heads", cat("gives head dim ", c.head_dim(), ", which must be a multiple of 4 (2-D rotary halves)"));
  const int64_t unit = c.patch * c.merge;
  if (c.window_size % unit != 0)
    throw r.err("window_size", cat("= ", c.window_size, " is not a multiple of patch_size·spatial_merge_size = ", unit));

  if (!vc.contains("fullatt_block_indexes")) throw r.err("fullatt_block_indexes", "is missing");
  const json& fa = vc.at("fullatt_block_indexes");
  if (!fa.is_array()) throw r.err("fullatt_block_indexes", cat("must be a list, got ", fa.dump()));
  for (const json& e : fa) {
    if (!e.is_number_integer() || e.get<int64_t>() < 0 || e.get<int64_t>() >= c.depth)
      throw r.err("fullatt_block_indexes", cat("entry ", e.dump(), " is not a block index in 0..", c.depth - 1));
    if (c.full_attention(e.get<int64_t>())) throw r.err("fullatt_block_indexes", cat("lists block ", e.dump(), " twice"));
    c.fullatt_blocks.push_back(e.get<int64_t>());
  }
  if (c.parameter_count() > kMaxParameters)
    throw Error(cat(src, ": vision_config describes ", c.parameter_count(), " parameters, more than the supported ",
                    kMaxParameters));
  return c;
}

VisionConfig VisionConfig::load(const std::string& path) {
  namespace fs = std::filesystem;
  const fs::path file = fs::is_directory(path) ? fs::path(path) / "config.json" : fs::path(path);
  std::ifstream in(file);
  if (!in) throw Error(cat(file.string(), ": cannot open"));
  json j;
  try {
    j = json::parse(in);
  } catch (const std::exception& e) {
    throw Error(cat(file.string(), ": not valid JSON: ", e.what()));
  }
  if (!j.is_object() || !j.contains("vision_config"))
    throw Error(cat(file.string(), ": has no 'vision_config' (not a vision-language model)"));
  return parse(j.at("vision_config"), file.string());
}

}  // namespace zaya::vit
