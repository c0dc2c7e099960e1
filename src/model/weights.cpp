#include "zaya/weights.h"

#include <cstdlib>
#include <cstring>

#include "zaya/error.h"

namespace zaya {

const char* weight_format_name(WeightFormat f) {
  switch (f) {
    case WeightFormat::F32: return "F32";
    case WeightFormat::F16: return "F16";
    case WeightFormat::BF16: return "BF16";
  }
  return "?";
}

size_t WeightMatrix::element_size() const { return format == WeightFormat::F32 ? 4 : 2; }

void WeightMatrix::row_to_f32(int64_t r, float* out) const {
  if (r < 0 || r >= rows) throw Error(cat(name, ": row ", r, " out of range [0, ", rows, ")"));
  const size_t off = static_cast<size_t>(r * cols);
  switch (format) {
    case WeightFormat::F32: std::memcpy(out, static_cast<const float*>(data) + off, cols * 4); break;
    case WeightFormat::BF16: {
      const uint16_t* p = static_cast<const uint16_t*>(data) + off;
      for (int64_t c = 0; c < cols; ++c) out[c] = bf16_to_f32(p[c]);
      break;
    }
    case WeightFormat::F16: {
      const uint16_t* p = static_cast<const uint16_t*>(data) + off;
      for (int64_t c = 0; c < cols; ++c) out[c] = f16_to_f32(p[c]);
      break;
    }
  }
}

WeightMatrix WeightMatrix::slice_rows(int64_t r0, int64_t n) const {
  if (r0 < 0 || n < 0 || r0 + n > rows) throw Error(cat(name, ": row slice [", r0, ", ", r0 + n, ") out of range"));
  WeightMatrix w = *this;
  w.rows = n;
  w.data = static_cast<const uint8_t*>(data) + static_cast<size_t>(r0 * cols) * element_size();
  return w;
}

WeightMatrix weight_from_tensor(const TensorView& t, int64_t rows, int64_t cols) {
  WeightMatrix w;
  w.name = t.name;
  w.rows = rows;
  w.cols = cols;
  if (rows * cols != t.numel())
    throw Error(cat(t.file, ": tensor '", t.name, "' of shape ", t.shape_str(), " cannot be viewed as [", rows, ", ",
                    cols, "]"));
  size_t align;
  switch (t.dtype) {
    case DType::F32: w.format = WeightFormat::F32; align = 4; break;
    case DType::BF16: w.format = WeightFormat::BF16; align = 2; break;
    case DType::F16: w.format = WeightFormat::F16; align = 2; break;
    default:
      throw Error(cat(t.file, ": tensor '", t.name, "' has dtype ", dtype_name(t.dtype),
                      "; weights must be F32, BF16 or F16"));
  }
  if (reinterpret_cast<uintptr_t>(t.data) % align == 0) {
    w.data = t.data;
  } else {
    // Unaligned in the file (MLX does this): keep one aligned private copy.
    void* buf = std::aligned_alloc(64, (t.nbytes + 63) / 64 * 64);
    if (!buf) throw Error(cat("out of memory copying tensor '", t.name, "'"));
    std::memcpy(buf, t.data, t.nbytes);
    w.owner = std::shared_ptr<const void>(buf, [](const void* p) { std::free(const_cast<void*>(p)); });
    w.data = buf;
  }
  return w;
}

}  // namespace zaya
