#pragma once
// Process-wide runtime settings and facts: the worker threads every computation uses, the SIMD targets the runtime
// dispatch picked on this CPU, the machine's streaming read bandwidth (the roofline of decoding) and its fp32 FMA
// throughput (the roofline of compute-bound work).
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace zaya {

// Worker threads of every parallel loop (0 = the hardware threads). Call before any work starts.
void set_num_threads(size_t n);
size_t num_threads();

// Highway target of the float kernels and of the quantized (affine) kernels on this machine, e.g. "AVX3_DL".
const char* simd_target_name();
const char* quant_simd_target_name();

// Streaming read bandwidth with all worker threads: sums 64-bit words of a buffer much larger than the caches.
// The buffer is kept so the measurement can be repeated next to every timed run (a shared machine drifts).
class ReadBandwidth {
 public:
  explicit ReadBandwidth(size_t bytes);
  double measure_gbs();  // best of three passes, GB/s

 private:
  std::vector<uint64_t> buf_;
};

// Where a forward pass spends its time (`zaya bench --profile`): wall time per layer part and per product kernel,
// with the weight bytes their products read. The hook costs one relaxed atomic load per product while off. Profile
// one forward pass at a time (a server running several at once would mix their times).
struct ProfileRow {
  std::string name;
  double seconds = 0;
  uint64_t weight_bytes = 0;  // weights the products read (achieved GB/s = weight_bytes / seconds)
  uint64_t calls = 0;         // products (kernels) or times the part ran (parts)
};
struct ProfileReport {
  double seconds = 0;              // wall time from profile_begin to profile_end
  size_t threads = 1;              // threads of the pool
  uint64_t parallel_regions = 0;   // parallel loops that used the worker threads
  double busy_seconds = 0;         // time all threads spent running parallel work (threads × seconds at most)
  double wait_seconds = 0;         // time the calling thread waited for the others at the end of parallel loops
  std::vector<ProfileRow> parts;   // attention, MoE router, experts, lm_head, other (the rest of the wall time)
  std::vector<ProfileRow> kernels; // per product kernel (format table name), in order of first use
};
void profile_begin();         // zero the counters and start
ProfileReport profile_end();  // stop; what ran since profile_begin

// Peak fp32 multiply-add throughput with all worker threads (GFLOP/s, an FMA = 2 FLOP): independent register-only
// FMA chains at the dispatched SIMD width, best of five short passes (~0.1 s in all). The compute roofline of
// prefill and of the vision tower.
double measure_fma_gflops();

}  // namespace zaya
