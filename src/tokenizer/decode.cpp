// Decoding: the HF decoder chain over token strings, and the streaming detokenizer.
#include <algorithm>

#include "tokenizer/internal.h"

namespace zaya {
namespace {

using tok::DecStep;

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// "<0xNN>" -> NN, else -1.
int byte_token(std::string_view t) {
  if (t.size() != 6 || t.compare(0, 3, "<0x") != 0 || t[5] != '>') return -1;
  const int hi = hex_digit(t[3]), lo = hex_digit(t[4]);
  return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

// Strip up to `start` leading and `stop` trailing occurrences of `content` (one character).
void strip_token(std::string& t, const std::string& content, std::size_t start, std::size_t stop) {
  if (content.empty()) return;
  std::size_t b = 0, e = t.size();
  for (std::size_t k = 0; k < start && e - b >= content.size() && t.compare(b, content.size(), content) == 0; ++k)
    b += content.size();
  for (std::size_t k = 0; k < stop && e - b >= content.size() &&
                          t.compare(e - content.size(), content.size(), content) == 0;
       ++k)
    e -= content.size();
  t = t.substr(b, e - b);
}

void metaspace_token(std::string& t, const DecStep& st, bool first) {
  tok::replace_all(t, st.a, " ");
  if (first && st.prepend && !t.empty() && t[0] == ' ') t.erase(0, 1);
}

}  // namespace

std::vector<std::string> Tokenizer::Impl::decode_chain(std::vector<std::string> tokens, std::size_t from,
                                                       std::size_t to, std::size_t first_index) const {
  for (std::size_t s = from; s < to; ++s) {
    const DecStep& st = decoder[s];
    switch (st.kind) {
      case DecStep::Kind::Replace:
        for (std::string& t : tokens) tok::replace_all(t, st.a, st.b);
        break;
      case DecStep::Kind::Strip:
        for (std::string& t : tokens) strip_token(t, st.a, st.start, st.stop);
        break;
      case DecStep::Kind::Metaspace:
        for (std::size_t i = 0; i < tokens.size(); ++i) metaspace_token(tokens[i], st, first_index + i == 0);
        break;
      case DecStep::Kind::Fuse: {
        std::string all;
        for (const std::string& t : tokens) all += t;
        tokens.assign(1, std::move(all));
        break;
      }
      case DecStep::Kind::ByteFallback: {
        // Runs of <0xNN> tokens become their bytes when they form valid UTF-8; otherwise every byte of the
        // run becomes U+FFFD (HF tokenizers' behaviour).
        std::vector<std::string> out;
        out.reserve(tokens.size());
        std::string run;
        std::size_t run_len = 0;
        auto flush = [&] {
          if (run_len == 0) return;
          if (tok::utf8_first_invalid(run) == std::string_view::npos) {
            out.push_back(std::move(run));
          } else {
            std::string r;
            for (std::size_t k = 0; k < run_len; ++k) r += tok::kReplacementChar;
            out.push_back(std::move(r));
          }
          run.clear();
          run_len = 0;
        };
        for (std::string& t : tokens) {
          const int b = byte_token(t);
          if (b >= 0) {
            run.push_back(char(b));
            ++run_len;
          } else {
            flush();
            out.push_back(std::move(t));
          }
        }
        flush();
        tokens.swap(out);
        break;
      }
    }
  }
  return tokens;
}

std::string Tokenizer::decode(std::span<const int32_t> ids, bool skip_special_tokens) const {
  const Impl& im = *impl_;
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  for (int32_t id : ids) {
    const std::string* t = im.token_of(id);
    if (!t || t->empty()) continue;  // outside the vocabulary: skipped, like HF
    if (skip_special_tokens && im.special[std::size_t(id)]) continue;
    tokens.push_back(*t);
  }
  std::string out;
  if (!im.has_decoder) {
    // No decoder: HF joins the tokens with spaces.
    for (std::size_t i = 0; i < tokens.size(); ++i) {
      if (i) out += ' ';
      out += tokens[i];
    }
    return out;
  }
  for (const std::string& t : im.decode_chain(std::move(tokens), 0, im.decoder.size(), 0)) out += t;
  return out;
}

// ---- StreamingDetokenizer ----
// Decoder steps before the first Fuse act per token and run on each token as it arrives; ByteFallback bytes are
// collected until they form complete characters, which then continue through the remaining per-token steps.
// Steps after Fuse see the whole text, so they run on each completed chunk with small stream state
// (leading/trailing Strip, the first-token rule of Metaspace).

StreamingDetokenizer::StreamingDetokenizer(const Tokenizer& tokenizer, bool skip_special_tokens)
    : tok_(tokenizer.impl_.get()), skip_special_(skip_special_tokens) {}

void StreamingDetokenizer::reset() {
  index_ = 0;
  pending_bytes_.clear();
  lead_stripped_ = 0;
  lead_done_ = false;
  held_tail_.clear();
  meta_done_ = false;
}

std::string StreamingDetokenizer::emit(std::string text) {
  const Tokenizer::Impl& im = *tok_;
  for (std::size_t s = im.fuse_pos + 1; s < im.decoder.size(); ++s) {
    const DecStep& st = im.decoder[s];
    if (st.kind == DecStep::Kind::Replace) {
      tok::replace_all(text, st.a, st.b);
    } else if (st.kind == DecStep::Kind::Metaspace) {
      tok::replace_all(text, st.a, " ");
      if (!meta_done_ && !text.empty()) {
        if (st.prepend && text[0] == ' ') text.erase(0, 1);
        meta_done_ = true;
      }
    } else if (st.kind == DecStep::Kind::Strip && !st.a.empty()) {
      const std::string& c = st.a;
      while (!lead_done_ && lead_stripped_ < st.start && text.compare(0, c.size(), c) == 0) {
        text.erase(0, c.size());
        ++lead_stripped_;
      }
      if (!text.empty() || lead_stripped_ >= st.start) lead_done_ = true;
      // Trailing occurrences may end the stream: hold them until more text shows they are not trailing.
      text = held_tail_ + text;
      held_tail_.clear();
      for (std::size_t k = 0; k < st.stop && text.size() >= c.size() &&
                              text.compare(text.size() - c.size(), c.size(), c) == 0;
           ++k) {
        held_tail_ += c;
        text.resize(text.size() - c.size());
      }
    }
    // ByteFallback / Fuse after the first Fuse: nothing left to do on fused text.
  }
  return text;
}

// Runs completed text (a whole token, or characters assembled from bytes) through the per-token steps after
// ByteFallback, then the stream-level steps.
std::string StreamingDetokenizer::finish_piece(std::string text, std::size_t index) {
  const Tokenizer::Impl& im = *tok_;
  if (text.empty()) return text;
  const std::size_t from = im.byte_fallback_pos < im.fuse_pos ? im.byte_fallback_pos + 1 : im.fuse_pos;
  std::vector<std::string> one = im.decode_chain({std::move(text)}, from, im.fuse_pos, index);
  return emit(std::move(one[0]));
}

std::string StreamingDetokenizer::drain_bytes(bool final, std::size_t index) {
  std::string done;
  std::size_t i = 0;
  const std::string& p = pending_bytes_;
  while (i < p.size()) {
    const unsigned c = static_cast<unsigned char>(p[i]);
    const std::size_t need = c < 0x80 ? 1 : c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3
                             : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
    if (need == 0) {
      done += tok::kReplacementChar;
      ++i;
      continue;
    }
    if (i + need <= p.size()) {
      if (tok::utf8_valid_len(p, i) == need) {
        done.append(p, i, need);
        i += need;
      } else {
        done += tok::kReplacementChar;
        ++i;
      }
      continue;
    }
    // Incomplete: wait for more bytes unless what is here already cannot become valid (the second byte has a
    // narrower range after E0, ED, F0 and F4).
    bool ok = true;
    if (i + 1 < p.size()) {
      const unsigned second = static_cast<unsigned char>(p[i + 1]);
      ok = (c != 0xE0 || second >= 0xA0) && (c != 0xED || second <= 0x9F) && (c != 0xF0 || second >= 0x90) &&
           (c != 0xF4 || second <= 0x8F);
    }
    for (std::size_t k = i + 1; k < p.size(); ++k) ok = ok && (static_cast<unsigned char>(p[k]) & 0xC0) == 0x80;
    if (ok && !final) break;
    done += tok::kReplacementChar;
    ++i;
  }
  pending_bytes_.erase(0, i);
  return finish_piece(std::move(done), index);
}

std::string StreamingDetokenizer::put(int32_t id) {
  const Tokenizer::Impl& im = *tok_;
  const std::string* t = im.token_of(id);
  if (!t || t->empty()) return {};
  if (skip_special_ && im.special[std::size_t(id)]) return {};
  const std::size_t index = index_++;
  if (!im.has_decoder) return index ? " " + *t : *t;

  std::vector<std::string> one = im.decode_chain({*t}, 0, std::min(im.byte_fallback_pos, im.fuse_pos), index);
  if (im.byte_fallback_pos < im.fuse_pos) {
    const int b = byte_token(one[0]);
    if (b >= 0) {
      pending_bytes_.push_back(char(b));
      return drain_bytes(false, index);
    }
  }
  // A non-byte token ends any byte run: leftover bytes are invalid.
  std::string out = pending_bytes_.empty() ? std::string() : drain_bytes(true, index);
  out += finish_piece(std::move(one[0]), index);
  return out;
}

std::string StreamingDetokenizer::flush() {
  std::string out = pending_bytes_.empty() ? std::string() : drain_bytes(true, index_);
  reset();  // held trailing Strip characters are dropped: the stream ended on them
  return out;
}

}  // namespace zaya
