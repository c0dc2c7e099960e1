// Jinja2 filters, tests and globals plus the Python string/dict/list methods templates call, with the
// semantics of Jinja 3.1 under Hugging Face's sandboxed environment.
#include <algorithm>
#include <cctype>
#include <cerrno>
#include <optional>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <map>

#include "chat/jinja_eval.h"

namespace zaya::jinja::detail {
namespace {

// ---- argument helpers ---------------------------------------------------------------------------------------------
int64_t want_int(const Value& v, const char* what) {
  if (v.is_int() || v.is_bool()) return v.as_int();
  throw Error(cat(what, " must be an integer, not '", type_name(v), "'"));
}

const std::string& want_str(const Value& v, const char* what) {
  if (!v.is_string()) throw Error(cat(what, " must be a string, not '", type_name(v), "'"));
  return v.str();
}

void check_defined(const Value& v) {
  if (v.is_undefined()) throw Error(v.undefined_hint().empty() ? "value is undefined" : v.undefined_hint());
}

// ---- string helpers on code points ------------------------------------------------------------------------------
using U32 = std::u32string;
using U32_view = std::u32string_view;

bool in_chars(char32_t c, const U32* chars) {
  return chars ? chars->find(c) != U32::npos : py_isspace(c);
}

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
          break;
        }
        size_t j = i;
        while (j < u.size() && !py_isspace(u[j])) ++j;
        words.emplace_back(i, j);
        i = j;
      }
    } else {
      size_t i = u.size();
      while (i > 0) {
        while (i > 0 && py_isspace(u[i - 1])) --i;
        if (i == 0) break;
        if (maxsplit >= 0 && int64_t(words.size()) == maxsplit) {
          words.emplace_back(0, i);
          break;
        }
        size_t j = i;
        while (j > 0 && !py_isspace(u[j - 1])) --j;
        words.emplace_back(j, i);
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
        break;
      }
      out.push_back(s.substr(pos, k - pos));
      pos = k + d.size();
    }
  } else {
    size_t end = s.size();
    while (true) {
      size_t k = std::string::npos;
      if (!(maxsplit >= 0 && int64_t(out.size()) >= maxsplit) && end >= d.size()) k = s.rfind(d, end - d.size());
      if (k == std::string::npos) {
        out.push_back(s.substr(0, end));
        break;
      }
      out.push_back(s.substr(k + d.size(), end - k - d.size()));
      end = k;
    }
    std::reverse(out.begin(), out.end());
  }
  return out;
}

bool is_line_break(char32_t c) {
  return c == '\n' || c == '\r' || c == 0x0B || c == 0x0C || c == 0x1C || c == 0x1D || c == 0x1E || c == 0x85 ||
         c == 0x2028 || c == 0x2029;
}

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
  auto norm = [&](const Value& v, int64_t def, bool is_start) {
    if (v.is_none()) return def;
    int64_t i = v.as_int();
    if (i < 0) {
      i += n;
      if (i < 0) i = step < 0 ? -1 : 0;
    } else if (i >= n) {
      i = step < 0 ? n - 1 : n;
    }
    (void)is_start;
    return i;
  };
  *b = norm(start, step < 0 ? n - 1 : 0, true);
  *e = norm(stop, step < 0 ? -1 : n, false);
}

// ---- Python %-formatting and str.format -------------------------------------------------------------------------
std::string pad(const std::string& s, int64_t width, char align, char32_t fill) {
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

std::string format_number(const Value& v, char type, int64_t prec, bool alt, char sign) {
  char spec[32];
  char buf[512];
  std::string flags;
  if (alt) flags += '#';
  if (sign == '+' || sign == ' ') flags += sign;
  if (type == 'd' || type == 'i' || type == 'u' || type == 'x' || type == 'X' || type == 'o') {
    if (!v.is_number()) throw Error(cat("%", std::string(1, type), " format: a real number is required, not ", type_name(v)));
    int64_t i = v.is_float() ? int64_t(v.as_double()) : v.as_int();
    char t = (type == 'i' || type == 'u') ? 'd' : type;
    std::snprintf(spec, sizeof spec, "%%%sll%c", flags.c_str(), t);
    std::snprintf(buf, sizeof buf, spec, (long long)i);
    std::string out = buf;
    if (alt && type == 'o' && out.find("0o") == std::string::npos) {  // C writes 017, Python 0o17
      size_t z = out.find('0');
      if (z != std::string::npos) out.insert(z + 1, "o");
    }
    return out;
  }
  if (!v.is_number()) throw Error(cat("must be real number, not ", type_name(v)));
  std::snprintf(spec, sizeof spec, "%%%s.%lld%c", flags.c_str(), (long long)(prec < 0 ? 6 : prec), type);
  std::snprintf(buf, sizeof buf, spec, v.as_double());
  return buf;
}

std::string percent_format(const std::string& fmt, const Value& args, bool escape_args = false) {
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
    while (i < fmt.size() && fmt[i] >= '0' && fmt[i] <= '9') width = width * 10 + (fmt[i++] - '0');
    if (i < fmt.size() && fmt[i] == '.') {
      prec = 0;
      ++i;
      while (i < fmt.size() && fmt[i] >= '0' && fmt[i] <= '9') prec = prec * 10 + (fmt[i++] - '0');
    }
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
      else utf8_append(piece, char32_t(want_int(arg, "%c")));
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
  }
  // Python skips the leftover check when the single argument looks like a mapping (dicts, lists).
  if (next < pos.size() && !mapping && !(args.is_list() && !args.lst().tuple) && !args.is_undefined())
    throw Error("not all arguments converted during string formatting");
  return out;
}

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
  while (i < u.size() && u[i] >= '0' && u[i] <= '9') width = width * 10 + int64_t(u[i++] - '0');
  bool comma = false;
  if (i < u.size() && (u[i] == ',' || u[i] == '_')) {
    comma = true;
    ++i;
  }
  if (i < u.size() && u[i] == '.') {
    prec = 0;
    ++i;
    while (i < u.size() && u[i] >= '0' && u[i] <= '9') prec = prec * 10 + int64_t(u[i++] - '0');
  }
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
    uint64_t m = uint64_t(n < 0 ? -n : n);
    do {
      bits.insert(bits.begin(), char('0' + (m & 1)));
      m >>= 1;
    } while (m);
    body = (n < 0 ? "-" : "") + std::string(alt ? "0b" : "") + bits;
  } else {
    body = format_number(v, type, prec, alt, sign);
  }
  if (comma) {
    size_t b = (body[0] == '-' || body[0] == '+') ? 1 : 0;
    size_t e = body.find_first_not_of("0123456789", b);
    if (e == std::string::npos) e = body.size();
    for (int64_t k = int64_t(e) - 3; k > int64_t(b); k -= 3) body.insert(size_t(k), ",");
  }
  if (zero && !align) {
    size_t b = (!body.empty() && (body[0] == '-' || body[0] == '+' || body[0] == ' ')) ? 1 : 0;
    if (int64_t(body.size()) < width) body.insert(b, size_t(width) - body.size(), '0');
    return body;
  }
  return pad(body, width, align ? align : '>', fill);
}

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
      size_t k = size_t(std::stoul(head));
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
        v = r.getitem(v, digits ? Value::integer(std::stoll(key)) : Value::string(key));
        path = e + 1;
      }
    }
    if (conv == 'r' || conv == 'a') v = Value::string(repr(v));
    else if (conv == 's') v = Value::string(to_str(v));
    out += apply_spec(v, spec);
  }
  return out;
}

// ---- attribute getters used by sort / map / select... ------------------------------------------------------------
std::vector<Value> attr_parts(const Value& attribute) {
  std::vector<Value> parts;
  if (attribute.is_none() || attribute.is_undefined()) return parts;
  if (!attribute.is_string()) return {attribute};
  size_t pos = 0;
  const std::string& s = attribute.str();
  while (true) {
    size_t dot = s.find('.', pos);
    std::string p = s.substr(pos, dot == std::string::npos ? std::string::npos : dot - pos);
    bool digits = !p.empty() && std::all_of(p.begin(), p.end(), [](char d) { return d >= '0' && d <= '9'; });
    parts.push_back(digits ? Value::integer(std::stoll(p)) : Value::string(p));
    if (dot == std::string::npos) break;
    pos = dot + 1;
  }
  return parts;
}

Value ignore_case(const Value& v) { return v.is_string() ? Value::string(str_lower(v.str())) : v; }

Value get_attr_path(Renderer& r, Value item, const std::vector<Value>& parts, const Value* def = nullptr) {
  for (const auto& p : parts) {
    item = r.getitem(item, p);
    if (def && item.is_undefined()) item = *def;
  }
  return item;
}

