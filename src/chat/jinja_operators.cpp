// Python's binary operators, `in` and slicing on template values, shared by the evaluator (jinja_eval.cpp) and the
// filters; declared in jinja_eval.h.
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "chat/jinja_builtins_internal.h"

namespace zaya::jinja::detail {
namespace {

int64_t floordiv_i(int64_t a, int64_t b) {
  if (b == -1) return checked_neg(a);  // INT64_MIN / -1 traps
  int64_t q = a / b;
  if ((a % b != 0) && ((a < 0) != (b < 0))) --q;
  return q;
}
int64_t mod_i(int64_t a, int64_t b) {
  if (b == -1) return 0;  // INT64_MIN % -1 traps
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
  check_defined(a);
  check_defined(b);
  if (op == "+" && a.is_string()) throw Error(cat("can only concatenate str (not \"", type_name(b), "\") to str"));
  if (op == "+" && a.is_list()) throw Error(cat("can only concatenate ", type_name(a), " (not \"", type_name(b), "\") to ", type_name(a)));
  throw Error(cat("unsupported operand type(s) for ", op, ": '", type_name(a), "' and '", type_name(b), "'"));
}
// seq * n, its size checked before anything is built.
Value repeat(const Value& seq, int64_t n) {
  if (n <= 0) n = 0;
  const uint64_t unit = seq.is_string() ? seq.str().size() : seq.lst().items.size();
  const uint64_t total = unit == 0 ? 0 : (uint64_t(n) > UINT64_MAX / unit ? UINT64_MAX : unit * uint64_t(n));
  if (seq.is_string()) {
    check_string_size(total);
    std::string out;
    out.reserve(size_t(total));
    for (int64_t i = 0; i < n && unit; ++i) out += seq.str();
    return Value::string(std::move(out));
  }
  check_list_size(total);
  std::vector<Value> out;
  out.reserve(size_t(total));
  for (int64_t i = 0; i < n && unit; ++i) out.insert(out.end(), seq.lst().items.begin(), seq.lst().items.end());
  return Value::list(std::move(out), seq.lst().tuple);
}
}  // namespace

Value binary_op(const std::string& op, const Value& a, const Value& b) {
  if (op == "~") return Value::string(to_str(a) + to_str(b));
  bool nums = a.is_number() && b.is_number();
  bool flt = nums && (a.is_float() || b.is_float());
  if (op == "+") {
    if (nums) return flt ? Value::number(a.as_double() + b.as_double()) : Value::integer(checked_add(a.as_int(), b.as_int()));
    if (a.is_string() && b.is_string()) {
      if (!a.markup && !b.markup) return Value::string(a.str() + b.str());
      return Value::markup_string((a.markup ? a.str() : html_escape(a.str())) + (b.markup ? b.str() : html_escape(b.str())));
    }
    if ((a.is_string() && a.markup) || (b.is_string() && b.markup))
      throw Error(cat("unsupported operand type(s) for +: '", a.markup ? "Markup" : type_name(a), "' and '",
                      b.markup ? "Markup" : type_name(b), "'"));
    if (a.is_list() && b.is_list() && a.lst().tuple == b.lst().tuple && !a.lst().view && !b.lst().view) {
      check_list_size(uint64_t(a.lst().items.size()) + b.lst().items.size());
      std::vector<Value> items = a.lst().items;
      items.insert(items.end(), b.lst().items.begin(), b.lst().items.end());
      return Value::list(std::move(items), a.lst().tuple);
    }
    bad_operands(op, a, b);
  }
  if (op == "-") {
    if (nums) return flt ? Value::number(a.as_double() - b.as_double()) : Value::integer(checked_sub(a.as_int(), b.as_int()));
    bad_operands(op, a, b);
  }
  if (op == "*") {
    if (nums) return flt ? Value::number(a.as_double() * b.as_double()) : Value::integer(checked_mul(a.as_int(), b.as_int()));
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
        if (e & 1) r = checked_mul(r, base);
        e >>= 1;
        if (e > 0) base = checked_mul(base, base);  // only squared when it is used again
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
      charge_steps(1 + c.lst().items.size() / 16);
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
  check_defined(obj);
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
    // i + step may pass INT64_MAX (step 2**62): the loop ends instead of overflowing.
    for (int64_t i = b; step > 0 ? i < e : i > e;) {
      out.push_back(items[size_t(i)]);
      if (__builtin_add_overflow(i, step, &i)) break;
    }
    return Value::list(std::move(out), obj.lst().tuple);
  }
  U32 u = utf8_decode(obj.str());
  int64_t b, e;
  slice_bounds(int64_t(u.size()), start, stop, step, &b, &e);
  std::string out;
  if (step == 1) out = utf8_encode(U32_view(u).substr(size_t(b), size_t(std::max<int64_t>(0, e - b))));
  else
    for (int64_t i = b; step > 0 ? i < e : i > e;) {
      utf8_append(out, u[size_t(i)]);
      if (__builtin_add_overflow(i, step, &i)) break;
    }
  Value r = Value::string(std::move(out));
  r.markup = obj.markup;
  return r;
}

}  // namespace zaya::jinja::detail
