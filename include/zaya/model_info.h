#pragma once
// Facts about a ZAYA model folder that need no weights loaded: parameter counts from the architecture's tensor
// shapes, and what the safetensors files hold (for `zaya info`).
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>

#include "zaya/config.h"

namespace zaya {

struct ParamCounts {
  int64_t total = 0, embedding = 0, experts = 0;
  int64_t buffers = 0;  // registered buffers (balancing biases): not parameters, as HF counts
};
ParamCounts count_parameters(const ModelConfig& cfg);

struct WeightFiles {
  bool present = false;                 // the folder holds *.safetensors
  size_t tensors = 0, bytes = 0;        // tensor count and their data bytes
  std::map<std::string, int64_t> dtypes;  // dtype name → tensor count
};
// Reads only the file headers.
WeightFiles inspect_weight_files(const std::string& dir);

}  // namespace zaya
