// The Python methods templates call on values (`s.strip()`, `d.items()`, `l.index(x)`...), including Markup's
// escaping variants, and the global functions (range, namespace, dict, raise_exception, strftime_now, joiner).
#include <algorithm>
#include <ctime>
#include <memory>
#include <string>
#include <vector>

#include "chat/jinja_builtins_internal.h"
#include "zaya/limits.h"

namespace zaya::jinja::detail {
namespace {

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
      check_growing(out);
    }
    return Value::string(out);
  }
  if (m == "format") return Value::string(str_format(r, s, a));
  if (m == "center" || m == "ljust" || m == "rjust") {
    ArgBinder b(m.c_str(), a, {"width", "fillchar"});
    int64_t w = b.has(0) ? want_int(*b.get(0), "width") : 0;
    check_width(w);
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
    check_width(w);
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
  // The length in 128 bits: stop - start and the rounding overflow 64 (range(0, 2**63 - 1, 2**62)).
  const __int128 span = step > 0 ? __int128(stop) - start : __int128(start) - stop;
  const __int128 st = step > 0 ? __int128(step) : -__int128(step);
  const __int128 len = span > 0 ? (span + st - 1) / st : 0;
  if (len > limits::kMaxTemplateRange)
    throw Error(cat("Range too big. The sandbox blocks ranges larger than MAX_RANGE (", limits::kMaxTemplateRange, ")."));
  const int64_t n = int64_t(len);
  std::vector<Value> out;
  out.reserve(size_t(n));
  for (int64_t i = 0; i < n; ++i) out.push_back(Value::integer(int64_t(__int128(start) + __int128(i) * step)));
  return Value::list(std::move(out));
}

Value g_namespace(Renderer& r, CallArgs& a) {
  auto d = std::make_shared<DictData>();
  r.track(d);
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

// ---- entry points -------------------------------------------------------------------------------------------------
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

}  // namespace zaya::jinja::detail
