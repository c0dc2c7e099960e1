#include "io/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "util/json_limits.h"
#include "zaya/error.h"
#include "zaya/limits.h"

namespace zaya {
namespace fs = std::filesystem;

int64_t TensorView::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}
std::string TensorView::shape_str() const {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

// ---- mmap ------------------------------------------------------------------------------------------------------

size_t available_memory_bytes() {
  size_t avail = 0;
  {
    std::ifstream in("/proc/meminfo");
    std::string key, unit;
    size_t kb = 0;
    while (in >> key >> kb) {
      std::getline(in, unit);
      if (key == "MemAvailable:") {
        avail = kb * 1024;
        break;
      }
    }
  }
  // In a container the cgroup's limit (v2) is the real ceiling, not the machine's free memory.
  std::ifstream max_file("/sys/fs/cgroup/memory.max"), cur_file("/sys/fs/cgroup/memory.current");
  std::string max_text;
  size_t current = 0;
  if (avail > 0 && max_file >> max_text && max_text != "max" && cur_file >> current) {
    char* end = nullptr;
    const unsigned long long limit = std::strtoull(max_text.c_str(), &end, 10);
    if (end && *end == '\0') avail = std::min<size_t>(avail, limit > current ? limit - current : 0);
  }
  return avail;
}

namespace {

// Reads [0, size) of fd into dst with a few threads (one copy per core is what the page cache can feed).
void read_parallel(int fd, uint8_t* dst, size_t size, const std::string& path) {
  constexpr size_t kChunk = size_t(16) << 20;
  const size_t chunks = (size + kChunk - 1) / kChunk;
  const size_t n_threads = std::min<size_t>({std::max(1u, std::thread::hardware_concurrency()), 8, chunks});
  std::atomic<size_t> next{0};
  std::atomic<int> failed{0};  // errno of the first failure
  auto work = [&] {
    for (size_t c; !failed.load() && (c = next.fetch_add(1)) < chunks;) {
      size_t off = c * kChunk;
      const size_t end = std::min(size, off + kChunk);
      while (off < end) {
        const ssize_t k = ::pread(fd, dst + off, end - off, static_cast<off_t>(off));
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) {
          int expected = 0;
          failed.compare_exchange_strong(expected, k < 0 ? errno : EIO);
          return;
        }
        off += static_cast<size_t>(k);
      }
    }
  };
  std::vector<std::thread> pool;
  for (size_t t = 1; t < n_threads; ++t) pool.emplace_back(work);
  work();
  for (auto& t : pool) t.join();
  if (failed) throw Error(cat(path, ": read failed: ", std::strerror(failed.load())));
}

}  // namespace

class MappedFile {
 public:
  MappedFile(const std::string& path, FileAccess access) {
    fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd_ < 0) throw Error(cat(path, ": cannot open: ", std::strerror(errno)));
    struct stat st {};
    if (fstat(fd_, &st) != 0) {
      ::close(fd_);
      throw Error(cat(path, ": cannot stat: ", std::strerror(errno)));
    }
    if (!S_ISREG(st.st_mode)) {
      ::close(fd_);
      throw Error(cat(path, ": not a regular file"));
    }
    size_ = static_cast<size_t>(st.st_size);
    if (size_ == 0) return;
    if (access == FileAccess::Copy) {
      copy_in(path);
      return;
    }
    int flags = MAP_PRIVATE;
#ifdef MAP_POPULATE
    // Read-only, so populating never copies a page; it only moves the mapping of every page (1.4 M for an 8B
    // bundle) from the first forward pass into loading. Best effort: mmap does not fail if it cannot populate.
    if (access != FileAccess::Lazy) flags |= MAP_POPULATE;
#endif
    void* p = mmap(nullptr, size_, PROT_READ, flags, fd_, 0);
    if (p == MAP_FAILED) {
      ::close(fd_);
      throw Error(cat(path, ": mmap failed: ", std::strerror(errno)));
    }
    data_ = static_cast<const uint8_t*>(p);
    mapped_bytes_ = size_;
  }
  ~MappedFile() {
    if (data_) munmap(const_cast<uint8_t*>(data_), mapped_bytes_);
    if (fd_ >= 0) ::close(fd_);
  }
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  bool copied() const { return copied_; }

 private:
  void copy_in(const std::string& path) {
    constexpr size_t kHuge = size_t(2) << 20;
    const size_t bytes = (size_ + kHuge - 1) / kHuge * kHuge;
    void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
      ::close(fd_);
      throw Error(cat(path, ": cannot allocate ", bytes, " bytes to read the file into: ", std::strerror(errno)));
    }
