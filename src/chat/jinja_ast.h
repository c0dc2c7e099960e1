#pragma once
// Syntax tree of a parsed template. One node struct per category with a kind tag keeps the evaluator a plain
// switch; every node records the byte offset of its token for error positions.
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "chat/jinja_value.h"

namespace zaya::jinja::detail {

enum class ExprKind : uint8_t {
  Literal,  // value
  Name,     // name
  List,     // items
  Tuple,    // items
  Dict,     // items = k0, v0, k1, v1, ...
  Attr,     // a.name
  Item,     // a[b]
  Slice,    // a[items[0]:items[1]:items[2]] (null entries = omitted)
  Call,     // a(items..., kwargs..., *dyn_args, **dyn_kwargs)
  Filter,   // a | name(args)  (a == null inside {% filter %} / {% set x | f %}: applied to the block output)
  Test,     // a is [not] name(args)
  Neg,
  Pos,
  Not,
  Binary,   // a op b (op: + - * / // % ** ~)
  Compare,  // a op0 items[0] op1 items[1] ... (chained like Python)
  And,
  Or,
  Cond,     // b if a else c  (c may be null)
};

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

struct Expr {
  ExprKind kind;
  size_t off = 0;
  Value value;
  std::string name;  // Name / Attr / Filter / Test name, Binary operator
  ExprPtr a, b, c;
  std::vector<ExprPtr> items;
  std::vector<std::pair<std::string, ExprPtr>> kwargs;
  ExprPtr dyn_args, dyn_kwargs;
  std::vector<std::string> ops;  // Compare operators
  bool negated = false;          // Test: `is not`
  int height = 1;                // tree height, bounded so evaluation cannot exhaust the stack

  Expr(ExprKind k, size_t o) : kind(k), off(o) {}
};

enum class StmtKind : uint8_t {
  Data,         // text
  Print,        // {{ expr }}
  If,           // branches (cond, body), else_body
  For,          // target in expr [if cond] body [else else_body], recursive
  Set,          // target = expr
  SetBlock,     // {% set target [| filters] %}body{% endset %}
  Macro,        // name(params = defaults) body
  CallBlock,    // {% call(params) expr %}body{% endcall %}
  FilterBlock,  // {% filter filters %}body{% endfilter %}
  With,         // {% with assigns %}body{% endwith %}
  Break,
  Continue,
  Body,         // {% generation %} / {% block %}: body rendered in place
};

struct Stmt;
using StmtPtr = std::unique_ptr<Stmt>;
using Body = std::vector<StmtPtr>;

struct Stmt {
  StmtKind kind;
  size_t off = 0;
  std::string text;  // Data text, Macro name
  ExprPtr expr, target, cond;
  std::vector<std::pair<ExprPtr, Body>> branches;
  Body body, else_body;
  bool recursive = false;
  std::vector<std::string> params;
  std::vector<ExprPtr> defaults;  // aligned with params, null = required
  std::vector<ExprPtr> filters;   // Filter exprs with a == null, applied in order
  std::vector<std::pair<ExprPtr, ExprPtr>> assigns;
  bool uses_caller = false, uses_varargs = false, uses_kwargs = false;  // Macro / CallBlock body references

  Stmt(StmtKind k, size_t o) : kind(k), off(o) {}
};

// Parses tokens into a statement list. Throws TemplateError on syntax errors, unknown filters / tests, and
// nesting deep enough to threaten the stack.
struct SourceMap;
struct Token;
Body parse(const std::vector<Token>& tokens, const SourceMap& map);

// Registries shared by parser (name validation) and evaluator.
bool has_filter(const std::string& name);
bool has_test(const std::string& name);

}  // namespace zaya::jinja::detail
