#include "chat/jinja_lexer.h"

#include <cstdlib>

#include "chat/jinja_value.h"
#include "zaya/jinja.h"

namespace zaya::jinja::detail {
namespace {

// Decodes one code point at s[i] (for the Unicode whitespace checks Jinja's \s and str.strip use).
char32_t cp_at(std::string_view s, size_t i, size_t* len) {
  std::u32string one = utf8_decode(s.substr(i, std::min<size_t>(4, s.size() - i)));
  char32_t c = one.empty() ? 0 : one[0];
  std::string enc;
  utf8_append(enc, c);
  *len = enc.size();
  return c;
}

size_t skip_space(std::string_view s, size_t i) {
  while (i < s.size()) {
    size_t len;
    if (!py_isspace(cp_at(s, i, &len))) break;
    i += len;
  }
  return i;
}

// Python str.rstrip(): drop trailing Unicode whitespace.
std::string_view rstrip_space(std::string_view s) {
  std::u32string cps = utf8_decode(s);
  size_t keep = cps.size();
  while (keep > 0 && py_isspace(cps[keep - 1])) --keep;
  size_t bytes = 0;
  for (size_t i = 0; i < keep; ++i) {
    std::string enc;
    utf8_append(enc, cps[i]);
    bytes += enc.size();
  }
  return s.substr(0, bytes);
}

bool all_space(std::string_view s) {
  for (char32_t c : utf8_decode(s))
    if (!py_isspace(c)) return false;
  return true;
}

bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_name_start(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (unsigned char)c >= 0x80; }
bool is_name_char(char c) { return is_name_start(c) || is_digit(c); }
bool is_hex(char c) { return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }

class Lexer {
 public:
  Lexer(std::string_view raw, SourceMap& map) : map_(map) {
    // Jinja splits on \r\n, \r, \n, rejoins with \n and drops one trailing newline (keep_trailing_newline=False).
    std::string norm;
    norm.reserve(raw.size());
    for (size_t i = 0; i < raw.size(); ++i) {
      if (raw[i] == '\r') {
        norm += '\n';
        if (i + 1 < raw.size() && raw[i + 1] == '\n') ++i;
      } else {
        norm += raw[i];
      }
    }
    if (!norm.empty() && norm.back() == '\n') norm.pop_back();
    map_.src = std::move(norm);
    map_.line_starts.assign(1, 0);
    for (size_t i = 0; i < map_.src.size(); ++i)
      if (map_.src[i] == '\n') map_.line_starts.push_back(i + 1);
  }

  std::vector<Token> run() {
    std::string_view s = src_;
    size_t pos = 0;
    bool line_starting = true;
    while (pos < s.size()) {
      size_t k = find_tag(pos);
      if (k == std::string_view::npos) {
        emit(Tok::Data, std::string(s.substr(pos)), pos);
        break;
      }
      char kind = s[k + 1];
      size_t after = k + 2;
      char sign = (after < s.size() && (s[after] == '-' || s[after] == '+')) ? s[after] : 0;
      size_t raw_body = 0;
      bool is_raw = kind == '%' && match_raw_begin(after, &raw_body);
      std::string_view text = s.substr(pos, k - pos);
      text = strip_before(text, sign, kind != '{', line_starting);
      if (!text.empty()) emit(Tok::Data, std::string(text), pos);

      if (is_raw) {
        pos = lex_raw(raw_body);
      } else if (kind == '#') {
        pos = lex_comment(k, after + (sign ? 1 : 0));
      } else {
        pos = lex_tag(k, after + (sign ? 1 : 0), kind == '%');
      }
      line_starting = pos > 0 && s[pos - 1] == '\n';
    }
    emit(Tok::Eof, "", s.size());
    return std::move(toks_);
  }

 private:
  SourceMap& map_;
  const std::string& src_ = map_.src;
  std::vector<Token> toks_;

  [[noreturn]] void fail(const std::string& msg, size_t off) const { map_.fail(msg, off); }

  Token& emit(Tok t, std::string text, size_t off) {
    Token tok;
    tok.type = t;
    tok.text = std::move(text);
    tok.off = off;
    toks_.push_back(std::move(tok));
    return toks_.back();
  }

