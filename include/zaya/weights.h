#pragma once
// A weight matrix as the kernels see it: [rows, cols] row-major for y = W·x, in whatever storage format the file
// holds. Layers only hold WeightMatrix values, so new storage formats (quantized bundles) plug in here.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "zaya/safetensors.h"

namespace zaya {

enum class WeightFormat { F32, F16, BF16 };
const char* weight_format_name(WeightFormat f);

struct WeightMatrix {
  WeightFormat format = WeightFormat::F32;
  int64_t rows = 0, cols = 0;
  const void* data = nullptr;           // element-aligned; rows*cols elements
  std::shared_ptr<const void> owner;    // keeps a private copy alive when the mapped bytes were unaligned
  std::string name;

  size_t element_size() const;
  size_t bytes() const { return static_cast<size_t>(rows * cols) * element_size(); }
  // Row r as fp32 (used for embedding lookups and by reference kernels).
  void row_to_f32(int64_t r, float* out) const;
  // A view of rows [r0, r0+n): used to slice stacked experts and the gate/up halves without copying.
  WeightMatrix slice_rows(int64_t r0, int64_t n) const;
};

// Wraps a 2-D (or higher, flattened to [shape[0]*…, last]) float tensor without copying when it is aligned.
// `rows`/`cols` override the flattening, e.g. to view [E, 2I, H] as E*2I rows of H.
WeightMatrix weight_from_tensor(const TensorView& t, int64_t rows, int64_t cols);

}  // namespace zaya
