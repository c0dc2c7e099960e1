#pragma once
// Server counters, exported as Prometheus text on GET /metrics.
#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>

namespace zaya::server {

class Metrics {
 public:
  // Requests by endpoint and HTTP status.
  void request(const std::string& endpoint, int status);
  void rejected(const std::string& reason);  // queue full, timeouts, shutdown
  // One engine step: how many prompt and generated tokens it ran and how long it took. The time is split between
  // prompt and generation in proportion to their token counts (they share one batched pass).
  void step(uint64_t prompt_tokens, uint64_t decode_tokens, size_t sequences, double seconds);
  void prompt_cache(uint64_t prompt_tokens, uint64_t cached_tokens);
  void generated(uint64_t tokens);
  void finished(const std::string& reason);
  // Images of a request (ZAYA1-VL) and the time spent decoding and encoding them.
  void images(uint64_t count, double seconds);

  // Prometheus exposition text. The gauges are passed in (they live in the engine).
  std::string render(size_t queue_depth, size_t slots_busy, size_t slots_total, size_t snapshots,
                     size_t snapshot_bytes) const;

 private:
  mutable std::mutex mu_;
  std::map<std::pair<std::string, int>, uint64_t> requests_;
  std::map<std::string, uint64_t> rejected_, finished_;
  uint64_t prompt_tokens_ = 0, cached_tokens_ = 0, generated_tokens_ = 0;
  uint64_t cache_hits_ = 0, cache_misses_ = 0;
  uint64_t steps_ = 0, step_sequences_ = 0, step_prompt_tokens_ = 0, step_decode_tokens_ = 0;
  double prompt_seconds_ = 0, decode_seconds_ = 0;
  uint64_t images_ = 0;
  double vision_seconds_ = 0;
};

}  // namespace zaya::server
