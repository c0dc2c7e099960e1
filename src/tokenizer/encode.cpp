// Encoding: added-token split -> normalizer -> pre-tokenizer -> BPE -> post-processor; plus the plain accessors.
#include <algorithm>
#include <deque>
#include <functional>
#include <unordered_map>

#include "tokenizer/internal.h"
#include "zaya/error.h"

namespace zaya {
namespace {

using tok::AddedToken;
using tok::PreStep;

// Start of the code point that ends just before byte offset `end` (s is valid UTF-8).
std::size_t prev_char_start(std::string_view s, std::size_t end) {
  std::size_t i = end - 1;
  while (i > 0 && (static_cast<unsigned char>(s[i]) & 0xC0) == 0x80) --i;
  return i;
}

// Word characters for single_word added tokens: ASCII alphanumerics and '_'; any other non-whitespace code
// point above ASCII is treated as a letter (no Unicode category tables here).
bool is_word_char(char32_t c) {
  if (c < 0x80) return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
  return !tok::is_unicode_whitespace(c);
}

// Splits `text` around added tokens of `trie` (leftmost-longest, non-overlapping, as HF's Aho-Corasick pass).
// on_text(view, offset) gets the pieces between matches; on_token(id) the matched tokens.
template <class OnText, class OnToken>
void split_added(std::string_view text, const tok::Trie& trie, const std::vector<AddedToken>& added,
                 OnText&& on_text, OnToken&& on_token) {
  if (trie.empty()) {
    if (!text.empty()) on_text(text, 0);
    return;
  }
  const std::size_t n = text.size();
  std::size_t seg = 0, i = 0;
  while (i < n) {
    if (!trie.may_start(static_cast<unsigned char>(text[i]))) {
      ++i;
      continue;
    }
    std::size_t len = 0;
    const int32_t v = trie.longest_at(text, i, &len);
    if (v < 0) {
      ++i;
      continue;
    }
    const AddedToken& t = added[std::size_t(v)];
    std::size_t start = i, stop = i + len;
    if (t.single_word) {
      std::size_t cl = 0;
      const bool word_before = start > 0 && is_word_char(tok::utf8_decode(text, prev_char_start(text, start), &cl));
      const bool word_after = stop < n && is_word_char(tok::utf8_decode(text, stop, &cl));
      if (word_before || word_after) {
        i = stop;  // the matcher resumes after the rejected match, like HF's iterator
        continue;
      }
    }
    if (t.lstrip) {
      while (start > seg) {
        const std::size_t p = prev_char_start(text, start);
        std::size_t cl = 0;
        if (!tok::is_unicode_whitespace(tok::utf8_decode(text, p, &cl))) break;
        start = p;
      }
    }
    if (t.rstrip) {
      while (stop < n) {
        std::size_t cl = 0;
        if (!tok::is_unicode_whitespace(tok::utf8_decode(text, stop, &cl))) break;
        stop += cl;
      }
    }
    if (start > seg) on_text(text.substr(seg, start - seg), seg);
    on_token(t.id);
    seg = i = stop;
  }
  if (seg < n) on_text(text.substr(seg), seg);
}

struct Symbol {
  int32_t id, prev, next;
};
struct Candidate {
  int32_t rank, pos, id;
};
// Min-heap order: lowest rank first, then leftmost.
struct Later {
  bool operator()(const Candidate& a, const Candidate& b) const {
    return a.rank != b.rank ? a.rank > b.rank : a.pos > b.pos;
  }
};

struct SvHash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const { return std::size_t(tok::StringIdMap::hash(s)); }
};

}  // namespace

// Per-encode-call word cache: word -> (offset, count) in `ids`. English text repeats words a lot.
struct Tokenizer::Impl::Scratch {
  std::unordered_map<std::string, std::pair<uint32_t, uint32_t>, SvHash, std::equal_to<>> cache;
  std::vector<int32_t> ids;
};

std::string Tokenizer::Impl::normalize(std::string_view text) const {
  std::string s(text);
  for (const tok::NormStep& st : normalizer) {
    switch (st.kind) {
      case tok::NormStep::Kind::Replace:
        tok::replace_all(s, st.a, st.b);
        break;
      case tok::NormStep::Kind::Prepend:
        if (!s.empty()) s.insert(0, st.a);
        break;
      case tok::NormStep::Kind::Strip: {
        std::size_t b = 0, e = s.size(), cl = 0;
        if (st.left)
          while (b < e && tok::is_unicode_whitespace(tok::utf8_decode(s, b, &cl))) b += cl;
        if (st.right)
          while (e > b) {
            const std::size_t p = prev_char_start(s, e);
            if (!tok::is_unicode_whitespace(tok::utf8_decode(s, p, &cl))) break;
            e = p;
          }
        s = s.substr(b, e - b);
        break;
      }
    }
  }
  return s;
}

