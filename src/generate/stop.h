#pragma once
// Stop conditions for streamed generation.
//
// StopStringMatcher takes the decoded text piece by piece and returns only what is safe to show: any suffix that
// could still grow into a stop string is held back, so a stop string spread over several tokens never leaks.
// When a stop string completes, the text before it is returned and the stop string and everything after it are
// dropped (OpenAI semantics). finish() returns the held-back tail at the end of the stream.
//
// Text is handled as UTF-8 bytes. Emitted text also never ends inside a multi-byte UTF-8 sequence (such a tail is
// held until it completes or the stream ends), so every piece can go straight into a JSON string.
//
// The match that completes first wins (smallest end position; if two end together, the longer one), which is
// what a byte-by-byte feed would find, so the result does not depend on how the text is split into pieces.
#include <cstddef>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

namespace zaya {

// Length of the longest prefix of s that does not end inside an incomplete UTF-8 sequence. Invalid bytes count as
// complete (they are passed through, not held forever).
size_t utf8_complete_prefix(std::string_view s);

class StopStringMatcher {
 public:
  // Empty stop strings are rejected (zaya::Error); duplicates are fine. No stop strings: text passes through
  // (still UTF-8 completed).
  explicit StopStringMatcher(std::vector<std::string> stops = {});

  struct Result {
    std::string text;      // safe to emit now
    bool stopped = false;  // a stop string completed (now or earlier); later feeds return nothing
    std::string stop;      // which stop string (set on the feed that hit it)
  };

  Result feed(std::string_view piece);
  // End of stream: the held-back text (empty after a stop).
  std::string finish();

  bool stopped() const { return stopped_; }
  const std::string& held() const { return held_; }
  const std::vector<std::string>& stops() const { return stops_; }
  void reset();

 private:
  std::vector<std::string> stops_;
  std::string held_;
  bool stopped_ = false;
};

// Stop token ids (EOS, <|im_end|>, user-given ids). Checked by the caller after each sampled token.
struct StopTokens {
  std::unordered_set<int> ids;
  bool contains(int id) const { return ids.count(id) != 0; }
};

}  // namespace zaya
