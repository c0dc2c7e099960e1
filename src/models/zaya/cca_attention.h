#pragma once
#include <cstddef>
#include <cstdint>
#include <span>

#include "kernels/kernels.h"
#include "models/zaya/activations.h"
#include "models/zaya/model_weights.h"
#include "models/zaya/rope.h"
#include "zaya/decode_state.h"
#include "zaya/model.h"

namespace zaya {

// The tokens of one sequence in one call, as attention sees them.
struct AttentionInput {
  size_t row = 0;                      // first row of the sequence in the call's stacked inputs
  size_t n = 0;
  int64_t pos0 = 0;                    // position of the first token
  AttentionLayerState* state = nullptr;  // the sequence's state for this layer
  const uint8_t* image = nullptr;      // [n] image-token flags (ZAYA1-VL prefill), or null
  AttentionMask mask = AttentionMask::Causal;  // applied when `image` flags any token
};

// Compressed Convolutional Attention (spec §3.3; ZAYA1-VL §6.2 adds the vision-LoRA at image tokens and the mask
// policy of §7) for several sequences at once. x: [n, H], the normalized inputs of every sequence stacked (sequence
// i at rows seqs[i].row …, in order, without gaps); out: [n, H]. The products run once over all n rows (each weight
// is read once for every sequence); the conv, the cache and attention itself use each sequence's own state, whose
// K/V cache is appended and conv state and prev_x rolled. `image` ([n] or null) are the flags of all rows (the
// LoRA gate). `s` is scratch sized for n tokens in seqs.size() sequences.
void cca_attention(const AttentionWeights& w, const ModelConfig& cfg, const Rope& rope,
                   std::span<const AttentionInput> seqs, const float* x, size_t n, const uint8_t* image, float* out,
                   AttentionScratch& s, const Compute& c, ForwardTrace* trace, int64_t layer);

}  // namespace zaya
