#pragma once
#include <cstddef>
#include <cstdint>

#include "kernels/kernels.h"
#include "models/zaya/activations.h"
#include "models/zaya/model_weights.h"
#include "zaya/model.h"

namespace zaya {

// Top-1 MoE layer with the non-linear EDA router and the MOD skip route (spec §3.4), for n tokens.
// x: [n, H] normalized inputs; out: [n, H]. rho: [n, D] router depth state — read (unless this is the first MoE
// layer, which has no router_states_scale) and overwritten with this layer's state for the next MoE layer. `s` is
// scratch sized for at least n tokens. image: [n] image-token flags (the experts' vision-LoRA gate), or null.
void moe_layer(const MoeWeights& w, const ModelConfig& cfg, SkipRoute skip, const float* x, size_t n,
               const uint8_t* image, float* rho, float* out, MoeScratch& s, const Compute& c, ForwardTrace* trace,
               int64_t layer);

}  // namespace zaya
