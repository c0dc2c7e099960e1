#include "chat/jinja_eval.h"

#include <algorithm>
#include <functional>

#include "chat/jinja_builtins_internal.h"
#include "zaya/limits.h"

namespace zaya::jinja::detail {
namespace {

// Each level is a handful of C++ frames; 2000 stays far below an 8 MiB stack (Python Jinja itself stops at
// Python's recursion limit of 1000 frames). Builds with larger frames (sanitizers) hit the stack check first.
constexpr int kMaxDepth = limits::kMaxTemplateRecursion;

std::string describe_obj(const Value& v) { return "'" + type_name(v) + " object'"; }

// A macro or the body of a {% call %} block, with the scope it was defined in.
struct MacroFn : Callable {
  const Stmt* def = nullptr;
  ScopePtr closure;

  Value call(Renderer& r, CallArgs& args) const override {
    const Stmt& d = *def;
    auto scope = std::make_shared<Scope>();
    scope->parent = closure;
    size_t np = d.params.size();
    std::vector<bool> bound(np, false);
    std::vector<Value> varargs;
    for (size_t k = 0; k < args.pos.size(); ++k) {
      if (k < np) {
        scope->set(d.params[k], args.pos[k]);
        bound[k] = true;
      } else if (d.uses_varargs) {
        varargs.push_back(args.pos[k]);
      } else {
        throw Error(cat("macro '", name, "' takes not more than ", np, " argument(s)"));
      }
    }
    std::vector<std::pair<Value, Value>> kwargs;
    Value caller;
    for (auto& [key, v] : args.kw) {
      size_t k = 0;
      while (k < np && d.params[k] != key) ++k;
      if (k < np) {
        if (bound[k]) throw Error(cat("macro '", name, "' got multiple values for argument '", key, "'"));
        scope->set(key, v);
        bound[k] = true;
      } else if (key == "caller" && d.uses_caller) {
        caller = v;
      } else if (d.uses_kwargs) {
        kwargs.emplace_back(Value::string(key), v);
      } else {
        throw Error(cat("macro '", name, "' takes no keyword argument '", key, "'"));
      }
    }
    // Defaults are evaluated at call time inside the macro scope, so they can refer to earlier parameters.
    for (size_t k = 0; k < np; ++k) {
      if (bound[k]) continue;
      if (d.defaults[k]) scope->set(d.params[k], r.eval(*d.defaults[k], scope));
      else scope->set(d.params[k], Value::undefined(cat("parameter '", d.params[k], "' was not provided")));
    }
    if (d.uses_varargs) scope->set("varargs", Value::list(std::move(varargs), true));
    if (d.uses_kwargs) scope->set("kwargs", Value::dict(std::move(kwargs)));
    if (d.uses_caller && std::find(d.params.begin(), d.params.end(), "caller") == d.params.end())
      scope->set("caller", caller.is_undefined() ? Value::undefined("'caller' is undefined") : caller);
    std::string out;
    r.exec(d.body, scope, out);
    return Value::string(std::move(out));
  }
  Value attr(std::string_view n) const override {
    if (n == "name") return Value::string(name);
    if (n == "arguments") {
      std::vector<Value> names;
      for (const auto& p : def->params) names.push_back(Value::string(p));
      return Value::list(std::move(names), true);
    }
    if (n == "catch_kwargs") return Value::boolean(def->uses_kwargs);
    if (n == "catch_varargs") return Value::boolean(def->uses_varargs);
    if (n == "caller") return Value::boolean(def->uses_caller);
    return Value::undefined(cat("'Macro object' has no attribute '", std::string(n), "'"));
  }
  std::string repr() const override { return "<Macro '" + name + "'>"; }
};

struct SimpleFn : Callable {
  std::function<Value(Renderer&, CallArgs&)> f;
  Value call(Renderer& r, CallArgs& args) const override { return f(r, args); }
};

Value make_fn(std::string name, std::function<Value(Renderer&, CallArgs&)> f) {
  auto fn = std::make_shared<SimpleFn>();
  fn->name = std::move(name);
  fn->f = std::move(f);
  return Value::callable(std::move(fn));
}

// Bound string/dict/list method, for `x.method` used as a value rather than called directly.
struct MethodFn : Callable {
  Value self;
  Value call(Renderer& r, CallArgs& args) const override { return call_method(r, self, name, args); }
  std::string repr() const override { return "<built-in method " + name + " of " + type_name(self) + " object>"; }
};

struct LoopState {
  std::vector<Value> items;
  Value last_changed;
  bool changed_called = false;
};

}  // namespace

// The `loop` object of one iteration; calling it renders a recursive loop level.
struct LoopFn : Callable {
  std::shared_ptr<LoopState> state;
  size_t index = 0;
  int depth = 1;
  const Stmt* stmt = nullptr;
  ScopePtr outer;

