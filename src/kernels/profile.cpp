// The timing hook of kernels/profile.h and the public profile_begin/profile_end (include/zaya/runtime.h).
#include "kernels/profile.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <mutex>

#include "tensor/weight_matrix.h"
#include "util/thread_pool.h"
#include "zaya/runtime.h"

namespace zaya {
namespace profile {

std::atomic<bool> g_enabled{false};

namespace {

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

struct Counter {
  std::atomic<uint64_t> ns{0}, bytes{0}, calls{0};
  void reset() { ns = 0, bytes = 0, calls = 0; }
};

constexpr int kMaxKernels = 32;
struct State {
  std::atomic<int> part{-1};             // the open part, -1 = none
  std::atomic<bool> product_open{false};
  Counter parts[kParts];
  Counter outside;                       // products outside every part
  std::mutex mu;                         // guards the kernel names
  const char* names[kMaxKernels] = {};
  Counter kernels[kMaxKernels];
  int64_t t0 = 0;
};
State& state() {
  static State s;
  return s;
}

Counter& kernel_counter(const char* name) {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  for (int i = 0; i < kMaxKernels; ++i) {
    if (s.names[i] && (s.names[i] == name || std::strcmp(s.names[i], name) == 0)) return s.kernels[i];
    if (!s.names[i]) {
      s.names[i] = name;
      return s.kernels[i];
    }
  }
  return s.kernels[kMaxKernels - 1];  // more kernels than slots: the last one collects the rest
}

}  // namespace

void PartScope::begin(Part p) {
  int none = -1;
  if (!state().part.compare_exchange_strong(none, static_cast<int>(p))) return;  // inside another part
  active_ = true, part_ = static_cast<int>(p), t0_ = now_ns();
}

void PartScope::end() {
  State& s = state();
  Counter& c = s.parts[part_];
  c.ns += static_cast<uint64_t>(now_ns() - t0_);
  c.calls += 1;
  s.part = -1;
}

void ProductScope::begin(const char* kernel, const WeightMatrix& W, int count_w) {
  bool closed = false;
  if (!state().product_open.compare_exchange_strong(closed, true)) return;  // inside another product's time
  active_ = true, kernel_ = kernel ? kernel : "?", bytes_ = count_w ? W.bytes() : 0, t0_ = now_ns();
}

void ProductScope::add_bytes(const WeightMatrix* const* Ws, size_t m) {
  if (!active_) return;
  for (size_t i = 0; i < m; ++i) bytes_ += Ws[i]->bytes();
}

void ProductScope::end() {
  State& s = state();
  const uint64_t ns = static_cast<uint64_t>(now_ns() - t0_);
  Counter& k = kernel_counter(kernel_);
  k.ns += ns, k.bytes += bytes_, k.calls += 1;
  const int part = s.part.load();
  Counter& p = part >= 0 ? s.parts[part] : s.outside;
  p.bytes += bytes_;
  if (part < 0) p.ns += ns, p.calls += 1;
  s.product_open = false;
}

}  // namespace profile

void profile_begin() {
  profile::State& s = profile::state();
  for (auto& c : s.parts) c.reset();
  s.outside.reset();
  {
    std::lock_guard<std::mutex> lock(s.mu);
    for (int i = 0; i < profile::kMaxKernels; ++i) s.names[i] = nullptr, s.kernels[i].reset();
  }
  s.part = -1;
  s.product_open = false;
  default_pool().set_stats(true);
  s.t0 = profile::now_ns();
  profile::g_enabled = true;
}

ProfileReport profile_end() {
  profile::State& s = profile::state();
  profile::g_enabled = false;
  ProfileReport r;
  r.seconds = static_cast<double>(profile::now_ns() - s.t0) * 1e-9;
  ThreadPool& pool = default_pool();
  pool.set_stats(false);
  const PoolStats ps = pool.stats();
  r.threads = pool.size();
  r.parallel_regions = ps.regions;
  r.busy_seconds = static_cast<double>(ps.busy_ns) * 1e-9;
  r.wait_seconds = static_cast<double>(ps.wait_ns) * 1e-9;
  static const char* const kNames[profile::kParts] = {"attention (CCA)", "MoE router", "experts", "lm_head"};
  double parts_s = 0;
  for (int i = 0; i < profile::kParts; ++i) {
    const auto& c = s.parts[i];
    r.parts.push_back({kNames[i], static_cast<double>(c.ns.load()) * 1e-9, c.bytes.load(), c.calls.load()});
    parts_s += r.parts.back().seconds;
  }
  // Everything else: embedding, merges, norms, sampling, products outside the parts.
  r.parts.push_back({"other (embedding, merges, norms, sampling)", std::max(0.0, r.seconds - parts_s),
                     s.outside.bytes.load(), 0});
  std::lock_guard<std::mutex> lock(s.mu);
  for (int i = 0; i < profile::kMaxKernels && s.names[i]; ++i)
    r.kernels.push_back({s.names[i], static_cast<double>(s.kernels[i].ns.load()) * 1e-9, s.kernels[i].bytes.load(),
                         s.kernels[i].calls.load()});
  return r;
}

}  // namespace zaya
