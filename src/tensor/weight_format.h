#pragma once
// How a weight matrix is stored. The per-format facts (row size, row decode, product kernels) live in one table,
// kernels/format_table.cpp; this header only names the formats.
namespace zaya {

enum class WeightFormat { F32, F16, BF16, Affine, MxFp4, NvFp4, MxFp8, Mxtq };
inline constexpr int kWeightFormatCount = 8;

const char* weight_format_name(WeightFormat f);

}  // namespace zaya
