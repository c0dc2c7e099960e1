#pragma once
// safetensors reading: mmap-based, validated, zero-copy. A TensorStore gathers one file or a sharded set
// (model.safetensors.index.json) behind one name -> tensor lookup.
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "io/dtype.h"

namespace zaya {

// A read-only window onto one tensor inside a mapped file. `data` may be unaligned (MLX writes unaligned
// tensors); read it with memcpy or through to_f32().
struct TensorView {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  const uint8_t* data = nullptr;
  size_t nbytes = 0;
  std::string file;  // path of the file holding it, for error messages

  int64_t numel() const;
  std::string shape_str() const;
};

class MappedFile;

// Available memory as the kernel estimates it (free + reclaimable page cache), capped by the cgroup v2 limit of a
// container; 0 when unknown.
size_t available_memory_bytes();

// How a file's bytes reach memory.
enum class FileAccess {
  Lazy,      // mmap; pages are read on first touch (tools that only read headers)
  Populate,  // mmap with every page mapped up front (Linux MAP_POPULATE): the first pass takes no page faults
  Copy,      // read into anonymous memory (2 MiB pages where the kernel gives them). Streaming it is ~25 % faster
             // than streaming page-cache pages (measured on the dev VM), at the cost of a copy at load and a second
             // resident copy while the page cache still holds the file (reclaimable).
  Auto,      // Copy when every file of the store fits in half the available memory, else Populate
};

class SafetensorsFile {
 public:
  // Throws zaya::Error naming the file (and tensor) on any structural problem. Populate and Copy read the whole file
  // while opening: for loading a model, not for tools that only read headers. Auto acts as Populate here.
  static std::shared_ptr<SafetensorsFile> open(const std::string& path, FileAccess access = FileAccess::Lazy);
  ~SafetensorsFile();

  const std::string& path() const { return path_; }
  const std::vector<TensorView>& tensors() const { return tensors_; }
  const TensorView* find(const std::string& name) const;
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  size_t header_size() const { return header_size_; }
  size_t file_size() const;
  bool copied() const;  // the bytes live in anonymous memory (FileAccess::Copy)

 private:
  SafetensorsFile() = default;
  std::string path_;
  std::unique_ptr<MappedFile> map_;
  size_t header_size_ = 0;
  std::vector<TensorView> tensors_;
  std::map<std::string, size_t> index_;
  std::map<std::string, std::string> metadata_;
};

class TensorStore {
 public:
  // Opens a model folder: model.safetensors.index.json when present (every shard it names), else
  // model.safetensors, else every *.safetensors in the folder. A path to a single file also works. Auto decides once
  // for all the files together.
  static TensorStore open(const std::string& path, FileAccess access = FileAccess::Lazy);

  const TensorView* find(const std::string& name) const;
  // Throws a clear error when the tensor is missing, or when `shape` is given and differs.
  const TensorView& require(const std::string& name, const std::vector<int64_t>& shape = {}) const;
  std::vector<std::string> names() const;
  size_t size() const { return by_name_.size(); }
  const std::vector<std::shared_ptr<SafetensorsFile>>& files() const { return files_; }
  const std::string& root() const { return root_; }
  bool copied() const;       // every file was read into anonymous memory
  size_t file_bytes() const;  // the files' total size

 private:
  std::string root_;
  std::vector<std::shared_ptr<SafetensorsFile>> files_;
  std::map<std::string, const TensorView*> by_name_;
};

// Converts a float-typed tensor (F64/F32/F16/BF16/F8_E4M3) or an integer tensor to fp32, whatever the alignment.
std::vector<float> to_f32(const TensorView& t);
// Integer tensors (I64/I32/I16/I8/U*) to int64.
std::vector<int64_t> to_i64(const TensorView& t);

}  // namespace zaya