void Tokenizer::Impl::encode_segment(std::string_view text, bool at_start, std::vector<int32_t>& out,
                                     Scratch& sc) const {
  if (normalizer.empty() && norm_trie.empty()) {
    encode_normalized(text, at_start, out, sc);
    return;
  }
  const std::string norm = normalize(text);
  split_added(
      norm, norm_trie, added,
      [&](std::string_view piece, std::size_t off) { encode_normalized(piece, at_start && off == 0, out, sc); },
      [&](int32_t id) { out.push_back(id); });
}

void Tokenizer::Impl::encode_normalized(std::string_view text, bool at_start, std::vector<int32_t>& out,
                                        Scratch& sc) const {
  if (pre_tokenizer.empty()) {
    bpe(text, out, sc);
    return;
  }
  std::deque<std::string> owned;  // storage for pieces a step rewrites (views stay valid in a deque)
  std::vector<std::string_view> pieces{text}, next;
  for (const PreStep& st : pre_tokenizer) {
    next.clear();
    for (std::size_t pi = 0; pi < pieces.size(); ++pi) {
      std::string_view p = pieces[pi];
      if (st.kind == PreStep::Kind::Metaspace) {
        std::string s(p);
        tok::replace_all(s, " ", st.replacement);
        const bool prepend = st.prepend == PreStep::Prepend::Always ||
                             (st.prepend == PreStep::Prepend::First && at_start && pi == 0);
        if (prepend && s.compare(0, st.replacement.size(), st.replacement) != 0) s.insert(0, st.replacement);
        owned.push_back(std::move(s));
        std::string_view v = owned.back();
        if (!st.split) {
          next.push_back(v);
          continue;
        }
        // Split on the replacement, each piece starting with it (MergedWithNext).
        std::size_t b = 0, f = v.find(st.replacement, 1);
        while (f != std::string_view::npos) {
          next.push_back(v.substr(b, f - b));
          b = f;
          f = v.find(st.replacement, f + st.replacement.size());
        }
        if (b < v.size()) next.push_back(v.substr(b));
        continue;
      }
      // Split with a string pattern: list (range, is_match) runs, then merge per behaviour.
      struct Run {
        std::size_t b, e;
        bool match;
      };
      std::vector<Run> runs;
      std::size_t b = 0, f = p.find(st.pattern);
      while (f != std::string_view::npos) {
        if (f > b) runs.push_back({b, f, st.invert});
        runs.push_back({f, f + st.pattern.size(), !st.invert});
        b = f + st.pattern.size();
        f = p.find(st.pattern, b);
      }
      if (b < p.size()) runs.push_back({b, p.size(), st.invert});
      // Merging rules follow HF's SplitDelimiterBehavior (a match merges with a neighbour that is not a match).
      using B = PreStep::Behavior;
      std::vector<std::pair<std::size_t, std::size_t>> out_ranges;
      bool prev_match = false;
      if (st.behavior == B::MergedWithNext) {
        for (std::size_t k = runs.size(); k-- > 0;) {
          const Run& r = runs[k];
          if (r.match && !prev_match && !out_ranges.empty()) out_ranges.back().first = r.b;
          else out_ranges.push_back({r.b, r.e});
          prev_match = r.match;
        }
        std::reverse(out_ranges.begin(), out_ranges.end());
      } else {
        for (const Run& r : runs) {
          if (st.behavior == B::Removed) {
            if (!r.match) out_ranges.push_back({r.b, r.e});
          } else if (st.behavior == B::Isolated) {
            out_ranges.push_back({r.b, r.e});
          } else if (st.behavior == B::MergedWithPrevious && r.match && !prev_match && !out_ranges.empty()) {
            out_ranges.back().second = r.e;
          } else if (st.behavior == B::Contiguous && r.match && prev_match && !out_ranges.empty()) {
            out_ranges.back().second = r.e;
          } else {
            out_ranges.push_back({r.b, r.e});
          }
          prev_match = r.match;
        }
      }
      for (const auto& [rb, re] : out_ranges)
        if (re > rb) next.push_back(p.substr(rb, re - rb));
    }
    pieces.swap(next);
  }
  for (std::string_view p : pieces) bpe(p, out, sc);
}