std::vector<Value> iter_arg(const Value& v) { return iterate(v); }

// ---- filters ------------------------------------------------------------------------------------------------------
using FilterFn = Value (*)(Renderer&, const Value&, CallArgs&);

Value f_tojson(Renderer&, const Value& v, CallArgs& a) {
  ArgBinder b("tojson", a, {"ensure_ascii", "indent", "separators", "sort_keys"});
  JsonOptions o;
  o.ensure_ascii = b.has(0) && truthy(*b.get(0));
  if (b.has(1) && !b.get(1)->is_none()) {
    const Value& ind = *b.get(1);
    o.has_indent = true;
    if (ind.is_string()) o.indent = ind.str();
    else o.indent = std::string(size_t(std::max<int64_t>(0, want_int(ind, "indent"))), ' ');
    o.item_sep = ",";
  }
  if (b.has(2) && !b.get(2)->is_none()) {
    std::vector<Value> seps = iterate(*b.get(2));
    if (seps.size() != 2) throw Error("separators must be a (item_separator, key_separator) pair");
    o.item_sep = want_str(seps[0], "separator");
    o.key_sep = want_str(seps[1], "separator");
  }
  o.sort_keys = b.has(3) && truthy(*b.get(3));
  return Value::string(to_json(v, o));
}

int64_t py_len(const Value& v) {
  switch (v.type) {
    case Value::Type::Undefined: return 0;
    case Value::Type::String: return int64_t(utf8_length(v.str()));
    case Value::Type::List: return int64_t(v.lst().items.size());
    case Value::Type::Dict: return int64_t(v.dct().items.size());
    default: throw Error(cat("object of type '", type_name(v), "' has no len()"));
  }
}

Value f_length(Renderer&, const Value& v, CallArgs& a) {
  ArgBinder b("length", a, {});
  return Value::integer(py_len(v));
}
Value f_string(Renderer&, const Value& v, CallArgs& a) {
  ArgBinder b("string", a, {});
  return Value::string(to_str(v));
}
Value f_safe(Renderer&, const Value& v, CallArgs& a) {
  ArgBinder b("safe", a, {});
  return Value::markup_string(to_str(v));
}
Value f_lower(Renderer&, const Value& v, CallArgs& a) {
  ArgBinder b("lower", a, {});
  return Value::string(str_lower(to_str(v)));
}
Value f_upper(Renderer&, const Value& v, CallArgs& a) {
  ArgBinder b("upper", a, {});
  return Value::string(str_upper(to_str(v)));
}
Value f_title(Renderer&, const Value& v, CallArgs& a) {
  ArgBinder b("title", a, {});
  return Value::string(jinja_title(to_str(v)));
}
Value f_capitalize(Renderer&, const Value& v, CallArgs& a) {
  ArgBinder b("capitalize", a, {});
  return Value::string(py_capitalize(to_str(v)));
}
Value f_trim(Renderer&, const Value& v, CallArgs& a) {
  ArgBinder b("trim", a, {"chars"});
  return Value::string(py_strip(to_str(v), b.get(0), true, true));
}
Value f_replace(Renderer&, const Value& v, CallArgs& a) {
  ArgBinder b("replace", a, {"old", "new", "count"});
  if (!b.has(0) || !b.has(1)) throw Error("replace() missing required arguments 'old' and 'new'");
  int64_t count = b.has(2) && !b.get(2)->is_none() ? want_int(*b.get(2), "count") : -1;
  return Value::string(py_replace(to_str(v), to_str(*b.get(0)), to_str(*b.get(1)), count));
}

Value f_join(Renderer& r, const Value& v, CallArgs& a) {
  ArgBinder b("join", a, {"d", "attribute"});
  std::string sep = b.has(0) ? to_str(*b.get(0)) : "";
  std::vector<Value> parts = b.has(1) ? attr_parts(*b.get(1)) : std::vector<Value>{};
  std::string out;
  bool first = true;
  for (const auto& item : iter_arg(v)) {
    if (!first) out += sep;
    first = false;
    out += to_str(parts.empty() ? item : get_attr_path(r, item, parts));
  }
  return Value::string(std::move(out));
}

Value f_first(Renderer&, const Value& v, CallArgs& a) {
  ArgBinder b("first", a, {});
  std::vector<Value> items = iter_arg(v);
  return items.empty() ? Value::undefined("No first item, sequence was empty.") : items.front();
}
Value f_last(Renderer&, const Value& v, CallArgs& a) {
  ArgBinder b("last", a, {});
  std::vector<Value> items = iter_arg(v);
  return items.empty() ? Value::undefined("No last item, sequence was empty.") : items.back();
}
Value f_list(Renderer&, const Value& v, CallArgs& a) {
  ArgBinder b("list", a, {});
  return Value::list(iter_arg(v));
}
Value f_reverse(Renderer&, const Value& v, CallArgs& a) {
  ArgBinder b("reverse", a, {});
  if (v.is_string()) {
    U32 u = utf8_decode(v.str());
    std::reverse(u.begin(), u.end());
    return Value::string(utf8_encode(u));
  }
  std::vector<Value> items = iter_arg(v);
  std::reverse(items.begin(), items.end());
  return Value::list(std::move(items));
}

// Stable sort by precomputed keys, like Python's sorted(key=...).
std::vector<Value> sorted_by(std::vector<Value> items, const std::vector<Value>& keys, bool reverse) {
  std::vector<size_t> idx(items.size());
  for (size_t i = 0; i < idx.size(); ++i) idx[i] = i;
  std::stable_sort(idx.begin(), idx.end(), [&](size_t x, size_t y) {
    return reverse ? compare(keys[y], keys[x]) < 0 : compare(keys[x], keys[y]) < 0;
  });
  // Python's reverse sort keeps equal elements in original order as well.
  std::vector<Value> out;
  out.reserve(items.size());
  for (size_t i : idx) out.push_back(std::move(items[i]));
  return out;
}

Value f_sort(Renderer& r, const Value& v, CallArgs& a) {
  ArgBinder b("sort", a, {"reverse", "case_sensitive", "attribute"});
  bool rev = b.has(0) && truthy(*b.get(0));
  bool cs = b.has(1) && truthy(*b.get(1));
  std::vector<Value> items = iter_arg(v);
  std::vector<std::vector<Value>> attrs;  // comma-separated attribute list sorts by several keys
  if (b.has(2) && b.get(2)->is_string()) {
    const std::string& s = b.get(2)->str();
    size_t pos = 0;
    while (true) {
      size_t comma = s.find(',', pos);
      attrs.push_back(attr_parts(Value::string(s.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos))));
      if (comma == std::string::npos) break;
      pos = comma + 1;
    }
  } else if (b.has(2) && !b.get(2)->is_none()) {
    attrs.push_back(attr_parts(*b.get(2)));
  }
  std::vector<Value> keys;
  for (const auto& item : items) {
    if (attrs.size() <= 1) {
      Value k = attrs.empty() ? item : get_attr_path(r, item, attrs[0]);
      keys.push_back(cs ? k : ignore_case(k));
    } else {
      std::vector<Value> ks;
      for (const auto& p : attrs) {
        Value k = get_attr_path(r, item, p);
        ks.push_back(cs ? k : ignore_case(k));
      }
      keys.push_back(Value::list(std::move(ks)));
    }
  }
  return Value::list(sorted_by(std::move(items), keys, rev));
}

Value f_unique(Renderer& r, const Value& v, CallArgs& a) {
  ArgBinder b("unique", a, {"case_sensitive", "attribute"});
  bool cs = b.has(0) && truthy(*b.get(0));
  std::vector<Value> parts = b.has(1) ? attr_parts(*b.get(1)) : std::vector<Value>{};
  std::vector<Value> out, seen;
  for (const auto& item : iter_arg(v)) {
    Value k = get_attr_path(r, item, parts);
    if (!cs) k = ignore_case(k);
    if ((k.is_list() && !k.lst().tuple) || k.is_dict() || k.is_ns()) throw Error(cat("unhashable type: '", type_name(k), "'"));
    if (std::any_of(seen.begin(), seen.end(), [&](const Value& s) { return equals(s, k); })) continue;
    seen.push_back(k);
    out.push_back(item);
  }
  return Value::list(std::move(out));
}

