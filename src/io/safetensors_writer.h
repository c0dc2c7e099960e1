#pragma once
// safetensors writing, streamed tensor by tensor with bounded memory. The full tensor list (names, dtypes, shapes)
// is declared up front, so every shard's header and every tensor's offset are known before any data arrives; data
// then goes straight to its place in the file (pwrite), in any order and in any number of pieces per tensor.
//
// Files follow the HF/Rust `safetensors` convention (bundle-formats §2): JSON header space-padded to a multiple of
// 8, tensors ordered by dtype (descending Rust enum order: U64, I64, F64, F32, U32, I32, BF16, F16, U16, I16, F8*,
// I8, U8, BOOL) then by name, so every tensor is naturally aligned. Shards are named model-0000k-of-0000K and listed
// in model.safetensors.index.json (metadata.total_size + weight_map in declaration order).
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "io/safetensors.h"

namespace zaya {

struct TensorSpec {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  uint64_t numel() const;
  uint64_t nbytes() const;
};

// Rank of a dtype in the safetensors sort (higher is written first).
int safetensors_dtype_rank(DType t);
// The HF file order: dtype rank descending, then name (bytewise).
bool safetensors_order_less(const TensorSpec& a, const TensorSpec& b);

struct SafetensorsWriterOptions {
  // 0: one shard. Otherwise a shard is closed as soon as the tensor bytes in it reach this many (the JANG rule: a
  // shard can exceed the limit by its last tensor). Tensors are assigned in declaration order.
  uint64_t shard_bytes = 0;
  // One shard and !always_index: a plain `<single_name>` and no index (the mlx-lm convention).
  bool always_index = true;
  std::string single_name = "model.safetensors";
  // `__metadata__` of every shard (omitted when empty, as safetensors.numpy.save_file writes).
  std::map<std::string, std::string> header_metadata;
  // Extra string entries of the index's "metadata" object, written before total_size (e.g. {"format", "mxfp4"}).
  std::vector<std::pair<std::string, std::string>> index_metadata;
  // total_size in the index: the sum of the shard file sizes (JANG) or of the tensor bytes (mlx-lm, HF).
  bool total_size_is_file_bytes = true;
};

class SafetensorsWriter {
 public:
  // Plans the shards and creates the files in `dir` (which must exist). Throws on duplicate names or bad shapes.
  SafetensorsWriter(const std::string& dir, std::vector<TensorSpec> plan, SafetensorsWriterOptions opts = {});
  ~SafetensorsWriter();
  SafetensorsWriter(const SafetensorsWriter&) = delete;
  SafetensorsWriter& operator=(const SafetensorsWriter&) = delete;

  size_t size() const { return plan_.size(); }
  const TensorSpec& spec(size_t i) const { return plan_[i].spec; }
  size_t index_of(const std::string& name) const;  // throws when not planned

  // Writes `n` bytes of tensor `i` at byte `offset` inside the tensor. Thread-safe (distinct ranges).
  void write(size_t i, const void* data, uint64_t n, uint64_t offset = 0);
  void write(const std::string& name, const void* data, uint64_t n, uint64_t offset = 0) {
    write(index_of(name), data, n, offset);
  }

  struct Summary {
    std::vector<std::string> files;  // shard file names (no directory), in order
    uint64_t tensor_bytes = 0, file_bytes = 0;
    size_t tensors = 0;
  };
  // Checks that every tensor was written in full, closes the shards and writes the index. Throws naming the first
  // incomplete tensor.
  Summary finish();

  uint64_t bytes_written() const;  // tensor bytes so far
  uint64_t total_tensor_bytes() const { return total_bytes_; }

 private:
  struct Entry {
    TensorSpec spec;
    size_t shard = 0;
    uint64_t file_offset = 0;  // absolute offset of the tensor's first byte in its shard
    uint64_t written = 0;
  };
  struct Shard {
    std::string name;
    int fd = -1;
    uint64_t file_size = 0;
  };
  std::string dir_;
  SafetensorsWriterOptions opts_;
  std::vector<Entry> plan_;
  std::vector<Shard> shards_;
  std::map<std::string, size_t> by_name_;
  uint64_t total_bytes_ = 0;
  struct State;
  std::unique_ptr<State> st_;
  bool finished_ = false;
};

// Writes one small safetensors file in one go (sidecars, tests). Tensors are sorted as HF does.
void write_safetensors_file(const std::string& path, const std::vector<std::pair<TensorSpec, const void*>>& tensors,
                            const std::map<std::string, std::string>& metadata = {});

}  // namespace zaya
