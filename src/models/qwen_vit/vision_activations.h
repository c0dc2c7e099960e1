#pragma once
// Scratch memory of one vision-tower call, sized once for its patch count before the block loop: the blocks write
// into these buffers and never allocate. The row-wise products (qkv, MLP) run over chunks of rows, so their widest
// buffers are sized by the chunk, not by the image.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "models/qwen_vit/vision_config.h"

namespace zaya::vit {

// Rows per qkv / MLP chunk: many rows per pass over the weights, while the [rows, 3hv] and [rows, I] scratch stay
// a few MB at the real size however large the image.
constexpr size_t kVisionRowChunk = 512;

struct VisionActivations {
  size_t capacity = 0;            // patches the buffers hold
  std::vector<float> x;           // residual stream [P, hv], window order
  std::vector<float> xn;          // normalised block input, then the attention output (heads concatenated) [P, hv]
  std::vector<float> y;           // sublayer product before its bias and residual add [P, hv]
  std::vector<float> cos, sin;    // rotary tables [P, dh/2], window order (the reference's [θ, θ] halves are equal)
  std::vector<float> qkv;         // one chunk's projections [chunk, 3hv]
  std::vector<float> q, k, v, o;  // head-major [heads, P, dh]: one head's rows of a segment are contiguous
  std::vector<float> gate, up;    // one chunk's MLP [chunk, I]
  std::vector<float> m1, m2;      // merger [N, merge²·hv], [N, out]

  // Sizes every buffer for `patches` patches (keeps capacity when it is already large enough).
  void reserve(const VisionConfig& cfg, size_t patches);
};

}  // namespace zaya::vit