Value f_map(Renderer& r, const Value& v, CallArgs& a) {
  std::vector<Value> out;
  std::vector<Value> items = truthy(v) ? iter_arg(v) : std::vector<Value>{};  // Jinja: `if value: for ...`
  if (a.pos.empty()) {
    Value attribute, def;
    bool has_attr = false;
    for (auto& [k, x] : a.kw) {
      if (k == "attribute") {
        attribute = x;
        has_attr = true;
      } else if (k == "default") {
        def = x;
      } else {
        throw Error(cat("Unexpected keyword argument '", k, "'"));
      }
    }
    if (!has_attr) throw Error("map requires a filter argument");
    std::vector<Value> parts = attr_parts(attribute);
    const Value* d = (def.is_undefined() || def.is_none()) ? nullptr : &def;
    for (const auto& item : items) out.push_back(get_attr_path(r, item, parts, d));
    return Value::list(std::move(out));
  }
  std::string name = want_str(a.pos[0], "map filter name");
  CallArgs rest;
  rest.pos.assign(a.pos.begin() + 1, a.pos.end());
  rest.kw = a.kw;
  for (const auto& item : items) {
    CallArgs copy = rest;
    out.push_back(call_filter(r, name, item, copy));
  }
  return Value::list(std::move(out));
}

Value select_impl(Renderer& r, const Value& v, CallArgs& a, bool by_attr, bool keep) {
  size_t off = 0;
  std::vector<Value> parts;
  if (by_attr) {
    if (a.pos.empty()) throw Error("Missing parameter for attribute name");
    parts = attr_parts(a.pos[0]);
    off = 1;
  }
  std::string test;
  CallArgs targs;
  if (a.pos.size() > off) {
    test = want_str(a.pos[off], "test name");
    targs.pos.assign(a.pos.begin() + off + 1, a.pos.end());
    targs.kw = a.kw;
  }
  std::vector<Value> out;
  if (!truthy(v)) return Value::list({});  // Jinja: `if value: for ...`
  for (const auto& item : iter_arg(v)) {
    Value x = by_attr ? get_attr_path(r, item, parts) : item;
    bool ok;
    if (test.empty()) {
      ok = truthy(x);
    } else {
      CallArgs copy = targs;
      ok = call_test(r, test, x, copy);
    }
    if (ok == keep) out.push_back(item);
  }
  return Value::list(std::move(out));
}
Value f_select(Renderer& r, const Value& v, CallArgs& a) { return select_impl(r, v, a, false, true); }
Value f_reject(Renderer& r, const Value& v, CallArgs& a) { return select_impl(r, v, a, false, false); }
Value f_selectattr(Renderer& r, const Value& v, CallArgs& a) { return select_impl(r, v, a, true, true); }
Value f_rejectattr(Renderer& r, const Value& v, CallArgs& a) { return select_impl(r, v, a, true, false); }

Value f_default(Renderer&, const Value& v, CallArgs& a) {
  ArgBinder b("default", a, {"default_value", "boolean"});
  bool boolean = b.has(1) && truthy(*b.get(1));
  if (v.is_undefined() || (boolean && !truthy(v))) return b.get_or(0, Value::string(""));
  return v;
}

Value dict_items(const Value& v) {
  std::vector<Value> out;
  for (const auto& [k, x] : v.dct().items) out.push_back(Value::list({k, x}, true));
  return Value::list(std::move(out));
}

Value f_dictsort(Renderer&, const Value& v, CallArgs& a) {
  ArgBinder b("dictsort", a, {"case_sensitive", "by", "reverse"});
  check_defined(v);
  if (!v.is_dict()) throw Error(cat("'", type_name(v), "' object has no attribute 'items'"));
  bool cs = b.has(0) && truthy(*b.get(0));
  std::string by = b.has(1) ? to_str(*b.get(1)) : "key";
  if (by != "key" && by != "value") throw Error("You can only sort by either \"key\" or \"value\"");
  bool rev = b.has(2) && truthy(*b.get(2));
  std::vector<Value> items = dict_items(v).lst().items, keys;
  for (const auto& it : items) {
    Value k = it.lst().items[by == "key" ? 0 : 1];
    keys.push_back(cs ? k : ignore_case(k));
  }
  return Value::list(sorted_by(std::move(items), keys, rev));
}

Value f_items(Renderer&, const Value& v, CallArgs& a) {
  ArgBinder b("items", a, {});
  if (v.is_undefined()) return Value::list({});
  if (!v.is_dict()) throw Error("Can only get item pairs from a mapping.");
  return dict_items(v);
}

Value f_escape(Renderer&, const Value& v, CallArgs& a) {
  ArgBinder b("escape", a, {});
  if (v.is_string() && v.markup) return v;  // already safe: not escaped twice
  return Value::markup_string(html_escape(to_str(v)));
}
Value f_forceescape(Renderer&, const Value& v, CallArgs& a) {
  ArgBinder b("forceescape", a, {});
  return Value::markup_string(html_escape(to_str(v)));
}

Value f_indent(Renderer&, const Value& v, CallArgs& a) {
  ArgBinder b("indent", a, {"width", "first", "blank"});
  std::string ind = "    ";
  if (b.has(0)) ind = b.get(0)->is_string() ? b.get(0)->str() : std::string(size_t(std::max<int64_t>(0, want_int(*b.get(0), "width"))), ' ');
  bool first = b.has(1) && truthy(*b.get(1));
  bool blank = b.has(2) && truthy(*b.get(2));
  check_defined(v);
  if (!v.is_string()) throw Error(cat("unsupported operand type(s) for +=: '", type_name(v), "' and 'str'"));
  std::string s = v.str() + "\n";  // Jinja appends a newline so splitlines keeps a trailing empty line
  std::vector<std::string> lines = py_splitlines(s, false);
  std::string out;
  for (size_t i = 0; i < lines.size(); ++i) {
    if (i > 0) {
      out += "\n";
      if (blank || !lines[i].empty()) out += ind;
    }
    out += lines[i];
  }
  if (first) out = ind + out;
  return Value::string(std::move(out));
}

Value f_wordcount(Renderer&, const Value& v, CallArgs& a) {
  ArgBinder b("wordcount", a, {});
  int64_t n = 0;
  bool in_word = false;
  for (char32_t c : utf8_decode(to_str(v))) {
    bool w = py_isalnum(c) || c == '_';
    if (w && !in_word) ++n;
    in_word = w;
  }
  return Value::integer(n);
}

Value f_abs(Renderer&, const Value& v, CallArgs& a) {
  ArgBinder b("abs", a, {});
  if (v.is_float()) return Value::number(std::fabs(v.as_double()));
  if (v.is_int() || v.is_bool()) return Value::integer(std::llabs(v.as_int()));
  throw Error(cat("bad operand type for abs(): '", type_name(v), "'"));
}

// Python round(x, n): correctly rounded half-to-even on the exact binary value, which printf also does.
double py_round(double x, int64_t nd) {
  if (!std::isfinite(x)) return x;
  if (nd >= 0) {
    if (nd > 300) return x;
    char buf[400];
    std::snprintf(buf, sizeof buf, "%.*f", int(nd), x);
    return std::strtod(buf, nullptr);
  }
  double p = std::pow(10.0, double(-nd));
  double y = x / p, r = std::nearbyint(y);
  return r * p;
}

Value f_round(Renderer&, const Value& v, CallArgs& a) {
  ArgBinder b("round", a, {"precision", "method"});
  int64_t prec = b.has(0) ? want_int(*b.get(0), "precision") : 0;
  std::string method = b.has(1) ? to_str(*b.get(1)) : "common";
  if (method != "common" && method != "ceil" && method != "floor")
    throw Error("method must be common, ceil or floor");
  if (!v.is_number()) throw Error(cat("type ", type_name(v), " doesn't define __round__ method"));
  if (method == "common") {
    if (!v.is_float()) {
      if (prec >= 0) return Value::integer(v.as_int());
      double p = std::pow(10.0, double(-prec));
      return Value::integer(int64_t(std::nearbyint(double(v.as_int()) / p) * p));
    }
    return Value::number(py_round(v.as_double(), prec));
  }
  double p = std::pow(10.0, double(prec));
  double x = v.as_double() * p;
  return Value::number((method == "ceil" ? std::ceil(x) : std::floor(x)) / p);
}

std::optional<int64_t> parse_py_int(std::string s, int base) {
  s = py_strip(s, nullptr, true, true);
  std::string t;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '_' && i > 0 && i + 1 < s.size() && std::isalnum((unsigned char)s[i - 1]) && std::isalnum((unsigned char)s[i + 1])) continue;
    t += s[i];
  }
  if (t.empty()) return std::nullopt;
  size_t start = (t[0] == '+' || t[0] == '-') ? 1 : 0;
  if (base == 0 || base == 16 || base == 8 || base == 2) {
    if (t.size() > start + 1 && t[start] == '0' && std::string("xXoObB").find(t[start + 1]) != std::string::npos) {
      char k = char(t[start + 1] | 0x20);
      int pb = k == 'x' ? 16 : k == 'o' ? 8 : 2;
      if (base != 0 && base != pb) return std::nullopt;
      base = pb;
      t.erase(start, 2);
    } else if (base == 0) {
      base = 10;
    }
  }
  if (t.size() <= start) return std::nullopt;
  char* end = nullptr;
  errno = 0;
  long long val = std::strtoll(t.c_str(), &end, base);
  if (*end != 0 || errno) return std::nullopt;
  return int64_t(val);
}

