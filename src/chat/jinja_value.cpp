#include "chat/jinja_value.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "zaya/limits.h"

namespace zaya::jinja::detail {
namespace {

// 1 + the deepest child; throws past limits::kMaxTemplateValueDepth.
int nest_depth(int deepest_child) {
  if (deepest_child + 1 > limits::kMaxTemplateValueDepth)
    throw Error(cat("values nested deeper than ", limits::kMaxTemplateValueDepth,
                    " levels (zaya::limits::kMaxTemplateValueDepth)"));
  return deepest_child + 1;
}

int list_depth(const std::vector<Value>& items) {
  int d = 0;
  for (const auto& x : items) d = std::max(d, value_depth(x));
  return nest_depth(d);
}

}  // namespace

// ---- construction -------------------------------------------------------------------------------------------------
Value Value::none() {
  Value v;
  v.type = Type::None;
  return v;
}
Value Value::undefined(std::string hint) {
  Value v;
  v.p = std::make_shared<const std::string>(std::move(hint));
  return v;
}
Value Value::boolean(bool b) {
  Value v;
  v.type = Type::Bool;
  v.p = b;
  return v;
}
Value Value::integer(int64_t i) {
  Value v;
  v.type = Type::Int;
  v.p = i;
  return v;
}
Value Value::number(double f) {
  Value v;
  v.type = Type::Float;
  v.p = f;
  return v;
}
Value Value::string(std::string s) {
  check_string_size(s.size());
  Value v;
  v.type = Type::String;
  v.p = std::make_shared<const std::string>(std::move(s));
  return v;
}
Value Value::markup_string(std::string s) {
  Value v = string(std::move(s));
  v.markup = true;
  return v;
}
Value Value::list(std::vector<Value> items, bool tuple) {
  check_list_size(items.size());
  auto d = std::make_shared<ListData>();
  d->depth = list_depth(items);
  d->items = std::move(items);
  d->tuple = tuple;
  Value v;
  v.type = Type::List;
  v.p = ListPtr(std::move(d));
  return v;
}
Value Value::dict_view(const char* kind, std::vector<Value> items) {
  check_list_size(items.size());
  auto d = std::make_shared<ListData>();
  d->depth = list_depth(items);
  d->items = std::move(items);
  d->view = kind;
  Value v;
  v.type = Type::List;
  v.p = ListPtr(std::move(d));
  return v;
}
Value Value::dict(std::vector<std::pair<Value, Value>> items) {
  check_list_size(items.size());
  auto d = std::make_shared<DictData>();
  int deepest = 0;
  for (const auto& [k, x] : items) deepest = std::max({deepest, value_depth(k), value_depth(x)});
  d->depth = nest_depth(deepest);
  d->items = std::move(items);
  return dict(std::move(d));
}
Value Value::dict(DictPtr d) {
  Value v;
  v.type = Type::Dict;
  v.p = std::move(d);
  return v;
}
Value Value::ns(DictPtr d) {
  Value v;
  v.type = Type::Namespace;
  v.p = std::move(d);
  return v;
}
Value Value::callable(FnPtr f) {
  Value v;
  v.type = Type::Callable;
  v.p = std::move(f);
  return v;
}

const std::string& Value::undefined_hint() const {
  static const std::string empty;
  if (auto* s = std::get_if<StrPtr>(&p)) return **s;
  return empty;
}

const Value* DictData::find(const Value& key) const {
  if (key.is_string()) return find(std::string_view(key.str()));
  if (items.size() > 16) charge_steps(items.size() / 16);
  for (const auto& [k, v] : items)
    if (equals(k, key)) return &v;
  return nullptr;
}

const Value* DictData::find(std::string_view key) const {
  if (items.size() > 16) charge_steps(items.size() / 16);  // a linear scan
  for (const auto& [k, v] : items)
    if (k.is_string() && k.str() == key) return &v;
  return nullptr;
}

void DictData::set(const Value& key, Value v) {
  charge_steps(1 + items.size() / 16);  // the linear scan below
  depth = std::max(depth, nest_depth(std::max(value_depth(key), value_depth(v))));
  for (auto& [k, old] : items)
    if (equals(k, key)) {
      old = std::move(v);
      return;
    }
  items.emplace_back(key, std::move(v));
}

Value Callable::attr(std::string_view) const { return Value::undefined("callable has no such attribute"); }
std::string Callable::repr() const { return "<function " + name + ">"; }

// ---- UTF-8 --------------------------------------------------------------------------------------------------------
std::u32string utf8_decode(std::string_view s) {
  std::u32string out;
  out.reserve(s.size());
  size_t i = 0, n = s.size();
  while (i < n) {
    unsigned char c = s[i];
    if (c < 0x80) {
      out.push_back(c);
      ++i;
      continue;
    }
    int len = c >= 0xF0 && c < 0xF5 ? 4 : c >= 0xE0 ? 3 : c >= 0xC2 && c < 0xE0 ? 2 : 0;
    if (c >= 0xF5) len = 0;
    char32_t cp = len == 2 ? c & 0x1F : len == 3 ? c & 0x0F : c & 0x07;
    bool ok = len > 0 && i + len <= n;
    for (int k = 1; ok && k < len; ++k) {
      unsigned char cc = s[i + k];
      if ((cc & 0xC0) != 0x80) ok = false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    if (ok && ((len == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF))))
      ok = false;
    if (!ok) {
      out.push_back(0xDC00 + c);  // surrogateescape
      ++i;
      continue;
    }
    out.push_back(cp);
    i += len;
  }
  return out;
}

void utf8_append(std::string& out, char32_t c) {
  if (c < 0x80) {
    out.push_back(char(c));
  } else if (c < 0x800) {
    out.push_back(char(0xC0 | (c >> 6)));
    out.push_back(char(0x80 | (c & 0x3F)));
  } else if (c >= 0xDC80 && c <= 0xDCFF) {
    out.push_back(char(c - 0xDC00));  // surrogateescape round trip
  } else if (c < 0x10000) {
    out.push_back(char(0xE0 | (c >> 12)));
    out.push_back(char(0x80 | ((c >> 6) & 0x3F)));
    out.push_back(char(0x80 | (c & 0x3F)));
  } else {
    out.push_back(char(0xF0 | (c >> 18)));
    out.push_back(char(0x80 | ((c >> 12) & 0x3F)));
    out.push_back(char(0x80 | ((c >> 6) & 0x3F)));
    out.push_back(char(0x80 | (c & 0x3F)));
  }
}

std::string utf8_encode(std::u32string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char32_t c : s) utf8_append(out, c);
  return out;
}

