#pragma once
// The tensor plan of a bundle: which output tensors a profile writes for a config, where each one's float rows come
// from, and how it is encoded (bundle-formats §6, §7). Shared by convert, synth and verify.
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "models/zaya/model_weights.h"
#include "zaya/config.h"
#include "zaya/convert.h"
#include "io/safetensors_writer.h"

namespace zaya::bundle {

// JANG's convert_zaya_common.is_passthrough (§7.2) plus the "fewer than 2 dimensions" rule: such tensors stay float
// (F16 in the bundles) under their original name.
bool is_passthrough(const std::string& name, size_t ndim);
// Vision-tower / LoRA tensors of VL bundles (§7.2), also F16 passthrough.
bool is_vision_or_lora(const std::string& name);

enum class Enc { Float, Affine, Fp, Mxtq };

// How synth fills a tensor.
enum class Init { Normal, Ones, Zeros, Small, Conv0, Conv1 };

struct Item {
  std::string name;            // logical tensor name (base + ".weight" for matrices, else the passthrough name)
  std::string base;            // name without a trailing ".weight"
  std::vector<int64_t> shape;  // logical output shape ([E, out, in] for stacked experts)
  ExpectedTensor::Role role = ExpectedTensor::Other;
  Enc enc = Enc::Float;
  DType float_dtype = DType::F16;  // Enc::Float
  int bits = 0, group = 0;         // Affine / Fp / Mxtq
  Init init = Init::Normal;
  float init_std = 0.02f;
  // Float rows come from source tensors viewed as 2-D [*, cols]: part p supplies rows [p·part_rows, (p+1)·part_rows)
  // of this item, taken from rows [row0, row0 + part_rows) of `tensor`.
  struct Part {
    std::string tensor;
    int64_t row0 = 0;
  };
  std::vector<Part> parts;
  int64_t part_rows = 0;

  int64_t cols() const { return shape.empty() ? 1 : shape.back(); }
  int64_t rows() const;  // numel / cols
  std::vector<TensorSpec> outputs() const;  // the stored tensors, in weight_map order
};

// Output (bundle) plan for a config. The bundle is always legacy-named; `source` gives the layout of the float
// source (for Part names): a native source maps onto the legacy names. Non-expert tensors come first sorted by name,
// then the expert stacks layer by layer (gate, up, down), as the JANG converter writes them.
std::vector<Item> build_plan(const ModelConfig& cfg, Profile profile, Layout source);

// cfg seen with legacy names (same numbers).
ModelConfig as_legacy(const ModelConfig& cfg);
// A legacy-layout config.json for cfg (used when the source config is native).
nlohmann::ordered_json legacy_config_json(const ModelConfig& cfg);

// config.json and jang_config.json of a bundle: `base` is the source's legacy config; items give tq_in_features.
nlohmann::ordered_json bundle_config(nlohmann::ordered_json base, Profile profile, const ModelConfig& cfg,
                                     uint64_t mxtq_seed);
nlohmann::ordered_json jang_config(Profile profile, const std::vector<Item>& items, uint64_t mxtq_seed);  // null if none
SafetensorsWriterOptions writer_options(Profile profile, uint64_t shard_bytes);

}  // namespace zaya::bundle
