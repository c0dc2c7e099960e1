#pragma once
// Jinja2 lexer with the Hugging Face environment's whitespace rules (trim_blocks, lstrip_blocks,
// keep_trailing_newline=False) applied while splitting the source into data and tag tokens.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace zaya::jinja::detail {

enum class Tok : uint8_t {
  Data,        // literal template text (whitespace control already applied)
  VarBegin,    // {{
  VarEnd,      // }}
  BlockBegin,  // {%
  BlockEnd,    // %}
  Name,
  String,      // text = decoded value
  Int,
  Float,
  Op,          // text = operator spelling
  Eof,
};

struct Token {
  Tok type;
  std::string text;
  int64_t ival = 0;
  double fval = 0;
  size_t off = 0;  // byte offset in the normalized source; SourceMap turns it into line/column when needed
};

// The normalized source (newlines unified, one trailing newline dropped) and its line starts.
struct SourceMap {
  std::string src;
  std::vector<size_t> line_starts;
  void locate(size_t off, int* line, int* col) const;
  [[noreturn]] void fail(const std::string& msg, size_t off) const;  // throws TemplateError
};

// Fills `map` and returns the tokens. Throws TemplateError on malformed input (unterminated tags, strings,
// comments, stray characters or unbalanced brackets).
std::vector<Token> tokenize(std::string_view source, SourceMap& map);

}  // namespace zaya::jinja::detail