size_t utf8_length(std::string_view s) {
  bool ascii = std::all_of(s.begin(), s.end(), [](char c) { return (unsigned char)c < 0x80; });
  return ascii ? s.size() : utf8_decode(s).size();
}

bool py_isspace(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

// Simple case mapping for ASCII, Latin-1, Latin Extended-A, Greek, Cyrillic and fullwidth Latin; other scripts
// are left unchanged (documented limitation).
char32_t py_lower(char32_t c) {
  if (c < 0x80) return (c >= 'A' && c <= 'Z') ? c + 32 : c;
  if ((c >= 0xC0 && c <= 0xDE && c != 0xD7)) return c + 32;
  if (c >= 0x100 && c <= 0x17F) {
    if (c == 0x130) return 'i';
    if (c == 0x178) return 0xFF;
    if ((c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17E)) return (c & 1) ? c + 1 : c;
    if (c == 0x131 || c == 0x138 || c == 0x149 || c == 0x17F) return c;
    return (c & 1) ? c : c + 1;
  }
  if (c >= 0x391 && c <= 0x3AB && c != 0x3A2) return c + 32;
  if (c >= 0x410 && c <= 0x42F) return c + 32;
  if (c >= 0x400 && c <= 0x40F) return c + 80;
  if (c >= 0xFF21 && c <= 0xFF3A) return c + 32;
  return c;
}

char32_t py_upper(char32_t c) {
  if (c < 0x80) return (c >= 'a' && c <= 'z') ? c - 32 : c;
  if (c == 0xB5) return 0x39C;
  if (c >= 0xE0 && c <= 0xFE && c != 0xF7) return c - 32;
  if (c == 0xFF) return 0x178;
  if (c >= 0x100 && c <= 0x17F) {
    if (c == 0x131) return 'I';
    if (c == 0x17F) return 'S';
    if ((c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17E)) return (c & 1) ? c : c - 1;
    if (c == 0x130 || c == 0x138 || c == 0x149 || c == 0x178) return c;
    return (c & 1) ? c - 1 : c;
  }
  if (c == 0x3C2) return 0x3A3;
  if (c >= 0x3B1 && c <= 0x3CB) return c - 32;
  if (c >= 0x430 && c <= 0x44F) return c - 32;
  if (c >= 0x450 && c <= 0x45F) return c - 80;
  if (c >= 0xFF41 && c <= 0xFF5A) return c - 32;
  return c;
}

bool py_iscased(char32_t c) { return py_lower(c) != c || py_upper(c) != c || c == 0xDF; }

bool py_isalnum(char32_t c) {
  if (c < 0x80) return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
  // Outside ASCII treat letters of every script as alphanumeric except spaces, punctuation-ish Latin-1 and controls.
  if (c < 0xC0) return c == 0xAA || c == 0xB5 || c == 0xBA || c == 0xB2 || c == 0xB3 || c == 0xB9;
  if (c == 0xD7 || c == 0xF7) return false;
  if (py_isspace(c)) return false;
  if (c >= 0x2000 && c <= 0x2BFF) return false;  // general punctuation, symbols, arrows...
  if (c >= 0x3000 && c <= 0x303F) return false;  // CJK punctuation
  if (c >= 0xFF00 && c <= 0xFF0F) return false;
  if (c >= 0x1F000 && c <= 0x1FAFF) return false;  // emoji
  if (c >= 0xDC80 && c <= 0xDCFF) return false;
  return true;
}

std::string str_upper(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char32_t c : utf8_decode(s)) {
    if (c == 0xDF) {
      out += "SS";  // Python: 'ß'.upper() == 'SS'
      continue;
    }
    utf8_append(out, py_upper(c));
  }
  return out;
}

