#pragma once
// Facts about a ZAYA model folder that need no weights loaded: parameter counts from the architecture's tensor
// shapes, and what the safetensors files hold (for `zaya info`).
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "zaya/config.h"

namespace zaya {

// The decoder's parameters (the vision tower of a ZAYA1-VL model is counted by vision_tower_info).
struct ParamCounts {
  int64_t total = 0, embedding = 0, experts = 0;
  int64_t lora = 0, lora_experts = 0;  // ZAYA1-VL vision-LoRA, all of it and the per-expert part (in `total`)
  int64_t buffers = 0;  // registered buffers (balancing biases): not parameters, as HF counts
};
ParamCounts count_parameters(const ModelConfig& cfg);

// The vision tower of a ZAYA1-VL folder (config.json `vision_config`, preprocessor_config.json when present).
struct VisionTowerInfo {
  bool present = false;  // false: the config has no vision_config (a text model)
  int64_t depth = 0, hidden = 0, heads = 0, head_dim = 0, intermediate = 0, in_channels = 0;
  int64_t patch = 0, temporal_patch = 0, merge = 0, window_size = 0, out_hidden = 0;
  std::vector<int64_t> fullatt_blocks;
  int64_t parameters = 0;
  bool has_preprocessor = false;  // preprocessor_config.json parsed
  int64_t min_pixels = 0, max_pixels = 0;
};
// `path`: a model folder or its config.json. Throws zaya::Error when vision_config or preprocessor_config.json is
// malformed.
VisionTowerInfo vision_tower_info(const std::string& path);

struct WeightFiles {
  bool present = false;                 // the folder holds *.safetensors
  size_t tensors = 0, bytes = 0;        // tensor count and their data bytes
  std::map<std::string, int64_t> dtypes;  // dtype name → tensor count
};
// Reads only the file headers.
WeightFiles inspect_weight_files(const std::string& dir);

}  // namespace zaya