std::optional<double> parse_py_float(const std::string& raw) {
  std::string s = py_strip(raw, nullptr, true, true);
  if (s.empty()) return std::nullopt;
  std::string t;
  for (char c : s)
    if (c != '_') t += c;
  if (t.find_first_of("xXpP") != std::string::npos && t.find("inf") == std::string::npos) return std::nullopt;
  char* end = nullptr;
  double d = std::strtod(t.c_str(), &end);
  if (*end != 0) return std::nullopt;
  return d;
}

Value f_int(Renderer&, const Value& v, CallArgs& a) {
  ArgBinder b("int", a, {"default", "base"});
  Value def = b.get_or(0, Value::integer(0));
  int base = b.has(1) ? int(want_int(*b.get(1), "base")) : 10;
  check_defined(v);  // int(Undefined) raises in Jinja
  if (v.is_int()) return v;
  if (v.is_bool()) return Value::integer(v.as_int());
  if (v.is_float()) {
    if (!std::isfinite(v.as_double())) throw Error("cannot convert float infinity or NaN to integer");
    return Value::integer(int64_t(v.as_double()));
  }
  if (v.is_string()) {
    if (auto i = parse_py_int(v.str(), base)) return Value::integer(*i);
    if (auto d = parse_py_float(v.str()); d && std::isfinite(*d)) return Value::integer(int64_t(*d));
  }
  return def;
}

Value f_float(Renderer&, const Value& v, CallArgs& a) {
  ArgBinder b("float", a, {"default"});
  Value def = b.get_or(0, Value::number(0.0));
  check_defined(v);
  if (v.is_number()) return Value::number(v.as_double());
  if (v.is_string())
    if (auto d = parse_py_float(v.str())) return Value::number(*d);
  return def;
}

Value f_sum(Renderer& r, const Value& v, CallArgs& a) {
  ArgBinder b("sum", a, {"attribute", "start"});
  std::vector<Value> parts = b.has(0) ? attr_parts(*b.get(0)) : std::vector<Value>{};
  Value total = b.get_or(1, Value::integer(0));
  for (const auto& item : iter_arg(v)) total = binary_op("+", total, get_attr_path(r, item, parts));
  return total;
}

Value min_max(Renderer& r, const Value& v, CallArgs& a, bool want_max) {
  ArgBinder b(want_max ? "max" : "min", a, {"case_sensitive", "attribute"});
  bool cs = b.has(0) && truthy(*b.get(0));
  std::vector<Value> parts = b.has(1) ? attr_parts(*b.get(1)) : std::vector<Value>{};
  std::vector<Value> items = iter_arg(v);
  if (items.empty()) return Value::undefined("No aggregated item, sequence was empty.");
  size_t best = 0;
  auto key = [&](const Value& item) {
    Value k = get_attr_path(r, item, parts);
    return cs ? k : ignore_case(k);
  };
  Value best_key = key(items[0]);
  for (size_t i = 1; i < items.size(); ++i) {
    Value k = key(items[i]);
    int c = compare(k, best_key);
    if (want_max ? c > 0 : c < 0) {
      best = i;
      best_key = k;
    }
  }
  return items[best];
}
Value f_min(Renderer& r, const Value& v, CallArgs& a) { return min_max(r, v, a, false); }
Value f_max(Renderer& r, const Value& v, CallArgs& a) { return min_max(r, v, a, true); }

Value f_batch(Renderer&, const Value& v, CallArgs& a) {
  ArgBinder b("batch", a, {"linecount", "fill_with"});
  if (!b.has(0)) throw Error("batch() missing required argument 'linecount'");
  int64_t n = want_int(*b.get(0), "linecount");
  if (n <= 0) throw Error("batch linecount must be positive");
  std::vector<Value> out, tmp;
  for (auto& item : iter_arg(v)) {
    if (int64_t(tmp.size()) == n) {
      out.push_back(Value::list(std::move(tmp)));
      tmp.clear();
    }
    tmp.push_back(std::move(item));
  }
  if (!tmp.empty()) {
    if (b.has(1) && !b.get(1)->is_none())
      while (int64_t(tmp.size()) < n) tmp.push_back(*b.get(1));
    out.push_back(Value::list(std::move(tmp)));
  }
  return Value::list(std::move(out));
}

Value f_attr(Renderer& r, const Value& v, CallArgs& a) {
  ArgBinder b("attr", a, {"name"});
  if (!b.has(0)) throw Error("attr() missing required argument 'name'");
  return r.getattr(v, to_str(*b.get(0)));
}

Value f_format(Renderer&, const Value& v, CallArgs& a) {
  if (!a.pos.empty() && !a.kw.empty()) throw Error("can't handle positional and keyword arguments at the same time");
  if (!a.kw.empty()) {
    std::vector<std::pair<Value, Value>> kw;
    for (auto& [k, x] : a.kw) kw.emplace_back(Value::string(k), x);
    return Value::string(percent_format(to_str(v), Value::dict(std::move(kw))));
  }
  return Value::string(percent_format(to_str(v), Value::list(a.pos, true)));
}

Value f_center(Renderer&, const Value& v, CallArgs& a) {
  ArgBinder b("center", a, {"width"});
  int64_t w = b.has(0) ? want_int(*b.get(0), "width") : 80;
  std::string s = to_str(v);
  int64_t len = int64_t(utf8_length(s));
  if (w <= len) return Value::string(s);
  int64_t marg = w - len, left = marg / 2 + (marg & w & 1);  // CPython's centering rule
  return Value::string(std::string(size_t(left), ' ') + s + std::string(size_t(marg - left), ' '));
}

Value f_truncate(Renderer&, const Value& v, CallArgs& a) {
  ArgBinder b("truncate", a, {"length", "killwords", "end", "leeway"});
  int64_t length = b.has(0) ? want_int(*b.get(0), "length") : 255;
  bool killwords = b.has(1) && truthy(*b.get(1));
  std::string end = b.has(2) ? to_str(*b.get(2)) : "...";
  int64_t leeway = b.has(3) && !b.get(3)->is_none() ? want_int(*b.get(3), "leeway") : 5;
  U32 u = utf8_decode(to_str(v)), ue = utf8_decode(end);
  if (int64_t(u.size()) <= length + leeway) return Value::string(utf8_encode(u));
  int64_t cut = std::max<int64_t>(0, length - int64_t(ue.size()));
  std::string head = utf8_encode(U32_view(u).substr(0, size_t(cut)));
  if (killwords) return Value::string(head + end);
  size_t sp = head.rfind(' ');
  if (sp != std::string::npos) head.resize(sp);
  return Value::string(head + end);
}

const std::map<std::string, FilterFn>& filters() {
  static const std::map<std::string, FilterFn> table = {
      {"abs", f_abs},         {"attr", f_attr},           {"batch", f_batch},
      {"capitalize", f_capitalize}, {"center", f_center}, {"count", f_length},
      {"d", f_default},       {"default", f_default},     {"dictsort", f_dictsort},
      {"e", f_escape},        {"escape", f_escape},       {"first", f_first},
      {"float", f_float},     {"forceescape", f_forceescape},  {"format", f_format},
      {"indent", f_indent},   {"int", f_int},             {"items", f_items},
      {"join", f_join},       {"last", f_last},           {"length", f_length},
      {"list", f_list},       {"lower", f_lower},         {"map", f_map},
      {"max", f_max},         {"min", f_min},             {"reject", f_reject},
      {"rejectattr", f_rejectattr}, {"replace", f_replace}, {"reverse", f_reverse},
      {"round", f_round},     {"safe", f_safe},           {"select", f_select},
      {"selectattr", f_selectattr}, {"sort", f_sort},     {"string", f_string},
      {"sum", f_sum},         {"title", f_title},         {"tojson", f_tojson},
      {"trim", f_trim},       {"truncate", f_truncate},   {"unique", f_unique},
      {"upper", f_upper},     {"wordcount", f_wordcount},
  };
  return table;
}

// ---- tests --------------------------------------------------------------------------------------------------------
using TestFn = bool (*)(Renderer&, const Value&, CallArgs&);

const Value& one_arg(const char* name, CallArgs& a) {
  if (a.pos.size() != 1 || !a.kw.empty()) throw Error(cat("test '", name, "' takes exactly one argument"));
  return a.pos[0];
}

