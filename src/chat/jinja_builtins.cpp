// Jinja2 builtins with the semantics of Jinja 3.1 under Hugging Face's sandboxed environment, split by concern:
//   jinja_builtins.cpp  argument checking shared by every builtin (want_int / want_str / check_defined, ArgBinder)
//   jinja_format.cpp    Python string helpers on code points, %-formatting and str.format
//   jinja_filters.cpp   filters and tests, with call_filter / call_test
//   jinja_methods.cpp   str / dict / list methods and the globals, with call_method / install_globals
// The Python operators (binary_op, contains, slice) sit beside the evaluator, in jinja_operators.cpp.
#include <string>
#include <vector>

#include "chat/jinja_builtins_internal.h"

namespace zaya::jinja::detail {

// ---- argument helpers ---------------------------------------------------------------------------------------------
int64_t want_int(const Value& v, const char* what) {
  if (v.is_int() || v.is_bool()) return v.as_int();
  throw Error(cat(what, " must be an integer, not '", type_name(v), "'"));
}

const std::string& want_str(const Value& v, const char* what) {
  if (!v.is_string()) throw Error(cat(what, " must be a string, not '", type_name(v), "'"));
  return v.str();
}

void undefined_error(const Value& v) {
  const std::string& hint = v.undefined_hint();
  throw Error(hint.empty() ? "value is undefined" : hint);
}

void check_defined(const Value& v) {
  if (v.is_undefined()) undefined_error(v);
}

// ---- argument binding ---------------------------------------------------------------------------------------------
ArgBinder::ArgBinder(const char* fname, const CallArgs& args, std::vector<const char*> names) : slots_(names.size(), nullptr) {
  if (args.pos.size() > names.size())
    throw Error(cat(fname, "() takes at most ", names.size(), " argument(s) (", args.pos.size(), " given)"));
  for (size_t i = 0; i < args.pos.size(); ++i) slots_[i] = &args.pos[i];
  for (const auto& [k, v] : args.kw) {
    size_t i = 0;
    while (i < names.size() && k != names[i]) ++i;
    if (i == names.size()) throw Error(cat(fname, "() got an unexpected keyword argument '", k, "'"));
    if (slots_[i]) throw Error(cat(fname, "() got multiple values for argument '", k, "'"));
    slots_[i] = &v;
  }
}

}  // namespace zaya::jinja::detail
