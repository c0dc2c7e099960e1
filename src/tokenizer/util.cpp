// UTF-8 helpers, the added-token trie and the merge hash map.
#include <cstring>
#include <string>

#include "tokenizer/internal.h"

namespace zaya::tok {

std::size_t utf8_valid_len(std::string_view s, std::size_t i) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const std::size_t n = s.size();
  const unsigned c = p[i];
  if (c < 0x80) return 1;
  std::size_t len;
  unsigned lo = 0x80, hi = 0xBF;  // allowed range of the second byte (excludes overlongs and surrogates)
  if (c >= 0xC2 && c <= 0xDF) {
    len = 2;
  } else if (c >= 0xE0 && c <= 0xEF) {
    len = 3;
    if (c == 0xE0) lo = 0xA0;
    if (c == 0xED) hi = 0x9F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    len = 4;
    if (c == 0xF0) lo = 0x90;
    if (c == 0xF4) hi = 0x8F;
  } else {
    return 0;
  }
  if (i + len > n) return 0;
  if (p[i + 1] < lo || p[i + 1] > hi) return 0;
  for (std::size_t k = 2; k < len; ++k)
    if ((p[i + k] & 0xC0) != 0x80) return 0;
  return len;
}

std::size_t utf8_first_invalid(std::string_view s) {
  std::size_t i = 0;
  const std::size_t n = s.size();
  while (i < n) {
    // Fast path over ASCII.
    if (static_cast<unsigned char>(s[i]) < 0x80) {
      ++i;
      continue;
    }
    const std::size_t len = utf8_valid_len(s, i);
    if (len == 0) return i;
    i += len;
  }
  return std::string_view::npos;
}

char32_t utf8_decode(std::string_view s, std::size_t i, std::size_t* len) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data()) + i;
  if (p[0] < 0x80) {
    *len = 1;
    return p[0];
  }
  if (p[0] < 0xE0) {
    *len = 2;
    return (char32_t(p[0] & 0x1F) << 6) | (p[1] & 0x3F);
  }
  if (p[0] < 0xF0) {
    *len = 3;
    return (char32_t(p[0] & 0x0F) << 12) | (char32_t(p[1] & 0x3F) << 6) | (p[2] & 0x3F);
  }
  *len = 4;
  return (char32_t(p[0] & 0x07) << 18) | (char32_t(p[1] & 0x3F) << 12) | (char32_t(p[2] & 0x3F) << 6) |
         (p[3] & 0x3F);
}

// Unicode White_Space property (what Rust's char::is_whitespace tests; used by lstrip/rstrip/Strip).
bool is_unicode_whitespace(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F ||
         c == 0x3000;
}

void replace_all(std::string& s, std::string_view from, std::string_view to) {
  if (from.empty()) return;
  std::size_t pos = s.find(from);
  if (pos == std::string::npos) return;
  std::string out;
  out.reserve(s.size() + (to.size() > from.size() ? s.size() / 2 : 0));
  std::size_t last = 0;
  while (pos != std::string::npos) {
    out.append(s, last, pos - last);
    out.append(to);
    last = pos + from.size();
    pos = s.find(from, last);
  }
  out.append(s, last, std::string::npos);
  s = std::move(out);
}

void Trie::insert(std::string_view key, int32_t value) {
  if (key.empty()) return;
  int32_t node = 0;
  first_[static_cast<unsigned char>(key[0])] = true;
  for (char ch : key) {
    const uint64_t e = (uint64_t(uint32_t(node)) << 8) | static_cast<unsigned char>(ch);
    auto it = edges_.find(e);
    if (it == edges_.end()) {
      const int32_t child = int32_t(nodes_value_.size());
      nodes_value_.push_back(-1);
      edges_.emplace(e, child);
      node = child;
    } else {
      node = it->second;
    }
  }
  nodes_value_[std::size_t(node)] = value;
}

int32_t Trie::longest_at(std::string_view s, std::size_t pos, std::size_t* len) const {
  int32_t node = 0, best = -1;
  for (std::size_t i = pos; i < s.size(); ++i) {
    const uint64_t e = (uint64_t(uint32_t(node)) << 8) | static_cast<unsigned char>(s[i]);
    auto it = edges_.find(e);
    if (it == edges_.end()) break;
    node = it->second;
    if (nodes_value_[std::size_t(node)] >= 0) {
      best = nodes_value_[std::size_t(node)];
      *len = i + 1 - pos;
    }
  }
  return best;
}

uint64_t StringIdMap::hash(std::string_view s) {
  // FNV-1a with a final avalanche: tokens are short, and the low bits pick the slot.
  uint64_t h = 0xcbf29ce484222325ULL;
  for (char c : s) h = (h ^ static_cast<unsigned char>(c)) * 0x100000001b3ULL;
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdULL;
  h ^= h >> 33;
  return h;
}

void StringIdMap::reserve(std::size_t n) {
  std::size_t cap = 16;
  while (cap < n * 2) cap <<= 1;
  if (cap <= slots_.size()) return;
  std::vector<Slot> old;
  old.swap(slots_);
  Slot empty{};
  empty.id = -1;
  slots_.assign(cap, empty);
  mask_ = cap - 1;
  size_ = 0;
  for (const Slot& s : old)
    if (s.id >= 0) set(std::string_view(key_of(s), s.len), s.id);
}

void StringIdMap::grow() { reserve(slots_.empty() ? 8 : slots_.size()); }

void StringIdMap::set(std::string_view key, int32_t id) {
  if ((size_ + 1) * 2 > slots_.size()) grow();
  const uint64_t h = hash(key);
  std::size_t i = h & mask_;
  while (slots_[i].id >= 0) {
    Slot& s = slots_[i];
    if (s.h == h && s.len == key.size() && std::memcmp(key_of(s), key.data(), key.size()) == 0) {
      s.id = id;
      if (s.len > sizeof(s.inl)) s.ptr = key.data();
      return;
    }
    i = (i + 1) & mask_;
  }
  Slot& s = slots_[i];
  s.h = h;
  s.id = id;
  s.len = uint32_t(key.size());
  if (key.size() <= sizeof(s.inl)) std::memcpy(s.inl, key.data(), key.size());
  else s.ptr = key.data();
  ++size_;
}

int32_t StringIdMap::find(std::string_view key, uint64_t h) const {
  if (slots_.empty()) return -1;
  std::size_t i = h & mask_;
  while (true) {
    const Slot& s = slots_[i];
    if (s.id < 0) return -1;
    if (s.h == h && s.len == key.size() && std::memcmp(key_of(s), key.data(), key.size()) == 0) return s.id;
    i = (i + 1) & mask_;
  }
}

void MergeMap::build(const std::vector<std::pair<uint64_t, std::pair<int32_t, int32_t>>>& entries) {
  std::size_t cap = 16;
  while (cap < entries.size() * 2) cap <<= 1;
  slots_.assign(cap, Slot{kEmpty, 0, 0});
  mask_ = cap - 1;
  for (const auto& [key, v] : entries) {
    std::size_t h = hash(key) & mask_;
    while (slots_[h].key != kEmpty && slots_[h].key != key) h = (h + 1) & mask_;
    // A duplicated pair takes its last rank, as HF's map built from the merges list does.
    slots_[h] = Slot{key, v.first, v.second};
  }
}

}  // namespace zaya::tok
