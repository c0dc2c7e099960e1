#include "models/qwen_vit/vision_activations.h"

#include <algorithm>

namespace zaya::vit {

void VisionActivations::reserve(const VisionConfig& cfg, size_t patches) {
  if (patches <= capacity) return;
  const size_t P = patches, hv = cfg.hidden, I = cfg.intermediate, half = cfg.head_dim() / 2;
  const size_t chunk = std::min(P, kVisionRowChunk), N = P / cfg.merge_rows();
  for (auto* b : {&x, &xn, &y, &q, &k, &v, &o}) b->resize(P * hv);
  cos.resize(P * half);
  sin.resize(P * half);
  qkv.resize(chunk * 3 * hv);
  gate.resize(chunk * I);
  up.resize(chunk * I);
  m1.resize(N * cfg.merged_dim());
  m2.resize(N * cfg.out_hidden);
  capacity = P;
}

}  // namespace zaya::vit
