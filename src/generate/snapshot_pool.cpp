#include "zaya/snapshot_pool.h"

#include <algorithm>

namespace zaya {

size_t PrefixSnapshot::bytes() const {
  return state.bytes() + last_logits.size() * sizeof(float) + tokens.size() * sizeof(int32_t);
}

bool can_resume(const std::vector<int32_t>& history, const std::vector<float>& last_logits,
                std::span<const int32_t> prompt) {
  return !history.empty() && history.size() <= prompt.size() &&
         std::equal(history.begin(), history.end(), prompt.begin()) &&
         (!last_logits.empty() || history.size() < prompt.size());
}

void SnapshotPool::add(PrefixSnapshot snap) {
  if (max_count_ == 0 || snap.tokens.empty()) return;
  for (auto& x : entries_)
    if (x.tokens == snap.tokens) {
      if (x.last_logits.empty() && !snap.last_logits.empty()) {
        bytes_ += snap.last_logits.size() * sizeof(float);
        x.last_logits = std::move(snap.last_logits);
      }
      x.last_used = ++clock_;
      return;
    }
  snap.state.shrink_to_fit();
  snap.last_used = ++clock_;
  bytes_ += snap.bytes();
  entries_.push_back(std::move(snap));
  while (entries_.size() > max_count_ || (bytes_ > max_bytes_ && !entries_.empty())) {
    auto lru = std::min_element(entries_.begin(), entries_.end(),
                                [](const PrefixSnapshot& a, const PrefixSnapshot& b) { return a.last_used < b.last_used; });
    bytes_ -= lru->bytes();
    entries_.erase(lru);
  }
}

int SnapshotPool::find(std::span<const int32_t> prompt, size_t longer_than) const {
  int best = -1;
  size_t best_len = longer_than;
  for (size_t i = 0; i < entries_.size(); ++i)
    if (entries_[i].tokens.size() > best_len && can_resume(entries_[i].tokens, entries_[i].last_logits, prompt))
      best = static_cast<int>(i), best_len = entries_[i].tokens.size();
  return best;
}

PrefixSnapshot& SnapshotPool::use(size_t i) {
  entries_[i].last_used = ++clock_;
  return entries_[i];
}

void SnapshotPool::drop_prefixes_of(const std::vector<int32_t>& tokens) {
  auto it = std::remove_if(entries_.begin(), entries_.end(), [&](const PrefixSnapshot& x) {
    return x.last_logits.empty() && x.tokens.size() < tokens.size() &&
           std::equal(x.tokens.begin(), x.tokens.end(), tokens.begin());
  });
  for (auto j = it; j != entries_.end(); ++j) bytes_ -= j->bytes();
  entries_.erase(it, entries_.end());
}

}  // namespace zaya
