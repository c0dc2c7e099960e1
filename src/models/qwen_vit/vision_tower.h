#pragma once
// The Qwen2.5-VL vision tower of ZAYA1-VL (spec §4): patch embedding → window permutation → pre-norm ViT blocks
// (2-D RoPE, non-causal attention within windows or whole frames, SiLU MLP) → 2×2 merger → un-permutation. Every
// product is batched over all patches (matrix-matrix through `matmul` with a Compute); the attention runs per
// segment and head, never over a P×P mask.
#include <cstdint>
#include <vector>

#include "kernels/kernels.h"
#include "models/qwen_vit/patches.h"
#include "models/qwen_vit/vision_activations.h"
#include "models/qwen_vit/vision_config.h"
#include "models/qwen_vit/vision_layout.h"
#include "models/qwen_vit/vision_weights.h"

namespace zaya::vit {

// Intermediates of one call, recorded when a trace is passed (golden tests; names as the golden README's).
struct VisionTrace {
  std::vector<float> patch_embed;             // [P, hv], processor order
  VisionLayout layout;                        // pos_hw, angles, window_index, cu_window_seqlens
  std::vector<std::vector<float>> block_out;  // per block [P, hv], window order
  std::vector<float> merger_out;              // [N, out], window order
};

// Runs the tower on `in` and writes `features` [N, out_hidden]: one row per image token, merge units in raster
// order per image, images concatenated — the rows the decoder scatters into its image-token positions. `act` is
// grown as needed and reused across calls. Bad input (grids that disagree with the rows or the config) throws.
void encode(const VisionConfig& cfg, const VisionWeights& w, const ImagePatches& in, VisionActivations& act,
            std::vector<float>& features, const Compute& compute = {}, VisionTrace* trace = nullptr);

// Floating-point operations of one encode (2 per multiply-add of the products and the attention), for reports.
double encode_flops(const VisionConfig& cfg, const VisionLayout& layout);

}  // namespace zaya::vit
