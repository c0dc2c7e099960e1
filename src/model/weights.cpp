#include "zaya/weights.h"

#include <cstdlib>
#include <cstring>

#include "zaya/error.h"
#include "zaya/quant.h"

namespace zaya {

const char* weight_format_name(WeightFormat f) {
  switch (f) {
    case WeightFormat::F32: return "F32";
    case WeightFormat::F16: return "F16";
    case WeightFormat::BF16: return "BF16";
    case WeightFormat::Affine: return "affine";
    case WeightFormat::MxFp4: return "mxfp4";
    case WeightFormat::NvFp4: return "nvfp4";
    case WeightFormat::MxFp8: return "mxfp8";
    case WeightFormat::Mxtq: return "mxtq";
  }
  return "?";
}

size_t WeightMatrix::element_size() const { return format == WeightFormat::F32 ? 4 : 2; }

size_t WeightMatrix::bytes() const {
  size_t b = stride() * static_cast<size_t>(rows);
  if (scales) b += scale_row_bytes * static_cast<size_t>(rows) * (biases ? 2 : 1);
  if (norms) b += 2 * static_cast<size_t>(rows);
  return b;
}

void WeightMatrix::row_to_f32(int64_t r, float* out) const {
  if (r < 0 || r >= rows) throw Error(cat(name, ": row ", r, " out of range [0, ", rows, ")"));
  const uint8_t* row = static_cast<const uint8_t*>(data) + static_cast<size_t>(r) * stride();
  switch (format) {
    case WeightFormat::F32: std::memcpy(out, row, cols * 4); return;
    case WeightFormat::BF16: {
      const uint16_t* p = reinterpret_cast<const uint16_t*>(row);
      for (int64_t c = 0; c < cols; ++c) out[c] = bf16_to_f32(p[c]);
      return;
    }
    case WeightFormat::F16: {
      const uint16_t* p = reinterpret_cast<const uint16_t*>(row);
      for (int64_t c = 0; c < cols; ++c) out[c] = f16_to_f32(p[c]);
      return;
    }
    case WeightFormat::Affine: {
      const int64_t groups = cols / group_size;
      std::vector<float> s(groups), b(groups);
      const uint8_t* sp = static_cast<const uint8_t*>(scales) + static_cast<size_t>(r) * scale_row_bytes;
      const uint8_t* bp = static_cast<const uint8_t*>(biases) + static_cast<size_t>(r) * scale_row_bytes;
      for (int64_t g = 0; g < groups; ++g) s[g] = stored_scale(sp, scale_dtype, g), b[g] = stored_scale(bp, scale_dtype, g);
      quant::affine_dequantize_row(reinterpret_cast<const uint32_t*>(row), s.data(), b.data(), cols, bits, group_size, out);
      return;
    }
    case WeightFormat::MxFp4: case WeightFormat::NvFp4: case WeightFormat::MxFp8: {
      const quant::FpMode m = format == WeightFormat::MxFp4 ? quant::FpMode::MxFp4
                              : format == WeightFormat::NvFp4 ? quant::FpMode::NvFp4 : quant::FpMode::MxFp8;
      const uint8_t* sp = static_cast<const uint8_t*>(scales) + static_cast<size_t>(r) * scale_row_bytes;
      quant::fp_dequantize_row(m, reinterpret_cast<const uint32_t*>(row), sp, cols, out);
      return;
    }
    case WeightFormat::Mxtq:
      quant::mxtq_dequantize_row(reinterpret_cast<const uint32_t*>(row), f16_to_f32(norms[r]), cols, bits,
                                 mxtq->signs.data(), mxtq->codebook.data(), out);
      return;
  }
}

WeightMatrix WeightMatrix::slice_rows(int64_t r0, int64_t n) const {
  if (r0 < 0 || n < 0 || r0 + n > rows) throw Error(cat(name, ": row slice [", r0, ", ", r0 + n, ") out of range"));
  WeightMatrix w = *this;
  w.rows = n;
  w.data = static_cast<const uint8_t*>(data) + static_cast<size_t>(r0) * stride();
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
  size_t align;
  switch (t.dtype) {
    case DType::F32: w.format = WeightFormat::F32; align = 4; break;
    case DType::BF16: w.format = WeightFormat::BF16; align = 2; break;
    case DType::F16: w.format = WeightFormat::F16; align = 2; break;
    default:
      throw Error(cat(t.file, ": tensor '", t.name, "' has dtype ", dtype_name(t.dtype),
                      "; weights must be F32, BF16 or F16 (or a quantized triple)"));
  }
  w.row_bytes = static_cast<size_t>(cols) * align;
  w.data = aligned_view(t, align, w.owners);
  return w;
}

}  // namespace zaya
