#pragma once
// The recursive-descent parser shared by its two halves: statements / tags (jinja_parser.cpp) and expressions
// (jinja_parser_expr.cpp). Internal to those files: the parser's interface is `parse` in jinja_ast.h.
#include <algorithm>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "chat/jinja_ast.h"
#include "chat/jinja_lexer.h"

namespace zaya::jinja::detail {

constexpr int kMaxNesting = 200;     // nested parentheses / brackets / statements
constexpr int kMaxExprHeight = 800;  // expression tree height (long operator chains)

class Parser {
 public:
  Parser(const std::vector<Token>& toks, const SourceMap& map) : toks_(toks), map_(map) {}

  Body parse_template();

 private:
  const std::vector<Token>& toks_;
  const SourceMap& map_;
  size_t i_ = 0;
  int depth_ = 0;
  int loop_depth_ = 0;
  // Inside if-branches and inline if-expressions Jinja only reports unknown filters/tests when they run.
  int soft_ = 0;
  std::vector<std::pair<std::string, size_t>> unknown_;  // unknown filter/test names outside soft regions
  std::vector<Stmt*> macro_stack_;  // innermost macro / call block, for caller/varargs/kwargs detection

  struct DepthGuard {
    Parser& p;
    explicit DepthGuard(Parser& parser) : p(parser) {
      if (++p.depth_ > kMaxNesting) p.fail("template is nested too deeply");
    }
    ~DepthGuard() { --p.depth_; }
  };

  // ---- token stream -------------------------------------------------------------------------------------------
  const Token& cur() const { return toks_[i_]; }
  const Token& peek(size_t n = 1) const { return toks_[std::min(i_ + n, toks_.size() - 1)]; }
  const Token& next() {
    const Token& t = toks_[i_];
    if (i_ + 1 < toks_.size()) ++i_;
    return t;
  }
  [[noreturn]] void fail(const std::string& msg) const { map_.fail(msg, cur().off); }
  [[noreturn]] void fail_at(const std::string& msg, size_t off) const { map_.fail(msg, off); }

  static std::string describe(const Token& t) {
    switch (t.type) {
      case Tok::Eof: return "end of template";
      case Tok::VarEnd: return "end of print statement";
      case Tok::BlockEnd: return "end of statement block";
      case Tok::String: return "string";
      case Tok::Data: return "template data";
      default: return t.text;
    }
  }

  bool is_op(const char* op) const { return cur().type == Tok::Op && cur().text == op; }
  bool is_name(const char* n) const { return cur().type == Tok::Name && cur().text == n; }
  bool skip_op(const char* op) {
    if (!is_op(op)) return false;
    next();
    return true;
  }
  bool skip_name(const char* n) {
    if (!is_name(n)) return false;
    next();
    return true;
  }
  void expect_op(const char* op) {
    if (!skip_op(op)) fail(cat("expected '", op, "', got '", describe(cur()), "'"));
  }
  std::string expect_name() {
    if (cur().type != Tok::Name) fail(cat("expected name, got '", describe(cur()), "'"));
    return next().text;
  }
  void expect_block_end() {
    if (cur().type != Tok::BlockEnd) fail(cat("expected end of statement block, got '", describe(cur()), "'"));
    next();
  }

  // ---- nodes --------------------------------------------------------------------------------------------------
  ExprPtr node(ExprKind k, size_t off) { return std::make_unique<Expr>(k, off); }
  ExprPtr finish(ExprPtr e) {
    int h = 0;
    for (const ExprPtr* c : {&e->a, &e->b, &e->c, &e->dyn_args, &e->dyn_kwargs})
      if (*c) h = std::max(h, (*c)->height);
    for (const auto& x : e->items)
      if (x) h = std::max(h, x->height);
    for (const auto& kv : e->kwargs) h = std::max(h, kv.second->height);
    e->height = h + 1;
    if (e->height > kMaxExprHeight) fail_at("expression is nested too deeply", e->off);
    return e;
  }

  // ---- statements (jinja_parser.cpp) --------------------------------------------------------------------------
  Body subparse(const std::vector<std::string>& end_tags);
  StmtPtr parse_statement();
  StmtPtr parse_if();
  StmtPtr parse_for();
  StmtPtr parse_set();
  void parse_signature(Stmt& s);
  Body parse_macro_body(Stmt& s, const char* end_tag);
  StmtPtr parse_macro();
  StmtPtr parse_call_block();
  StmtPtr parse_filter_block();
  StmtPtr parse_with();
  ExprPtr parse_assign_target(bool with_namespace, const std::vector<std::string>& extra_end);

  // ---- expressions (jinja_parser_expr.cpp), lowest precedence first -------------------------------------------
  bool is_tuple_end(const std::vector<std::string>& extra_end) const;
  ExprPtr parse_tuple(bool with_condexpr, const std::vector<std::string>& extra_end, bool explicit_parens = false);
  ExprPtr parse_expression(bool with_condexpr);
  ExprPtr parse_condexpr();
  ExprPtr binary(ExprKind k, ExprPtr l, ExprPtr r, size_t off, std::string op = {});
  ExprPtr parse_or();
  ExprPtr parse_and();
  ExprPtr parse_not();
  ExprPtr parse_compare();
  ExprPtr parse_math1();
  ExprPtr parse_concat();
  ExprPtr parse_math2();
  ExprPtr parse_pow();
  ExprPtr parse_unary(bool with_filter);
  ExprPtr parse_primary();
  ExprPtr parse_postfix(ExprPtr n);
  ExprPtr parse_subscript(ExprPtr obj);
  ExprPtr parse_subscribed();
  void parse_call_args(Expr& e);
  ExprPtr parse_call(ExprPtr fn);
  ExprPtr parse_filter_call(ExprPtr input);  // `input` null for block filters
  ExprPtr parse_filter_expr(ExprPtr n);
  ExprPtr parse_test(ExprPtr subject);
};

}  // namespace zaya::jinja::detail
