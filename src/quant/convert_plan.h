#pragma once
// The tensor plan of a bundle: which output tensors a profile writes for a config, where each one's float rows come
// from, and how it is encoded (bundle-formats §6, §7). Shared by convert, synth and verify.
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "models/qwen_vit/vision_config.h"
#include "models/qwen_vit/vision_weights.h"
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

// Prefix of the stacked experts of MoE layer n (legacy numbering) in a bundle of cfg's layout: text
// model.layers.{n}.zaya_block.experts.switch_mlp.; ZAYA1-VL model.layers.{n/2}.zaya_block.experts.switch_mlp. (the
// source's `.mlp.` is dropped for the expert keys only, §6 and §7.2).
std::string switch_mlp_prefix(const ModelConfig& cfg, int64_t n);

// The logical tensors of a ZAYA1-VL checkpoint (`stacked` false: per-expert local_experts, the source layout) or
// bundle (`stacked`: experts as switch_mlp [E, out, in]): the fused decoder with its vision-LoRA (which keeps its
// source names, local_experts included) and the vision tower (role Other).
std::vector<ExpectedTensor> vl_tensors(const ModelConfig& cfg, const vit::VisionConfig& vision, bool stacked);
// The VL bundle plan (§7.2 "VL bundles"): source names kept, experts stacked in quantized profiles, the language
// tensors encoded as the text bundles encode them, the vision tower and every LoRA tensor float (F16 in quantized
// profiles). Sorted as build_plan sorts.
std::vector<Item> build_vl_plan(const ModelConfig& cfg, const vit::VisionConfig& vision, Profile profile);
// config.json of a VL bundle from the source's flat config: quantized profiles nest the language keys under
// text_config (§7.2; the image ids, LoRA, vision_config and the quantization keys stay on top); MXFP4 has no
// embed_bits. Float profiles keep the flat layout with the new dtype.
nlohmann::ordered_json vl_bundle_config(const nlohmann::ordered_json& src, Profile profile, const ModelConfig& cfg,
                                        uint64_t mxtq_seed);
// Files a VL bundle carries from its source besides the tokenizer (§7.1).
bool is_vl_sidecar(const std::string& filename);

// cfg seen with legacy names (same numbers).
ModelConfig as_legacy(const ModelConfig& cfg);
// A legacy-layout config.json for cfg (used when the source config is native).
nlohmann::ordered_json legacy_config_json(const ModelConfig& cfg);

// config.json and jang_config.json of a bundle: `base` is the source's legacy config; items give tq_in_features.
nlohmann::ordered_json bundle_config(nlohmann::ordered_json base, Profile profile, const ModelConfig& cfg,
                                     uint64_t mxtq_seed);
// null if none; `vl`: has_vision, architecture zaya1_vl.
nlohmann::ordered_json jang_config(Profile profile, const std::vector<Item>& items, uint64_t mxtq_seed, bool vl = false);
SafetensorsWriterOptions writer_options(Profile profile, uint64_t shard_bytes);

}  // namespace zaya::bundle
