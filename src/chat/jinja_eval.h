#pragma once
// Tree-walking evaluator. Scopes follow Jinja's rules: each for-loop iteration, macro call and with-block gets a
// fresh child scope (so `set` inside does not leak out), if-blocks do not; lookups walk outwards at run time.
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "chat/jinja_ast.h"
#include "chat/jinja_lexer.h"
#include "chat/jinja_value.h"
#include "zaya/jinja.h"

namespace zaya::jinja::detail {

struct Scope {
  std::shared_ptr<Scope> parent;
  std::vector<std::pair<std::string, Value>> vars;

  const Value* find(std::string_view name) const;
  void set(const std::string& name, Value v);
};
using ScopePtr = std::shared_ptr<Scope>;

enum class Flow { Normal, Break, Continue };

class Renderer {
 public:
  Renderer(const SourceMap& map, const RenderOptions& opts);
  ~Renderer();
  Renderer(const Renderer&) = delete;
  Renderer& operator=(const Renderer&) = delete;

  std::string render(const Body& body, const nlohmann::ordered_json& context);

  Value eval(const Expr& e, const ScopePtr& s);
  Flow exec(const Body& body, const ScopePtr& s, std::string& out);

  Value call(const Value& fn, CallArgs& args);
  Value getattr(const Value& obj, const std::string& name);
  Value getitem(const Value& obj, const Value& key);
  const RenderOptions& options() const { return opts_; }
  // Scopes captured by macros / callers form reference cycles (the scope holds the macro); they are cleared
  // when rendering ends.
  void track(const ScopePtr& s) { captured_.push_back(s); }
  // Namespaces made while rendering: emptied when rendering ends (they may hold themselves).
  void track(const DictPtr& ns) { namespaces_.push_back(ns); }

  // Guards every recursive step (expressions, statements, calls) so runaway recursion becomes an error.
  struct DepthGuard {
    Renderer& r;
    explicit DepthGuard(Renderer& rr);
    ~DepthGuard() { --r.depth_; }
  };

 private:
  const SourceMap& map_;
  RenderOptions opts_;
  int depth_ = 0;
  std::vector<ScopePtr> captured_;
  std::vector<DictPtr> namespaces_;

  Value eval_inner(const Expr& e, const ScopePtr& s);
  Flow exec_stmt(const Stmt& st, const ScopePtr& s, std::string& out);
  Flow exec_for(const Stmt& st, const ScopePtr& s, std::string& out);
  Flow run_loop(const Stmt& st, const ScopePtr& s, const Value& iterable, int depth, std::string& out);
  void assign(const Expr& target, const Value& v, const ScopePtr& s);
  CallArgs eval_args(const Expr& e, const ScopePtr& s);
  Value apply_filters(const std::vector<ExprPtr>& filters, Value v, const ScopePtr& s);
  [[noreturn]] void fail(const std::string& msg, size_t off) const;
  friend struct LoopFn;
};

// ---- builtins (jinja_filters.cpp, jinja_methods.cpp) ----------------------------------------------------------
Value call_filter(Renderer& r, const std::string& name, const Value& input, CallArgs& args);
bool call_test(Renderer& r, const std::string& name, const Value& v, CallArgs& args);
// Python attribute precedence: `d.items` is the dict method, not the key.
bool has_method(const Value& obj, const std::string& name);
Value call_method(Renderer& r, const Value& obj, const std::string& name, CallArgs& args);
void install_globals(Scope& globals);
Value make_builtin(std::string name, std::function<Value(Renderer&, CallArgs&)> f);

// Python operators shared by the evaluator and filters (jinja_operators.cpp).
Value binary_op(const std::string& op, const Value& a, const Value& b);
bool contains(const Value& container, const Value& item);  // `item in container`
Value slice(const Value& obj, const Value& start, const Value& stop, const Value& step);

// Binds call arguments to parameter names Python-style; unknown names or too many positionals throw
// (jinja_builtins.cpp).
class ArgBinder {
 public:
  ArgBinder(const char* fname, const CallArgs& args, std::vector<const char*> names);
  const Value* get(size_t i) const { return slots_[i]; }
  bool has(size_t i) const { return slots_[i] != nullptr; }
  Value get_or(size_t i, Value def) const { return slots_[i] ? *slots_[i] : std::move(def); }

 private:
  std::vector<const Value*> slots_;
};

}  // namespace zaya::jinja::detail
