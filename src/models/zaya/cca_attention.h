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

// Compressed Convolutional Attention (spec §3.3) over n tokens at positions pos0…pos0+n-1 that continue `st`.
// x: [n, H] normalized inputs; out: [n, H]. Appends to the K/V cache and rolls the conv state and prev_x. `s` is
// scratch sized for at least n tokens.
void cca_attention(const AttentionWeights& w, const ModelConfig& cfg, const Rope& rope, const float* x, size_t n,
                   int64_t pos0, AttentionLayerState& st, float* out, AttentionScratch& s, const Compute& c,
                   ForwardTrace* trace, int64_t layer);

}  // namespace zaya
