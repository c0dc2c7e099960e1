#include "server/metrics.h"

#include <sstream>

namespace zaya::server {

void Metrics::request(const std::string& endpoint, int status) {
  std::lock_guard<std::mutex> lk(mu_);
  ++requests_[{endpoint, status}];
}

void Metrics::rejected(const std::string& reason) {
  std::lock_guard<std::mutex> lk(mu_);
  ++rejected_[reason];
}

void Metrics::step(uint64_t prompt_tokens, uint64_t decode_tokens, size_t sequences, double seconds) {
  std::lock_guard<std::mutex> lk(mu_);
  ++steps_;
  step_sequences_ += sequences;
  step_prompt_tokens_ += prompt_tokens;
  step_decode_tokens_ += decode_tokens;
  const double total = static_cast<double>(prompt_tokens + decode_tokens);
  if (total > 0) {
    prompt_seconds_ += seconds * static_cast<double>(prompt_tokens) / total;
    decode_seconds_ += seconds * static_cast<double>(decode_tokens) / total;
  }
}

void Metrics::prompt_cache(uint64_t prompt_tokens, uint64_t cached_tokens) {
  std::lock_guard<std::mutex> lk(mu_);
  prompt_tokens_ += prompt_tokens;
  cached_tokens_ += cached_tokens;
  if (cached_tokens > 0) ++cache_hits_;
  else ++cache_misses_;
}

void Metrics::generated(uint64_t tokens) {
  std::lock_guard<std::mutex> lk(mu_);
  generated_tokens_ += tokens;
}

void Metrics::finished(const std::string& reason) {
  std::lock_guard<std::mutex> lk(mu_);
  ++finished_[reason];
}

void Metrics::images(uint64_t count, double seconds) {
  std::lock_guard<std::mutex> lk(mu_);
  images_ += count;
  vision_seconds_ += seconds;
}

std::string Metrics::render(size_t queue_depth, size_t slots_busy, size_t slots_total, size_t snapshots,
                            size_t snapshot_bytes) const {
  std::lock_guard<std::mutex> lk(mu_);
  std::ostringstream o;
  o.precision(10);
  auto head = [&](const char* name, const char* type, const char* help) {
    o << "# HELP " << name << " " << help << "\n# TYPE " << name << " " << type << "\n";
  };
  head("zaya_requests_total", "counter", "HTTP requests by endpoint and status code.");
  for (const auto& [k, v] : requests_)
    o << "zaya_requests_total{endpoint=\"" << k.first << "\",code=\"" << k.second << "\"} " << v << "\n";
  head("zaya_requests_rejected_total", "counter", "Generation requests refused before running, by reason.");
  for (const auto& [k, v] : rejected_) o << "zaya_requests_rejected_total{reason=\"" << k << "\"} " << v << "\n";
  head("zaya_requests_finished_total", "counter", "Generations finished, by finish reason.");
  for (const auto& [k, v] : finished_) o << "zaya_requests_finished_total{reason=\"" << k << "\"} " << v << "\n";
  head("zaya_prompt_tokens_total", "counter", "Prompt tokens of admitted requests (cached ones included).");
  o << "zaya_prompt_tokens_total " << prompt_tokens_ << "\n";
  head("zaya_prompt_tokens_cached_total", "counter", "Prompt tokens served from cached decode states.");
  o << "zaya_prompt_tokens_cached_total " << cached_tokens_ << "\n";
  head("zaya_prompt_tokens_processed_total", "counter", "Prompt tokens run through the model.");
  o << "zaya_prompt_tokens_processed_total " << step_prompt_tokens_ << "\n";
  head("zaya_generation_tokens_total", "counter", "Generated tokens.");
  o << "zaya_generation_tokens_total " << generated_tokens_ << "\n";
  head("zaya_prompt_cache_hits_total", "counter", "Requests that reused a cached prefix.");
  o << "zaya_prompt_cache_hits_total " << cache_hits_ << "\n";
  head("zaya_prompt_cache_misses_total", "counter", "Requests that reused nothing.");
  o << "zaya_prompt_cache_misses_total " << cache_misses_ << "\n";
  head("zaya_prompt_seconds_total", "counter", "Model time spent on prompt tokens (share of batched passes).");
  o << "zaya_prompt_seconds_total " << prompt_seconds_ << "\n";
  head("zaya_generation_seconds_total", "counter", "Model time spent on generated tokens (share of batched passes).");
  o << "zaya_generation_seconds_total " << decode_seconds_ << "\n";
  head("zaya_prompt_tokens_per_second", "gauge", "Prompt processing throughput since start.");
  o << "zaya_prompt_tokens_per_second " << (prompt_seconds_ > 0 ? step_prompt_tokens_ / prompt_seconds_ : 0) << "\n";
  head("zaya_generation_tokens_per_second", "gauge", "Generation throughput since start (all slots together).");
  o << "zaya_generation_tokens_per_second " << (decode_seconds_ > 0 ? step_decode_tokens_ / decode_seconds_ : 0)
    << "\n";
  head("zaya_images_total", "counter", "Images encoded for prompts (ZAYA1-VL).");
  o << "zaya_images_total " << images_ << "\n";
  head("zaya_vision_seconds_total", "counter", "Time spent decoding, preprocessing and encoding images.");
  o << "zaya_vision_seconds_total " << vision_seconds_ << "\n";
  head("zaya_batch_steps_total", "counter", "Batched model passes.");
  o << "zaya_batch_steps_total " << steps_ << "\n";
  head("zaya_batch_sequences_total", "counter", "Sequences summed over batched passes (divide by steps: mean batch).");
  o << "zaya_batch_sequences_total " << step_sequences_ << "\n";
  head("zaya_queue_depth", "gauge", "Requests waiting for a slot.");
  o << "zaya_queue_depth " << queue_depth << "\n";
  head("zaya_slots_busy", "gauge", "Slots running a request.");
  o << "zaya_slots_busy " << slots_busy << "\n";
  head("zaya_slots_total", "gauge", "Slots (--parallel).");
  o << "zaya_slots_total " << slots_total << "\n";
  head("zaya_cache_snapshots", "gauge", "Decode-state snapshots kept for prompt reuse.");
  o << "zaya_cache_snapshots " << snapshots << "\n";
  head("zaya_cache_snapshot_bytes", "gauge", "Bytes held by those snapshots.");
  o << "zaya_cache_snapshot_bytes " << snapshot_bytes << "\n";
  return o.str();
}

}  // namespace zaya::server