bool t_divisibleby(Renderer&, const Value& v, CallArgs& a) {
  return equals(binary_op("%", v, one_arg("divisibleby", a)), Value::integer(0));
}
bool t_even(Renderer&, const Value& v, CallArgs&) { return equals(binary_op("%", v, Value::integer(2)), Value::integer(0)); }
bool t_odd(Renderer&, const Value& v, CallArgs&) { return equals(binary_op("%", v, Value::integer(2)), Value::integer(1)); }
bool cmp_test(const Value& v, const Value& o, const char* op) {
  check_defined(v);
  check_defined(o);
  int c = compare(v, o);
  std::string_view s = op;
  return s == "<" ? c < 0 : s == "<=" ? c <= 0 : s == ">" ? c > 0 : c >= 0;
}
bool t_sameas(Renderer&, const Value& v, CallArgs& a) {
  const Value& o = one_arg("sameas", a);
  if (v.type != o.type) return false;
  switch (v.type) {
    case Value::Type::None:
    case Value::Type::Undefined: return true;
    case Value::Type::Bool:
    case Value::Type::Int:
    case Value::Type::Float:
    case Value::Type::String: return equals(v, o);
    case Value::Type::List: return std::get<ListPtr>(v.p) == std::get<ListPtr>(o.p);
    case Value::Type::Dict:
    case Value::Type::Namespace: return std::get<DictPtr>(v.p) == std::get<DictPtr>(o.p);
    case Value::Type::Callable: return std::get<FnPtr>(v.p) == std::get<FnPtr>(o.p);
  }
  return false;
}

const std::map<std::string, TestFn>& tests() {
  static const std::map<std::string, TestFn> table = {
      {"defined", [](Renderer&, const Value& v, CallArgs&) { return !v.is_undefined(); }},
      {"undefined", [](Renderer&, const Value& v, CallArgs&) { return v.is_undefined(); }},
      {"none", [](Renderer&, const Value& v, CallArgs&) { return v.is_none(); }},
      {"boolean", [](Renderer&, const Value& v, CallArgs&) { return v.is_bool(); }},
      {"false", [](Renderer&, const Value& v, CallArgs&) { return v.is_bool() && !v.as_bool(); }},
      {"true", [](Renderer&, const Value& v, CallArgs&) { return v.is_bool() && v.as_bool(); }},
      {"integer", [](Renderer&, const Value& v, CallArgs&) { return v.is_int(); }},
      {"float", [](Renderer&, const Value& v, CallArgs&) { return v.is_float(); }},
      {"number", [](Renderer&, const Value& v, CallArgs&) { return v.is_number(); }},
      {"string", [](Renderer&, const Value& v, CallArgs&) { return v.is_string(); }},
      {"mapping", [](Renderer&, const Value& v, CallArgs&) { return v.is_dict(); }},
      {"sequence", [](Renderer&, const Value& v, CallArgs&) {
         return v.is_string() || (v.is_list() && !v.lst().view) || v.is_dict() || v.is_undefined();
       }},
      {"iterable", [](Renderer&, const Value& v, CallArgs&) {
         return v.is_string() || v.is_list() || v.is_dict() || v.is_undefined();
       }},
      // Jinja's Undefined defines __call__ (it raises), so Python's callable() accepts it.
      {"callable", [](Renderer&, const Value& v, CallArgs&) { return v.is_callable() || v.is_undefined(); }},
      {"escaped", [](Renderer&, const Value&, CallArgs&) { return false; }},
      {"sameas", t_sameas},
      {"in", [](Renderer&, const Value& v, CallArgs& a) { return contains(one_arg("in", a), v); }},
      {"even", t_even},
      {"odd", t_odd},
      {"divisibleby", t_divisibleby},
      {"eq", [](Renderer&, const Value& v, CallArgs& a) { return equals(v, one_arg("eq", a)); }},
      {"equalto", [](Renderer&, const Value& v, CallArgs& a) { return equals(v, one_arg("equalto", a)); }},
      {"==", [](Renderer&, const Value& v, CallArgs& a) { return equals(v, one_arg("==", a)); }},
      {"ne", [](Renderer&, const Value& v, CallArgs& a) { return !equals(v, one_arg("ne", a)); }},
      {"!=", [](Renderer&, const Value& v, CallArgs& a) { return !equals(v, one_arg("!=", a)); }},
      {"lt", [](Renderer&, const Value& v, CallArgs& a) { return cmp_test(v, one_arg("lt", a), "<"); }},
      {"lessthan", [](Renderer&, const Value& v, CallArgs& a) { return cmp_test(v, one_arg("lessthan", a), "<"); }},
      {"<", [](Renderer&, const Value& v, CallArgs& a) { return cmp_test(v, one_arg("<", a), "<"); }},
      {"le", [](Renderer&, const Value& v, CallArgs& a) { return cmp_test(v, one_arg("le", a), "<="); }},
      {"<=", [](Renderer&, const Value& v, CallArgs& a) { return cmp_test(v, one_arg("<=", a), "<="); }},
      {"gt", [](Renderer&, const Value& v, CallArgs& a) { return cmp_test(v, one_arg("gt", a), ">"); }},
      {"greaterthan", [](Renderer&, const Value& v, CallArgs& a) { return cmp_test(v, one_arg("greaterthan", a), ">"); }},
      {">", [](Renderer&, const Value& v, CallArgs& a) { return cmp_test(v, one_arg(">", a), ">"); }},
      {"ge", [](Renderer&, const Value& v, CallArgs& a) { return cmp_test(v, one_arg("ge", a), ">="); }},
      {">=", [](Renderer&, const Value& v, CallArgs& a) { return cmp_test(v, one_arg(">=", a), ">="); }},
      {"lower", [](Renderer&, const Value& v, CallArgs&) { return py_islower(to_str(v), false); }},
      {"upper", [](Renderer&, const Value& v, CallArgs&) { return py_islower(to_str(v), true); }},
      {"filter", [](Renderer&, const Value& v, CallArgs&) { return v.is_string() && has_filter(v.str()); }},
      {"test", [](Renderer&, const Value& v, CallArgs&) { return v.is_string() && has_test(v.str()); }},
  };
  return table;
}

// ---- methods ------------------------------------------------------------------------------------------------------
bool is_str_method(const std::string& n) {
  static const char* names[] = {"capitalize", "casefold", "center", "count", "endswith", "find", "format", "index",
                                "isalnum", "isalpha", "isdecimal", "isdigit", "islower", "isnumeric", "isspace",
                                "istitle", "isupper", "join", "ljust", "lower", "lstrip", "partition", "removeprefix",
                                "removesuffix", "replace", "rfind", "rindex", "rjust", "rpartition", "rsplit",
                                "rstrip", "split", "splitlines", "startswith", "strip", "swapcase", "title", "upper",
                                "zfill"};
  return std::find(std::begin(names), std::end(names), n) != std::end(names);
}
bool is_dict_method(const std::string& n) {
  static const char* names[] = {"clear", "copy", "fromkeys", "get", "items", "keys", "pop", "popitem", "setdefault",
                                "update", "values"};
  return std::find(std::begin(names), std::end(names), n) != std::end(names);
}
bool is_list_method(const std::string& n, bool tuple) {
  if (n == "count" || n == "index") return true;
  static const char* names[] = {"append", "clear", "copy", "extend", "insert", "pop", "remove", "reverse", "sort"};
  return !tuple && std::find(std::begin(names), std::end(names), n) != std::end(names);
}

// Optional [start, end) code-point window used by find/count/startswith...
U32 window(const U32& u, const ArgBinder& b, size_t first) {
  int64_t n = int64_t(u.size()), s = 0, e = n;
  Value none = Value::none();
  slice_bounds(n, b.has(first) ? *b.get(first) : none, b.has(first + 1) ? *b.get(first + 1) : none, 1, &s, &e);
  if (e < s) e = s;
  return u.substr(size_t(s), size_t(e - s));
}

int64_t find_cp(const U32& hay, const U32& needle, bool rev) {
  size_t k = rev ? hay.rfind(needle) : hay.find(needle);
  return k == U32::npos ? -1 : int64_t(k);
}

