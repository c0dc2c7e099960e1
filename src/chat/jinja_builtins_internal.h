#pragma once
// Helpers shared by the builtins (jinja_builtins.cpp, jinja_format.cpp, jinja_filters.cpp, jinja_methods.cpp) and
// the evaluator and operators (jinja_eval.cpp, jinja_operators.cpp). Internal to those files: the evaluator's
// interface stays in jinja_eval.h.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "chat/jinja_eval.h"

namespace zaya::jinja::detail {

// ---- argument checks (jinja_builtins.cpp) -------------------------------------------------------------------------
int64_t want_int(const Value& v, const char* what);  // ints and bools, else a TypeError-like Error naming `what`
const std::string& want_str(const Value& v, const char* what);
[[noreturn]] void undefined_error(const Value& v);  // throws the undefined value's hint
void check_defined(const Value& v);                 // undefined_error(v) if v is undefined

// ---- string helpers on code points (jinja_format.cpp) -------------------------------------------------------------
using U32 = std::u32string;
using U32_view = std::u32string_view;

// str.strip / lstrip / rstrip; `chars` null or None strips whitespace.
std::string py_strip(const std::string& s, const Value* chars, bool left, bool right);
// str.split / rsplit; `sep` null or None splits on runs of whitespace; maxsplit < 0 means no limit.
std::vector<std::string> py_split(const std::string& s, const Value* sep, int64_t maxsplit, bool from_right);
std::vector<std::string> py_splitlines(const std::string& s, bool keepends);
// str.replace; count < 0 replaces every occurrence.
std::string py_replace(const std::string& s, const std::string& old, const std::string& rep, int64_t count);
std::string py_capitalize(const std::string& s);
std::string py_title(const std::string& s);         // str.title()
std::string jinja_title(const std::string& s);      // Jinja's `title` filter
bool py_islower(const std::string& s, bool upper);  // str.islower(), or str.isupper() when `upper`
// Python slice index normalization for a sequence of length n.
void slice_bounds(int64_t n, const Value& start, const Value& stop, int64_t step, int64_t* b, int64_t* e);

// ---- formatting (jinja_format.cpp) --------------------------------------------------------------------------------
std::string pad(const std::string& s, int64_t width, char align, char32_t fill);  // align '<', '^' or right
// `fmt % args`; escape_args escapes arguments that are not Markup (Markup's own `%`).
std::string percent_format(const std::string& fmt, const Value& args, bool escape_args = false);
std::string str_format(Renderer& r, const std::string& fmt, const CallArgs& args);  // fmt.format(*pos, **kw)

// ---- filters (jinja_filters.cpp) ----------------------------------------------------------------------------------
Value dict_items(const Value& v);  // the (key, value) tuples of a dict, as a list

}  // namespace zaya::jinja::detail