// BPE over one pre-tokenized piece. For Gemma that is a whole run of text between added tokens, so it is cut
// into words before each "▁" that follows another character, where no merge can ever join the two sides (the
// last character is in the vocab and ends no merge whose right side starts with "▁"; checked at load). Then
// merging word by word gives exactly the same result as over the whole piece, and words can be cached.
void Tokenizer::Impl::bpe(std::string_view w, std::vector<int32_t>& out, Scratch& sc) const {
  if (w.empty()) return;
  if (ignore_merges) {
    if (const int32_t id = model_vocab.find(w); id >= 0) {
      out.push_back(id);
      return;
    }
  }
  if (!word_split) {
    bpe_word(w, out);
    return;
  }
  constexpr std::string_view kSpace = "\xE2\x96\x81";
  auto word = [&](std::string_view v) {
    if (v.size() > 64) {
      bpe_word(v, out);
      return;
    }
    auto it = sc.cache.find(v);
    if (it != sc.cache.end()) {
      const auto [off, cnt] = it->second;
      out.insert(out.end(), sc.ids.begin() + off, sc.ids.begin() + off + cnt);
      return;
    }
    const std::size_t before = out.size();
    bpe_word(v, out);
    if (sc.cache.size() < (1u << 16)) {
      const uint32_t off = uint32_t(sc.ids.size());
      sc.ids.insert(sc.ids.end(), out.begin() + std::ptrdiff_t(before), out.end());
      sc.cache.emplace(std::string(v), std::make_pair(off, uint32_t(out.size() - before)));
    }
  };
  std::size_t start = 0;
  for (std::size_t p = w.find(kSpace, 1); p != std::string_view::npos; p = w.find(kSpace, p + kSpace.size())) {
    const std::size_t q = prev_char_start(w, p);
    std::size_t len = 0;
    const char32_t x = tok::utf8_decode(w, q, &len);
    if (x == 0x2581 || std::find(cross_last.begin(), cross_last.end(), x) != cross_last.end()) continue;
    if (x < 0x80 ? ascii_ids[x] < 0 : model_vocab.find(w.substr(q, len)) < 0) continue;
    word(w.substr(start, p - start));
    start = p;
  }
  word(w.substr(start));
}

