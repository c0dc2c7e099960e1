#include "util/json_limits.h"

#include <cerrno>
#include <cstdio>
#include <cstring>

namespace zaya {

int limits::json_nesting_depth(std::string_view text, int limit) {
  int depth = 0, deepest = 0;
  bool in_string = false, escaped = false;
  for (const char c : text) {
    if (in_string) {
      if (escaped) escaped = false;
      else if (c == '\\') escaped = true;
      else if (c == '"') in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > deepest && (deepest = depth) > limit) return deepest;
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
  return deepest;
}

void check_json_depth(std::string_view text, const std::string& what, int limit) {
  if (json_nesting_depth(text, limit) > limit)
    throw Error(cat(what, ": JSON nested deeper than ", limit, " levels (the limit for every JSON document, "
                    "zaya::limits::kMaxJsonDepth)"));
}

std::string read_text_file(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) throw Error(cat(path, ": cannot open: ", std::strerror(errno)));
  std::string data;
  char buf[1 << 16];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) data.append(buf, n);
  const bool failed = std::ferror(f) != 0;
  std::fclose(f);
  if (failed) throw Error(cat(path, ": read error"));
  return data;
}

}  // namespace zaya
