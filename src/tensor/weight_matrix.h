#pragma once
// A weight matrix as the kernels see it: [rows, cols] for y = W·x, in whatever storage format the file holds —
// plain floats, MLX affine (2–8 bits), MLX mxfp4/nvfp4/mxfp8, or JANG MXTQ. A view: it points into the mapped file
// (or an aligned private copy) and says how to read it; it holds no compute policy. What each format means — row
// size, row decode, which product kernel runs it — is the format table's business (kernels/format_table.h); layers
// only hold WeightMatrix values, so they do not care how a weight is stored.
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "io/safetensors.h"
#include "tensor/weight_format.h"

namespace zaya {

// Rotation signs and codebook shared by every MXTQ matrix of one (in_features, bits) (from the JANGTQ sidecar).
struct MxtqTables {
  int64_t in_features = 0;
  int bits = 0;
  std::vector<float> signs;     // [in_features], ±1
  std::vector<float> codebook;  // [2^bits], ascending
};

struct WeightMatrix {
  WeightFormat format = WeightFormat::F32;
  int64_t rows = 0, cols = 0;   // logical (dequantized) shape
  const void* data = nullptr;   // float elements, or packed U32 codes
  size_t row_bytes = 0;         // bytes of `data` from one row to the next (float rows: cols · element size)

  // Quantized formats.
  int bits = 0, group_size = 0;
  const void* scales = nullptr;  // affine: F16/BF16/F32 [rows, cols/group]; fp modes: U8 [rows, cols/group]
  const void* biases = nullptr;  // affine only, same dtype and shape as scales
  DType scale_dtype = DType::F16;
  size_t scale_row_bytes = 0;
  const uint16_t* norms = nullptr;  // MXTQ: F16 row norms [rows]
  std::shared_ptr<const MxtqTables> mxtq;

  std::vector<std::shared_ptr<const void>> owners;  // private aligned copies of unaligned file data
  std::string name;

  const uint8_t* row(int64_t r) const { return static_cast<const uint8_t*>(data) + static_cast<size_t>(r) * row_bytes; }
  // Bytes read for the whole matrix (data + scales/biases/norms): what one pass over the weights costs.
  size_t bytes() const;
  // A view of rows [r0, r0+n): slices stacked experts and gate/up halves without copying.
  WeightMatrix slice_rows(int64_t r0, int64_t n) const;
};

// Element i of a stored scale/bias array (F16, BF16 or F32; any alignment) as fp32.
inline float stored_scale(const void* base, DType dt, size_t i) {
  const uint8_t* p = static_cast<const uint8_t*>(base);
  if (dt == DType::F32) {
    float v;
    std::memcpy(&v, p + 4 * i, 4);
    return v;
  }
  uint16_t h;
  std::memcpy(&h, p + 2 * i, 2);
  return dt == DType::BF16 ? bf16_to_f32(h) : f16_to_f32(h);
}

// Wraps a float tensor without copying when it is aligned. `rows`/`cols` give the matrix view, e.g. [E, 2I, H] as
// E·2I rows of H.
WeightMatrix weight_from_tensor(const TensorView& t, int64_t rows, int64_t cols);

// A view of tensor bytes that is aligned for `align`; copies (into `owners`) only when the file data is not.
const void* aligned_view(const TensorView& t, size_t align, std::vector<std::shared_ptr<const void>>& owners);

}  // namespace zaya
