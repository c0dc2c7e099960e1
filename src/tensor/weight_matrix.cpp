#include "tensor/weight_matrix.h"

#include <cstdlib>
#include <cstring>

#include "zaya/error.h"

namespace zaya {

const char* weight_format_name(WeightFormat f) {
  static constexpr const char* kNames[kWeightFormatCount] = {"F32",   "F16",   "BF16",  "affine",
                                                             "mxfp4", "nvfp4", "mxfp8", "mxtq"};
  const int i = static_cast<int>(f);
  return i >= 0 && i < kWeightFormatCount ? kNames[i] : "?";
}

size_t WeightMatrix::bytes() const {
  size_t b = row_bytes * static_cast<size_t>(rows);
  if (scales) b += scale_row_bytes * static_cast<size_t>(rows) * (biases ? 2 : 1);
  if (norms) b += 2 * static_cast<size_t>(rows);
  return b;
}

WeightMatrix WeightMatrix::slice_rows(int64_t r0, int64_t n) const {
  if (r0 < 0 || n < 0 || r0 + n > rows) throw Error(cat(name, ": row slice [", r0, ", ", r0 + n, ") out of range"));
  WeightMatrix w = *this;
  w.rows = n;
  w.data = row(r0);
  if (scales) w.scales = static_cast<const uint8_t*>(scales) + static_cast<size_t>(r0) * scale_row_bytes;
  if (biases) w.biases = static_cast<const uint8_t*>(biases) + static_cast<size_t>(r0) * scale_row_bytes;
  if (norms) w.norms = norms + r0;
  return w;
}

const void* aligned_view(const TensorView& t, size_t align, std::vector<std::shared_ptr<const void>>& owners) {
  if (reinterpret_cast<uintptr_t>(t.data) % align == 0) return t.data;
  // Unaligned in the file (MLX writes tensors at any offset): keep one aligned private copy.
  void* buf = std::aligned_alloc(64, (t.nbytes + 63) / 64 * 64);
  if (!buf) throw Error(cat("out of memory copying tensor '", t.name, "'"));
  std::memcpy(buf, t.data, t.nbytes);
  owners.emplace_back(buf, [](const void* p) { std::free(const_cast<void*>(p)); });
  return buf;
}

WeightMatrix weight_from_tensor(const TensorView& t, int64_t rows, int64_t cols) {
  WeightMatrix w;
  w.name = t.name;
  w.rows = rows;
  w.cols = cols;
  if (rows * cols != t.numel())
    throw Error(cat(t.file, ": tensor '", t.name, "' of shape ", t.shape_str(), " cannot be viewed as [", rows, ", ",
                    cols, "]"));
  if (t.dtype == DType::F32) w.format = WeightFormat::F32;
  else if (t.dtype == DType::BF16) w.format = WeightFormat::BF16;
  else if (t.dtype == DType::F16) w.format = WeightFormat::F16;
  else
    throw Error(cat(t.file, ": tensor '", t.name, "' has dtype ", dtype_name(t.dtype),
                    "; weights must be F32, BF16 or F16 (or a quantized triple)"));
  const size_t elem = dtype_size(t.dtype);
  w.row_bytes = static_cast<size_t>(cols) * elem;
  w.data = aligned_view(t, elem, w.owners);
  return w;
}

}  // namespace zaya
