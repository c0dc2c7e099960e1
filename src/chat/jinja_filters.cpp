// Jinja's filters (`x | name(...)`) and tests (`x is name(...)`): their implementations, the name tables, and the
// lookups the parser and evaluator call (has_filter / call_filter, has_test / call_test).
#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "chat/jinja_builtins_internal.h"

namespace zaya::jinja::detail {
namespace {

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
    else {
      const int64_t w = want_int(ind, "indent");
      check_width(w);
      o.indent = std::string(size_t(std::max<int64_t>(0, w)), ' ');
    }
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
    check_growing(out);
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
    charge_steps(1 + seen.size() / 16);  // quadratic in the number of distinct items
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

}  // namespace

Value dict_items(const Value& v) {
  std::vector<Value> out;
  for (const auto& [k, x] : v.dct().items) out.push_back(Value::list({k, x}, true));
  return Value::list(std::move(out));
}

namespace {

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
  if (b.has(0)) {
    if (b.get(0)->is_string()) {
      ind = b.get(0)->str();
    } else {
      const int64_t w = want_int(*b.get(0), "width");
      check_width(w);
      ind = std::string(size_t(std::max<int64_t>(0, w)), ' ');
    }
  }
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
    check_growing(out);
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
  if (v.is_int() || v.is_bool()) return Value::integer(v.as_int() < 0 ? checked_neg(v.as_int()) : v.as_int());
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
  double p = std::pow(10.0, -double(nd));
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
      double p = std::pow(10.0, -double(prec));
      return Value::integer(float_to_int(std::nearbyint(double(v.as_int()) / p) * p));
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
    return Value::integer(float_to_int(v.as_double()));
  }
  if (v.is_string()) {
    if (auto i = parse_py_int(v.str(), base)) return Value::integer(*i);
    if (auto d = parse_py_float(v.str()); d && std::isfinite(*d)) return Value::integer(float_to_int(*d));
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
    if (b.has(1) && !b.get(1)->is_none()) {
      check_list_size(uint64_t(n));
      while (int64_t(tmp.size()) < n) tmp.push_back(*b.get(1));
    }
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
  check_width(w);
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
  if (__int128(u.size()) <= __int128(length) + leeway) return Value::string(utf8_encode(u));
  int64_t cut = std::max<int64_t>(0, int64_t(std::min<__int128>(__int128(length) - int64_t(ue.size()), INT64_MAX)));
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

}  // namespace

// ---- entry points -------------------------------------------------------------------------------------------------
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

}  // namespace zaya::jinja::detail
