#include "generate/stop.h"

#include <algorithm>

#include "zaya/error.h"

namespace zaya {

size_t utf8_complete_prefix(std::string_view s) {
  const size_t n = s.size();
  // Walk back over at most 3 continuation bytes to the lead byte of the last sequence.
  for (size_t back = 1; back <= 4 && back <= n; ++back) {
    const auto c = static_cast<unsigned char>(s[n - back]);
    if ((c & 0xC0) == 0x80) continue;  // continuation byte
    size_t len = 1;
    if ((c & 0xE0) == 0xC0) len = 2;
    else if ((c & 0xF0) == 0xE0) len = 3;
    else if ((c & 0xF8) == 0xF0) len = 4;
    return len > back ? n - back : n;
  }
  return n;  // empty, or only continuation bytes: invalid, pass through
}

StopStringMatcher::StopStringMatcher(std::vector<std::string> stops) : stops_(std::move(stops)) {
  for (const auto& s : stops_)
    if (s.empty()) throw Error("stop strings must not be empty");
}

void StopStringMatcher::reset() {
  held_.clear();
  stopped_ = false;
}

StopStringMatcher::Result StopStringMatcher::feed(std::string_view piece) {
  Result r;
  if (stopped_) {
    r.stopped = true;
    return r;
  }
  held_.append(piece);

  size_t best_start = std::string::npos, best_end = std::string::npos;
  const std::string* best = nullptr;
  for (const auto& s : stops_) {
    const size_t pos = held_.find(s);
    if (pos == std::string::npos) continue;
    const size_t end = pos + s.size();
    if (end < best_end || (end == best_end && pos < best_start)) best_start = pos, best_end = end, best = &s;
  }
  if (best) {
    r.text = held_.substr(0, best_start);
    r.stopped = true;
    r.stop = *best;
    held_.clear();
    stopped_ = true;
    return r;
  }

  // Hold the longest suffix that is a proper prefix of some stop string.
  size_t hold = 0;
  for (const auto& s : stops_) {
    for (size_t k = std::min(s.size() - 1, held_.size()); k > hold; --k) {
      if (std::string_view(held_).substr(held_.size() - k) == std::string_view(s).substr(0, k)) {
        hold = k;
        break;
      }
    }
  }
  const size_t emit = utf8_complete_prefix(std::string_view(held_).substr(0, held_.size() - hold));
  r.text = held_.substr(0, emit);
  held_.erase(0, emit);
  return r;
}

std::string StopStringMatcher::finish() {
  std::string out;
  if (!stopped_) out.swap(held_);
  held_.clear();
  return out;
}

}  // namespace zaya