  Value call(Renderer& r, CallArgs& args) const override {
    if (!stmt->recursive) throw Error("Tried to call non recursive loop. Maybe you forgot the 'recursive' modifier.");
    if (args.pos.size() != 1 || !args.kw.empty()) throw Error("loop() takes exactly one argument");
    std::string out;
    r.run_loop(*stmt, outer, args.pos[0], depth + 1, out);
    return Value::string(std::move(out));
  }

  Value attr(std::string_view n) const override {
    int64_t len = int64_t(state->items.size()), i = int64_t(index);
    if (n == "index") return Value::integer(i + 1);
    if (n == "index0") return Value::integer(i);
    if (n == "revindex") return Value::integer(len - i);
    if (n == "revindex0") return Value::integer(len - i - 1);
    if (n == "first") return Value::boolean(i == 0);
    if (n == "last") return Value::boolean(i == len - 1);
    if (n == "length") return Value::integer(len);
    if (n == "depth") return Value::integer(depth);
    if (n == "depth0") return Value::integer(depth - 1);
    if (n == "previtem") return i > 0 ? state->items[index - 1] : Value::undefined("there is no previous item");
    if (n == "nextitem") return i + 1 < len ? state->items[index + 1] : Value::undefined("there is no next item");
    if (n == "cycle") {
      size_t idx = index;
      return make_fn("cycle", [idx](Renderer&, CallArgs& a) -> Value {
        if (a.pos.empty()) throw Error("no items for cycling given");
        return a.pos[idx % a.pos.size()];
      });
    }
    if (n == "changed") {
      auto st = state;
      return make_fn("changed", [st](Renderer&, CallArgs& a) -> Value {
        Value v = Value::list(a.pos, true);
        if (st->changed_called && equals(v, st->last_changed)) return Value::boolean(false);
        st->changed_called = true;
        st->last_changed = v;
        return Value::boolean(true);
      });
    }
    return Value::undefined(cat("'LoopContext object' has no attribute '", std::string(n), "'"));
  }
  std::string repr() const override { return cat("<LoopContext ", index + 1, "/", state->items.size(), ">"); }
};

// ---- scopes -------------------------------------------------------------------------------------------------------
const Value* Scope::find(std::string_view name) const {
  for (const Scope* s = this; s; s = s->parent.get())
    for (const auto& [k, v] : s->vars)
      if (k == name) return &v;
  return nullptr;
}

void Scope::set(const std::string& name, Value v) {
  for (auto& [k, old] : vars)
    if (k == name) {
      old = std::move(v);
      return;
    }
  vars.emplace_back(name, std::move(v));
}

// ---- renderer -----------------------------------------------------------------------------------------------------
Renderer::Renderer(const SourceMap& map, const RenderOptions& opts) : map_(map), opts_(opts) {}

Renderer::~Renderer() {
  for (auto& s : captured_) s->vars.clear();
  // Namespaces can hold themselves (`{% set ns.me = ns %}`): emptying them breaks the cycles.
  for (auto& d : namespaces_) d->items.clear();
}

Renderer::DepthGuard::DepthGuard(Renderer& rr) : r(rr) {
  if (++r.depth_ > kMaxDepth) {
    --r.depth_;
    throw Error("maximum recursion depth exceeded while rendering the template");
  }
  try {
    charge_steps(1);
    check_stack();
  } catch (...) {
    --r.depth_;
    throw;
  }
}

void Renderer::fail(const std::string& msg, size_t off) const { map_.fail(msg, off); }

std::string Renderer::render(const Body& body, const nlohmann::ordered_json& context) {
  RenderBudget budget;
  BudgetScope budget_scope(budget);
  auto globals = std::make_shared<Scope>();
  install_globals(*globals);
  auto root = std::make_shared<Scope>();
  root->parent = globals;
  if (!context.is_null()) {
    if (!context.is_object()) throw Error("chat template context must be a JSON object");
    for (auto it = context.begin(); it != context.end(); ++it) root->set(it.key(), from_json(it.value()));
  }
  track(root);
  std::string out;
  exec(body, root, out);
  return out;
}

Value Renderer::eval(const Expr& e, const ScopePtr& s) {
  try {
    DepthGuard guard(*this);
    return eval_inner(e, s);
  } catch (const TemplateError&) {
    throw;
  } catch (const TemplateException&) {
    throw;
  } catch (const Error& err) {
    fail(err.what(), e.off);  // innermost expression that failed gives the position
  }
}

CallArgs Renderer::eval_args(const Expr& e, const ScopePtr& s) {
  CallArgs args;
  args.pos.reserve(e.items.size());
  for (const auto& x : e.items) args.pos.push_back(eval(*x, s));
  for (const auto& [k, x] : e.kwargs) args.kw.emplace_back(k, eval(*x, s));
  if (e.dyn_args)
    for (auto& v : iterate(eval(*e.dyn_args, s))) args.pos.push_back(std::move(v));
  if (e.dyn_kwargs) {
    Value d = eval(*e.dyn_kwargs, s);
    if (!d.is_dict()) throw Error("argument after ** must be a mapping");
    for (const auto& [k, v] : d.dct().items) {
      if (!k.is_string()) throw Error("keywords must be strings");
      args.kw.emplace_back(k.str(), v);
    }
  }
  return args;
}

Value Renderer::call(const Value& fn, CallArgs& args) {
  if (fn.is_callable()) {
    DepthGuard guard(*this);
    return fn.fn().call(*this, args);
  }
  if (fn.is_undefined()) undefined_error(fn);
  throw Error(cat("'", type_name(fn), "' object is not callable"));
}

Value Renderer::getattr(const Value& obj, const std::string& name) {
  switch (obj.type) {
    case Value::Type::Undefined: undefined_error(obj);
    case Value::Type::Dict:
      if (!has_method(obj, name)) {
        if (const Value* v = obj.dct().find(std::string_view(name))) return *v;
        return Value::undefined(cat("'dict object' has no attribute '", name, "'"));
      }
      break;
    case Value::Type::Namespace:
      if (const Value* v = obj.ns_data().find(std::string_view(name))) return *v;
      return Value::undefined(cat("'Namespace object' has no attribute '", name, "'"));
    case Value::Type::Callable: return obj.fn().attr(name);
    default: break;
  }
  if (has_method(obj, name)) {
    auto m = std::make_shared<MethodFn>();
    m->name = name;
    m->self = obj;
    return Value::callable(std::move(m));
  }
  return Value::undefined(cat(describe_obj(obj), " has no attribute '", name, "'"));
}

Value Renderer::getitem(const Value& obj, const Value& key) {
  switch (obj.type) {
    case Value::Type::Undefined: undefined_error(obj);
    case Value::Type::Dict:
      if (const Value* v = obj.dct().find(key)) return *v;
      break;
    case Value::Type::List:
    case Value::Type::String:
      if ((key.is_int() || key.is_bool()) && !(obj.is_list() && obj.lst().view)) {
        int64_t i = key.as_int();
        if (obj.is_list()) {
          const auto& items = obj.lst().items;
          int64_t n = int64_t(items.size());
          if (i < 0) i += n;
          if (i >= 0 && i < n) return items[size_t(i)];
        } else {
          std::u32string cps = utf8_decode(obj.str());
          int64_t n = int64_t(cps.size());
          if (i < 0) i += n;
          if (i >= 0 && i < n) {
            Value ch = Value::string(utf8_encode(cps.substr(size_t(i), 1)));
            ch.markup = obj.markup;
            return ch;
          }
        }
        return Value::undefined(cat(describe_obj(obj), " has no element ", key.as_int()));
      }
      break;
    default: break;
  }
  if (key.is_string()) return getattr(obj, key.str());  // Jinja falls back to the attribute for string keys
  return Value::undefined(cat(describe_obj(obj), " has no element ", repr(key)));
}

Value Renderer::apply_filters(const std::vector<ExprPtr>& filters, Value v, const ScopePtr& s) {
  for (const auto& f : filters) {
    CallArgs args = eval_args(*f, s);
    try {
      v = call_filter(*this, f->name, v, args);
    } catch (const TemplateError&) {
      throw;
    } catch (const TemplateException&) {
      throw;
    } catch (const Error& err) {
      fail(err.what(), f->off);
    }
  }
  return v;
}

Value Renderer::eval_inner(const Expr& e, const ScopePtr& s) {
  switch (e.kind) {
    case ExprKind::Literal: return e.value;
    case ExprKind::Name: {
      if (const Value* v = s->find(e.name)) return *v;
      return Value::undefined(cat("'", e.name, "' is undefined"));
    }
    case ExprKind::List:
    case ExprKind::Tuple: {
      std::vector<Value> items;
      items.reserve(e.items.size());
      for (const auto& x : e.items) items.push_back(eval(*x, s));
      return Value::list(std::move(items), e.kind == ExprKind::Tuple);
    }
    case ExprKind::Dict: {
      auto d = std::make_shared<DictData>();
      for (size_t k = 0; k + 1 < e.items.size(); k += 2) {
        Value key = eval(*e.items[k], s);
        if (key.is_list() && !key.lst().tuple) throw Error("unhashable type: 'list'");
        if (key.is_dict()) throw Error("unhashable type: 'dict'");
        d->set(key, eval(*e.items[k + 1], s));
      }
      return Value::dict(std::move(d));
    }
    case ExprKind::Attr: return getattr(eval(*e.a, s), e.name);
    case ExprKind::Item: return getitem(eval(*e.a, s), eval(*e.b, s));
    case ExprKind::Slice: {
      Value obj = eval(*e.a, s);
      Value parts[3];
      for (int k = 0; k < 3; ++k) parts[k] = e.items[size_t(k)] ? eval(*e.items[size_t(k)], s) : Value::none();
      return slice(obj, parts[0], parts[1], parts[2]);
    }
    case ExprKind::Call: {
      if (e.a->kind == ExprKind::Attr) {  // method call: skip building a bound-method object
        Value obj = eval(*e.a->a, s);
        if (has_method(obj, e.a->name)) {
          CallArgs args = eval_args(e, s);
          DepthGuard guard(*this);
          return call_method(*this, obj, e.a->name, args);
        }
        Value fn = getattr(obj, e.a->name);
        CallArgs args = eval_args(e, s);
        return call(fn, args);
      }
      Value fn = eval(*e.a, s);
      CallArgs args = eval_args(e, s);
      return call(fn, args);
    }
    case ExprKind::Filter: {
      Value input = eval(*e.a, s);
      CallArgs args = eval_args(e, s);
      return call_filter(*this, e.name, input, args);
    }
    case ExprKind::Test: {
      Value v = eval(*e.a, s);
      CallArgs args = eval_args(e, s);
      bool r = call_test(*this, e.name, v, args);
      return Value::boolean(e.negated ? !r : r);
    }
    case ExprKind::Neg:
    case ExprKind::Pos: {
      Value v = eval(*e.a, s);
      if (v.is_undefined()) undefined_error(v);
      if (v.is_float()) return Value::number(e.kind == ExprKind::Neg ? -v.as_double() : v.as_double());
      if (v.is_int() || v.is_bool()) return Value::integer(e.kind == ExprKind::Neg ? checked_neg(v.as_int()) : v.as_int());
      throw Error(cat("bad operand type for unary ", e.kind == ExprKind::Neg ? "-" : "+", ": '", type_name(v), "'"));
    }
    case ExprKind::Not: return Value::boolean(!truthy(eval(*e.a, s)));
    case ExprKind::Binary: {
      Value a = eval(*e.a, s);
      Value b = eval(*e.b, s);
      return binary_op(e.name, a, b);
    }
    case ExprKind::Compare: {
      Value left = eval(*e.a, s);
      for (size_t k = 0; k < e.ops.size(); ++k) {
        Value right = eval(*e.items[k], s);
        const std::string& op = e.ops[k];
        bool ok;
        if (op == "==") ok = equals(left, right);
        else if (op == "!=") ok = !equals(left, right);
        else if (op == "in") ok = contains(right, left);
        else if (op == "notin") ok = !contains(right, left);
        else {
          if (left.is_undefined()) undefined_error(left);
          if (right.is_undefined()) undefined_error(right);
          int c = compare(left, right);
          ok = op == "<" ? c < 0 : op == ">" ? c > 0 : op == "<=" ? c <= 0 : c >= 0;
        }
        if (!ok) return Value::boolean(false);
        left = std::move(right);
      }
      return Value::boolean(true);
    }
    case ExprKind::And: {
      Value l = eval(*e.a, s);
      return truthy(l) ? eval(*e.b, s) : l;
    }
    case ExprKind::Or: {
      Value l = eval(*e.a, s);
      return truthy(l) ? l : eval(*e.b, s);
    }
    case ExprKind::Cond: {
      if (truthy(eval(*e.a, s))) return eval(*e.b, s);
      if (e.c) return eval(*e.c, s);
      return Value::undefined("the inline if-expression evaluated to false and no else section was defined");
    }
  }
  throw Error("unknown expression");
}

void Renderer::assign(const Expr& target, const Value& v, const ScopePtr& s) {
  switch (target.kind) {
    case ExprKind::Name: s->set(target.name, v); return;
    case ExprKind::Tuple: {
      if (v.is_undefined()) undefined_error(v);
      std::vector<Value> items = iterate(v);
      size_t n = target.items.size();
      if (items.size() > n) throw Error(cat("too many values to unpack (expected ", n, ")"));
      if (items.size() < n) throw Error(cat("not enough values to unpack (expected ", n, ", got ", items.size(), ")"));
      for (size_t k = 0; k < n; ++k) assign(*target.items[k], items[k], s);
      return;
    }
    case ExprKind::Attr: {
      const Value* ns = s->find(target.a->name);
      if (!ns || !ns->is_ns()) throw Error("cannot assign attribute on non-namespace object");
      ns->ns_data().set(Value::string(target.name), v);
      return;
    }
    default: throw Error("can't assign to this expression");
  }
}

Flow Renderer::exec(const Body& body, const ScopePtr& s, std::string& out) {
  for (const auto& st : body) {
    Flow f = Flow::Normal;
    try {
      DepthGuard guard(*this);
      f = exec_stmt(*st, s, out);
    } catch (const TemplateError&) {
      throw;
    } catch (const TemplateException&) {
      throw;
    } catch (const Error& err) {
      fail(err.what(), st->off);
    }
    if (out.size() > limits::kMaxTemplateStringBytes)
      fail(cat("the output exceeds the template limit of ", limits::kMaxTemplateStringBytes,
               " bytes (zaya::limits::kMaxTemplateStringBytes)"), st->off);
    if (f != Flow::Normal) return f;
  }
  return Flow::Normal;
}

Flow Renderer::run_loop(const Stmt& st, const ScopePtr& s, const Value& iterable, int depth, std::string& out) {
  auto state = std::make_shared<LoopState>();
  std::vector<Value> all = iterate(iterable);
  if (st.cond) {
    for (auto& item : all) {
      charge_steps(1);
      auto tmp = std::make_shared<Scope>();
      tmp->parent = s;
      assign(*st.target, item, tmp);
      if (truthy(eval(*st.cond, tmp))) state->items.push_back(std::move(item));
    }
  } else {
    state->items = std::move(all);
  }
  for (size_t k = 0; k < state->items.size(); ++k) {
    charge_steps(1);  // an empty body costs nothing else: nested loops must still end
    auto iter = std::make_shared<Scope>();
    iter->parent = s;
    auto loop = std::make_shared<LoopFn>();
    loop->name = "loop";
    loop->state = state;
    loop->index = k;
    loop->depth = depth;
    loop->stmt = &st;
    loop->outer = s;
    iter->set("loop", Value::callable(std::move(loop)));
    assign(*st.target, state->items[k], iter);
    if (exec(st.body, iter, out) == Flow::Break) break;
  }
  if (state->items.empty() && !st.else_body.empty()) {
    auto scope = std::make_shared<Scope>();
    scope->parent = s;
    exec(st.else_body, scope, out);
  }
  return Flow::Normal;
}

Flow Renderer::exec_stmt(const Stmt& st, const ScopePtr& s, std::string& out) {
  switch (st.kind) {
    case StmtKind::Data: out += st.text; return Flow::Normal;
    case StmtKind::Print: out += to_str(eval(*st.expr, s)); return Flow::Normal;
    case StmtKind::If:
      for (const auto& [cond, body] : st.branches)
        if (truthy(eval(*cond, s))) return exec(body, s, out);
      return exec(st.else_body, s, out);
    case StmtKind::For: return run_loop(st, s, eval(*st.expr, s), 1, out);
    case StmtKind::Set: assign(*st.target, eval(*st.expr, s), s); return Flow::Normal;
    case StmtKind::SetBlock: {
      auto inner = std::make_shared<Scope>();
      inner->parent = s;
      std::string text;
      exec(st.body, inner, text);
      assign(*st.target, apply_filters(st.filters, Value::string(std::move(text)), inner), s);
      return Flow::Normal;
    }
    case StmtKind::FilterBlock: {
      auto inner = std::make_shared<Scope>();
      inner->parent = s;
      std::string text;
      Flow f = exec(st.body, inner, text);
      out += to_str(apply_filters(st.filters, Value::string(std::move(text)), inner));
      return f;
    }
    case StmtKind::Macro: {
      auto m = std::make_shared<MacroFn>();
      m->name = st.text;
      m->def = &st;
      m->closure = s;
      track(s);
      s->set(st.text, Value::callable(std::move(m)));
      return Flow::Normal;
    }
    case StmtKind::CallBlock: {
      auto caller = std::make_shared<MacroFn>();
      caller->name = "caller";
      caller->def = &st;
      caller->closure = s;
      track(s);
      const Expr& ce = *st.expr;
      CallArgs args = eval_args(ce, s);
      args.kw.emplace_back("caller", Value::callable(std::move(caller)));
      Value fn = ce.a->kind == ExprKind::Attr ? getattr(eval(*ce.a->a, s), ce.a->name) : eval(*ce.a, s);
      out += to_str(call(fn, args));
      return Flow::Normal;
    }
    case StmtKind::With: {
      auto inner = std::make_shared<Scope>();
      inner->parent = s;
      std::vector<Value> values;
      for (const auto& [target, value] : st.assigns) values.push_back(eval(*value, s));
      for (size_t k = 0; k < values.size(); ++k) assign(*st.assigns[k].first, values[k], inner);
      return exec(st.body, inner, out);
    }
    case StmtKind::Break: return Flow::Break;
    case StmtKind::Continue: return Flow::Continue;
    case StmtKind::Body: return exec(st.body, s, out);
  }
  return Flow::Normal;
}

Value make_builtin(std::string name, std::function<Value(Renderer&, CallArgs&)> f) { return make_fn(std::move(name), std::move(f)); }

}  // namespace zaya::jinja::detail
