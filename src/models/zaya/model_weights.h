#pragma once
// The ZAYA1 weights, organised as the spec's blocks (§3.6: a block = CCA attention + MoE, each after its residual
// merge and RMSNorm), independent of the checkpoint layout they came from. Block b holds legacy layers 2b
// (attention) and 2b+1 (MoE), the numbering the spec and the golden traces use; native checkpoints are mapped onto
// it by name (spec §2.2). Weights only: no state, no scratch memory, no compute policy.
#include <string>
#include <vector>

#include "zaya/config.h"
#include "io/safetensors.h"
#include "tensor/weight_matrix.h"

namespace zaya {

// r ← (m + hb) ⊙ hs + (r + rb) ⊙ rs; the first merge has no residual term (rs/rb empty).
struct ResidualMergeWeights {
  std::vector<float> hidden_scale, hidden_bias, residual_scale, residual_bias;
  bool has_residual() const { return !residual_scale.empty(); }
};

// The vision-LoRA of ZAYA1-VL (spec §6.4): y += B·(A·x) at image-token rows only, scale 1, no bias. Empty (no rows)
// for the text model.
struct LoraWeights {
  WeightMatrix a;  // [rank, in]
  WeightMatrix b;  // [out, rank]
  bool present() const { return a.rows > 0; }
};

struct AttentionWeights {
  WeightMatrix q, k;                  // [nq·dh, H], [nk·dh, H]
  WeightMatrix v_current, v_delayed;  // [nk·dh/2, H] each
  WeightMatrix o;                     // [H, nq·dh]
  std::vector<float> conv0_w, conv0_b;  // depthwise [C, 2], [C]
  WeightMatrix conv1;                   // grouped [C, dh, 2] viewed as [C, 2·dh] (i-major, tap-minor)
  std::vector<float> conv1_b;           // [C]
  std::vector<float> temp;              // [nk]
  LoraWeights q_lora, k_lora, v_current_lora, v_delayed_lora, o_lora;  // ZAYA1-VL only
};

struct ExpertWeights {
  WeightMatrix gate, up;  // [I, H] each: rows 0…I-1 and I…2I-1 of fc1
  WeightMatrix down;      // [H, I]
  LoraWeights gate_lora, up_lora, down_lora;  // ZAYA1-VL only; gate/up share fc1's A, B split by rows
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

struct BlockWeights {
  ResidualMergeWeights attn_merge;  // before the attention (legacy layer 2b)
  std::vector<float> attn_norm;     // [H]
  AttentionWeights attn;
  ResidualMergeWeights moe_merge;   // before the MoE (legacy layer 2b+1)
  std::vector<float> moe_norm;      // [H]
  MoeWeights moe;
};

struct ModelWeights {
  WeightMatrix embedding;  // [V, H], also the tied lm_head
  WeightMatrix lm_head;    // == embedding when tied
  std::vector<BlockWeights> blocks;  // B blocks
  ResidualMergeWeights final_merge;
  std::vector<float> final_norm;

  // Loads and validates every tensor the architecture needs (shape and dtype), naming what is missing or wrong.
  static ModelWeights load(const TensorStore& store, const ModelConfig& cfg);
  // Weight bytes one decoded token reads: every attention and router matrix and vector, one expert per MoE layer
  // (top-1, the experts' average), one embedding row and the whole lm_head.
  size_t bytes_per_token() const;
};

// Layout detection from tensor names (spec §6): legacy has model.layers.1.zaya_block…, native has
// model.layers.0.mlp.experts.gate_up_proj.
Layout detect_layout(const TensorStore& store);

// Every tensor the architecture expects, with its shape, for a layout (used for loading checks, `info` counts and
// verification). lm_head.weight is listed only when embeddings are untied.
struct ExpectedTensor {
  std::string name;
  std::vector<int64_t> shape;
  enum Role { Embedding, Attention, Router, Expert, Norm, Lora, Other } role;
};
std::vector<ExpectedTensor> expected_tensors(const ModelConfig& cfg);

}  // namespace zaya