Value str_method(Renderer& r, const std::string& s, const std::string& m, CallArgs& a) {
  auto strs = [](std::vector<std::string> v) {
    std::vector<Value> out;
    for (auto& x : v) out.push_back(Value::string(std::move(x)));
    return Value::list(std::move(out));
  };
  if (m == "strip" || m == "lstrip" || m == "rstrip") {
    ArgBinder b(m.c_str(), a, {"chars"});
    return Value::string(py_strip(s, b.get(0), m != "rstrip", m != "lstrip"));
  }
  if (m == "split" || m == "rsplit") {
    ArgBinder b(m.c_str(), a, {"sep", "maxsplit"});
    int64_t maxsplit = b.has(1) ? want_int(*b.get(1), "maxsplit") : -1;
    return strs(py_split(s, b.get(0), maxsplit, m == "rsplit"));
  }
  if (m == "splitlines") {
    ArgBinder b(m.c_str(), a, {"keepends"});
    return strs(py_splitlines(s, b.has(0) && truthy(*b.get(0))));
  }
  if (m == "startswith" || m == "endswith") {
    ArgBinder b(m.c_str(), a, {"prefix", "start", "end"});
    if (!b.has(0)) throw Error(cat(m, "() takes at least 1 argument"));
    U32 u = window(utf8_decode(s), b, 1);
    std::vector<Value> cands = b.get(0)->is_list() && b.get(0)->lst().tuple ? b.get(0)->lst().items : std::vector<Value>{*b.get(0)};
    for (const auto& c : cands) {
      if (!c.is_string()) throw Error(cat(m, " first arg must be str or a tuple of str, not ", type_name(c)));
      U32 p = utf8_decode(c.str());
      if (p.size() > u.size()) continue;
      if (m == "startswith" ? u.compare(0, p.size(), p) == 0 : u.compare(u.size() - p.size(), p.size(), p) == 0)
        return Value::boolean(true);
    }
    return Value::boolean(false);
  }
  if (m == "upper") return Value::string(str_upper(s));
  if (m == "lower" || m == "casefold") return Value::string(str_lower(s));
  if (m == "title") return Value::string(py_title(s));
  if (m == "capitalize") return Value::string(py_capitalize(s));
  if (m == "swapcase") {
    std::string out;
    for (char32_t c : utf8_decode(s)) utf8_append(out, py_lower(c) != c ? py_lower(c) : py_upper(c));
    return Value::string(out);
  }
  if (m == "replace") {
    ArgBinder b(m.c_str(), a, {"old", "new", "count"});
    if (!b.has(0) || !b.has(1)) throw Error("replace() takes at least 2 arguments");
    int64_t count = b.has(2) ? want_int(*b.get(2), "count") : -1;
    return Value::string(py_replace(s, want_str(*b.get(0), "replace() argument 1"), want_str(*b.get(1), "replace() argument 2"), count));
  }
  if (m == "find" || m == "rfind" || m == "index" || m == "rindex" || m == "count") {
    ArgBinder b(m.c_str(), a, {"sub", "start", "end"});
    if (!b.has(0)) throw Error(cat(m, "() takes at least 1 argument"));
    U32 all = utf8_decode(s), sub = utf8_decode(want_str(*b.get(0), "substring"));
    int64_t n = int64_t(all.size()), st = 0, en = n;
    Value none = Value::none();
    slice_bounds(n, b.has(1) ? *b.get(1) : none, b.has(2) ? *b.get(2) : none, 1, &st, &en);
    if (en < st) en = st;
    U32 u = all.substr(size_t(st), size_t(en - st));
    if (m == "count") {
      if (sub.empty()) return Value::integer(int64_t(u.size()) + 1);
      int64_t c = 0;
      for (size_t k = u.find(sub); k != U32::npos; k = u.find(sub, k + sub.size())) ++c;
      return Value::integer(c);
    }
    int64_t k = find_cp(u, sub, m[0] == 'r');
    if (k < 0 && (m == "index" || m == "rindex")) throw Error("substring not found");
    return Value::integer(k < 0 ? -1 : k + st);
  }
  if (m == "join") {
    ArgBinder b(m.c_str(), a, {"iterable"});
    if (!b.has(0)) throw Error("join() takes exactly one argument");
    std::string out;
    size_t i = 0;
    for (const auto& x : iterate(*b.get(0))) {
      if (!x.is_string()) throw Error(cat("sequence item ", i, ": expected str instance, ", type_name(x), " found"));
      if (i++) out += s;
      out += x.str();
    }
    return Value::string(out);
  }
  if (m == "format") return Value::string(str_format(r, s, a));
  if (m == "center" || m == "ljust" || m == "rjust") {
    ArgBinder b(m.c_str(), a, {"width", "fillchar"});
    int64_t w = b.has(0) ? want_int(*b.get(0), "width") : 0;
    U32 f = utf8_decode(b.has(1) ? want_str(*b.get(1), "fillchar") : std::string(" "));
    if (f.size() != 1) throw Error("The fill character must be exactly one character long");
    if (m == "center") {
      int64_t len = int64_t(utf8_length(s));
      if (w <= len) return Value::string(s);
      int64_t marg = w - len, left = marg / 2 + (marg & w & 1);
      std::string fs = utf8_encode(f), out;
      for (int64_t i = 0; i < left; ++i) out += fs;
      out += s;
      for (int64_t i = 0; i < marg - left; ++i) out += fs;
      return Value::string(out);
    }
    return Value::string(pad(s, w, m == "ljust" ? '<' : '>', f[0]));
  }
  if (m == "zfill") {
    ArgBinder b(m.c_str(), a, {"width"});
    int64_t w = b.has(0) ? want_int(*b.get(0), "width") : 0;
    int64_t len = int64_t(utf8_length(s));
    if (w <= len) return Value::string(s);
    size_t signs = (!s.empty() && (s[0] == '-' || s[0] == '+')) ? 1 : 0;
    std::string out = s;
    out.insert(signs, size_t(w - len), '0');
    return Value::string(out);
  }
  if (m == "partition" || m == "rpartition") {
    ArgBinder b(m.c_str(), a, {"sep"});
    const std::string& sep = want_str(b.get_or(0, Value::string("")), "sep");
    if (sep.empty()) throw Error("empty separator");
    size_t k = m == "partition" ? s.find(sep) : s.rfind(sep);
    if (k == std::string::npos)
      return m == "partition" ? Value::list({Value::string(s), Value::string(""), Value::string("")}, true)
                              : Value::list({Value::string(""), Value::string(""), Value::string(s)}, true);
    return Value::list({Value::string(s.substr(0, k)), Value::string(sep), Value::string(s.substr(k + sep.size()))}, true);
  }
  if (m == "removeprefix" || m == "removesuffix") {
    ArgBinder b(m.c_str(), a, {"affix"});
    const std::string& x = want_str(b.get_or(0, Value::string("")), m.c_str());
    if (m == "removeprefix" && s.compare(0, x.size(), x) == 0) return Value::string(s.substr(x.size()));
    if (m == "removesuffix" && !x.empty() && s.size() >= x.size() && s.compare(s.size() - x.size(), x.size(), x) == 0)
      return Value::string(s.substr(0, s.size() - x.size()));
    return Value::string(s);
  }
  // is* predicates (ASCII-accurate, approximate beyond)
  ArgBinder b(m.c_str(), a, {});
  U32 u = utf8_decode(s);
  auto all = [&](auto pred) { return Value::boolean(!u.empty() && std::all_of(u.begin(), u.end(), pred)); };
  auto digit = [](char32_t c) { return (c >= '0' && c <= '9') || (c >= 0x660 && c <= 0x669) || (c >= 0xFF10 && c <= 0xFF19); };
  auto alpha = [](char32_t c) { return py_isalnum(c) && !((c >= '0' && c <= '9') || c == 0xB2 || c == 0xB3 || c == 0xB9); };
  if (m == "isdigit" || m == "isdecimal" || m == "isnumeric") return all(digit);
  if (m == "isalpha") return all(alpha);
  if (m == "isalnum") return all([](char32_t c) { return py_isalnum(c); });
  if (m == "isspace") return all([](char32_t c) { return py_isspace(c); });
  if (m == "islower") return Value::boolean(py_islower(s, false));
  if (m == "isupper") return Value::boolean(py_islower(s, true));
  if (m == "istitle") return Value::boolean(!s.empty() && py_title(s) == s && std::any_of(u.begin(), u.end(), py_iscased));
  throw Error(cat("'str' object has no attribute '", m, "'"));
}

Value dict_method(const Value& d, const std::string& m, CallArgs& a) {
  if (m == "items") {
    ArgBinder b("items", a, {});
    return Value::dict_view("dict_items", dict_items(d).lst().items);
  }
  if (m == "keys" || m == "values") {
    ArgBinder b(m.c_str(), a, {});
    std::vector<Value> out;
    for (const auto& [k, v] : d.dct().items) out.push_back(m == "keys" ? k : v);
    return Value::dict_view(m == "keys" ? "dict_keys" : "dict_values", std::move(out));
  }
  if (m == "get") {
    ArgBinder b("get", a, {"key", "default"});
    if (!b.has(0)) throw Error("get expected at least 1 argument, got 0");
    if (const Value* v = d.dct().find(*b.get(0))) return *v;
    return b.get_or(1, Value::none());
  }
  if (m == "copy") {
    ArgBinder b("copy", a, {});
    return Value::dict(d.dct().items);
  }
  throw Error(cat("access to attribute '", m, "' of 'dict' object is unsafe."));
}

