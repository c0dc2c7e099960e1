#pragma once
// NumPy .npy files: writing float32/int32/int64 arrays exactly as numpy.save does (format 1.0, little-endian,
// C order, header padded to 64 bytes), and reading '<f4', '<f8', '<i4', '<i8' arrays (format 1.0, 2.0 and 3.0).
// Used to exchange activations and golden data with Python tools.
#include <cstdint>
#include <string>
#include <vector>

namespace zaya {

struct NpyArray {
  std::string descr;            // as in the file: "<f4", "<f8", "<i4" or "<i8"
  std::vector<int64_t> shape;   // () for a 0-d array
  std::vector<float> data;      // every element as fp32 (f8 narrowed, integers converted), C order
  std::vector<int64_t> i64;     // integer arrays only: the exact values, C order
  bool is_int() const { return descr.size() == 3 && descr[1] == 'i'; }
  int64_t numel() const;
};

// Throw zaya::Error naming the file on any I/O problem. `shape` {} writes a 0-d array of one element.
void write_npy_f32(const std::string& path, const float* data, const std::vector<int64_t>& shape);
void write_npy_i32(const std::string& path, const int32_t* data, const std::vector<int64_t>& shape);
void write_npy_i64(const std::string& path, const int64_t* data, const std::vector<int64_t>& shape);

// The exact bytes numpy.save writes before the data: magic, version 1.0, header length, header dict, padding.
std::string npy_header(const std::string& descr, const std::vector<int64_t>& shape);

// Throws zaya::Error naming the file for malformed headers, unsupported dtypes, Fortran order, or a data size that
// does not match the shape.
NpyArray read_npy(const std::string& path);

}  // namespace zaya
