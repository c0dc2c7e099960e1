#pragma once
#include <functional>
// The ZAYA1 weights, organised by layer kind, independent of the checkpoint layout they came from. Legacy layer
// index n (0 … 2B-1: even = attention, odd = MoE) is used throughout, as in the spec; native checkpoints are
// mapped onto it by name (spec §2.2).
#include <string>
#include <vector>

#include "zaya/config.h"
#include "zaya/safetensors.h"
#include "zaya/weights.h"

namespace zaya {

// r ← (m + hb) ⊙ hs + (r + rb) ⊙ rs; the first merge has no residual term (rs/rb empty).
struct ResidualMergeWeights {
  std::vector<float> hidden_scale, hidden_bias, residual_scale, residual_bias;
  bool has_residual() const { return !residual_scale.empty(); }
};

struct AttentionWeights {
  WeightMatrix q, k;                  // [nq·dh, H], [nk·dh, H]
  WeightMatrix v_current, v_delayed;  // [nk·dh/2, H] each
  WeightMatrix o;                     // [H, nq·dh]
  std::vector<float> conv0_w, conv0_b;  // depthwise [C, 2], [C]
  WeightMatrix conv1;                   // grouped [C, dh, 2] viewed as [C, 2·dh] (i-major, tap-minor)
  std::vector<float> conv1_b;           // [C]
  std::vector<float> temp;              // [nk]
};

struct ExpertWeights {
  WeightMatrix gate, up;  // [I, H] each: rows 0…I-1 and I…2I-1 of fc1
  WeightMatrix down;      // [H, I]
};

struct MoeWeights {
  WeightMatrix router_down;                   // [D, H]
  std::vector<float> router_down_bias;        // [D]
  std::vector<float> router_states_scale;     // [D]; empty in the first MoE layer (no EDA input)
  std::vector<float> router_norm;             // [D]
  WeightMatrix router_fc1, router_fc2;        // [D, D]
  std::vector<float> router_fc1_bias, router_fc2_bias;
  WeightMatrix router_out;                    // [E(+1), D]
  std::vector<float> balancing_biases;        // [E(+1)], selection only
  std::vector<ExpertWeights> experts;         // E
};

struct LayerWeights {
  bool is_attention = false;
  ResidualMergeWeights merge;     // applied before this layer
  std::vector<float> input_norm;  // [H]
  AttentionWeights attn;          // when is_attention
  MoeWeights moe;                 // otherwise
};

struct ModelWeights {
  WeightMatrix embedding;  // [V, H], also the tied lm_head
  WeightMatrix lm_head;    // == embedding when tied
  std::vector<LayerWeights> layers;  // 2B legacy layers
  ResidualMergeWeights final_merge;
  std::vector<float> final_norm;

  // Loads and validates every tensor the architecture needs (shape and dtype), naming what is missing or wrong.
  static ModelWeights load(const TensorStore& store, const ModelConfig& cfg);
};

// Layout detection from tensor names (spec §6): legacy has model.layers.1.zaya_block…, native has
// model.layers.0.mlp.experts.gate_up_proj.
Layout detect_layout(const TensorStore& store);

// Every tensor the architecture expects, with its shape, for a layout (used for loading checks, `info` counts and
// verification). lm_head.weight is listed only when embeddings are untied.
// Every matrix of the model (for settings that apply to all of them).
void for_each_matrix(ModelWeights& w, const std::function<void(WeightMatrix&)>& fn);

struct ExpectedTensor {
  std::string name;
  std::vector<int64_t> shape;
  enum Role { Embedding, Attention, Router, Expert, Norm, Other } role;
};
std::vector<ExpectedTensor> expected_tensors(const ModelConfig& cfg);

}  // namespace zaya