Value list_method(const Value& l, const std::string& m, CallArgs& a) {
  const auto& items = l.lst().items;
  if (m == "count") {
    ArgBinder b("count", a, {"value"});
    int64_t n = 0;
    for (const auto& x : items) n += equals(x, b.get_or(0, Value())) ? 1 : 0;
    return Value::integer(n);
  }
  if (m == "index") {
    ArgBinder b("index", a, {"value", "start", "stop"});
    for (size_t i = 0; i < items.size(); ++i)
      if (equals(items[i], b.get_or(0, Value()))) return Value::integer(int64_t(i));
    throw Error(cat(repr(b.get_or(0, Value())), " is not in list"));
  }
  if (m == "copy") return Value::list(items);
  throw Error(cat("access to attribute '", m, "' of '", type_name(l), "' object is unsafe."));
}

// ---- globals ------------------------------------------------------------------------------------------------------
Value g_range(Renderer&, CallArgs& a) {
  if (!a.kw.empty() || a.pos.empty() || a.pos.size() > 3) throw Error("range expected 1 to 3 integer arguments");
  int64_t start = 0, stop, step = 1;
  if (a.pos.size() == 1) {
    stop = want_int(a.pos[0], "range() argument");
  } else {
    start = want_int(a.pos[0], "range() argument");
    stop = want_int(a.pos[1], "range() argument");
    if (a.pos.size() == 3) step = want_int(a.pos[2], "range() argument");
  }
  if (step == 0) throw Error("range() arg 3 must not be zero");
  int64_t n = step > 0 ? (stop > start ? (stop - start + step - 1) / step : 0) : (start > stop ? (start - stop - step - 1) / -step : 0);
  if (n > 100000) throw Error("Range too big. The sandbox blocks ranges larger than MAX_RANGE (100000).");
  std::vector<Value> out;
  for (int64_t i = 0; i < n; ++i) out.push_back(Value::integer(start + i * step));
  return Value::list(std::move(out));
}

Value g_namespace(Renderer&, CallArgs& a) {
  auto d = std::make_shared<DictData>();
  for (const auto& p : a.pos) {
    if (p.is_dict()) {
      for (const auto& [k, v] : p.dct().items) d->set(k, v);
    } else {
      for (const auto& kv : iterate(p)) {
        std::vector<Value> pair = iterate(kv);
        if (pair.size() != 2) throw Error("dictionary update sequence element has wrong length");
        d->set(pair[0], pair[1]);
      }
    }
  }
  for (const auto& [k, v] : a.kw) d->set(Value::string(k), v);
  return Value::ns(std::move(d));
}

Value g_dict(Renderer& r, CallArgs& a) {
  Value ns = g_namespace(r, a);
  return Value::dict(ns.ns_data().items);
}

Value g_raise(Renderer&, CallArgs& a) {
  if (a.pos.empty()) throw TemplateException("");
  throw TemplateException(to_str(a.pos[0]));
}

Value g_strftime_now(Renderer& r, CallArgs& a) {
  if (a.pos.size() != 1 || !a.pos[0].is_string()) throw Error("strftime_now() takes one format string");
  std::tm tm{};
  if (r.options().now) {
    std::tm given = *r.options().now;
    given.tm_isdst = 0;
    time_t t = timegm(&given);  // normalizes and derives weekday / day of year
    gmtime_r(&t, &tm);
  } else {
    time_t t = std::time(nullptr);
    localtime_r(&t, &tm);
  }
  const std::string& fmt = a.pos[0].str();
  if (fmt.empty()) return Value::string("");
  std::vector<char> buf(256 + fmt.size() * 8);
  for (int tries = 0; tries < 6; ++tries) {
    size_t n = std::strftime(buf.data(), buf.size(), fmt.c_str(), &tm);
    if (n > 0) return Value::string(std::string(buf.data(), n));
    buf.resize(buf.size() * 4);
  }
  return Value::string("");
}

Value g_joiner(Renderer&, CallArgs& a) {
  ArgBinder b("joiner", a, {"sep"});
  std::string sep = b.has(0) ? to_str(*b.get(0)) : ", ";
  auto used = std::make_shared<bool>(false);
  return make_builtin("joiner", [sep, used](Renderer&, CallArgs&) -> Value {
    if (!*used) {
      *used = true;
      return Value::string("");
    }
    return Value::string(sep);
  });
}

}  // namespace

// ---- public entry points ----------------------------------------------------------------------------------------
ArgBinder::ArgBinder(const char* fname, const CallArgs& args, std::vector<const char*> names) : slots_(names.size(), nullptr) {
  if (args.pos.size() > names.size())
    throw Error(cat(fname, "() takes at most ", names.size(), " argument(s) (", args.pos.size(), " given)"));
  for (size_t i = 0; i < args.pos.size(); ++i) slots_[i] = &args.pos[i];
  for (const auto& [k, v] : args.kw) {
    size_t i = 0;
    while (i < names.size() && k != names[i]) ++i;
    if (i == names.size()) throw Error(cat(fname, "() got an unexpected keyword argument '", k, "'"));
    if (slots_[i]) throw Error(cat(fname, "() got multiple values for argument '", k, "'"));
    slots_[i] = &v;
  }
}

bool has_filter(const std::string& name) { return filters().count(name) > 0; }
bool has_test(const std::string& name) { return tests().count(name) > 0; }

Value call_filter(Renderer& r, const std::string& name, const Value& input, CallArgs& args) {
  auto it = filters().find(name);
  if (it == filters().end()) throw Error(cat("No filter named '", name, "'."));
  Value out = it->second(r, input, args);
  // Filters that hand back Markup's own string operations keep a Markup input safe.
  static const char* keeps[] = {"capitalize", "center", "d", "default", "first", "format", "indent", "last",
                                "lower", "string", "trim", "truncate", "upper"};
  if (input.is_string() && input.markup && out.is_string() &&
      std::find(std::begin(keeps), std::end(keeps), name) != std::end(keeps))
    out.markup = true;
  return out;
}

bool call_test(Renderer& r, const std::string& name, const Value& v, CallArgs& args) {
  auto it = tests().find(name);
  if (it == tests().end()) throw Error(cat("No test named '", name, "'."));
  return it->second(r, v, args);
}

bool has_method(const Value& obj, const std::string& name) {
  switch (obj.type) {
    case Value::Type::String: return is_str_method(name);
    case Value::Type::Dict: return is_dict_method(name);
    case Value::Type::List: return !obj.lst().view && is_list_method(name, obj.lst().tuple);
    default: return false;
  }
}

Value call_method(Renderer& r, const Value& obj, const std::string& name, CallArgs& args) {
  switch (obj.type) {
    case Value::Type::String: {
      if (!obj.markup) return str_method(r, obj.str(), name, args);
      // Markup's methods escape plain-string arguments and return Markup again.
      static const char* escaping[] = {"capitalize", "center", "format", "ljust", "lower", "lstrip", "replace", "rjust",
                                       "rstrip", "strip", "swapcase", "title", "upper", "zfill"};
      auto esc = [](Value& v) {
        if (v.is_string() && !v.markup) v = Value::markup_string(html_escape(v.str()));
      };
      CallArgs a = args;
      if (std::find(std::begin(escaping), std::end(escaping), name) != std::end(escaping)) {
        for (auto& v : a.pos) esc(v);
        for (auto& kv : a.kw) esc(kv.second);
      } else if (name == "join" && !a.pos.empty()) {
        std::vector<Value> items = iterate(a.pos[0]);
        for (auto& v : items) esc(v);
        a.pos[0] = Value::list(std::move(items));
      }
      Value out = str_method(r, obj.str(), name, a);
      if (out.is_string()) {
        out.markup = true;
      } else if (out.is_list()) {
        std::vector<Value> items = out.lst().items;
        for (auto& v : items)
          if (v.is_string()) v.markup = true;
        out = Value::list(std::move(items), out.lst().tuple);
      }
      return out;
    }
    case Value::Type::Dict: return dict_method(obj, name, args);
    case Value::Type::List: return list_method(obj, name, args);
    default: throw Error(cat("'", type_name(obj), "' object has no attribute '", name, "'"));
  }
}