void Tokenizer::Impl::bpe_word(std::string_view w, std::vector<int32_t>& out) const {
  if (w.empty()) return;
  // Buffers are reused across calls on this thread (encode stays const and thread-safe).
  thread_local std::vector<Symbol> sym;
  thread_local std::vector<Candidate> heap;
  sym.clear();
  heap.clear();
  bool pending_unk = false;
  auto push = [&](int32_t id) {
    const int32_t k = int32_t(sym.size());
    sym.push_back({id, k - 1, -1});
    if (k > 0) sym[std::size_t(k - 1)].next = k;
  };
  auto flush_unk = [&] {
    if (pending_unk) push(unk);
    pending_unk = false;
  };
  const std::size_t n = w.size();
  for (std::size_t i = 0; i < n;) {
    const unsigned char c = static_cast<unsigned char>(w[i]);
    std::size_t len = 1;
    int32_t id;
    if (c < 0x80) {
      id = ascii_ids[c];
    } else {
      len = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : 2;
      id = model_vocab.find(w.substr(i, len));
    }
    if (id >= 0) {
      flush_unk();
      push(id);
    } else {
      bool done = false;
      if (byte_fallback) {
        done = true;
        for (std::size_t k = 0; k < len; ++k) done = done && byte_ids[static_cast<unsigned char>(w[i + k])] >= 0;
        if (done) {
          flush_unk();
          for (std::size_t k = 0; k < len; ++k) push(byte_ids[static_cast<unsigned char>(w[i + k])]);
        }
      }
      if (!done && unk >= 0) {
        if (!fuse_unk) flush_unk();
        pending_unk = true;
      }
      // No unk token: the character is dropped, as HF does.
    }
    i += len;
  }
  flush_unk();

  const int32_t count = int32_t(sym.size());
  int32_t rank, id;
  for (int32_t k = 0; k + 1 < count; ++k)
    if (merges.find(sym[std::size_t(k)].id, sym[std::size_t(k + 1)].id, &rank, &id)) heap.push_back({rank, k, id});
  std::make_heap(heap.begin(), heap.end(), Later{});
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), Later{});
    const Candidate top = heap.back();
    heap.pop_back();
    Symbol& left = sym[std::size_t(top.pos)];
    if (left.id < 0 || left.next < 0) continue;
    Symbol& right = sym[std::size_t(left.next)];
    // Stale entry: the pair at this position changed since it was queued.
    if (!merges.find(left.id, right.id, &rank, &id) || id != top.id) continue;
    left.id = top.id;
    right.id = -1;
    left.next = right.next;
    if (left.next >= 0) sym[std::size_t(left.next)].prev = top.pos;
    if (left.prev >= 0 && merges.find(sym[std::size_t(left.prev)].id, left.id, &rank, &id)) {
      heap.push_back({rank, left.prev, id});
      std::push_heap(heap.begin(), heap.end(), Later{});
    }
    if (left.next >= 0 && merges.find(left.id, sym[std::size_t(left.next)].id, &rank, &id)) {
      heap.push_back({rank, top.pos, id});
      std::push_heap(heap.begin(), heap.end(), Later{});
    }
  }
  for (int32_t k = count > 0 ? 0 : -1; k >= 0; k = sym[std::size_t(k)].next) out.push_back(sym[std::size_t(k)].id);
}

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;
Tokenizer::~Tokenizer() = default;

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_special_tokens) const {
  const std::size_t bad = tok::utf8_first_invalid(text);
  if (bad != std::string_view::npos)
    throw Error(cat("tokenizer: input text is not valid UTF-8 (byte offset ", bad, ")"));
  const Impl& im = *impl_;
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 4);
  Impl::Scratch sc;
  split_added(
      text, im.raw_trie, im.added,
      [&](std::string_view piece, std::size_t off) { im.encode_segment(piece, off == 0, ids, sc); },
      [&](int32_t id) { ids.push_back(id); });
  if (!add_special_tokens || !im.has_post) return ids;
  std::vector<int32_t> out;
  out.reserve(ids.size() + 4);
  for (const tok::TemplateItem& item : im.post) {
    if (item.is_sequence) out.insert(out.end(), ids.begin(), ids.end());
    else out.insert(out.end(), item.ids.begin(), item.ids.end());
  }
  return out;
}

std::size_t Tokenizer::vocab_size() const { return impl_->id_to_token.size(); }

const std::string& Tokenizer::id_to_token(int32_t id) const {
  static const std::string empty;
  const std::string* t = impl_->token_of(id);
  return t ? *t : empty;
}

std::optional<int32_t> Tokenizer::token_to_id(std::string_view token) const {
  auto it = impl_->added_vocab.find(token);
  if (it != impl_->added_vocab.end()) return it->second;
  if (const int32_t id = impl_->model_vocab.find(token); id >= 0) return id;
  return std::nullopt;
}

bool Tokenizer::is_special(int32_t id) const {
  return id >= 0 && std::size_t(id) < impl_->special.size() && impl_->special[std::size_t(id)];
}

int32_t Tokenizer::bos_id() const { return impl_->bos; }
int32_t Tokenizer::eos_id() const { return impl_->eos; }
int32_t Tokenizer::pad_id() const { return impl_->pad; }
int32_t Tokenizer::unk_id() const { return impl_->unk_special; }
const std::string& Tokenizer::bos_token() const { return impl_->bos_tok; }
const std::string& Tokenizer::eos_token() const { return impl_->eos_tok; }
const std::string& Tokenizer::pad_token() const { return impl_->pad_tok; }
const std::string& Tokenizer::unk_token() const { return impl_->unk_tok; }
const std::vector<int32_t>& Tokenizer::eos_ids() const { return impl_->eos_list; }
bool Tokenizer::is_eos(int32_t id) const {
  return std::find(impl_->eos_list.begin(), impl_->eos_list.end(), id) != impl_->eos_list.end();
}
const std::string& Tokenizer::chat_template() const { return impl_->chat_template; }
bool Tokenizer::has_chat_template() const { return !impl_->chat_template.empty(); }
bool Tokenizer::add_bos_token() const { return impl_->add_bos; }
bool Tokenizer::add_eos_token() const { return impl_->add_eos; }

}  // namespace zaya
