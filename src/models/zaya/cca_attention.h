#pragma once
#include <cstddef>
#include <cstdint>

#include "kernels/kernels.h"
#include "models/zaya/activations.h"
#include "models/zaya/model_weights.h"
#include "models/zaya/rope.h"
#include "zaya/decode_state.h"
#include "zaya/model.h"

namespace zaya {

// The tokens of one sequence in one call, as attention sees them.
struct AttentionInput {
  const float* x = nullptr;            // [n, H] normalized inputs
  size_t n = 0;
  int64_t pos0 = 0;                    // position of the first token
  const uint8_t* image = nullptr;      // [n] image-token flags (ZAYA1-VL prefill), or null
  AttentionMask mask = AttentionMask::Causal;  // applied when `image` flags any token
};

// Compressed Convolutional Attention (spec §3.3; ZAYA1-VL §6.2 adds the vision-LoRA at image tokens and the mask
// policy of §7) over in.n tokens that continue `st`. out: [n, H]. Appends to the K/V cache and rolls the conv state
// and prev_x. `s` is scratch sized for at least n tokens.
void cca_attention(const AttentionWeights& w, const ModelConfig& cfg, const Rope& rope, const AttentionInput& in,
                   AttentionLayerState& st, float* out, AttentionScratch& s, const Compute& c, ForwardTrace* trace,
                   int64_t layer);

}  // namespace zaya
