#include "io/safetensors_writer.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>

#include "zaya/error.h"

namespace zaya {
namespace fs = std::filesystem;

uint64_t TensorSpec::numel() const {
  uint64_t n = 1;
  for (int64_t d : shape) n *= static_cast<uint64_t>(d);
  return n;
}
uint64_t TensorSpec::nbytes() const { return numel() * dtype_size(dtype); }

int safetensors_dtype_rank(DType t) {
  // The declaration order of the Rust `Dtype` enum, which `safetensors` sorts by (descending).
  switch (t) {
    case DType::BOOL: return 0;
    case DType::U8: return 1;
    case DType::I8: return 2;
    case DType::F8_E5M2: return 3;
    case DType::F8_E4M3: return 4;
    case DType::I16: return 5;
    case DType::U16: return 6;
    case DType::F16: return 7;
    case DType::BF16: return 8;
    case DType::I32: return 9;
    case DType::U32: return 10;
    case DType::F32: return 11;
    case DType::F64: return 12;
    case DType::I64: return 13;
    case DType::U64: return 14;
  }
  return -1;
}

bool safetensors_order_less(const TensorSpec& a, const TensorSpec& b) {
  const int ra = safetensors_dtype_rank(a.dtype), rb = safetensors_dtype_rank(b.dtype);
  if (ra != rb) return ra > rb;
  return a.name < b.name;
}

namespace {

// Header text for tensors already in file order, with offsets relative to the data start; space-padded to 8.
std::string build_header(const std::vector<const TensorSpec*>& ordered, const std::map<std::string, std::string>& meta,
                         std::vector<uint64_t>* offsets) {
  std::string h = "{";
  bool first = true;
  if (!meta.empty()) {
    h += "\"__metadata__\":";
    nlohmann::json m = nlohmann::json::object();
    for (const auto& [k, v] : meta) m[k] = v;
    h += m.dump();
    first = false;
  }
  uint64_t off = 0;
  offsets->clear();
  for (const TensorSpec* t : ordered) {
    if (!first) h += ",";
    first = false;
    h += nlohmann::json(t->name).dump();
    h += ":{\"dtype\":\"";
    h += dtype_name(t->dtype);
    h += "\",\"shape\":[";
    for (size_t i = 0; i < t->shape.size(); ++i) {
      if (i) h += ",";
      h += std::to_string(t->shape[i]);
    }
    const uint64_t end = off + t->nbytes();
    h += "],\"data_offsets\":[" + std::to_string(off) + "," + std::to_string(end) + "]}";
    offsets->push_back(off);
    off = end;
  }
  h += "}";
  h.append((8 - h.size() % 8) % 8, ' ');
  return h;
}

void check_spec(const TensorSpec& t) {
  if (t.name.empty()) throw Error("safetensors writer: empty tensor name");
  if (dtype_size(t.dtype) == 0) throw Error(cat("safetensors writer: tensor '", t.name, "' has an unknown dtype"));
  for (int64_t d : t.shape)
    if (d < 0) throw Error(cat("safetensors writer: tensor '", t.name, "' has a negative dimension"));
}

void pwrite_all(int fd, const void* data, uint64_t n, uint64_t off, const std::string& path) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    const ssize_t w = ::pwrite(fd, p, std::min<uint64_t>(n, 1ull << 30), static_cast<off_t>(off));
    if (w < 0) {
      if (errno == EINTR) continue;
      throw Error(cat(path, ": write failed: ", std::strerror(errno)));
    }
    p += w;
    n -= static_cast<uint64_t>(w);
    off += static_cast<uint64_t>(w);
  }
}

std::string shard_name(size_t k, size_t K) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "model-%05zu-of-%05zu.safetensors", k + 1, K);
  return buf;
}

}  // namespace

struct SafetensorsWriter::State {
  std::atomic<uint64_t> written{0};
  std::mutex mu;
};

SafetensorsWriter::SafetensorsWriter(const std::string& dir, std::vector<TensorSpec> plan, SafetensorsWriterOptions opts)
    : dir_(dir), opts_(std::move(opts)), st_(std::make_unique<State>()) {
  if (!fs::is_directory(dir_)) throw Error(cat(dir_, ": not a directory"));
  plan_.reserve(plan.size());
  for (auto& t : plan) {
    check_spec(t);
    if (!by_name_.emplace(t.name, plan_.size()).second)
      throw Error(cat("safetensors writer: tensor '", t.name, "' declared twice"));
    total_bytes_ += t.nbytes();
    plan_.push_back(Entry{std::move(t)});
  }
  // Shard assignment in declaration order: close a shard once its bytes reach the limit.
  size_t shard = 0;
  uint64_t acc = 0;
  for (size_t i = 0; i < plan_.size(); ++i) {
    plan_[i].shard = shard;
    acc += plan_[i].spec.nbytes();
    if (opts_.shard_bytes > 0 && acc >= opts_.shard_bytes && i + 1 < plan_.size()) {
      ++shard;
      acc = 0;
    }
  }
  const size_t K = plan_.empty() ? 1 : shard + 1;
  shards_.resize(K);
  for (size_t k = 0; k < K; ++k) {
    Shard& s = shards_[k];
    s.name = (K == 1 && !opts_.always_index) ? opts_.single_name : shard_name(k, K);
    std::vector<size_t> members;
    for (size_t i = 0; i < plan_.size(); ++i)
      if (plan_[i].shard == k) members.push_back(i);
    std::sort(members.begin(), members.end(),
              [&](size_t a, size_t b) { return safetensors_order_less(plan_[a].spec, plan_[b].spec); });
    std::vector<const TensorSpec*> ordered;
    for (size_t i : members) ordered.push_back(&plan_[i].spec);
    std::vector<uint64_t> offs;
    const std::string header = build_header(ordered, opts_.header_metadata, &offs);
    const uint64_t data_start = 8 + header.size();
    uint64_t data_bytes = 0;
    for (size_t j = 0; j < members.size(); ++j) {
      plan_[members[j]].file_offset = data_start + offs[j];
      data_bytes += plan_[members[j]].spec.nbytes();
    }
    s.file_size = data_start + data_bytes;
    const std::string path = (fs::path(dir_) / s.name).string();
    s.fd = ::open(path.c_str(), O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0644);
    if (s.fd < 0) throw Error(cat(path, ": cannot create: ", std::strerror(errno)));
    // Size the file up front (sparse until written) so tensors can arrive in any order.
    if (::ftruncate(s.fd, static_cast<off_t>(s.file_size)) != 0)
      throw Error(cat(path, ": cannot size to ", s.file_size, " bytes: ", std::strerror(errno)));
    uint8_t len[8];
    const uint64_t n = header.size();
    for (int b = 0; b < 8; ++b) len[b] = static_cast<uint8_t>(n >> (8 * b));
    pwrite_all(s.fd, len, 8, 0, path);
    pwrite_all(s.fd, header.data(), header.size(), 8, path);
  }
}

