// Python's string operations on code points (strip / split / replace / case mapping...) and the two formatting
// languages templates reach: `%`-formatting (the `format` filter and the `%` operator, Markup's escaping variant
// included) and str.format with its format-spec mini-language. Shared by the filters, the str methods and the
// operators.
#include <algorithm>
#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

#include "chat/jinja_builtins_internal.h"
#include "zaya/limits.h"

namespace zaya::jinja::detail {

// ---- string helpers on code points ------------------------------------------------------------------------------
namespace {
bool in_chars(char32_t c, const U32* chars) {
  return chars ? chars->find(c) != U32::npos : py_isspace(c);
}
}  // namespace

std::string py_strip(const std::string& s, const Value* chars, bool left, bool right) {
  U32 set;
  const U32* cs = nullptr;
  if (chars && !chars->is_none()) {
    set = utf8_decode(want_str(*chars, "strip arg"));
    cs = &set;
  }
  U32 u = utf8_decode(s);
  size_t b = 0, e = u.size();
  if (left)
    while (b < e && in_chars(u[b], cs)) ++b;
  if (right)
    while (e > b && in_chars(u[e - 1], cs)) --e;
  return utf8_encode(U32_view(u).substr(b, e - b));
}

namespace {
// A split may not produce more pieces than a list may hold: checked as they are produced.
void grow(size_t n) {
  if (n > limits::kMaxTemplateListItems) check_list_size(n);
}
}  // namespace

std::vector<std::string> py_split(const std::string& s, const Value* sep, int64_t maxsplit, bool from_right) {
  std::vector<std::string> out;
  if (!sep || sep->is_none()) {  // runs of whitespace, no empty strings
    U32 u = utf8_decode(s);
    std::vector<std::pair<size_t, size_t>> words;
    if (!from_right) {
      size_t i = 0;
      while (i < u.size()) {
        while (i < u.size() && py_isspace(u[i])) ++i;
        if (i >= u.size()) break;
        if (maxsplit >= 0 && int64_t(words.size()) == maxsplit) {
          words.emplace_back(i, u.size());  // the unsplit rest keeps its trailing whitespace
          grow(words.size());
          break;
        }
        size_t j = i;
        while (j < u.size() && !py_isspace(u[j])) ++j;
        words.emplace_back(i, j);
        grow(words.size());
        i = j;
      }
    } else {
      size_t i = u.size();
      while (i > 0) {
        while (i > 0 && py_isspace(u[i - 1])) --i;
        if (i == 0) break;
        if (maxsplit >= 0 && int64_t(words.size()) == maxsplit) {
          words.emplace_back(0, i);
          grow(words.size());
          break;
        }
        size_t j = i;
        while (j > 0 && !py_isspace(u[j - 1])) --j;
        words.emplace_back(j, i);
        grow(words.size());
        i = j;
      }
      std::reverse(words.begin(), words.end());
    }
    for (auto [b, e] : words) out.push_back(utf8_encode(U32_view(u).substr(b, e - b)));
    return out;
  }
  const std::string& d = want_str(*sep, "separator");
  if (d.empty()) throw Error("empty separator");
  if (!from_right) {
    size_t pos = 0;
    while (true) {
      size_t k = (maxsplit >= 0 && int64_t(out.size()) >= maxsplit) ? std::string::npos : s.find(d, pos);
      if (k == std::string::npos) {
        out.push_back(s.substr(pos));
        grow(out.size());
        break;
      }
      out.push_back(s.substr(pos, k - pos));
      grow(out.size());
      pos = k + d.size();
    }
  } else {
    size_t end = s.size();
    while (true) {
      size_t k = std::string::npos;
      if (!(maxsplit >= 0 && int64_t(out.size()) >= maxsplit) && end >= d.size()) k = s.rfind(d, end - d.size());
      if (k == std::string::npos) {
        out.push_back(s.substr(0, end));
        grow(out.size());
        break;
      }
      out.push_back(s.substr(k + d.size(), end - k - d.size()));
      grow(out.size());
      end = k;
    }
    std::reverse(out.begin(), out.end());
  }
  return out;
}

namespace {
bool is_line_break(char32_t c) {
  return c == '\n' || c == '\r' || c == 0x0B || c == 0x0C || c == 0x1C || c == 0x1D || c == 0x1E || c == 0x85 ||
         c == 0x2028 || c == 0x2029;
}
}  // namespace

std::vector<std::string> py_splitlines(const std::string& s, bool keepends) {
  U32 u = utf8_decode(s);
  std::vector<std::string> out;
  size_t i = 0, start = 0;
  while (i < u.size()) {
    if (!is_line_break(u[i])) {
      ++i;
      continue;
    }
    size_t eol = i + ((u[i] == '\r' && i + 1 < u.size() && u[i + 1] == '\n') ? 2 : 1);
    out.push_back(utf8_encode(U32_view(u).substr(start, (keepends ? eol : i) - start)));
    grow(out.size());
    start = i = eol;
  }
  if (start < u.size()) out.push_back(utf8_encode(U32_view(u).substr(start)));
  return out;
}

std::string py_replace(const std::string& s, const std::string& old, const std::string& rep, int64_t count) {
  std::string out;
  if (old.empty()) {  // Python inserts `rep` around every code point
    U32 u = utf8_decode(s);
    int64_t n = 0;
    for (size_t i = 0; i <= u.size(); ++i) {
      if (count < 0 || n < count) {
        out += rep;
        ++n;
      }
      if (i < u.size()) utf8_append(out, u[i]);
      check_growing(out);
    }
    return out;
  }
  size_t pos = 0;
  int64_t n = 0;
  while (count < 0 || n < count) {
    size_t k = s.find(old, pos);
    if (k == std::string::npos) break;
    out.append(s, pos, k - pos);
    out += rep;
    check_growing(out);
    pos = k + old.size();
    ++n;
  }
  out.append(s, pos, std::string::npos);
  return out;
}

std::string py_capitalize(const std::string& s) {
  U32 u = utf8_decode(s);
  std::string out;
  for (size_t i = 0; i < u.size(); ++i) {
    if (i == 0) {
      if (u[i] == 0xDF) out += "Ss";
      else utf8_append(out, py_upper(u[i]));
    } else {
      utf8_append(out, py_lower(u[i]));
    }
  }
  return out;
}

// str.title(): a cased character after an uncased one starts a word.
std::string py_title(const std::string& s) {
  std::string out;
  bool prev_cased = false;
  for (char32_t c : utf8_decode(s)) {
    bool cased = py_iscased(c);
    if (cased) utf8_append(out, prev_cased ? py_lower(c) : py_upper(c));
    else utf8_append(out, c);
    prev_cased = cased;
  }
  return out;
}

// Jinja's `title` filter: words start after runs of whitespace, '-', '(', '{', '[' or '<'.
std::string jinja_title(const std::string& s) {
  std::string out;
  bool start = true;
  for (char32_t c : utf8_decode(s)) {
    bool delim = py_isspace(c) || c == '-' || c == '(' || c == '{' || c == '[' || c == '<';
    if (delim) {
      utf8_append(out, c);
      start = true;
    } else {
      utf8_append(out, start ? py_upper(c) : py_lower(c));
      start = false;
    }
  }
  return out;
}

bool py_islower(const std::string& s, bool upper) {
  bool any = false;
  for (char32_t c : utf8_decode(s)) {
    if (!py_iscased(c)) continue;
    if (upper ? py_lower(c) == c && py_upper(c) != c : py_upper(c) == c && py_lower(c) != c) return false;
    any = true;
  }
  return any;
}

// Python slice index normalization for a sequence of length n.
void slice_bounds(int64_t n, const Value& start, const Value& stop, int64_t step, int64_t* b, int64_t* e) {
  auto norm = [&](const Value& v, int64_t def) {
    if (v.is_none()) return def;
    int64_t i = v.as_int();
    if (i < 0) {
      i += n;
      if (i < 0) i = step < 0 ? -1 : 0;
    } else if (i >= n) {
      i = step < 0 ? n - 1 : n;
    }
    return i;
  };
  *b = norm(start, step < 0 ? n - 1 : 0);
  *e = norm(stop, step < 0 ? -1 : n);
}

// ---- Python %-formatting and str.format -------------------------------------------------------------------------
std::string pad(const std::string& s, int64_t width, char align, char32_t fill) {
  check_width(width);
  int64_t len = int64_t(utf8_length(s));
  if (width <= len) return s;
  int64_t n = width - len;
  std::string f;
  utf8_append(f, fill);
  auto rep = [&](int64_t k) {
    std::string r;
    for (int64_t i = 0; i < k; ++i) r += f;
    return r;
  };
  if (align == '<') return s + rep(n);
  if (align == '^') return rep(n / 2) + s + rep(n - n / 2);
  return rep(n) + s;
}

namespace {
// width * 10 + d, saturating far above any limit instead of overflowing.
int64_t digit(int64_t v, char d) { return v > (int64_t{1} << 40) ? v : v * 10 + (d - '0'); }

std::string format_number(const Value& v, char type, int64_t prec, bool alt, char sign) {
  char spec[32];
  char buf[512];
  std::string flags;
  if (alt) flags += '#';
  if (sign == '+' || sign == ' ') flags += sign;
  if (type == 'd' || type == 'i' || type == 'u' || type == 'x' || type == 'X' || type == 'o') {
    if (!v.is_number()) throw Error(cat("%", std::string(1, type), " format: a real number is required, not ", type_name(v)));
    int64_t i = v.is_float() ? float_to_int(v.as_double()) : v.as_int();
    char t = (type == 'i' || type == 'u') ? 'd' : type;
    std::snprintf(spec, sizeof spec, "%%%sll%c", flags.c_str(), t);
    std::snprintf(buf, sizeof buf, spec, (long long)i);
    std::string out = buf;
    if (alt && type == 'o' && out.find("0o") == std::string::npos) {  // C writes 017, Python 0o17
      size_t z = out.find('0');
      if (z != std::string::npos) out.insert(z + 1, 1, 'o');
    }
    return out;
  }
  if (!v.is_number()) throw Error(cat("must be real number, not ", type_name(v)));
  // Only the float conversions reach snprintf with a double (a format spec's type letter comes from the template:
  // '{:s}' or '{:p}' would make snprintf read a pointer that is not there).
  if (std::string_view("eEfFgG").find(type) == std::string_view::npos)
    throw Error(cat("Unknown format code '", std::string(1, type), "' for object of type '", type_name(v), "'"));
  std::snprintf(spec, sizeof spec, "%%%s.%lld%c", flags.c_str(), (long long)(prec < 0 ? 6 : prec), type);
  const int n = std::snprintf(buf, sizeof buf, spec, v.as_double());
  if (n >= 0 && size_t(n) >= sizeof buf) {  // a long precision: the exact length, bounded by check_width(prec)
    std::string big(size_t(n) + 1, '\0');
    std::snprintf(big.data(), big.size(), spec, v.as_double());
    big.resize(size_t(n));
    return big;
  }
  return buf;
}
}  // namespace

std::string percent_format(const std::string& fmt, const Value& args, bool escape_args) {
  std::vector<Value> pos;
  const DictData* mapping = nullptr;
  if (args.is_list() && args.lst().tuple) pos = args.lst().items;
  else if (args.is_dict()) mapping = &args.dct();
  else pos.push_back(args);
  size_t next = 0;
  std::string out;
  auto take = [&]() -> Value {
    if (next >= pos.size()) throw Error("not enough arguments for format string");
    return pos[next++];
  };
  for (size_t i = 0; i < fmt.size(); ++i) {
    if (fmt[i] != '%') {
      out += fmt[i];
      continue;
    }
    if (++i >= fmt.size()) throw Error("incomplete format");
    Value arg;
    bool have = false;
    if (fmt[i] == '(') {
      size_t close = fmt.find(')', i);
      if (close == std::string::npos || !mapping) throw Error("format requires a mapping");
      const Value* v = mapping->find(std::string_view(fmt).substr(i + 1, close - i - 1));
      if (!v) throw Error(cat("KeyError: '", fmt.substr(i + 1, close - i - 1), "'"));
      arg = *v;
      have = true;
      i = close + 1;
    }
    bool left = false, zero = false, alt = false;
    char sign = 0;
    for (; i < fmt.size() && std::string_view("-0#+ ").find(fmt[i]) != std::string_view::npos; ++i) {
      if (fmt[i] == '-') left = true;
      else if (fmt[i] == '0') zero = true;
      else if (fmt[i] == '#') alt = true;
      else sign = (sign == '+') ? '+' : fmt[i];
    }
    int64_t width = 0, prec = -1;
    if (i < fmt.size() && fmt[i] == '*') {
      width = want_int(take(), "* width");
      ++i;
    }
    while (i < fmt.size() && fmt[i] >= '0' && fmt[i] <= '9') width = digit(width, fmt[i++]);
    if (i < fmt.size() && fmt[i] == '.') {
      prec = 0;
      ++i;
      while (i < fmt.size() && fmt[i] >= '0' && fmt[i] <= '9') prec = digit(prec, fmt[i++]);
    }
    check_width(width);
    check_width(prec);
    if (i >= fmt.size()) throw Error("incomplete format");
    char t = fmt[i];
    if (t == '%') {
      out += '%';
      continue;
    }
    if (!have) arg = take();
    std::string piece;
    if (t == 's' || t == 'r' || t == 'a') {
      piece = t == 's' ? to_str(arg) : repr(arg);
      if (escape_args && !(arg.is_string() && arg.markup)) piece = html_escape(piece);
      if (prec >= 0) {
        U32 u = utf8_decode(piece);
        if (int64_t(u.size()) > prec) piece = utf8_encode(U32_view(u).substr(0, size_t(prec)));
      }
    } else if (t == 'c') {
      if (arg.is_string()) piece = arg.str();
      else {
        const int64_t cp = want_int(arg, "%c");
        if (cp < 0 || cp > 0x10FFFF) throw Error("%c arg not in range(0x110000)");
        utf8_append(piece, char32_t(cp));
      }
    } else if (std::string_view("diuxXoeEfFgG").find(t) != std::string_view::npos) {
      piece = format_number(arg, t, prec, alt, sign);
      if (zero && !left && int64_t(piece.size()) < width) {
        size_t signs = (!piece.empty() && (piece[0] == '-' || piece[0] == '+' || piece[0] == ' ')) ? 1 : 0;
        piece.insert(signs, size_t(width) - piece.size(), '0');
      }
    } else {
      throw Error(cat("unsupported format character '", std::string(1, t), "'"));
    }
    out += pad(piece, width, left ? '<' : '>', ' ');
    check_growing(out);
  }
  // Python skips the leftover check when the single argument looks like a mapping (dicts, lists).
  if (next < pos.size() && !mapping && !(args.is_list() && !args.lst().tuple) && !args.is_undefined())
    throw Error("not all arguments converted during string formatting");
  return out;
}

namespace {
// format() spec mini-language: [[fill]align][sign][#][0][width][,][.precision][type]
std::string apply_spec(const Value& v, const std::string& spec) {
  if (spec.empty()) return to_str(v);
  U32 u = utf8_decode(spec);
  size_t i = 0;
  char32_t fill = ' ';
  char align = 0;
  auto is_align = [](char32_t c) { return c == '<' || c == '>' || c == '^' || c == '='; };
  if (u.size() >= 2 && is_align(u[1])) {
    fill = u[0];
    align = char(u[1]);
    i = 2;
  } else if (!u.empty() && is_align(u[0])) {
    align = char(u[0]);
    i = 1;
  }
  char sign = 0;
  if (i < u.size() && (u[i] == '+' || u[i] == '-' || u[i] == ' ')) sign = char(u[i++]);
  bool alt = false;
  if (i < u.size() && u[i] == '#') {
    alt = true;
    ++i;
  }
  bool zero = false;
  if (i < u.size() && u[i] == '0') {
    zero = true;
    ++i;
  }
  int64_t width = 0, prec = -1;
  while (i < u.size() && u[i] >= '0' && u[i] <= '9') width = digit(width, char(u[i++]));
  bool comma = false;
  if (i < u.size() && (u[i] == ',' || u[i] == '_')) {
    comma = true;
    ++i;
  }
  if (i < u.size() && u[i] == '.') {
    prec = 0;
    ++i;
    while (i < u.size() && u[i] >= '0' && u[i] <= '9') prec = digit(prec, char(u[i++]));
  }
  check_width(width);
  check_width(prec);
  char type = i < u.size() ? char(u[i]) : 0;
  std::string body;
  if (v.is_string() || (type == 's')) {
    body = to_str(v);
    if (prec >= 0) {
      U32 b = utf8_decode(body);
      if (int64_t(b.size()) > prec) body = utf8_encode(U32_view(b).substr(0, size_t(prec)));
    }
    return pad(body, width, align ? align : '<', fill);
  }
  if (!v.is_number()) return pad(to_str(v), width, align ? align : '<', fill);
  if (type == 0 && prec >= 0) type = 'g';
  if (type == '%') {
    body = format_number(Value::number(v.as_double() * 100), 'f', prec, alt, sign) + "%";
  } else if (type == 0 || type == 'd' || type == 'n') {
    body = v.is_float() && type == 0 ? py_float_repr(v.as_double()) : format_number(v, 'd', -1, alt, sign);
    if (type == 0 && v.is_float() && sign == '+' && v.as_double() >= 0) body = "+" + body;
  } else if (type == 'b') {
    int64_t n = v.as_int();
    std::string bits;
    uint64_t m = n < 0 ? uint64_t(0) - uint64_t(n) : uint64_t(n);
    do {
      bits.insert(bits.begin(), char('0' + (m & 1)));
      m >>= 1;
    } while (m);
    body = std::string(n < 0 ? "-" : "") + (alt ? "0b" : "") + bits;
  } else {
    body = format_number(v, type, prec, alt, sign);
  }
  if (comma) {
    size_t b = (body[0] == '-' || body[0] == '+') ? 1 : 0;
    size_t e = body.find_first_not_of("0123456789", b);
    if (e == std::string::npos) e = body.size();
    for (int64_t k = int64_t(e) - 3; k > int64_t(b); k -= 3) body.insert(size_t(k), 1, ',');
  }
  if (zero && !align) {
    size_t b = (!body.empty() && (body[0] == '-' || body[0] == '+' || body[0] == ' ')) ? 1 : 0;
    if (int64_t(body.size()) < width) body.insert(b, size_t(width) - body.size(), '0');
    return body;
  }
  return pad(body, width, align ? align : '>', fill);
}
}  // namespace

std::string str_format(Renderer& r, const std::string& fmt, const CallArgs& args) {
  std::string out;
  size_t auto_idx = 0;
  for (size_t i = 0; i < fmt.size(); ++i) {
    char c = fmt[i];
    if (c == '}') {
      if (i + 1 < fmt.size() && fmt[i + 1] == '}') ++i;
      else throw Error("Single '}' encountered in format string");
      out += '}';
      continue;
    }
    if (c != '{') {
      out += c;
      continue;
    }
    if (i + 1 < fmt.size() && fmt[i + 1] == '{') {
      out += '{';
      ++i;
      continue;
    }
    size_t close = fmt.find('}', i);
    if (close == std::string::npos) throw Error("Single '{' encountered in format string");
    std::string field = fmt.substr(i + 1, close - i - 1);
    i = close;
    std::string spec;
    char conv = 0;
    if (size_t colon = field.find(':'); colon != std::string::npos) {
      spec = field.substr(colon + 1);
      field.resize(colon);
    }
    if (size_t bang = field.find('!'); bang != std::string::npos) {
      conv = bang + 1 < field.size() ? field[bang + 1] : 0;
      field.resize(bang);
    }
    size_t path = field.find_first_of(".[");
    std::string head = field.substr(0, path);
    Value v;
    if (head.empty()) {
      if (auto_idx >= args.pos.size()) throw Error("Replacement index out of range for positional args tuple");
      v = args.pos[auto_idx++];
    } else if (std::all_of(head.begin(), head.end(), [](char d) { return d >= '0' && d <= '9'; })) {
      if (head.size() > 18) throw Error("Replacement index out of range for positional args tuple");
      size_t k = size_t(std::stoull(head));
      if (k >= args.pos.size()) throw Error("Replacement index out of range for positional args tuple");
      v = args.pos[k];
    } else {
      bool found = false;
      for (const auto& [key, val] : args.kw)
        if (key == head) {
          v = val;
          found = true;
        }
      if (!found) throw Error(cat("KeyError: '", head, "'"));
    }
    while (path != std::string::npos && path < field.size()) {
      if (field[path] == '.') {
        size_t e = field.find_first_of(".[", path + 1);
        v = r.getattr(v, field.substr(path + 1, e == std::string::npos ? std::string::npos : e - path - 1));
        path = e;
      } else {
        size_t e = field.find(']', path);
        if (e == std::string::npos) throw Error("Missing ']' in format string");
        std::string key = field.substr(path + 1, e - path - 1);
        bool digits = !key.empty() && std::all_of(key.begin(), key.end(), [](char d) { return d >= '0' && d <= '9'; });
        if (digits && key.size() > 18) throw Error(cat("IndexError: index ", key, " out of range"));
        v = r.getitem(v, digits ? Value::integer(std::stoll(key)) : Value::string(key));
        path = e + 1;
      }
    }
    if (conv == 'r' || conv == 'a') v = Value::string(repr(v));
    else if (conv == 's') v = Value::string(to_str(v));
    out += apply_spec(v, spec);
    check_growing(out);
  }
  return out;
}

}  // namespace zaya::jinja::detail
