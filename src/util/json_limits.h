#pragma once
// JSON parsing under zaya's limits (zaya/limits.h): every document is checked for nesting depth before nlohmann
// builds it, so no recursive consumer (copy, dump, the template engine, a recursive walk) can run out of stack.
// The check counts brackets outside strings; JSON carried inside a string is limited again when it is parsed.
#include <cstddef>
#include <string>
#include <string_view>

#include "zaya/error.h"
#include "zaya/limits.h"

namespace zaya {

using limits::json_nesting_depth;

// Throws Error("<what>: JSON nested deeper than <limit> levels (limit …)") when text nests deeper than `limit`.
void check_json_depth(std::string_view text, const std::string& what, int limit = limits::kMaxJsonDepth);

// The whole file as bytes; Error naming the file when it cannot be read.
std::string read_text_file(const std::string& path);

// Parses text as J (nlohmann::json or ordered_json) after the depth check; malformed JSON becomes
// Error("<what>: not valid JSON: …").
template <typename J>
J parse_json(std::string_view text, const std::string& what, int limit = limits::kMaxJsonDepth) {
  check_json_depth(text, what, limit);
  try {
    return J::parse(text);
  } catch (const typename J::exception& e) {
    throw Error(cat(what, ": not valid JSON: ", e.what()));
  }
}

// read_text_file + parse_json, `what` being the path.
template <typename J>
J parse_json_file(const std::string& path, int limit = limits::kMaxJsonDepth) {
  return parse_json<J>(read_text_file(path), path, limit);
}

}  // namespace zaya