SafetensorsWriter::~SafetensorsWriter() {
  for (auto& s : shards_)
    if (s.fd >= 0) ::close(s.fd);
}

size_t SafetensorsWriter::index_of(const std::string& name) const {
  auto it = by_name_.find(name);
  if (it == by_name_.end()) throw Error(cat("safetensors writer: tensor '", name, "' was not planned"));
  return it->second;
}

void SafetensorsWriter::write(size_t i, const void* data, uint64_t n, uint64_t offset) {
  if (finished_) throw Error("safetensors writer: write after finish");
  Entry& e = plan_.at(i);
  if (offset + n > e.spec.nbytes())
    throw Error(cat("safetensors writer: write of ", n, " bytes at ", offset, " overruns tensor '", e.spec.name, "' (",
                    e.spec.nbytes(), " bytes)"));
  const Shard& s = shards_[e.shard];
  pwrite_all(s.fd, data, n, e.file_offset + offset, (fs::path(dir_) / s.name).string());
  {
    std::lock_guard<std::mutex> lk(st_->mu);
    e.written += n;
  }
  st_->written += n;
}

uint64_t SafetensorsWriter::bytes_written() const { return st_->written.load(); }

SafetensorsWriter::Summary SafetensorsWriter::finish() {
  if (finished_) throw Error("safetensors writer: finish called twice");
  for (const auto& e : plan_)
    if (e.written != e.spec.nbytes())
      throw Error(cat("safetensors writer: tensor '", e.spec.name, "' got ", e.written, " of its ", e.spec.nbytes(),
                      " bytes"));
  Summary sum;
  sum.tensors = plan_.size();
  sum.tensor_bytes = total_bytes_;
  for (auto& s : shards_) {
    const std::string path = (fs::path(dir_) / s.name).string();
    if (::close(s.fd) != 0) {
      s.fd = -1;
      throw Error(cat(path, ": close failed: ", std::strerror(errno)));
    }
    s.fd = -1;
    sum.files.push_back(s.name);
    sum.file_bytes += s.file_size;
  }
  finished_ = true;
  if (shards_.size() > 1 || opts_.always_index) {
    nlohmann::ordered_json idx;
    nlohmann::ordered_json meta = nlohmann::ordered_json::object();
    for (const auto& [k, v] : opts_.index_metadata) meta[k] = v;
    meta["total_size"] = opts_.total_size_is_file_bytes ? sum.file_bytes : sum.tensor_bytes;
    idx["metadata"] = meta;
    nlohmann::ordered_json wm = nlohmann::ordered_json::object();
    for (const auto& e : plan_) wm[e.spec.name] = shards_[e.shard].name;
    idx["weight_map"] = wm;
    const std::string path = (fs::path(dir_) / "model.safetensors.index.json").string();
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << idx.dump(2);
    if (!out) throw Error(cat(path, ": write failed"));
  }
  return sum;
}

void write_safetensors_file(const std::string& path, const std::vector<std::pair<TensorSpec, const void*>>& tensors,
                            const std::map<std::string, std::string>& metadata) {
  std::vector<size_t> order(tensors.size());
  for (size_t i = 0; i < order.size(); ++i) {
    check_spec(tensors[i].first);
    order[i] = i;
  }
  std::sort(order.begin(), order.end(),
            [&](size_t a, size_t b) { return safetensors_order_less(tensors[a].first, tensors[b].first); });
  for (size_t i = 1; i < order.size(); ++i)
    if (tensors[order[i]].first.name == tensors[order[i - 1]].first.name)
      throw Error(cat("safetensors writer: tensor '", tensors[order[i]].first.name, "' given twice"));
  std::vector<const TensorSpec*> ordered;
  for (size_t i : order) ordered.push_back(&tensors[i].first);
  std::vector<uint64_t> offs;
  const std::string header = build_header(ordered, metadata, &offs);
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) throw Error(cat(path, ": cannot create"));
  uint8_t len[8];
  for (int b = 0; b < 8; ++b) len[b] = static_cast<uint8_t>(static_cast<uint64_t>(header.size()) >> (8 * b));
  out.write(reinterpret_cast<const char*>(len), 8);
  out.write(header.data(), static_cast<std::streamsize>(header.size()));
  for (size_t i : order)
    out.write(static_cast<const char*>(tensors[i].second), static_cast<std::streamsize>(tensors[i].first.nbytes()));
  if (!out) throw Error(cat(path, ": write failed"));
}

}  // namespace zaya
