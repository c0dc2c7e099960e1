// Recursive-descent parser following Jinja2's grammar and operator precedence (lowest first):
// ternary `if`, or, and, not, comparisons/in, + -, ~, * / // %, **, unary -/+, postfix (. [] ()), filters/tests.
// This file parses the template body and its statements / tags; expressions are in jinja_parser_expr.cpp, and the
// Parser class both share is in jinja_parser_internal.h.
#include <algorithm>

#include "chat/jinja_parser_internal.h"

namespace zaya::jinja::detail {

Body Parser::parse_template() {
  Body body = subparse({});
  if (cur().type != Tok::Eof) fail(cat("unexpected '", cur().text, "'"));
  if (!unknown_.empty()) fail_at(unknown_[0].first, unknown_[0].second);
  return body;
}

// Parses until one of `end_tags` appears as the tag name of a block; leaves the stream at that name token.
Body Parser::subparse(const std::vector<std::string>& end_tags) {
  DepthGuard guard(*this);
  Body body;
  while (true) {
    const Token& t = cur();
    if (t.type == Tok::Eof) {
      if (!end_tags.empty()) {
        std::string want;
        for (size_t k = 0; k < end_tags.size(); ++k) want += (k ? " or '" : "'") + end_tags[k] + "'";
        fail(cat("Unexpected end of template. Jinja was looking for the following tags: ", want, "."));
      }
      return body;
    }
    if (t.type == Tok::Data) {
      auto s = std::make_unique<Stmt>(StmtKind::Data, t.off);
      s->text = t.text;
      body.push_back(std::move(s));
      next();
    } else if (t.type == Tok::VarBegin) {
      next();
      auto s = std::make_unique<Stmt>(StmtKind::Print, t.off);
      s->expr = parse_tuple(true, {});
      if (cur().type != Tok::VarEnd) fail(cat("expected end of print statement, got '", describe(cur()), "'"));
      next();
      body.push_back(std::move(s));
    } else if (t.type == Tok::BlockBegin) {
      next();
      if (cur().type == Tok::Name &&
          std::find(end_tags.begin(), end_tags.end(), cur().text) != end_tags.end())
        return body;
      body.push_back(parse_statement());
    } else {
      fail(cat("unexpected '", describe(t), "'"));
    }
  }
}

StmtPtr Parser::parse_statement() {
  const Token& t = cur();
  if (t.type != Tok::Name) fail("tag name expected");
  const std::string& tag = t.text;
  size_t off = t.off;
  if (tag == "if") return parse_if();
  if (tag == "for") return parse_for();
  if (tag == "set") return parse_set();
  if (tag == "macro") return parse_macro();
  if (tag == "call") return parse_call_block();
  if (tag == "filter") return parse_filter_block();
  if (tag == "with") return parse_with();
  if (tag == "break" || tag == "continue") {
    if (loop_depth_ == 0) fail(cat("'", tag, "' outside of a loop"));
    next();
    expect_block_end();
    return std::make_unique<Stmt>(tag == "break" ? StmtKind::Break : StmtKind::Continue, off);
  }
  if (tag == "generation") {  // transformers' AssistantTracker: the body renders unchanged
    next();
    expect_block_end();
    auto s = std::make_unique<Stmt>(StmtKind::Body, off);
    s->body = subparse({"endgeneration"});
    next();
    expect_block_end();
    return s;
  }
  if (tag == "block") {  // no inheritance without a loader: a block just renders in place
    next();
    expect_name();
    skip_name("scoped");
    skip_name("required");
    expect_block_end();
    auto s = std::make_unique<Stmt>(StmtKind::Body, off);
    s->body = subparse({"endblock"});
    next();
    if (cur().type == Tok::Name) next();
    expect_block_end();
    return s;
  }
  if (tag == "extends" || tag == "include" || tag == "import" || tag == "from")
    fail(cat("'", tag, "' needs a template loader, which chat templates do not have"));
  if (tag == "do") fail("Encountered unknown tag 'do'. The 'do' extension is not enabled in chat templates.");
  fail(cat("Encountered unknown tag '", tag, "'."));
}

StmtPtr Parser::parse_if() {
  auto s = std::make_unique<Stmt>(StmtKind::If, cur().off);
  next();
  while (true) {
    ExprPtr cond = parse_tuple(false, {});
    expect_block_end();
    ++soft_;
    Body body = subparse({"elif", "else", "endif"});
    --soft_;
    s->branches.emplace_back(std::move(cond), std::move(body));
    std::string tag = next().text;
    if (tag == "elif") continue;
    if (tag == "else") {
      expect_block_end();
      ++soft_;
      s->else_body = subparse({"endif"});
      --soft_;
      next();
    }
    break;
  }
  expect_block_end();
  return s;
}

StmtPtr Parser::parse_for() {
  auto s = std::make_unique<Stmt>(StmtKind::For, cur().off);
  next();
  s->target = parse_assign_target(false, {"in"});
  if (!skip_name("in")) fail("expected 'in'");
  s->expr = parse_tuple(false, {"recursive"});
  if (skip_name("if")) s->cond = parse_expression(true);
  if (skip_name("recursive")) s->recursive = true;
  expect_block_end();
  ++loop_depth_;
  s->body = subparse({"endfor", "else"});
  --loop_depth_;
  if (next().text == "else") {
    expect_block_end();
    s->else_body = subparse({"endfor"});
    next();
  }
  expect_block_end();
  return s;
}

StmtPtr Parser::parse_set() {
  size_t off = cur().off;
  next();
  ExprPtr target = parse_assign_target(true, {});
  if (skip_op("=")) {
    auto s = std::make_unique<Stmt>(StmtKind::Set, off);
    s->target = std::move(target);
    s->expr = parse_tuple(true, {});
    expect_block_end();
    return s;
  }
  auto s = std::make_unique<Stmt>(StmtKind::SetBlock, off);
  s->target = std::move(target);
  while (skip_op("|")) s->filters.push_back(parse_filter_call(nullptr));
  expect_block_end();
  s->body = subparse({"endset"});
  next();
  expect_block_end();
  return s;
}

void Parser::parse_signature(Stmt& s) {
  expect_op("(");
  while (!is_op(")")) {
    if (!s.params.empty()) expect_op(",");
    if (is_op(")")) break;
    std::string name = expect_name();
    ExprPtr def;
    if (skip_op("=")) def = parse_expression(true);
    else if (!s.defaults.empty() && s.defaults.back()) fail("non-default argument follows default argument");
    if (name == "caller" && !def)
      fail("When defining macros or call blocks the special \"caller\" argument must be omitted or be given a default.");
    s.params.push_back(name);
    s.defaults.push_back(std::move(def));
  }
  expect_op(")");
}

Body Parser::parse_macro_body(Stmt& s, const char* end_tag) {
  int saved_loops = loop_depth_;
  loop_depth_ = 0;  // break/continue cannot cross a macro boundary
  macro_stack_.push_back(&s);
  Body body = subparse({end_tag});
  macro_stack_.pop_back();
  loop_depth_ = saved_loops;
  next();
  expect_block_end();
  return body;
}

StmtPtr Parser::parse_macro() {
  auto s = std::make_unique<Stmt>(StmtKind::Macro, cur().off);
  next();
  s->text = expect_name();
  parse_signature(*s);
  expect_block_end();
  s->body = parse_macro_body(*s, "endmacro");
  return s;
}

StmtPtr Parser::parse_call_block() {
  auto s = std::make_unique<Stmt>(StmtKind::CallBlock, cur().off);
  next();
  if (is_op("(")) parse_signature(*s);
  s->expr = parse_expression(true);
  if (s->expr->kind != ExprKind::Call) fail_at("expected call", s->expr->off);
  expect_block_end();
  s->body = parse_macro_body(*s, "endcall");
  return s;
}

StmtPtr Parser::parse_filter_block() {
  auto s = std::make_unique<Stmt>(StmtKind::FilterBlock, cur().off);
  next();
  s->filters.push_back(parse_filter_call(nullptr));
  while (skip_op("|")) s->filters.push_back(parse_filter_call(nullptr));
  expect_block_end();
  s->body = subparse({"endfilter"});
  next();
  expect_block_end();
  return s;
}

StmtPtr Parser::parse_with() {
  auto s = std::make_unique<Stmt>(StmtKind::With, cur().off);
  next();
  while (cur().type != Tok::BlockEnd) {
    if (!s->assigns.empty()) expect_op(",");
    ExprPtr target = parse_assign_target(false, {});
    expect_op("=");
    s->assigns.emplace_back(std::move(target), parse_expression(true));
  }
  expect_block_end();
  s->body = subparse({"endwith"});
  next();
  expect_block_end();
  return s;
}

// Assignment targets: a name, `ns.attr` (set only), or a tuple of names.
ExprPtr Parser::parse_assign_target(bool with_namespace, const std::vector<std::string>& extra_end) {
  auto one = [&]() -> ExprPtr {
    if (skip_op("(")) {
      ExprPtr t = parse_assign_target(with_namespace, {});
      expect_op(")");
      return t;
    }
    size_t off = cur().off;
    std::string n = expect_name();
    if (with_namespace && is_op(".")) {
      next();
      auto e = node(ExprKind::Attr, off);
      e->a = node(ExprKind::Name, off);
      e->a->name = n;
      e->name = expect_name();
      return e;
    }
    if (n == "true" || n == "false" || n == "none" || n == "True" || n == "False" || n == "None")
      fail_at(cat("can't assign to '", n, "'"), off);
    auto e = node(ExprKind::Name, off);
    e->name = n;
    return e;
  };
  size_t off = cur().off;
  std::vector<ExprPtr> items;
  bool is_tuple = false;
  while (true) {
    if (!items.empty()) expect_op(",");
    if (is_tuple_end(extra_end)) break;
    items.push_back(one());
    if (is_op(",")) is_tuple = true;
    else break;
  }
  if (!is_tuple) {
    if (items.empty()) fail("expected assignment target");
    return std::move(items[0]);
  }
  auto t = node(ExprKind::Tuple, off);
  t->items = std::move(items);
  return finish(std::move(t));
}
Body parse(const std::vector<Token>& tokens, const SourceMap& map) { return Parser(tokens, map).parse_template(); }

}  // namespace zaya::jinja::detail
