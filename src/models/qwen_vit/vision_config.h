#pragma once
// The vision tower's geometry (ZAYA1-VL spec §1.1 `vision_config`: a Qwen2.5-VL ViT), parsed from a VL config.json.
// Validated once here so the tower can trust it: sizes are bounded (a hostile config cannot make us allocate
// absurd memory) and the divisibility rules the math relies on hold.
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace zaya::vit {

struct VisionConfig {
  int64_t depth = 0;             // ViT blocks
  int64_t hidden = 0;            // hv
  int64_t heads = 0;
  int64_t intermediate = 0;      // SiLU MLP width
  int64_t in_channels = 3;
  int64_t patch = 0;             // spatial patch side in pixels
  int64_t temporal_patch = 1;    // frames per patch (tps)
  int64_t merge = 2;             // spatial_merge_size: merge² patches become one image token
  int64_t window_size = 0;       // window side in pixels
  int64_t out_hidden = 0;        // merger output width (= the text hidden size)
  std::vector<int64_t> fullatt_blocks;  // blocks that attend over a whole frame instead of windows
  float norm_eps = 1e-6f;        // hard-coded in the reference's vision RMSNorm (spec §1.2)
  float rope_theta = 10000.0f;   // hard-coded in the reference's VisionRotaryEmbedding

  int64_t head_dim() const { return hidden / heads; }
  int64_t patch_dim() const { return in_channels * temporal_patch * patch * patch; }  // pixel_values columns
  int64_t merge_rows() const { return merge * merge; }                                 // patches per image token
  int64_t merged_dim() const { return hidden * merge_rows(); }                         // merger input width
  int64_t window_units() const { return window_size / (patch * merge); }               // merged units per window side
  bool full_attention(int64_t block) const;
  // Parameters of the tower (for reports; the bound in parse() keeps this far from overflow).
  int64_t parameter_count() const;

  // `vc` is the `vision_config` object; `src` names it in errors.
  static VisionConfig parse(const nlohmann::json& vc, const std::string& src);
  // Reads `vision_config` from a config.json file, or from the config.json inside a model folder.
  static VisionConfig load(const std::string& path);
};

}  // namespace zaya::vit
