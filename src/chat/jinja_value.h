#pragma once
// Runtime values of the Jinja renderer, modelled on the Python objects Jinja2 works with: None vs Undefined,
// bool/int/float with Python printing and arithmetic rules, code-point strings, lists/tuples, insertion-ordered
// dicts, namespaces (the only mutable object) and callables (macros, builtins, bound methods, loop objects).
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

#include "zaya/error.h"

namespace zaya::jinja::detail {

struct Value;
struct ListData;
struct DictData;
struct Callable;
class Renderer;

using StrPtr = std::shared_ptr<const std::string>;
using ListPtr = std::shared_ptr<const ListData>;
using DictPtr = std::shared_ptr<DictData>;
using FnPtr = std::shared_ptr<const Callable>;

struct Value {
  enum class Type : uint8_t { Undefined, None, Bool, Int, Float, String, List, Dict, Namespace, Callable };

  Value() = default;  // undefined
  static Value none();
  static Value undefined(std::string hint);  // hint: why it is undefined, used in error messages
  static Value boolean(bool b);
  static Value integer(int64_t i);
  static Value number(double f);
  static Value string(std::string s);
  static Value markup_string(std::string s);
  static Value list(std::vector<Value> items, bool tuple = false);
  static Value dict_view(const char* kind, std::vector<Value> items);
  static Value dict(std::vector<std::pair<Value, Value>> items);
  static Value dict(DictPtr d);
  static Value ns(DictPtr d);
  static Value callable(FnPtr f);

  Type type = Type::Undefined;
  // String only: markupsafe.Markup (from |safe / |escape). `+`, `%` and Markup's methods escape plain-string
  // operands, which is what Jinja does even without autoescaping.
  bool markup = false;
  std::variant<std::monostate, bool, int64_t, double, StrPtr, ListPtr, DictPtr, FnPtr> p;

  bool is_undefined() const { return type == Type::Undefined; }
  bool is_none() const { return type == Type::None; }
  bool is_bool() const { return type == Type::Bool; }
  bool is_int() const { return type == Type::Int; }
  bool is_float() const { return type == Type::Float; }
  bool is_number() const { return type == Type::Int || type == Type::Float || type == Type::Bool; }
  bool is_string() const { return type == Type::String; }
  bool is_list() const { return type == Type::List; }
  bool is_dict() const { return type == Type::Dict; }
  bool is_ns() const { return type == Type::Namespace; }
  bool is_callable() const { return type == Type::Callable; }

