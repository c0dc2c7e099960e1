#pragma once
// The ZAYA1-VL vision-LoRA step (spec §6.4): Y[t] += B·(A·X[t]) for the rows t flagged as image tokens only.
#include <cstddef>
#include <cstdint>

#include "kernels/kernels.h"
#include "models/zaya/activations.h"
#include "models/zaya/model_weights.h"

namespace zaya {

// X: [n, l.a.cols] rows, Y: [n, l.b.rows] rows (updated in place). flags: n entries or null (then nothing happens,
// as for text tokens and decode steps). Rows are gathered so the two thin products run over the flagged rows only.
void lora_add(const LoraWeights& l, const float* X, size_t n, const uint8_t* flags, float* Y, LoraScratch& s,
              const Compute& c);

}  // namespace zaya