std::string str_lower(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char32_t c : utf8_decode(s)) {
    if (c == 0x130) {
      out += "i\xCC\x87";  // Python: 'İ'.lower() == 'i̇'
      continue;
    }
    utf8_append(out, py_lower(c));
  }
  return out;
}

// ---- printing -----------------------------------------------------------------------------------------------------
std::string type_name(const Value& v) {
  switch (v.type) {
    case Value::Type::Undefined: return "Undefined";
    case Value::Type::None: return "NoneType";
    case Value::Type::Bool: return "bool";
    case Value::Type::Int: return "int";
    case Value::Type::Float: return "float";
    case Value::Type::String: return "str";
    case Value::Type::List: return v.lst().view ? v.lst().view : v.lst().tuple ? "tuple" : "list";
    case Value::Type::Dict: return "dict";
    case Value::Type::Namespace: return "Namespace";
    case Value::Type::Callable: return "function";
  }
  return "object";
}

// Python repr(float): the shortest digit string that round-trips, fixed notation for exponents in [-4, 16).
std::string py_float_repr(double d) {
  if (std::isnan(d)) return "nan";
  if (std::isinf(d)) return d > 0 ? "inf" : "-inf";
  if (d == 0) return std::signbit(d) ? "-0.0" : "0.0";
  char buf[64];
  int prec = 1;
  for (; prec <= 17; ++prec) {
    std::snprintf(buf, sizeof buf, "%.*e", prec - 1, d);
    if (std::strtod(buf, nullptr) == d) break;
  }
  std::string s = buf;  // [-]d[.ddd]e[+-]XX
  bool neg = s[0] == '-';
  if (neg) s.erase(0, 1);
  size_t epos = s.find('e');
  int exp = std::atoi(s.c_str() + epos + 1);
  std::string digits;
  for (size_t i = 0; i < epos; ++i)
    if (s[i] != '.') digits.push_back(s[i]);
  while (digits.size() > 1 && digits.back() == '0') digits.pop_back();
  std::string out = neg ? "-" : "";
  if (exp < -4 || exp >= 16) {
    out += digits[0];
    if (digits.size() > 1) out += "." + digits.substr(1);
    char eb[16];
    std::snprintf(eb, sizeof eb, "e%c%02d", exp < 0 ? '-' : '+', std::abs(exp));
    out += eb;
  } else if (exp < 0) {
    out += "0." + std::string(size_t(-exp - 1), '0') + digits;
  } else {
    if (digits.size() <= size_t(exp) + 1) {
      out += digits + std::string(size_t(exp) + 1 - digits.size(), '0') + ".0";
    } else {
      out += digits.substr(0, size_t(exp) + 1) + "." + digits.substr(size_t(exp) + 1);
    }
  }
  return out;
}

