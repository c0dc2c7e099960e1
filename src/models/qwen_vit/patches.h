#pragma once
// What image preprocessing hands the vision tower (ZAYA1-VL spec §3): the normalised patches of one or more images,
// rows in merge-block-major order, and each image's patch grid. Produced by preprocess.h, consumed by
// vision_tower.h.
#include <cstddef>
#include <cstdint>
#include <vector>

namespace zaya::vit {

struct PatchGrid {
  int64_t t = 1, h = 0, w = 0;  // grid_thw: frames (temporal_patch_size groups), patch rows, patch columns
  int64_t patches() const { return t * h * w; }
};

struct ImagePatches {
  std::vector<float> pixel_values;  // [rows, cols]: rows = Σ t·h·w over images, cols = channels·tps·patch²
  int64_t rows = 0, cols = 0;
  std::vector<PatchGrid> grids;     // one per image, in order
  // Image tokens (vision features) an image contributes: t·h·w / merge².
  static int64_t tokens(const PatchGrid& g, int64_t merge) { return g.patches() / (merge * merge); }
};

}  // namespace zaya::vit
