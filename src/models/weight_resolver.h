#pragma once
// Decides how each weight is stored from what is actually in the files (bundle-formats §5.3) and builds the
// WeightMatrix for it: `P.tq_packed` → MXTQ (+ the jangtq_runtime.safetensors sidecar), `P.scales`+`P.biases` →
// MLX affine with the bits read from the shapes, `P.scales` alone → an MLX fp mode, else a float `P.weight`.
// Per-module overrides in config.json's `quantization` block win.
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "io/safetensors.h"
#include "tensor/weight_matrix.h"

namespace zaya {

// config.json's `quantization` block (bundle-formats §5.2), checked completely as the loader will use it: the mode,
// the group size, and every per-module override (an object with a known mode, a supported group_size and bits in
// 1..8, or false). Throws Error naming `src` and the key. Shared by the loader and `zaya verify`.
struct QuantSettings {
  bool quantized = false;
  int group_size = 64;  // MLX's default when the config does not say
  std::string mode = "affine";
  nlohmann::json overrides = nlohmann::json::object();  // module path -> override
  int64_t mxtq_seed = 42;
};
QuantSettings parse_quantization(const nlohmann::json& config, const std::string& src);

class WeightResolver {
 public:
  // dir: the model folder (config.json, jang_config.json and the sidecar are read from there when present).
  WeightResolver(const TensorStore& store, const std::string& dir);

  // The matrix at base path P (no ".weight" suffix) with logical shape [rows, cols]; stack > 0 means the file holds
  // [stack, rows, cols] (pre-stacked experts), returned as stack·rows rows.
  WeightMatrix matrix(const std::string& base, int64_t rows, int64_t cols, int64_t stack = 0) const;
  // True when any storage of base path P exists.
  bool has(const std::string& base) const;

  bool quantized_bundle() const { return quantized_; }

 private:
  std::shared_ptr<const MxtqTables> mxtq_tables(int64_t in, int bits, const std::string& who) const;

  const TensorStore& store_;
  std::string dir_;
  bool quantized_ = false;
  int group_size_ = 64;          // MLX's default when the config does not say
  std::string mode_ = "affine";
  nlohmann::json overrides_;     // per-module entries of config.quantization
  nlohmann::json tq_in_features_;
  int64_t mxtq_seed_ = 42;
  std::shared_ptr<TensorStore> sidecar_;
  mutable std::map<std::pair<int64_t, int>, std::shared_ptr<const MxtqTables>> tables_;
};

}  // namespace zaya