static bool py_isprintable(char32_t c) {
  if (c < 0x20 || (c >= 0x7F && c <= 0xA0) || c == 0xAD) return false;
  if ((c >= 0x2000 && c <= 0x200F) || (c >= 0x2028 && c <= 0x202F) || (c >= 0x205F && c <= 0x206F)) return false;
  if (c == 0x1680 || c == 0x3000 || c == 0xFEFF || (c >= 0xD800 && c <= 0xDFFF) || (c >= 0xE000 && c <= 0xF8FF))
    return false;
  if (c == 0xFFF9 || c == 0xFFFA || c == 0xFFFB || c == 0xFFFE || c == 0xFFFF) return false;
  return true;
}

std::string py_str_repr(std::string_view s) {
  bool has_sq = s.find('\'') != std::string_view::npos, has_dq = s.find('"') != std::string_view::npos;
  char q = (has_sq && !has_dq) ? '"' : '\'';
  std::string out(1, q);
  for (char32_t c : utf8_decode(s)) {
    if (c == char32_t(q) || c == '\\') {
      out += '\\';
      out += char(c);
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (!py_isprintable(c)) {
      char buf[16];
      if (c < 0x100)
        std::snprintf(buf, sizeof buf, "\\x%02x", unsigned(c));
      else if (c < 0x10000)
        std::snprintf(buf, sizeof buf, "\\u%04x", unsigned(c));
      else
        std::snprintf(buf, sizeof buf, "\\U%08x", unsigned(c));
      out += buf;
    } else {
      utf8_append(out, c);
    }
  }
  out += q;
  return out;
}

std::string html_escape(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&#34;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return out;
}

namespace {
// A string is printed at least as long as it is: a result that will pass the cap fails before the work is done.
void grows_by(const std::string& out, const Value& item) {
  if (item.is_string() && out.size() + item.str().size() > kStringCap) check_string_size(out.size() + item.str().size());
}

// repr() of containers in progress on this thread: one met again inside itself (only namespaces make cycles) prints
// as Python's "[...]" / "{...}", and
// nesting (a namespace's depth can go stale as attributes are set on what it holds) is bounded.
thread_local std::vector<const void*> t_repr_open;  // the ListData / DictData being printed
thread_local int t_repr_depth = 0;
struct ReprLevel {
  ReprLevel() {
    if (++t_repr_depth > limits::kMaxTemplateValueDepth) {
      --t_repr_depth;
      throw Error(cat("values nested deeper than ", limits::kMaxTemplateValueDepth,
                      " levels (zaya::limits::kMaxTemplateValueDepth)"));
    }
  }
  ~ReprLevel() { --t_repr_depth; }
};
struct Open {
  bool again;
  explicit Open(const void* p) : again(std::find(t_repr_open.begin(), t_repr_open.end(), p) != t_repr_open.end()) {
    if (!again) t_repr_open.push_back(p);
  }
  ~Open() {
    if (!again) t_repr_open.pop_back();
  }
};
}  // namespace

std::string repr(const Value& v) {
  if (v.is_list() || v.is_dict() || v.is_ns()) check_stack();
  ReprLevel level;
  switch (v.type) {
    case Value::Type::Undefined: return "Undefined";
    case Value::Type::String: return v.markup ? "Markup(" + py_str_repr(v.str()) + ")" : py_str_repr(v.str());
    case Value::Type::List: {
      const auto& l = v.lst();
      Open open(&l);
      if (open.again) return l.tuple ? "(...)" : "[...]";
      if (l.view) return std::string(l.view) + "(" + repr(Value::list(l.items)) + ")";
      std::string out = l.tuple ? "(" : "[";
      for (size_t i = 0; i < l.items.size(); ++i) {
        if (i) out += ", ";
        grows_by(out, l.items[i]);
        out += repr(l.items[i]);
        check_growing(out);
      }
      if (l.tuple && l.items.size() == 1) out += ",";
      out += l.tuple ? ")" : "]";
      return out;
    }
    case Value::Type::Dict: {
      Open open(&v.dct());
      if (open.again) return "{...}";
      std::string out = "{";
      bool first = true;
      for (const auto& [k, x] : v.dct().items) {
        if (!first) out += ", ";
        first = false;
        grows_by(out, x);
        out += repr(k) + ": " + repr(x);
        check_growing(out);
      }
      return out + "}";
    }
    case Value::Type::Namespace: return "<Namespace " + repr(Value::dict(std::get<DictPtr>(v.p))) + ">";
    default: return to_str(v);
  }
}

std::string to_str(const Value& v) {
  switch (v.type) {
    case Value::Type::Undefined: return "";
    case Value::Type::None: return "None";
    case Value::Type::Bool: return v.as_bool() ? "True" : "False";
    case Value::Type::Int: return std::to_string(v.as_int());
    case Value::Type::Float: return py_float_repr(v.as_double());
    case Value::Type::String: return v.str();
    case Value::Type::Callable: return v.fn().repr();
    default: return repr(v);
  }
}

bool truthy(const Value& v) {
  switch (v.type) {
    case Value::Type::Undefined:
    case Value::Type::None: return false;
    case Value::Type::Bool: return v.as_bool();
    case Value::Type::Int: return v.as_int() != 0;
    case Value::Type::Float: return v.as_double() != 0.0;
    case Value::Type::String: return !v.str().empty();
    case Value::Type::List: return !v.lst().items.empty();
    case Value::Type::Dict: return !v.dct().items.empty();
    default: return true;
  }
}

bool equals(const Value& a, const Value& b) {
  if (a.is_number() && b.is_number()) {
    if (a.is_float() || b.is_float()) return a.as_double() == b.as_double();
    return a.as_int() == b.as_int();
  }
  if (a.type != b.type) return false;
  switch (a.type) {
    case Value::Type::Undefined:
    case Value::Type::None: return true;
    case Value::Type::String: return a.str() == b.str();
    case Value::Type::List: {
      const auto &x = a.lst(), &y = b.lst();
      if (x.tuple != y.tuple || x.view != y.view || x.items.size() != y.items.size()) return false;
      for (size_t i = 0; i < x.items.size(); ++i)
        if (!equals(x.items[i], y.items[i])) return false;
      return true;
    }
    case Value::Type::Dict: {
      const auto &x = a.dct(), &y = b.dct();
      if (x.items.size() != y.items.size()) return false;
      for (const auto& [k, v] : x.items) {
        const Value* o = y.find(k);
        if (!o || !equals(v, *o)) return false;
      }
      return true;
    }
    case Value::Type::Namespace: return std::get<DictPtr>(a.p) == std::get<DictPtr>(b.p);
    case Value::Type::Callable: return std::get<FnPtr>(a.p) == std::get<FnPtr>(b.p);
    default: return false;
  }
}

int compare(const Value& a, const Value& b) {
  if (a.is_number() && b.is_number()) {
    if (a.is_float() || b.is_float()) {
      double x = a.as_double(), y = b.as_double();
      return x < y ? -1 : x > y ? 1 : 0;
    }
    int64_t x = a.as_int(), y = b.as_int();
    return x < y ? -1 : x > y ? 1 : 0;
  }
  if (a.is_string() && b.is_string()) {
    int c = a.str().compare(b.str());  // UTF-8 byte order == code point order
    return c < 0 ? -1 : c > 0 ? 1 : 0;
  }
  if (a.is_list() && b.is_list() && a.lst().tuple == b.lst().tuple && !a.lst().view && !b.lst().view) {
    const auto &x = a.lst().items, &y = b.lst().items;
    for (size_t i = 0; i < x.size() && i < y.size(); ++i) {
      if (equals(x[i], y[i])) continue;
      return compare(x[i], y[i]);
    }
    return x.size() < y.size() ? -1 : x.size() > y.size() ? 1 : 0;
  }
  throw Error(cat("'<' not supported between instances of '", type_name(a), "' and '", type_name(b), "'"));
}

std::vector<Value> iterate(const Value& v) {
  switch (v.type) {
    case Value::Type::Undefined: return {};
    case Value::Type::List: return v.lst().items;
    case Value::Type::Dict: {
      std::vector<Value> keys;
      keys.reserve(v.dct().items.size());
      for (const auto& kv : v.dct().items) keys.push_back(kv.first);
      return keys;
    }
    case Value::Type::String: {
      std::vector<Value> out;
      std::string tmp;
      const std::u32string cps = utf8_decode(v.str());
      check_list_size(cps.size());
      for (char32_t c : cps) {
        tmp.clear();
        utf8_append(tmp, c);
        out.push_back(Value::string(tmp));
      }
      return out;
    }
    default: throw Error(cat("'", type_name(v), "' object is not iterable"));
  }
}

// ---- JSON ---------------------------------------------------------------------------------------------------------
static void json_string(std::string& out, std::string_view s, bool ensure_ascii) {
  out += '"';
  for (char32_t c : utf8_decode(s)) {
    switch (c) {
      case '"': out += "\\\""; continue;
      case '\\': out += "\\\\"; continue;
      case '\n': out += "\\n"; continue;
      case '\r': out += "\\r"; continue;
      case '\t': out += "\\t"; continue;
      case '\b': out += "\\b"; continue;
      case '\f': out += "\\f"; continue;
      default: break;
    }
    char buf[16];
    if (c < 0x20 || (ensure_ascii && c >= 0x7F)) {
      if (c >= 0x10000) {
        char32_t v = c - 0x10000;
        std::snprintf(buf, sizeof buf, "\\u%04x\\u%04x", unsigned(0xD800 + (v >> 10)), unsigned(0xDC00 + (v & 0x3FF)));
      } else {
        std::snprintf(buf, sizeof buf, "\\u%04x", unsigned(c));
      }
      out += buf;
    } else {
      utf8_append(out, c);
    }
  }
  out += '"';
}

static std::string json_float(double d) {
  if (std::isnan(d)) return "NaN";
  if (std::isinf(d)) return d > 0 ? "Infinity" : "-Infinity";
  return py_float_repr(d);
}

static void json_dump(std::string& out, const Value& v, const JsonOptions& o, int level) {
  if (level > limits::kMaxTemplateValueDepth)
    throw Error(cat("values nested deeper than ", limits::kMaxTemplateValueDepth,
                    " levels (zaya::limits::kMaxTemplateValueDepth)"));
  auto newline = [&](int lvl) {
    out += '\n';
    for (int i = 0; i < lvl; ++i) out += o.indent;
  };
  switch (v.type) {
    case Value::Type::None: out += "null"; return;
    case Value::Type::Bool: out += v.as_bool() ? "true" : "false"; return;
    case Value::Type::Int: out += std::to_string(v.as_int()); return;
    case Value::Type::Float: out += json_float(v.as_double()); return;
    case Value::Type::String:
      grows_by(out, v);
      json_string(out, v.str(), o.ensure_ascii);
      return;
    case Value::Type::List: {
      if (v.lst().view) throw Error(cat("Object of type ", v.lst().view, " is not JSON serializable"));
      const auto& items = v.lst().items;
      if (items.empty()) {
        out += "[]";
        return;
      }
      out += '[';
      for (size_t i = 0; i < items.size(); ++i) {
        if (i) out += o.item_sep;
        if (o.has_indent) newline(level + 1);
        json_dump(out, items[i], o, level + 1);
        check_growing(out);
      }
      if (o.has_indent) newline(level);
      out += ']';
      return;
    }
    case Value::Type::Dict: {
      std::vector<const std::pair<Value, Value>*> items;
      for (const auto& kv : v.dct().items) items.push_back(&kv);
      if (items.empty()) {
        out += "{}";
        return;
      }
      if (o.sort_keys)
        std::stable_sort(items.begin(), items.end(), [](auto* a, auto* b) { return compare(a->first, b->first) < 0; });
      out += '{';
      bool first = true;
      for (const auto* kv : items) {
        if (!first) out += o.item_sep;
        first = false;
        if (o.has_indent) newline(level + 1);
        const Value& k = kv->first;
        if (k.is_string()) {
          json_string(out, k.str(), o.ensure_ascii);
        } else if (k.is_bool()) {
          out += k.as_bool() ? "\"true\"" : "\"false\"";
        } else if (k.is_int()) {
          out += "\"" + std::to_string(k.as_int()) + "\"";
        } else if (k.is_float()) {
          out += "\"" + json_float(k.as_double()) + "\"";
        } else if (k.is_none()) {
          out += "\"null\"";
        } else {
          throw Error(cat("keys must be str, int, float, bool or None, not ", type_name(k)));
        }
        out += o.key_sep;
        json_dump(out, kv->second, o, level + 1);
        check_growing(out);
      }
      if (o.has_indent) newline(level);
      out += '}';
      return;
    }
    default: throw Error(cat("Object of type ", type_name(v), " is not JSON serializable"));
  }
}

std::string to_json(const Value& v, const JsonOptions& opts) {
  std::string out;
  json_dump(out, v, opts, 0);
  return out;
}

static Value from_json_at(const nlohmann::ordered_json& j, int depth) {
  using J = nlohmann::ordered_json;
  if (depth > limits::kMaxTemplateValueDepth)
    throw Error(cat("chat template context: JSON nested deeper than ", limits::kMaxTemplateValueDepth,
                    " levels (zaya::limits::kMaxTemplateValueDepth)"));
  switch (j.type()) {
    case J::value_t::null: return Value::none();
    case J::value_t::boolean: return Value::boolean(j.get<bool>());
    case J::value_t::number_integer: return Value::integer(j.get<int64_t>());
    case J::value_t::number_unsigned: {
      uint64_t u = j.get<uint64_t>();
      if (u > uint64_t(INT64_MAX)) return Value::number(double(u));
      return Value::integer(int64_t(u));
    }
    case J::value_t::number_float: return Value::number(j.get<double>());
    case J::value_t::string: return Value::string(j.get<std::string>());
    case J::value_t::array: {
      std::vector<Value> items;
      items.reserve(j.size());
      for (const auto& x : j) items.push_back(from_json_at(x, depth + 1));
      return Value::list(std::move(items));
    }
    case J::value_t::object: {
      std::vector<std::pair<Value, Value>> items;
      items.reserve(j.size());
      for (auto it = j.begin(); it != j.end(); ++it) items.emplace_back(Value::string(it.key()), from_json_at(it.value(), depth + 1));
      return Value::dict(std::move(items));
    }
    default: throw Error("chat template context: unsupported JSON value (binary)");
  }
}

Value from_json(const nlohmann::ordered_json& j) { return from_json_at(j, 1); }

}  // namespace zaya::jinja::detail