void install_globals(Scope& g) {
  g.set("range", make_builtin("range", g_range));
  g.set("namespace", make_builtin("namespace", g_namespace));
  g.set("dict", make_builtin("dict", g_dict));
  g.set("raise_exception", make_builtin("raise_exception", g_raise));
  g.set("strftime_now", make_builtin("strftime_now", g_strftime_now));
  g.set("joiner", make_builtin("joiner", g_joiner));
}

// ---- operators ----------------------------------------------------------------------------------------------------
namespace {
int64_t floordiv_i(int64_t a, int64_t b) {
  int64_t q = a / b;
  if ((a % b != 0) && ((a < 0) != (b < 0))) --q;
  return q;
}
int64_t mod_i(int64_t a, int64_t b) {
  int64_t m = a % b;
  if (m != 0 && ((m < 0) != (b < 0))) m += b;
  return m;
}
// CPython's float divmod.
void divmod_f(double vx, double wx, double* floordiv, double* mod) {
  double m = std::fmod(vx, wx);
  double div = (vx - m) / wx;
  if (m != 0) {
    if ((wx < 0) != (m < 0)) {
      m += wx;
      div -= 1.0;
    }
  } else {
    m = std::copysign(0.0, wx);
  }
  double fd;
  if (div != 0) {
    fd = std::floor(div);
    if (div - fd > 0.5) fd += 1.0;
  } else {
    fd = std::copysign(0.0, vx / wx);
  }
  *floordiv = fd;
  *mod = m;
}
[[noreturn]] void bad_operands(const std::string& op, const Value& a, const Value& b) {
  if (a.is_undefined()) check_defined(a);
  if (b.is_undefined()) check_defined(b);
  if (op == "+" && a.is_string()) throw Error(cat("can only concatenate str (not \"", type_name(b), "\") to str"));
  if (op == "+" && a.is_list()) throw Error(cat("can only concatenate ", type_name(a), " (not \"", type_name(b), "\") to ", type_name(a)));
  throw Error(cat("unsupported operand type(s) for ", op, ": '", type_name(a), "' and '", type_name(b), "'"));
}
Value repeat(const Value& seq, int64_t n) {
  if (seq.is_string()) {
    std::string out;
    for (int64_t i = 0; i < n; ++i) out += seq.str();
    return Value::string(std::move(out));
  }
  std::vector<Value> out;
  for (int64_t i = 0; i < n; ++i) out.insert(out.end(), seq.lst().items.begin(), seq.lst().items.end());
  return Value::list(std::move(out), seq.lst().tuple);
}
}  // namespace

Value binary_op(const std::string& op, const Value& a, const Value& b) {
  if (op == "~") return Value::string(to_str(a) + to_str(b));
  bool nums = a.is_number() && b.is_number();
  bool flt = nums && (a.is_float() || b.is_float());
  if (op == "+") {
    if (nums) return flt ? Value::number(a.as_double() + b.as_double()) : Value::integer(a.as_int() + b.as_int());
    if (a.is_string() && b.is_string()) {
      if (!a.markup && !b.markup) return Value::string(a.str() + b.str());
      return Value::markup_string((a.markup ? a.str() : html_escape(a.str())) + (b.markup ? b.str() : html_escape(b.str())));
    }
    if ((a.is_string() && a.markup) || (b.is_string() && b.markup))
      throw Error(cat("unsupported operand type(s) for +: '", a.markup ? "Markup" : type_name(a), "' and '",
                      b.markup ? "Markup" : type_name(b), "'"));
    if (a.is_list() && b.is_list() && a.lst().tuple == b.lst().tuple && !a.lst().view && !b.lst().view) {
      std::vector<Value> items = a.lst().items;
      items.insert(items.end(), b.lst().items.begin(), b.lst().items.end());
      return Value::list(std::move(items), a.lst().tuple);
    }
    bad_operands(op, a, b);
  }
  if (op == "-") {
    if (nums) return flt ? Value::number(a.as_double() - b.as_double()) : Value::integer(a.as_int() - b.as_int());
    bad_operands(op, a, b);
  }
  if (op == "*") {
    if (nums) return flt ? Value::number(a.as_double() * b.as_double()) : Value::integer(a.as_int() * b.as_int());
    if ((a.is_string() || a.is_list()) && (b.is_int() || b.is_bool())) {
      Value r = repeat(a, b.as_int());
      r.markup = a.markup;
      return r;
    }
    if ((b.is_string() || b.is_list()) && (a.is_int() || a.is_bool())) {
      Value r = repeat(b, a.as_int());
      r.markup = b.markup;
      return r;
    }
    bad_operands(op, a, b);
  }
  if (op == "/") {
    if (!nums) bad_operands(op, a, b);
    if (b.as_double() == 0) throw Error("division by zero");
    return Value::number(a.as_double() / b.as_double());
  }
  if (op == "//" || op == "%") {
    if (op == "%" && a.is_string()) {
      if (!a.markup) return Value::string(percent_format(a.str(), b));
      return Value::markup_string(percent_format(a.str(), b, true));
    }
    if (!nums) bad_operands(op, a, b);
    if (b.as_double() == 0) throw Error(op == "%" ? "modulo by zero" : "integer division or modulo by zero");
    if (!flt) return Value::integer(op == "//" ? floordiv_i(a.as_int(), b.as_int()) : mod_i(a.as_int(), b.as_int()));
    double fd, m;
    divmod_f(a.as_double(), b.as_double(), &fd, &m);
    return Value::number(op == "//" ? fd : m);
  }
  if (op == "**") {
    if (!nums) bad_operands(op, a, b);
    if (!flt && b.as_int() >= 0) {
      int64_t base = a.as_int(), e = b.as_int(), r = 1;
      while (e > 0) {
        if (e & 1) r *= base;
        base *= base;
        e >>= 1;
      }
      return Value::integer(r);
    }
    if (a.as_double() == 0 && b.as_double() < 0) throw Error("0.0 cannot be raised to a negative power");
    double r = std::pow(a.as_double(), b.as_double());
    if (std::isinf(r) && std::isfinite(a.as_double()) && std::isfinite(b.as_double()))
      throw Error("(34, 'Numerical result out of range')");  // Python's float pow raises OverflowError
    return Value::number(r);
  }
  throw Error(cat("unknown operator ", op));
}

bool contains(const Value& c, const Value& item) {
  switch (c.type) {
    case Value::Type::Undefined: return false;
    case Value::Type::String:
      if (!item.is_string()) throw Error(cat("'in <string>' requires string as left operand, not ", type_name(item)));
      return c.str().find(item.str()) != std::string::npos;
    case Value::Type::List:
      for (const auto& x : c.lst().items)
        if (equals(x, item)) return true;
      return false;
    case Value::Type::Dict:
      if ((item.is_list() && !item.lst().tuple) || item.is_dict() || item.is_ns())
        throw Error(cat("unhashable type: '", type_name(item), "'"));
      return c.dct().find(item) != nullptr;
    default: throw Error(cat("argument of type '", type_name(c), "' is not iterable"));
  }
}

Value slice(const Value& obj, const Value& start, const Value& stop, const Value& step_v) {
  // Jinja compiles slices to plain Python subscription (no sandbox fallback), so bad operands raise.
  if (obj.is_undefined()) check_defined(obj);
  if (obj.is_dict()) throw Error("unhashable type: 'slice'");
  if ((!obj.is_list() && !obj.is_string()) || (obj.is_list() && obj.lst().view))
    throw Error(cat("'", type_name(obj), "' object is not subscriptable"));
  for (const Value* v : {&start, &stop, &step_v})
    if (!v->is_none() && !v->is_int() && !v->is_bool())
      throw Error("slice indices must be integers or None or have an __index__ method");
  int64_t step = step_v.is_none() ? 1 : step_v.as_int();
  if (step == 0) throw Error("slice step cannot be zero");
  if (obj.is_list()) {
    const auto& items = obj.lst().items;
    int64_t b, e;
    slice_bounds(int64_t(items.size()), start, stop, step, &b, &e);
    std::vector<Value> out;
    for (int64_t i = b; step > 0 ? i < e : i > e; i += step) out.push_back(items[size_t(i)]);
    return Value::list(std::move(out), obj.lst().tuple);
  }
  U32 u = utf8_decode(obj.str());
  int64_t b, e;
  slice_bounds(int64_t(u.size()), start, stop, step, &b, &e);
  std::string out;
  if (step == 1) out = utf8_encode(U32_view(u).substr(size_t(b), size_t(std::max<int64_t>(0, e - b))));
  else
    for (int64_t i = b; step > 0 ? i < e : i > e; i += step) utf8_append(out, u[size_t(i)]);
  Value r = Value::string(std::move(out));
  r.markup = obj.markup;
  return r;
}

}  // namespace zaya::jinja::detail
