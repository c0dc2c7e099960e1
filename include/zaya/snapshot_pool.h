#pragma once
// Decode-state snapshots at prefix boundaries, for prompt reuse. The CCA conv state cannot be rolled back token by
// token, so a new prompt resumes from the longest stored history that is a prefix of it. Shared by the CLI session
// and the server's slots.
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "zaya/decode_state.h"

namespace zaya {

struct PrefixSnapshot {
  std::vector<int32_t> tokens;     // the history the state holds
  DecodeState state;
  std::vector<float> last_logits;  // logits after tokens.back(); empty for mid-prompt snapshots
  uint64_t last_used = 0;
  size_t bytes() const;
};

// A history can resume `prompt` when it is a non-empty prefix of it; one kept without its last logits only when the
// prompt goes on past it (the next token must come from the model's own logits).
bool can_resume(const std::vector<int32_t>& history, const std::vector<float>& last_logits,
                std::span<const int32_t> prompt);

class SnapshotPool {
 public:
  SnapshotPool(size_t max_count, size_t max_bytes = SIZE_MAX) : max_count_(max_count), max_bytes_(max_bytes) {}

  // Stores a snapshot (an identical history only refreshes the stored one), evicting least recently used entries
  // beyond the count/byte limits.
  void add(PrefixSnapshot snap);
  // Index of the longest snapshot that can resume `prompt` and is longer than `longer_than` tokens, or -1.
  int find(std::span<const int32_t> prompt, size_t longer_than = 0) const;
  // Marks entry i used and returns it.
  PrefixSnapshot& use(size_t i);
  // Drops mid-prompt snapshots (no logits) that are strict prefixes of `tokens`.
  void drop_prefixes_of(const std::vector<int32_t>& tokens);

  size_t size() const { return entries_.size(); }
  size_t total_bytes() const { return bytes_; }
  void set_limits(size_t max_count, size_t max_bytes) { max_count_ = max_count, max_bytes_ = max_bytes; }

 private:
  std::vector<PrefixSnapshot> entries_;
  size_t max_count_, max_bytes_, bytes_ = 0;
  uint64_t clock_ = 0;
};

}  // namespace zaya