#ifdef MADV_HUGEPAGE
    ::madvise(p, bytes, MADV_HUGEPAGE);  // fewer TLB misses when streaming; a hint only
#endif
    data_ = static_cast<const uint8_t*>(p);
    mapped_bytes_ = bytes;
    try {
      read_parallel(fd_, static_cast<uint8_t*>(p), size_, path);
    } catch (...) {
      munmap(p, bytes);
      ::close(fd_);
      data_ = nullptr;
      throw;
    }
    ::mprotect(p, bytes, PROT_READ);  // weights are never written: a stray write faults as it would on the mapping
    copied_ = true;
  }

  int fd_ = -1;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0, mapped_bytes_ = 0;
  bool copied_ = false;
};

// ---- single file -----------------------------------------------------------------------------------------------

namespace {
constexpr uint64_t kMaxHeader = limits::kMaxSafetensorsHeader;  // the format's own 100 MB header cap
}

SafetensorsFile::~SafetensorsFile() = default;
size_t SafetensorsFile::file_size() const { return map_ ? map_->size() : 0; }
bool SafetensorsFile::copied() const { return map_ && map_->copied(); }

std::shared_ptr<SafetensorsFile> SafetensorsFile::open(const std::string& path, FileAccess access) {
  std::shared_ptr<SafetensorsFile> f(new SafetensorsFile());
  f->path_ = path;
  f->map_ = std::make_unique<MappedFile>(path, access == FileAccess::Auto ? FileAccess::Populate : access);
  const uint8_t* base = f->map_->data();
  const size_t fsize = f->map_->size();
  if (fsize < 8) throw Error(cat(path, ": not a safetensors file (", fsize, " bytes, shorter than the 8-byte header length)"));
  uint64_t hlen = 0;
  std::memcpy(&hlen, base, 8);  // little-endian hosts only (x86-64, arm64)
  if (hlen < 2 || hlen > kMaxHeader)
    throw Error(cat(path, ": invalid safetensors header length ", hlen));
  if (hlen > fsize - 8)
    throw Error(cat(path, ": truncated: header length ", hlen, " exceeds the file size ", fsize));
  f->header_size_ = hlen;
  const size_t data_start = 8 + hlen;
  const size_t data_size = fsize - data_start;

  const std::string_view header_text(reinterpret_cast<const char*>(base + 8), hlen);
  check_json_depth(header_text, cat(path, ": safetensors header"));
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(header_text);
  } catch (const std::exception& e) {
    throw Error(cat(path, ": safetensors header is not valid JSON: ", e.what()));
  }
  if (!header.is_object()) throw Error(cat(path, ": safetensors header is not a JSON object"));

  struct Range { uint64_t b, e; std::string name; };
  std::vector<Range> ranges;
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    const auto& v = it.value();
    if (name == "__metadata__") {
      if (!v.is_object()) throw Error(cat(path, ": __metadata__ is not an object"));
      for (auto m = v.begin(); m != v.end(); ++m) {
        if (!m.value().is_string()) throw Error(cat(path, ": __metadata__ value '", m.key(), "' is not a string"));
        f->metadata_[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    auto bad = [&](const std::string& why) { return Error(cat(path, ": tensor '", name, "': ", why)); };
    if (!v.is_object()) throw bad("entry is not an object");
    if (!v.contains("dtype") || !v["dtype"].is_string()) throw bad("missing or non-string dtype");
    if (!v.contains("shape") || !v["shape"].is_array()) throw bad("missing or non-array shape");
    if (!v.contains("data_offsets") || !v["data_offsets"].is_array() || v["data_offsets"].size() != 2)
      throw bad("data_offsets must be an array of two integers");
    auto dt = parse_dtype(v["dtype"].get<std::string>());
    if (!dt) throw bad(cat("unknown dtype '", v["dtype"].get<std::string>(), "'"));
    TensorView t;
    t.name = name;
    t.dtype = *dt;
    t.file = path;
    uint64_t numel = 1;
    for (const auto& d : v["shape"]) {
      if (!d.is_number_unsigned() && !(d.is_number_integer() && d.get<int64_t>() >= 0))
        throw bad("shape entries must be non-negative integers");
      uint64_t dim = d.get<uint64_t>();
      // Cap at int64 so shape[] and TensorView::numel() (int64 products, in order) cannot overflow.
      constexpr uint64_t kMax = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
      if (dim > kMax || (dim != 0 && numel > kMax / dim)) throw bad("shape overflows");
      numel *= dim;
      t.shape.push_back(static_cast<int64_t>(dim));
    }
    const auto& off = v["data_offsets"];
    for (const auto& o : off)
      if (!o.is_number_unsigned() && !(o.is_number_integer() && o.get<int64_t>() >= 0))
        throw bad("data_offsets must be non-negative integers");
    uint64_t b = off[0].get<uint64_t>(), e = off[1].get<uint64_t>();
    if (e < b) throw bad(cat("data_offsets end ", e, " < begin ", b));
    if (e > data_size)
      throw bad(cat("data_offsets [", b, ", ", e, ") run past the end of the data section (", data_size,
                    " bytes): file truncated?"));
    const uint64_t esize = dtype_size(*dt);
    if (numel > std::numeric_limits<uint64_t>::max() / esize || e - b != numel * esize)
      throw bad(cat("byte size ", e - b, " does not match shape ", t.shape_str(), " x ", dtype_name(*dt), " (",
                    numel > std::numeric_limits<uint64_t>::max() / esize ? std::string("over 2^64")
                                                                         : std::to_string(numel * esize),
                    " bytes)"));
    t.data = base + data_start + b;
    t.nbytes = static_cast<size_t>(e - b);
    ranges.push_back({b, e, name});
    f->tensors_.push_back(std::move(t));
  }
  // Empty tensors occupy no bytes and may sit anywhere, so leave them out; among the rest, sorted by begin, an
  // overlap always shows between neighbours.
  ranges.erase(std::remove_if(ranges.begin(), ranges.end(), [](const Range& r) { return r.e == r.b; }), ranges.end());
  std::sort(ranges.begin(), ranges.end(), [](const Range& a, const Range& b) { return a.b < b.b || (a.b == b.b && a.e < b.e); });
  for (size_t i = 1; i < ranges.size(); ++i) {
    if (ranges[i - 1].e > ranges[i].b)
      throw Error(cat(path, ": tensors '", ranges[i - 1].name, "' and '", ranges[i].name, "' overlap"));
  }
  // The tensors must tile the data section exactly, as the reference reader (safetensors' validate) demands: a
  // header length cut short by a byte or two still parses (the padding absorbs it) but shifts every tensor, and
  // bytes no tensor claims mean the same. Either is a corrupt file, never weights to compute with.
  uint64_t covered = 0;
  for (const Range& r : ranges) {
    if (r.b != covered)
      throw Error(cat(path, ": bytes [", covered, ", ", r.b, ") of the data section before tensor '", r.name,
                      "' belong to no tensor (header length ", hlen, " wrong, or the file is corrupt)"));
    covered = r.e;
  }
  if (covered != data_size)
    throw Error(cat(path, ": the tensors cover ", covered, " bytes but the data section holds ", data_size,
                    " (header length ", hlen, " wrong, or the file is truncated or has trailing bytes)"));
  for (size_t i = 0; i < f->tensors_.size(); ++i) f->index_[f->tensors_[i].name] = i;
  return f;
}

const TensorView* SafetensorsFile::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

// ---- a folder / sharded set ------------------------------------------------------------------------------------

TensorStore TensorStore::open(const std::string& path, FileAccess access) {
  TensorStore s;
  std::vector<std::string> shard_paths;
  std::map<std::string, std::string> weight_map;  // only for indexed sets
  // error_code overloads throughout: a permission problem must surface as zaya::Error, not filesystem_error.
  std::error_code ec;
  if (fs::is_regular_file(path, ec)) {
    s.root_ = fs::path(path).parent_path().string();
    shard_paths.push_back(path);
  } else if (fs::is_directory(path, ec)) {
    s.root_ = path;
    fs::path index = fs::path(path) / "model.safetensors.index.json";
    if (fs::exists(index, ec)) {
      const nlohmann::json j = parse_json_file<nlohmann::json>(index.string());
      if (!j.is_object() || !j.contains("weight_map") || !j["weight_map"].is_object())
        throw Error(cat(index.string(), ": missing 'weight_map' object"));
      std::set<std::string> shards;
      for (auto it = j["weight_map"].begin(); it != j["weight_map"].end(); ++it) {
        if (!it.value().is_string()) throw Error(cat(index.string(), ": weight_map['", it.key(), "'] is not a string"));
        std::string shard = it.value().get<std::string>();
        // Shards must live in the folder itself: no paths, no escaping it.
        if (shard.empty() || shard == "." || shard == ".." || shard.find('/') != std::string::npos ||
            shard.find('\\') != std::string::npos || shard.find('\0') != std::string::npos)
          throw Error(cat(index.string(), ": shard name '", shard, "' for tensor '", it.key(), "' must be a plain file name"));
        weight_map[it.key()] = shard;
        shards.insert(shard);
      }
      if (weight_map.empty()) throw Error(cat(index.string(), ": 'weight_map' is empty"));
      for (const auto& sh : shards) {
        fs::path p = fs::path(path) / sh;
        if (!fs::is_regular_file(p, ec))
          throw Error(cat(index.string(), ": names shard '", sh, "' which does not exist (", p.string(), ")"));
        shard_paths.push_back(p.string());
      }
    } else if (fs::exists(fs::path(path) / "model.safetensors", ec)) {
      shard_paths.push_back((fs::path(path) / "model.safetensors").string());
    } else {
      fs::directory_iterator dir(path, ec), end;
      if (ec) throw Error(cat(path, ": cannot list directory: ", ec.message()));
      for (; dir != end; dir.increment(ec)) {
        if (ec) throw Error(cat(path, ": cannot list directory: ", ec.message()));
        std::error_code fec;
        if (dir->path().extension() == ".safetensors" && dir->is_regular_file(fec)) shard_paths.push_back(dir->path().string());
      }
      if (ec) throw Error(cat(path, ": cannot list directory: ", ec.message()));
      std::sort(shard_paths.begin(), shard_paths.end());
      if (shard_paths.empty()) throw Error(cat(path, ": no model.safetensors, index or *.safetensors file"));
    }
  } else {
    throw Error(cat(path, ": no such file or directory"));
  }

  if (access == FileAccess::Auto) {
    size_t total = 0;
    for (const auto& p : shard_paths) total += static_cast<size_t>(fs::file_size(p, ec));
    const size_t avail = available_memory_bytes();
    // Half: the page cache may keep its copy of the files while ours is resident, and the rest is the user's.
    access = avail > 0 && total <= avail / 2 ? FileAccess::Copy : FileAccess::Populate;
  }
  for (const auto& p : shard_paths) {
    auto f = SafetensorsFile::open(p, access);
    const std::string fname = fs::path(p).filename().string();
    for (const auto& t : f->tensors()) {
      if (!weight_map.empty()) {
        auto it = weight_map.find(t.name);
        // The index is authoritative: a tensor it does not list, or lists in another shard, is ignored (as other
        // loaders do), so which copy wins never depends on the order shards are read.
        if (it == weight_map.end() || fname != it->second) continue;
      }
      if (s.by_name_.count(t.name))
        throw Error(cat("tensor '", t.name, "' appears in both ", s.by_name_[t.name]->file, " and ", p));
      s.by_name_[t.name] = &t;
    }
    s.files_.push_back(std::move(f));
  }
  for (const auto& [name, shard] : weight_map)
    if (!s.by_name_.count(name))
      throw Error(cat((fs::path(s.root_) / shard).string(), ": model.safetensors.index.json lists tensor '",
                      name, "' in this shard, but the shard does not contain it"));
  return s;
}

bool TensorStore::copied() const {
  return !files_.empty() && std::all_of(files_.begin(), files_.end(), [](const auto& f) { return f->copied(); });
}

size_t TensorStore::file_bytes() const {
  size_t n = 0;
  for (const auto& f : files_) n += f->file_size();
  return n;
}

const TensorView* TensorStore::find(const std::string& name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : it->second;
}

const TensorView& TensorStore::require(const std::string& name, const std::vector<int64_t>& shape) const {
  const TensorView* t = find(name);
  if (!t) throw Error(cat(root_, ": missing tensor '", name, "'"));
  if (!shape.empty() && t->shape != shape) {
    TensorView want;
    want.shape = shape;
    throw Error(cat(t->file, ": tensor '", name, "' has shape ", t->shape_str(), ", expected ", want.shape_str()));
  }
  return *t;
}

std::vector<std::string> TensorStore::names() const {
  std::vector<std::string> v;
  for (const auto& [n, _] : by_name_) v.push_back(n);
  return v;
}

namespace {
template <typename T>
T load_at(const uint8_t* p, size_t i) {
  T v;
  std::memcpy(&v, p + i * sizeof(T), sizeof(T));
  return v;
}

// Views can be built by hand; never read past the bytes one claims to hold.
size_t checked_numel(const TensorView& t) {
  const int64_t n = t.numel();
  if (n < 0 || static_cast<uint64_t>(n) > t.nbytes / std::max<size_t>(dtype_size(t.dtype), 1) ||
      (n > 0 && t.data == nullptr))
    throw Error(cat(t.file, ": tensor '", t.name, "' of shape ", t.shape_str(), " x ", dtype_name(t.dtype),
                    " does not fit its ", t.nbytes, " bytes"));
  return static_cast<size_t>(n);
}
}  // namespace

std::vector<float> to_f32(const TensorView& t) {
  const size_t n = checked_numel(t);
  std::vector<float> out(n);
  const uint8_t* p = t.data;
  switch (t.dtype) {
    case DType::F32: if (n) std::memcpy(out.data(), p, n * 4); break;
    case DType::F64: for (size_t i = 0; i < n; ++i) out[i] = static_cast<float>(load_at<double>(p, i)); break;
    case DType::F16: for (size_t i = 0; i < n; ++i) out[i] = f16_to_f32(load_at<uint16_t>(p, i)); break;
    case DType::BF16: for (size_t i = 0; i < n; ++i) out[i] = bf16_to_f32(load_at<uint16_t>(p, i)); break;
    case DType::F8_E4M3: for (size_t i = 0; i < n; ++i) out[i] = e4m3_to_f32(p[i]); break;
    // E5M2 is the top byte of an IEEE half.
    case DType::F8_E5M2: for (size_t i = 0; i < n; ++i) out[i] = f16_to_f32(static_cast<uint16_t>(p[i] << 8)); break;
    default: {
      auto v = to_i64(t);
      for (size_t i = 0; i < n; ++i) out[i] = static_cast<float>(v[i]);
    }
  }
  return out;
}

std::vector<int64_t> to_i64(const TensorView& t) {
  const size_t n = checked_numel(t);
  std::vector<int64_t> out(n);
  const uint8_t* p = t.data;
  switch (t.dtype) {
    case DType::I64: for (size_t i = 0; i < n; ++i) out[i] = load_at<int64_t>(p, i); break;
    case DType::I32: for (size_t i = 0; i < n; ++i) out[i] = load_at<int32_t>(p, i); break;
    case DType::I16: for (size_t i = 0; i < n; ++i) out[i] = load_at<int16_t>(p, i); break;
    case DType::I8: for (size_t i = 0; i < n; ++i) out[i] = load_at<int8_t>(p, i); break;
    case DType::U64: for (size_t i = 0; i < n; ++i) out[i] = static_cast<int64_t>(load_at<uint64_t>(p, i)); break;
    case DType::U32: for (size_t i = 0; i < n; ++i) out[i] = load_at<uint32_t>(p, i); break;
    case DType::U16: for (size_t i = 0; i < n; ++i) out[i] = load_at<uint16_t>(p, i); break;
    case DType::U8: case DType::BOOL: for (size_t i = 0; i < n; ++i) out[i] = p[i]; break;
    default: throw Error(cat(t.file, ": tensor '", t.name, "' is ", dtype_name(t.dtype), ", expected an integer dtype"));
  }
  return out;
}

}  // namespace zaya