  size_t find_tag(size_t from) const {
    for (size_t i = src_.find('{', from); i != std::string::npos; i = src_.find('{', i + 1))
      if (i + 1 < src_.size() && (src_[i + 1] == '{' || src_[i + 1] == '%' || src_[i + 1] == '#')) return i;
    return std::string::npos;
  }

  // Whitespace control for the text before a tag: '-' strips all whitespace; otherwise lstrip_blocks removes
  // spaces/tabs between the line start and a block or comment tag (not a {{ }} tag), unless '+' is given.
  static std::string_view strip_before(std::string_view text, char sign, bool lstrip, bool line_starting) {
    if (sign == '-') return rstrip_space(text);
    if (sign == '+' || !lstrip) return text;
    size_t nl = text.rfind('\n');
    size_t l_pos = nl == std::string_view::npos ? 0 : nl + 1;
    if ((l_pos > 0 || line_starting) && l_pos < text.size() && all_space(text.substr(l_pos))) return text.substr(0, l_pos);
    return text;
  }

  // Block end after `p`: "-%}" + whitespace, "+%}", or "%}" + one optional newline (trim_blocks). Returns the
  // position after it, or npos.
  size_t match_block_end(size_t p) const {
    std::string_view s = src_;
    if (s.compare(p, 3, "-%}") == 0) return skip_space(s, p + 3);
    if (s.compare(p, 3, "+%}") == 0) return p + 3;
    if (s.compare(p, 2, "%}") == 0) return (p + 2 < s.size() && s[p + 2] == '\n') ? p + 3 : p + 2;
    return std::string::npos;
  }

  // {%(-|+|)\s*raw\s*(-%}\s*|%}) — note: no trim_blocks newline removal after the raw opener.
  bool match_raw_begin(size_t p, size_t* body) const {
    std::string_view s = src_;
    if (p < s.size() && (s[p] == '-' || s[p] == '+')) ++p;
    p = skip_space(s, p);
    if (s.compare(p, 3, "raw") != 0) return false;
    p = skip_space(s, p + 3);
    if (s.compare(p, 3, "-%}") == 0) {
      *body = skip_space(s, p + 3);
      return true;
    }
    if (s.compare(p, 2, "%}") == 0) {
      *body = p + 2;
      return true;
    }
    return false;
  }

  size_t lex_raw(size_t body) {
    std::string_view s = src_;
    for (size_t m = s.find("{%", body); m != std::string::npos; m = s.find("{%", m + 1)) {
      size_t p = m + 2;
      char sign = (p < s.size() && (s[p] == '-' || s[p] == '+')) ? s[p] : 0;
      if (sign) ++p;
      p = skip_space(s, p);
      if (s.compare(p, 6, "endraw") != 0) continue;
      size_t end = match_block_end(skip_space(s, p + 6));
      if (end == std::string::npos) continue;
      bool line_starting = body > 0 && s[body - 1] == '\n';
      std::string_view text = strip_before(s.substr(body, m - body), sign, true, line_starting);
      if (!text.empty()) emit(Tok::Data, std::string(text), body);
      return end;
    }
    fail("Missing end of raw directive", body);
  }

  size_t lex_comment(size_t start, size_t body) {
    std::string_view s = src_;
    if (body >= s.size()) return body;  // Jinja stops lexing at end of input before checking an opened comment
    size_t e = s.find("#}", body);
    if (e == std::string::npos) fail("Missing end of comment tag", start);
    if (e > body && s[e - 1] == '-') return skip_space(s, e + 2);
    if (e > body && s[e - 1] == '+') return e + 2;
    return (e + 2 < s.size() && s[e + 2] == '\n') ? e + 3 : e + 2;
  }

