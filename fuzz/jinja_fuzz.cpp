// The Jinja lexer, parser and renderer, with the limits on. Input: a template, then optionally a JSON context after
// a "\n#~#\n" line (the default context is a small chat).
#include <nlohmann/json.hpp>

#include "fuzz_util.h"
#include "zaya/error.h"
#include "zaya/jinja.h"
#include "zaya/limits.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto parts = zaya::fuzz::split_parts(std::string_view(reinterpret_cast<const char*>(data), size), 2);
  nlohmann::ordered_json ctx = {
      {"messages", {{{"role", "system"}, {"content", "Be brief."}}, {{"role", "user"}, {"content", "Hi <b>&"}}}},
      {"add_generation_prompt", true},
      {"bos_token", "<bos>"}};
  if (!parts[1].empty()) {
    if (zaya::limits::json_nesting_depth(parts[1]) > zaya::limits::kMaxJsonDepth) return 0;
    ctx = nlohmann::ordered_json::parse(parts[1], nullptr, false);
    if (ctx.is_discarded() || !ctx.is_object()) return 0;
  }
  try {
    const zaya::jinja::Template t(parts[0]);
    zaya::jinja::RenderOptions o;
    o.now = std::tm{};
    (void)t.render(ctx, o);
  } catch (const zaya::Error&) {  // TemplateError, TemplateException, limits
  }
  return 0;
}
