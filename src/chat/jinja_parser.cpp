// Recursive-descent parser following Jinja2's grammar and operator precedence (lowest first):
// ternary `if`, or, and, not, comparisons/in, + -, ~, * / // %, **, unary -/+, postfix (. [] ()), filters/tests.
#include <algorithm>

#include "chat/jinja_ast.h"
#include "chat/jinja_lexer.h"

namespace zaya::jinja::detail {
namespace {

constexpr int kMaxNesting = 200;     // nested parentheses / brackets / statements
constexpr int kMaxExprHeight = 800;  // expression tree height (long operator chains)

class Parser {
 public:
  Parser(const std::vector<Token>& toks, const SourceMap& map) : toks_(toks), map_(map) {}

  Body parse_template() {
    Body body = subparse({});
    if (cur().type != Tok::Eof) fail(cat("unexpected '", cur().text, "'"));
    if (!unknown_.empty()) fail_at(unknown_[0].first, unknown_[0].second);
    return body;
  }

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

  // ---- statements ---------------------------------------------------------------------------------------------
  // Parses until one of `end_tags` appears as the tag name of a block; leaves the stream at that name token.
  Body subparse(const std::vector<std::string>& end_tags) {
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

  StmtPtr parse_statement() {
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

  StmtPtr parse_if() {
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

  StmtPtr parse_for() {
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

  StmtPtr parse_set() {
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

  void parse_signature(Stmt& s) {
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

  Body parse_macro_body(Stmt& s, const char* end_tag) {
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

  StmtPtr parse_macro() {
    auto s = std::make_unique<Stmt>(StmtKind::Macro, cur().off);
    next();
    s->text = expect_name();
    parse_signature(*s);
    expect_block_end();
    s->body = parse_macro_body(*s, "endmacro");
    return s;
  }

  StmtPtr parse_call_block() {
    auto s = std::make_unique<Stmt>(StmtKind::CallBlock, cur().off);
    next();
    if (is_op("(")) parse_signature(*s);
    s->expr = parse_expression(true);
    if (s->expr->kind != ExprKind::Call) fail_at("expected call", s->expr->off);
    expect_block_end();
    s->body = parse_macro_body(*s, "endcall");
    return s;
  }

  StmtPtr parse_filter_block() {
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

  StmtPtr parse_with() {
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
  ExprPtr parse_assign_target(bool with_namespace, const std::vector<std::string>& extra_end) {
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

  // ---- expressions --------------------------------------------------------------------------------------------
  bool is_tuple_end(const std::vector<std::string>& extra_end) const {
    const Token& t = cur();
    if (t.type == Tok::VarEnd || t.type == Tok::BlockEnd || (t.type == Tok::Op && t.text == ")")) return true;
    if (t.type == Tok::Name) return std::find(extra_end.begin(), extra_end.end(), t.text) != extra_end.end();
    return false;
  }

  ExprPtr parse_tuple(bool with_condexpr, const std::vector<std::string>& extra_end, bool explicit_parens = false) {
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

  ExprPtr parse_expression(bool with_condexpr) {
    DepthGuard guard(*this);
    return with_condexpr ? parse_condexpr() : parse_or();
  }

  ExprPtr parse_condexpr() {
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

  ExprPtr binary(ExprKind k, ExprPtr l, ExprPtr r, size_t off, std::string op = {}) {
    auto e = node(k, off);
    e->a = std::move(l);
    e->b = std::move(r);
    e->name = std::move(op);
    return finish(std::move(e));
  }

  ExprPtr parse_or() {
    ExprPtr l = parse_and();
    while (is_name("or")) {
      size_t off = next().off;
      l = binary(ExprKind::Or, std::move(l), parse_and(), off);
    }
    return l;
  }

  ExprPtr parse_and() {
    ExprPtr l = parse_not();
    while (is_name("and")) {
      size_t off = next().off;
      l = binary(ExprKind::And, std::move(l), parse_not(), off);
    }
    return l;
  }

  ExprPtr parse_not() {
    if (is_name("not")) {
      DepthGuard guard(*this);
      size_t off = next().off;
      auto e = node(ExprKind::Not, off);
      e->a = parse_not();
      return finish(std::move(e));
    }
    return parse_compare();
  }

  ExprPtr parse_compare() {
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

  ExprPtr parse_math1() {
    ExprPtr l = parse_concat();
    while (is_op("+") || is_op("-")) {
      const Token& t = next();
      l = binary(ExprKind::Binary, std::move(l), parse_concat(), t.off, t.text);
    }
    return l;
  }

  ExprPtr parse_concat() {
    ExprPtr l = parse_math2();
    while (is_op("~")) {
      size_t off = next().off;
      l = binary(ExprKind::Binary, std::move(l), parse_math2(), off, "~");
    }
    return l;
  }

  ExprPtr parse_math2() {
    ExprPtr l = parse_pow();
    while (is_op("*") || is_op("/") || is_op("//") || is_op("%")) {
      const Token& t = next();
      l = binary(ExprKind::Binary, std::move(l), parse_pow(), t.off, t.text);
    }
    return l;
  }

  ExprPtr parse_pow() {
    ExprPtr l = parse_unary(true);
    while (is_op("**")) {
      size_t off = next().off;
      l = binary(ExprKind::Binary, std::move(l), parse_unary(true), off, "**");
    }
    return l;
  }

  ExprPtr parse_unary(bool with_filter) {
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

  ExprPtr parse_primary() {
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

  ExprPtr parse_postfix(ExprPtr n) {
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

  ExprPtr parse_subscript(ExprPtr obj) {
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

  ExprPtr parse_subscribed() {
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

  void parse_call_args(Expr& e) {
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

  ExprPtr parse_call(ExprPtr fn) {
    auto e = node(ExprKind::Call, cur().off);
    e->a = std::move(fn);
    parse_call_args(*e);
    return finish(std::move(e));
  }

  // One filter `name[(args)]` applied to `input` (null for block filters).
  ExprPtr parse_filter_call(ExprPtr input) {
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

  ExprPtr parse_filter_expr(ExprPtr n) {
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

  ExprPtr parse_test(ExprPtr subject) {
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
};

}  // namespace

Body parse(const std::vector<Token>& tokens, const SourceMap& map) { return Parser(tokens, map).parse_template(); }

}  // namespace zaya::jinja::detail