  bool as_bool() const { return std::get<bool>(p); }
  int64_t as_int() const { return type == Type::Bool ? int64_t(std::get<bool>(p)) : std::get<int64_t>(p); }
  double as_double() const { return type == Type::Float ? std::get<double>(p) : double(as_int()); }
  const std::string& str() const { return *std::get<StrPtr>(p); }
  const ListData& lst() const { return *std::get<ListPtr>(p); }
  const DictData& dct() const { return *std::get<DictPtr>(p); }
  DictData& ns_data() const { return *std::get<DictPtr>(p); }
  const Callable& fn() const { return *std::get<FnPtr>(p); }
  const std::string& undefined_hint() const;
};

struct ListData {
  std::vector<Value> items;
  int depth = 1;  // nesting of lists, dicts and namespaces, this one included (limits::kMaxTemplateValueDepth)
  bool tuple = false;
  // "dict_items" / "dict_keys" / "dict_values" for dict views: iterable but not subscriptable, own repr.
  const char* view = nullptr;
};

// Insertion-ordered mapping; lookups are linear, which is faster than hashing for the small dicts templates see.
struct DictData {
  std::vector<std::pair<Value, Value>> items;
  int depth = 1;  // as ListData::depth; a namespace's only grows as attributes are set
  const Value* find(const Value& key) const;
  const Value* find(std::string_view key) const;
  void set(const Value& key, Value v);
};

struct CallArgs {
  std::vector<Value> pos;
  std::vector<std::pair<std::string, Value>> kw;
};

struct Callable {
  virtual ~Callable() = default;
  virtual Value call(Renderer& r, CallArgs& args) const = 0;
  // Attribute lookup on the callable (loop objects expose loop.index etc.); undefined when absent.
  virtual Value attr(std::string_view name) const;
  virtual std::string repr() const;
  std::string name;
};

// ---- Python semantics -------------------------------------------------------------------------------------------
bool truthy(const Value& v);
std::string type_name(const Value& v);  // Python type name for messages: 'str', 'int', 'dict', ...
std::string to_str(const Value& v);     // str(v); undefined prints as ""
std::string repr(const Value& v);       // repr(v)
std::string py_float_repr(double d);
std::string py_str_repr(std::string_view s);
std::string html_escape(std::string_view s);  // markupsafe.escape
bool equals(const Value& a, const Value& b);
int compare(const Value& a, const Value& b);  // <0, 0, >0; throws Error when Python would raise TypeError
// Python iteration: list items, dict keys, string code points, undefined -> empty. Throws otherwise.
std::vector<Value> iterate(const Value& v);

struct JsonOptions {
  bool ensure_ascii = false;
  std::string indent;  // used when has_indent
  bool has_indent = false;
  std::string item_sep = ", ", key_sep = ": ";
  bool sort_keys = false;
};
std::string to_json(const Value& v, const JsonOptions& opts);  // Python json.dumps
Value from_json(const nlohmann::ordered_json& j);

// ---- limits (zaya/limits.h, docs/limits.md) ---------------------------------------------------------------------
// The work budget of the render running on this thread. Outside a render (templates parsed, values built by a
// caller) only the size caps apply.
inline constexpr size_t kStringCap = size_t{64} << 20;  // == limits::kMaxTemplateStringBytes (static_assert'ed)
struct RenderBudget {
  uint64_t steps = 0, bytes = 0;
  int64_t deadline_ns = 0;           // steady_clock, 0: none
  uintptr_t stack_base = 0;          // frame address where the render started
};
// Installs a budget for this thread for the scope's lifetime (the previous one comes back after).
class BudgetScope {
 public:
  explicit BudgetScope(RenderBudget& b);
  ~BudgetScope();
  BudgetScope(const BudgetScope&) = delete;
  BudgetScope& operator=(const BudgetScope&) = delete;

 private:
  RenderBudget* prev_;
};
void charge_steps(uint64_t n);              // evaluation steps, loop iterations, comparisons; throws Error when over
void check_stack();                         // throws Error when the render nears the end of the stack
void check_string_size(uint64_t bytes);     // before building a string of `bytes`
void check_list_size(uint64_t items);       // before building a list of `items`
void check_width(int64_t width);            // a padding width
// While a string is being appended to (join, replace, repr, tojson, %): throws once it passes the string cap.
inline void check_growing(const std::string& s) {
  if (s.size() > kStringCap) check_string_size(s.size());
}
int value_depth(const Value& v);            // 0 for scalars
// Checked 64-bit integer arithmetic: Python's ints never overflow, ours raise an Error instead.
int64_t checked_add(int64_t a, int64_t b);
int64_t checked_sub(int64_t a, int64_t b);
int64_t checked_mul(int64_t a, int64_t b);
int64_t checked_neg(int64_t a);
int64_t float_to_int(double d);  // Python int(float): NaN/inf and out-of-range values raise

// ---- UTF-8 / code points ------------------------------------------------------------------------------------------
// Invalid bytes decode to U+DC80+byte (Python's surrogateescape) so encoding gives back the same bytes.
std::u32string utf8_decode(std::string_view s);
std::string utf8_encode(std::u32string_view s);
void utf8_append(std::string& out, char32_t c);
size_t utf8_length(std::string_view s);
bool py_isspace(char32_t c);
char32_t py_lower(char32_t c);
char32_t py_upper(char32_t c);
bool py_iscased(char32_t c);
bool py_isalnum(char32_t c);
std::string str_upper(std::string_view s);
std::string str_lower(std::string_view s);

}  // namespace zaya::jinja::detail
