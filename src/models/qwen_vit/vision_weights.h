#pragma once
// The vision tower's weights (ZAYA1-VL spec §2, prefix `vision_tower.`). Matrices go through WeightResolver, so a
// checkpoint may store them as F32/BF16/F16 or (in a bundle) quantized; vectors are read as fp32. Weights only: no
// scratch, no compute policy.
#include <cstdint>
#include <string>
#include <vector>

#include "io/safetensors.h"
#include "models/qwen_vit/vision_config.h"
#include "tensor/weight_matrix.h"

namespace zaya {
class WeightResolver;
}

namespace zaya::vit {

struct VisionBlockWeights {
  std::vector<float> norm1, norm2;  // [hv]
  WeightMatrix qkv;                 // [3hv, hv]: q rows, then k, then v
  std::vector<float> qkv_bias;      // [3hv]
  WeightMatrix proj;                // [hv, hv]
  std::vector<float> proj_bias;
  WeightMatrix gate, up;            // [I, hv]
  std::vector<float> gate_bias, up_bias;
  WeightMatrix down;                // [hv, I]
  std::vector<float> down_bias;
};

struct VisionWeights {
  WeightMatrix patch_embed;  // Conv3d [hv, C, tps, p, p] viewed as [hv, C·tps·p·p] (kernel = stride: a matmul)
  std::vector<VisionBlockWeights> blocks;
  std::vector<float> merger_norm;         // ln_q [hv]
  WeightMatrix merger_fc1;                // mlp.0 [merge²·hv, merge²·hv]
  std::vector<float> merger_fc1_bias;
  WeightMatrix merger_fc2;                // mlp.2 [out, merge²·hv]
  std::vector<float> merger_fc2_bias;

  // Loads and checks every `prefix`… tensor the config implies, naming what is missing or misshapen.
  static VisionWeights load(const TensorStore& store, const VisionConfig& cfg, const WeightResolver& resolver,
                            const std::string& prefix = "vision_tower.");
  // The same with a resolver for the store's own folder.
  static VisionWeights load(const TensorStore& store, const VisionConfig& cfg,
                            const std::string& prefix = "vision_tower.");
};

// Every tensor the tower expects, with its checkpoint shape (for loading checks, `info` counts, verification).
struct VisionTensor {
  std::string name;
  std::vector<int64_t> shape;
};
std::vector<VisionTensor> expected_vision_tensors(const VisionConfig& cfg, const std::string& prefix = "vision_tower.");

}  // namespace zaya::vit
