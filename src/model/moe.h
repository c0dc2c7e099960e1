#pragma once
#include <cstddef>
#include <cstdint>

#include "model/model_weights.h"
#include "zaya/model.h"

namespace zaya {

// Top-1 MoE layer with the non-linear EDA router and the MOD skip route (spec §3.4), for n tokens.
// x: [n, H] normalized inputs; out: [n, H]. rho: [n, D] router depth state — read (unless this is the first MoE
// layer, which has no router_states_scale) and overwritten with this layer's state for the next MoE layer.
void moe_layer(const MoeWeights& w, const ModelConfig& cfg, SkipRoute skip, const float* x, size_t n, float* rho,
               float* out, ForwardTrace* trace, int64_t layer);

}  // namespace zaya