  size_t lex_tag(size_t start, size_t p, bool block) {
    std::string_view s = src_;
    emit(block ? Tok::BlockBegin : Tok::VarBegin, block ? "{%" : "{{", start);
    std::vector<char> stack;  // open brackets: end delimiters only count when balanced
    while (true) {
      p = skip_space(s, p);
      if (p >= s.size()) fail(block ? "unexpected end of template, expected '%}'" : "unexpected end of template, expected '}}'", start);
      if (stack.empty()) {
        if (block) {
          size_t end = match_block_end(p);
          if (end != std::string::npos) {
            emit(Tok::BlockEnd, "%}", p);
            return end;
          }
        } else {
          if (s.compare(p, 3, "-}}") == 0) {
            emit(Tok::VarEnd, "}}", p);
            return skip_space(s, p + 3);
          }
          if (s.compare(p, 2, "}}") == 0) {
            emit(Tok::VarEnd, "}}", p);
            return p + 2;
          }
        }
      }
      char c = s[p];
      if (is_digit(c)) {
        p = lex_number(p);
      } else if (is_name_start(c) && name_cp_ok(p)) {
        size_t q = p;
        while (q < s.size() && is_name_char(s[q]) && name_cp_ok(q)) q += name_cp_len(q);
        emit(Tok::Name, std::string(s.substr(p, q - p)), p);
        p = q;
      } else if (c == '\'' || c == '"') {
        p = lex_string(p);
      } else {
        static const char* two[] = {"//", "**", "==", "!=", ">=", "<="};
        std::string op;
        for (const char* t : two)
          if (s.compare(p, 2, t) == 0) op = t;
        if (op.empty()) {
          if (std::string_view("+-/*%~[](){}><=.:|,;").find(c) == std::string_view::npos)
            fail(cat("unexpected char '", std::string(1, c), "'"), p);
          op = std::string(1, c);
        }
        if (op == "(" || op == "[" || op == "{") {
          stack.push_back(op == "(" ? ')' : op == "[" ? ']' : '}');
        } else if (op == ")" || op == "]" || op == "}") {
          if (stack.empty()) fail(cat("unexpected '", op, "'"), p);
          if (stack.back() != op[0]) fail(cat("unexpected '", op, "', expected '", std::string(1, stack.back()), "'"), p);
          stack.pop_back();
        }
        emit(Tok::Op, op, p);
        p += op.size();
      }
    }
  }

  static size_t digits_run(std::string_view s, size_t p) {  // (\d+_)*\d+
    size_t q = p;
    while (q < s.size() && (is_digit(s[q]) || (s[q] == '_' && q + 1 < s.size() && is_digit(s[q + 1]) && q > p))) ++q;
    return q;
  }

  // Non-ASCII identifier characters: letters of any script, not symbols such as emoji.
  bool name_cp_ok(size_t p) const {
    if ((unsigned char)src_[p] < 0x80) return true;
    size_t len;
    return py_isalnum(cp_at(src_, p, &len));
  }
  size_t name_cp_len(size_t p) const {
    if ((unsigned char)src_[p] < 0x80) return 1;
    size_t len;
    cp_at(src_, p, &len);
    return len;
  }

