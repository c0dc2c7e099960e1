// Expression half of the Jinja parser (the statement half and the entry point are in jinja_parser.cpp), one
// method per precedence level, lowest first: ternary `if`, or, and, not, comparisons/in, + -, ~, * / // %, **,
// unary -/+, postfix (. [] ()), filters/tests.
#include <algorithm>

#include "chat/jinja_parser_internal.h"

namespace zaya::jinja::detail {

bool Parser::is_tuple_end(const std::vector<std::string>& extra_end) const {
  const Token& t = cur();
  if (t.type == Tok::VarEnd || t.type == Tok::BlockEnd || (t.type == Tok::Op && t.text == ")")) return true;
  if (t.type == Tok::Name) return std::find(extra_end.begin(), extra_end.end(), t.text) != extra_end.end();
  return false;
}

ExprPtr Parser::parse_tuple(bool with_condexpr, const std::vector<std::string>& extra_end, bool explicit_parens) {
  size_t off = cur().off;
  std::vector<ExprPtr> items;
  bool is_tuple = false;
  while (true) {
    if (!items.empty()) expect_op(",");
    if (is_tuple_end(extra_end)) break;
    items.push_back(parse_expression(with_condexpr));
    if (is_op(",")) is_tuple = true;
    else break;
  }
  if (!is_tuple) {
    if (!items.empty()) return std::move(items[0]);
    if (!explicit_parens) fail(cat("Expected an expression, got '", describe(cur()), "'"));
  }
  auto t = node(ExprKind::Tuple, off);
  t->items = std::move(items);
  return finish(std::move(t));
}

ExprPtr Parser::parse_expression(bool with_condexpr) {
  DepthGuard guard(*this);
  return with_condexpr ? parse_condexpr() : parse_or();
}

ExprPtr Parser::parse_condexpr() {
  size_t pending = unknown_.size();
  ExprPtr expr1 = parse_or();
  if (!is_name("if")) return expr1;
  unknown_.resize(pending);  // the value branch turned out to be conditional
  ++soft_;
  struct Unsoft {
    int& s;
    ~Unsoft() { --s; }
  } unsoft{soft_};
  while (is_name("if")) {
    size_t off = next().off;
    auto e = node(ExprKind::Cond, off);
    e->a = parse_or();
    if (skip_name("else")) e->c = parse_condexpr();
    e->b = std::move(expr1);
    expr1 = finish(std::move(e));
  }
  return expr1;
}

ExprPtr Parser::binary(ExprKind k, ExprPtr l, ExprPtr r, size_t off, std::string op) {
  auto e = node(k, off);
  e->a = std::move(l);
  e->b = std::move(r);
  e->name = std::move(op);
  return finish(std::move(e));
}

ExprPtr Parser::parse_or() {
  ExprPtr l = parse_and();
  while (is_name("or")) {
    size_t off = next().off;
    l = binary(ExprKind::Or, std::move(l), parse_and(), off);
  }
  return l;
}

ExprPtr Parser::parse_and() {
  ExprPtr l = parse_not();
  while (is_name("and")) {
    size_t off = next().off;
    l = binary(ExprKind::And, std::move(l), parse_not(), off);
  }
  return l;
}

ExprPtr Parser::parse_not() {
  if (is_name("not")) {
    DepthGuard guard(*this);
    size_t off = next().off;
    auto e = node(ExprKind::Not, off);
    e->a = parse_not();
    return finish(std::move(e));
  }
  return parse_compare();
}

ExprPtr Parser::parse_compare() {
  size_t off = cur().off;
  ExprPtr first = parse_math1();
  std::vector<std::string> ops;
  std::vector<ExprPtr> rest;
  while (true) {
    const Token& t = cur();
    if (t.type == Tok::Op && (t.text == "==" || t.text == "!=" || t.text == "<" || t.text == ">" || t.text == "<=" ||
                              t.text == ">=")) {
      ops.push_back(next().text);
    } else if (is_name("in")) {
      next();
      ops.push_back("in");
    } else if (is_name("not") && peek().type == Tok::Name && peek().text == "in") {
      next();
      next();
      ops.push_back("notin");
    } else {
      break;
    }
    rest.push_back(parse_math1());
  }
  if (ops.empty()) return first;
  auto e = node(ExprKind::Compare, off);
  e->a = std::move(first);
  e->ops = std::move(ops);
  e->items = std::move(rest);
  return finish(std::move(e));
}

ExprPtr Parser::parse_math1() {
  ExprPtr l = parse_concat();
  while (is_op("+") || is_op("-")) {
    const Token& t = next();
    l = binary(ExprKind::Binary, std::move(l), parse_concat(), t.off, t.text);
  }
  return l;
}

ExprPtr Parser::parse_concat() {
  ExprPtr l = parse_math2();
  while (is_op("~")) {
    size_t off = next().off;
    l = binary(ExprKind::Binary, std::move(l), parse_math2(), off, "~");
  }
  return l;
}

ExprPtr Parser::parse_math2() {
  ExprPtr l = parse_pow();
  while (is_op("*") || is_op("/") || is_op("//") || is_op("%")) {
    const Token& t = next();
    l = binary(ExprKind::Binary, std::move(l), parse_pow(), t.off, t.text);
  }
  return l;
}

ExprPtr Parser::parse_pow() {
  ExprPtr l = parse_unary(true);
  while (is_op("**")) {
    size_t off = next().off;
    l = binary(ExprKind::Binary, std::move(l), parse_unary(true), off, "**");
  }
  return l;
}

ExprPtr Parser::parse_unary(bool with_filter) {
  DepthGuard guard(*this);
  ExprPtr n;
  if (is_op("-") || is_op("+")) {
    const Token& t = next();
    n = node(t.text == "-" ? ExprKind::Neg : ExprKind::Pos, t.off);
    n->a = parse_unary(false);
    n = finish(std::move(n));
  } else {
    n = parse_primary();
  }
  n = parse_postfix(std::move(n));
  if (with_filter) n = parse_filter_expr(std::move(n));
  return n;
}

ExprPtr Parser::parse_primary() {
  const Token& t = cur();
  if (t.type == Tok::Name) {
    next();
    if (t.text == "true" || t.text == "True" || t.text == "false" || t.text == "False") {
      auto e = node(ExprKind::Literal, t.off);
      e->value = Value::boolean(t.text[0] == 't' || t.text[0] == 'T');
      return e;
    }
    if (t.text == "none" || t.text == "None") {
      auto e = node(ExprKind::Literal, t.off);
      e->value = Value::none();
      return e;
    }
    if (!macro_stack_.empty()) {
      if (t.text == "caller") macro_stack_.back()->uses_caller = true;
      if (t.text == "varargs") macro_stack_.back()->uses_varargs = true;
      if (t.text == "kwargs") macro_stack_.back()->uses_kwargs = true;
    }
    auto e = node(ExprKind::Name, t.off);
    e->name = t.text;
    return e;
  }
  if (t.type == Tok::String) {
    size_t off = t.off;
    std::string s;
    while (cur().type == Tok::String) s += next().text;  // adjacent literals concatenate
    auto e = node(ExprKind::Literal, off);
    e->value = Value::string(std::move(s));
    return e;
  }
  if (t.type == Tok::Int || t.type == Tok::Float) {
    next();
    auto e = node(ExprKind::Literal, t.off);
    e->value = t.type == Tok::Int ? Value::integer(t.ival) : Value::number(t.fval);
    return e;
  }
  if (t.type == Tok::Op && t.text == "(") {
    next();
    ExprPtr e = parse_tuple(true, {}, true);
    expect_op(")");
    return e;
  }
  if (t.type == Tok::Op && t.text == "[") {
    next();
    auto e = node(ExprKind::List, t.off);
    while (!is_op("]")) {
      if (!e->items.empty()) expect_op(",");
      if (is_op("]")) break;
      e->items.push_back(parse_expression(true));
    }
    expect_op("]");
    return finish(std::move(e));
  }
  if (t.type == Tok::Op && t.text == "{") {
    next();
    auto e = node(ExprKind::Dict, t.off);
    while (!is_op("}")) {
      if (!e->items.empty()) expect_op(",");
      if (is_op("}")) break;
      e->items.push_back(parse_expression(true));
      expect_op(":");
      e->items.push_back(parse_expression(true));
    }
    expect_op("}");
    return finish(std::move(e));
  }
  fail(cat("unexpected '", describe(t), "'"));
}

ExprPtr Parser::parse_postfix(ExprPtr n) {
  while (true) {
    if (is_op(".")) {
      size_t off = next().off;
      const Token& t = cur();
      if (t.type == Tok::Name) {
        next();
        auto e = node(ExprKind::Attr, off);
        e->a = std::move(n);
        e->name = t.text;
        n = finish(std::move(e));
      } else if (t.type == Tok::Int) {
        next();
        auto e = node(ExprKind::Item, off);
        e->a = std::move(n);
        e->b = node(ExprKind::Literal, t.off);
        e->b->value = Value::integer(t.ival);
        n = finish(std::move(e));
      } else {
        fail("expected name or number");
      }
    } else if (is_op("[")) {
      n = parse_subscript(std::move(n));
    } else if (is_op("(")) {
      n = parse_call(std::move(n));
    } else {
      return n;
    }
  }
}

ExprPtr Parser::parse_subscript(ExprPtr obj) {
  DepthGuard guard(*this);
  size_t off = next().off;  // '['
  std::vector<ExprPtr> args;
  while (!is_op("]")) {
    if (!args.empty()) expect_op(",");
    args.push_back(parse_subscribed());
  }
  expect_op("]");
  if (args.empty()) fail_at("expected subscript expression", off);
  ExprPtr key;
  if (args.size() == 1) {
    key = std::move(args[0]);
  } else {
    // x[1, :] would be a tuple holding a slice, which no template value accepts (Python raises TypeError); the
    // slice node has no object of its own, so it must not reach the evaluator.
    for (const auto& a : args)
      if (a->kind == ExprKind::Slice) fail_at("a slice inside a subscript tuple is not supported", off);
    key = node(ExprKind::Tuple, off);
    key->items = std::move(args);
    key = finish(std::move(key));
  }
  if (key->kind == ExprKind::Slice) {  // fold obj into the slice node
    key->a = std::move(obj);
    return finish(std::move(key));
  }
  auto e = node(ExprKind::Item, off);
  e->a = std::move(obj);
  e->b = std::move(key);
  return finish(std::move(e));
}

ExprPtr Parser::parse_subscribed() {
  size_t off = cur().off;
  std::vector<ExprPtr> parts;
  if (is_op(":")) {
    next();
    parts.push_back(nullptr);
  } else {
    ExprPtr e = parse_expression(true);
    if (!is_op(":")) return e;
    next();
    parts.push_back(std::move(e));
  }
  if (is_op(":") || is_op("]") || is_op(",")) parts.push_back(nullptr);
  else parts.push_back(parse_expression(true));
  if (skip_op(":")) {
    if (is_op("]") || is_op(",")) parts.push_back(nullptr);
    else parts.push_back(parse_expression(true));
  } else {
    parts.push_back(nullptr);
  }
  auto s = node(ExprKind::Slice, off);
  s->items = std::move(parts);
  return s;  // finished by parse_subscript once the object is attached
}

void Parser::parse_call_args(Expr& e) {
  DepthGuard guard(*this);
  size_t off = cur().off;
  expect_op("(");
  bool need_comma = false;
  while (!is_op(")")) {
    if (need_comma) {
      expect_op(",");
      if (is_op(")")) break;
    }
    if (is_op("*")) {
      if (e.dyn_args || e.dyn_kwargs) fail_at("invalid syntax for function call expression", off);
      next();
      e.dyn_args = parse_expression(true);
    } else if (is_op("**")) {
      if (e.dyn_kwargs) fail_at("invalid syntax for function call expression", off);
      next();
      e.dyn_kwargs = parse_expression(true);
    } else if (cur().type == Tok::Name && peek().type == Tok::Op && peek().text == "=") {
      if (e.dyn_kwargs) fail_at("invalid syntax for function call expression", off);
      std::string key = next().text;
      next();
      e.kwargs.emplace_back(key, parse_expression(true));
    } else {
      if (e.dyn_args || e.dyn_kwargs || !e.kwargs.empty()) fail_at("invalid syntax for function call expression", off);
      e.items.push_back(parse_expression(true));
    }
    need_comma = true;
  }
  expect_op(")");
}

ExprPtr Parser::parse_call(ExprPtr fn) {
  auto e = node(ExprKind::Call, cur().off);
  e->a = std::move(fn);
  parse_call_args(*e);
  return finish(std::move(e));
}

// One filter `name[(args)]` applied to `input` (null for block filters).
ExprPtr Parser::parse_filter_call(ExprPtr input) {
  size_t off = cur().off;
  std::string name = expect_name();
  while (skip_op(".")) {
    name += '.';
    name += expect_name();
  }
  if (!has_filter(name) && soft_ == 0) unknown_.emplace_back(cat("No filter named '", name, "'."), off);
  auto e = node(ExprKind::Filter, off);
  e->a = std::move(input);
  e->name = name;
  if (is_op("(")) parse_call_args(*e);
  return finish(std::move(e));
}

ExprPtr Parser::parse_filter_expr(ExprPtr n) {
  while (true) {
    if (is_op("|")) {
      next();
      n = parse_filter_call(std::move(n));
    } else if (is_name("is")) {
      n = parse_test(std::move(n));
    } else if (is_op("(")) {
      n = parse_call(std::move(n));
    } else {
      return n;
    }
  }
}

ExprPtr Parser::parse_test(ExprPtr subject) {
  size_t off = next().off;  // 'is'
  bool negated = skip_name("not");
  size_t name_off = cur().off;
  std::string name = expect_name();
  while (skip_op(".")) {
    name += '.';
    name += expect_name();
  }
  if (!has_test(name) && soft_ == 0) unknown_.emplace_back(cat("No test named '", name, "'."), name_off);
  auto e = node(ExprKind::Test, off);
  e->a = std::move(subject);
  e->name = name;
  e->negated = negated;
  const Token& t = cur();
  if (is_op("(")) {
    parse_call_args(*e);
  } else if ((t.type == Tok::Name || t.type == Tok::String || t.type == Tok::Int || t.type == Tok::Float ||
              (t.type == Tok::Op && (t.text == "[" || t.text == "{"))) &&
             !(t.type == Tok::Name && (t.text == "else" || t.text == "or" || t.text == "and"))) {
    if (is_name("is")) fail("You cannot chain multiple tests with is");
    // Jinja takes one bare argument: `x is divisibleby 3`, `x is sameas none`.
    e->items.push_back(parse_postfix(parse_primary()));
  }
  return finish(std::move(e));
}
}  // namespace zaya::jinja::detail
