#pragma once
// Where every patch goes in one vision-tower call (ZAYA1-VL spec §4 steps 2–3), computed from the image grids
// alone: the 2-D rotary angles, the window ordering of merge units and its inverse, and the attention segments of
// windowed and full-attention blocks. Nothing here touches activations.
#include <cstdint>
#include <vector>

#include "models/qwen_vit/patches.h"
#include "models/qwen_vit/vision_config.h"

namespace zaya::vit {

struct Segment {
  int64_t begin = 0, end = 0;  // patch rows [begin, end) in window order; attention is non-causal within one
};

struct VisionLayout {
  int64_t patches = 0;  // P = Σ t·h·w
  int64_t units = 0;    // N = P / merge²: merge units = image tokens
  // (h, w) patch coordinates of each patch, processor order: [P, 2].
  std::vector<int64_t> pos_hw;
  // Rotary angles θ = [h·inv_freq, w·inv_freq] per patch, processor order: [P, head_dim/2].
  std::vector<float> angles;
  // window_index[k] = the unit (raster order, images concatenated) at window-order position k: [N].
  std::vector<int64_t> window_index;
  // Window boundaries in patches, from 0, with empty windows dropped (the reference's unique_consecutive).
  std::vector<int32_t> cu_window_seqlens;
  std::vector<Segment> windows;  // the non-empty windows
  std::vector<Segment> frames;   // one per image frame: the full-attention blocks' segments (never across images)

  // Validates the grids against the config (divisible by the merge size, bounded) and builds the layout.
  static VisionLayout plan(const VisionConfig& cfg, const std::vector<PatchGrid>& grids);
};

}  // namespace zaya::vit
