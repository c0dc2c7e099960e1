#pragma once
// Internal state of zaya::Tokenizer shared by the loader, encoder and decoders (src/tokenizer/*.cpp).
#include <cstdint>
#include <deque>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "zaya/tokenizer.h"

namespace zaya::tok {

// ---- UTF-8 helpers ----
// Length of the valid UTF-8 sequence starting at s[i] (1..4), or 0 if invalid / truncated there.
std::size_t utf8_valid_len(std::string_view s, std::size_t i);
// Offset of the first invalid byte, or npos when the whole string is valid UTF-8.
std::size_t utf8_first_invalid(std::string_view s);
// Decodes the code point at s[i] (s must be valid UTF-8 there); sets *len to its byte length.
char32_t utf8_decode(std::string_view s, std::size_t i, std::size_t* len);
bool is_unicode_whitespace(char32_t c);
void replace_all(std::string& s, std::string_view from, std::string_view to);
inline constexpr std::string_view kReplacementChar = "\xEF\xBF\xBD";  // U+FFFD

// Leftmost-longest exact string matcher over bytes (a byte trie); used for added tokens.
class Trie {
 public:
  void insert(std::string_view key, int32_t value);
  bool empty() const { return nodes_value_.size() <= 1; }
  // Longest key starting at s[pos]; returns its value and sets *len, or -1.
  int32_t longest_at(std::string_view s, std::size_t pos, std::size_t* len) const;
  bool may_start(unsigned char b) const { return first_[b]; }

 private:
  std::vector<int32_t> nodes_value_{-1};                // value per node (-1: no key ends here)
  std::unordered_map<uint64_t, int32_t> edges_;         // (node << 8 | byte) -> child
  bool first_[256] = {};
};

// Open-addressing map from a (left id, right id) pair to its merge (rank, merged id).
class MergeMap {
 public:
  void build(const std::vector<std::pair<uint64_t, std::pair<int32_t, int32_t>>>& entries);
  // Returns false when the pair has no merge.
  bool find(int32_t a, int32_t b, int32_t* rank, int32_t* id) const {
    if (slots_.empty()) return false;
    const uint64_t key = (uint64_t(uint32_t(a)) << 32) | uint32_t(b);
    std::size_t h = hash(key) & mask_;
    while (true) {
      const Slot& s = slots_[h];
      if (s.key == kEmpty) return false;
      if (s.key == key) {
        *rank = s.rank;
        *id = s.id;
        return true;
      }
      h = (h + 1) & mask_;
    }
  }

 private:
  static constexpr uint64_t kEmpty = ~uint64_t{0};
  static std::size_t hash(uint64_t k) {
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdULL;
    k ^= k >> 33;
    return std::size_t(k);
  }
  struct Slot {
    uint64_t key;
    int32_t rank, id;
  };
  std::vector<Slot> slots_;
  std::size_t mask_ = 0;
};

// Open-addressing map from token string to id. Keys up to 16 bytes are stored inline (one cache miss per
// lookup, which dominates loading the 515k Gemma merges); longer keys point at storage that outlives the map.
class StringIdMap {
 public:
  static uint64_t hash(std::string_view s);
  void reserve(std::size_t n);
  // Inserts or overwrites the id (and the stored key view) of `key`.
  void set(std::string_view key, int32_t id);
  int32_t find(std::string_view key) const { return find(key, hash(key)); }
  int32_t find(std::string_view key, uint64_t h) const;
  void prefetch(uint64_t h) const {
    if (!slots_.empty()) __builtin_prefetch(&slots_[h & mask_]);
  }
  std::size_t size() const { return size_; }

