#pragma once
// The timing hook behind `zaya bench --profile` (include/zaya/runtime.h: profile_begin/profile_end): where a forward
// pass spends its time, per layer part and per product kernel. Off, each scope costs one relaxed atomic load; on,
// two clock reads and a few atomic adds per product (a decode step runs a few hundred products, never per element).
//
// Parts are flat (a part opened inside another is counted in the outer one); a product records itself unless
// another product is already being timed — products run inside the pool tasks of an outer product scope (the
// conv's per-group products) are part of that scope's time. Profile one forward pass at a time.
#include <atomic>
#include <cstddef>
#include <cstdint>

namespace zaya {

struct WeightMatrix;

namespace profile {

enum class Part : int { Attention, Router, Experts, LmHead };
constexpr int kParts = 4;

extern std::atomic<bool> g_enabled;
inline bool enabled() { return g_enabled.load(std::memory_order_relaxed); }

// Wall time of one layer part on the calling thread, and the weight bytes its products read.
class PartScope {
 public:
  explicit PartScope(Part p) {
    if (enabled()) begin(p);
  }
  ~PartScope() {
    if (active_) end();
  }
  PartScope(const PartScope&) = delete;
  PartScope& operator=(const PartScope&) = delete;

 private:
  void begin(Part p);
  void end();
  bool active_ = false;
  int part_ = 0;
  int64_t t0_ = 0;
};

// Wall time of one product (or a fused group, or a parallel set of products) of `kernel`, reading `bytes`.
class ProductScope {
 public:
  ProductScope(const char* kernel, const WeightMatrix& W) {
    if (enabled()) begin(kernel, W, 1);
  }
  ProductScope(const char* kernel, const WeightMatrix* const* Ws, size_t m) {
    if (enabled()) begin(kernel, *Ws[0], 0), add_bytes(Ws, m);
  }
  ~ProductScope() {
    if (active_) end();
  }
  ProductScope(const ProductScope&) = delete;
  ProductScope& operator=(const ProductScope&) = delete;

 private:
  void begin(const char* kernel, const WeightMatrix& W, int count_w);
  void add_bytes(const WeightMatrix* const* Ws, size_t m);
  void end();
  bool active_ = false;
  const char* kernel_ = nullptr;
  uint64_t bytes_ = 0;
  int64_t t0_ = 0;
};

}  // namespace profile
}  // namespace zaya