  size_t lex_number(size_t p) {
    std::string_view s = src_;
    auto clean = [](std::string_view t) {
      std::string out;
      for (char ch : t)
        if (ch != '_') out += ch;
      return out;
    };
    // Float: digits then .digits and/or exponent; not directly after '.' (so `x.0.1` is two subscripts).
    bool after_dot = p > 0 && s[p - 1] == '.';
    size_t q = digits_run(s, p);
    if (!after_dot) {
      size_t f = q;
      bool frac = false;
      if (f + 1 < s.size() && s[f] == '.' && is_digit(s[f + 1])) {
        f = digits_run(s, f + 1);
        frac = true;
      }
      size_t e = f;
      bool expo = false;
      if (e < s.size() && (s[e] == 'e' || s[e] == 'E')) {
        size_t x = e + 1;
        if (x < s.size() && (s[x] == '+' || s[x] == '-')) ++x;
        if (x < s.size() && is_digit(s[x])) {
          e = digits_run(s, x);
          expo = true;
        }
      }
      if (frac || expo) {
        size_t end = expo ? e : f;
        Token& t = emit(Tok::Float, std::string(s.substr(p, end - p)), p);
        t.fval = std::strtod(clean(t.text).c_str(), nullptr);
        return end;
      }
    }
    // Integer: 0b / 0o / 0x prefixes or decimal.
    if (s[p] == '0' && p + 2 < s.size() && (s[p + 1] == 'x' || s[p + 1] == 'X' || s[p + 1] == 'o' || s[p + 1] == 'O' ||
                                           s[p + 1] == 'b' || s[p + 1] == 'B')) {
      char kind = char(s[p + 1] | 0x20);
      int base = kind == 'x' ? 16 : kind == 'o' ? 8 : 2;
      size_t r = p + 2;
      std::string digits;
      while (r < s.size()) {
        char ch = s[r];
        bool ok = base == 16 ? is_hex(ch) : base == 8 ? (ch >= '0' && ch <= '7') : (ch == '0' || ch == '1');
        if (ok) digits += ch;
        else if (ch != '_') break;
        ++r;
      }
      if (!digits.empty()) {
        Token& t = emit(Tok::Int, std::string(s.substr(p, r - p)), p);
        t.ival = int64_t(std::strtoull(digits.c_str(), nullptr, base));
        return r;
      }
    }
    Token& t = emit(Tok::Int, std::string(s.substr(p, q - p)), p);
    t.ival = int64_t(std::strtoull(clean(t.text).c_str(), nullptr, 10));
    return q;
  }

  // String literal with Python unicode-escape decoding (what Jinja applies to literals).
  size_t lex_string(size_t p) {
    std::string_view s = src_;
    char q = s[p];
    size_t i = p + 1;
    std::string out;
    while (true) {
      if (i >= s.size()) fail("unexpected end of string literal", p);
      char c = s[i];
      if (c == q) break;
      if (c != '\\') {
        out += c;
        ++i;
        continue;
      }
      if (i + 1 >= s.size()) fail("unexpected end of string literal", p);
      char e = s[i + 1];
      i += 2;
      auto hex = [&](int n) -> bool {
        if (i + n > s.size()) return false;
        for (int k = 0; k < n; ++k)
          if (!is_hex(s[i + k])) return false;
        utf8_append(out, char32_t(std::strtoul(std::string(s.substr(i, n)).c_str(), nullptr, 16)));
        i += n;
        return true;
      };
      switch (e) {
        case '\n': break;
        case '\\': out += '\\'; break;
        case '\'': out += '\''; break;
        case '"': out += '"'; break;
        case 'a': out += '\a'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'v': out += '\v'; break;
        case 'x': if (!hex(2)) fail("truncated \\xXX escape in string literal", p); break;
        case 'u': if (!hex(4)) fail("truncated \\uXXXX escape in string literal", p); break;
        case 'U': if (!hex(8)) fail("truncated \\UXXXXXXXX escape in string literal", p); break;
        default:
          if (e >= '0' && e <= '7') {
            unsigned v = unsigned(e - '0');
            for (int k = 0; k < 2 && i < s.size() && s[i] >= '0' && s[i] <= '7'; ++k) v = v * 8 + unsigned(s[i++] - '0');
            utf8_append(out, char32_t(v));
          } else {
            out += '\\';  // unknown escapes are kept verbatim, as in Python
            out += e;
          }
      }
    }
    emit(Tok::String, std::move(out), p);
    return i + 1;
  }
};

}  // namespace

void SourceMap::locate(size_t off, int* line, int* col) const {
  size_t lo = 0, hi = line_starts.size();
  while (hi - lo > 1) {
    size_t mid = (lo + hi) / 2;
    if (line_starts[mid] <= off) lo = mid;
    else hi = mid;
  }
  *line = int(lo) + 1;
  int c = 1;  // columns count code points
  for (size_t i = line_starts[lo]; i < off && i < src.size(); ++i)
    if (((unsigned char)src[i] & 0xC0) != 0x80) ++c;
  *col = c;
}

void SourceMap::fail(const std::string& msg, size_t off) const {
  int line, col;
  locate(off, &line, &col);
  throw TemplateError(msg, line, col);
}

std::vector<Token> tokenize(std::string_view source, SourceMap& map) { return Lexer(source, map).run(); }

}  // namespace zaya::jinja::detail
