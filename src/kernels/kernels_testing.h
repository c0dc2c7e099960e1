#pragma once
// Test-only hooks into the SIMD dispatch of the fast kernels, so the suite can run every compiled target
// (SSE4, scalar, ...) on one machine, not only the best one.
#include <cstdint>
#include <vector>

namespace zaya::kernels_testing {

// Highway target bits (HWY_AVX3, HWY_SSE4, ...) compiled into the fast kernels and supported by this CPU.
std::vector<int64_t> available_targets();

// Makes the fast kernels (and any other Highway dispatch in the process) use `target` from the next call on;
// 0 restores the normal choice. Not thread-safe: call only while no kernel runs.
void force_target(int64_t target);

}  // namespace zaya::kernels_testing