 private:
  struct Slot {
    uint64_t h;
    int32_t id;  // -1: empty
    uint32_t len;
    union {
      char inl[16];
      const char* ptr;
    };
  };
  static const char* key_of(const Slot& s) { return s.len <= sizeof(s.inl) ? s.inl : s.ptr; }
  void grow();
  std::vector<Slot> slots_;
  std::size_t mask_ = 0, size_ = 0;
};

struct AddedToken {
  std::string content;
  int32_t id = -1;
  bool special = false, lstrip = false, rstrip = false, single_word = false, normalized = false;
};

struct NormStep {
  enum class Kind { Replace, Prepend, Strip } kind;
  std::string a, b;  // Replace: pattern -> content; Prepend: a = prefix
  bool left = false, right = false;  // Strip
};

struct PreStep {
  enum class Kind { Split, Metaspace } kind;
  enum class Behavior { Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous };
  std::string pattern;  // Split
  Behavior behavior = Behavior::Removed;
  bool invert = false;
  std::string replacement;  // Metaspace
  enum class Prepend { Always, First, Never } prepend = Prepend::Always;
  bool split = true;
};

struct DecStep {
  enum class Kind { Replace, ByteFallback, Fuse, Strip, Metaspace } kind;
  std::string a, b;       // Replace: pattern -> content; Strip: a = content char; Metaspace: a = replacement
  std::size_t start = 0, stop = 0;  // Strip
  bool prepend = true;    // Metaspace: prepend_scheme != never
};

// One post-processor template item: a Sequence placeholder (is_sequence) or literal special-token ids.
struct TemplateItem {
  bool is_sequence = false;
  std::vector<int32_t> ids;
};

}  // namespace zaya::tok

namespace zaya {

struct Tokenizer::Impl {
  std::string source;  // path of tokenizer.json, for messages

  // Vocabulary. token_to_id_ views point into id_to_token_ / extra_strings_ (stable after load).
  std::vector<std::string> id_to_token;
  std::deque<std::string> extra_strings;
  tok::StringIdMap model_vocab;                               // BPE model vocab
  std::unordered_map<std::string_view, int32_t> added_vocab;  // added tokens
  std::vector<uint8_t> special;                              // per id: 1 if special added token

  // BPE model.
  tok::MergeMap merges;
  bool byte_fallback = false, fuse_unk = false, ignore_merges = false;
  int32_t unk = -1;
  int32_t byte_ids[256];
  int32_t ascii_ids[128];  // single-byte chars looked up once
  // Word splitting (see bpe()): BPE may run word by word when no merge can join a character to a following
  // "▁". cross_last lists the last characters of merges that do (e.g. Gemma's ">" + "▁</").
  bool word_split = false;
  std::vector<char32_t> cross_last;

  // Added tokens.
  std::vector<tok::AddedToken> added;
  tok::Trie raw_trie, norm_trie;  // values index into `added`

  std::vector<tok::NormStep> normalizer;
  std::vector<tok::PreStep> pre_tokenizer;
  std::vector<tok::DecStep> decoder;
  bool has_decoder = false;
  std::size_t fuse_pos = 0;       // index in decoder of the first Fuse (decoder.size() if none)
  std::size_t byte_fallback_pos = 0;  // index of the ByteFallback step before fuse_pos (fuse_pos if none)
  std::vector<tok::TemplateItem> post;  // empty: no post-processor
  bool has_post = false;

  // Side files.
  int32_t bos = -1, eos = -1, pad = -1, unk_special = -1;
  std::string bos_tok, eos_tok, pad_tok, unk_tok;
  std::vector<int32_t> eos_list;
  std::string chat_template;
  bool add_bos = false, add_eos = false;

  // encode helpers; Scratch holds per-call state (a word cache), so encode stays const and thread-safe.
  struct Scratch;
  void encode_segment(std::string_view text, bool at_start, std::vector<int32_t>& out, Scratch& sc) const;
  void encode_normalized(std::string_view text, bool at_start, std::vector<int32_t>& out, Scratch& sc) const;
  void bpe(std::string_view piece, std::vector<int32_t>& out, Scratch& sc) const;
  void bpe_word(std::string_view word, std::vector<int32_t>& out) const;
  std::string normalize(std::string_view text) const;
  std::vector<std::string> decode_chain(std::vector<std::string> tokens, std::size_t from, std::size_t to,
                                        std::size_t first_index) const;
  const std::string* token_of(int32_t id) const {
    if (id < 0 || std::size_t(id) >= id_to_token.size()) return nullptr;
    return &id_to_token[std::size_t(id)];
  }
};

}  // namespace zaya
