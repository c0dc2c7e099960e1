#pragma once
// Jinja2 chat-template renderer that reproduces what Hugging Face transformers' apply_chat_template produces:
// an ImmutableSandboxedEnvironment with trim_blocks, lstrip_blocks and loopcontrols, transformers' `tojson`
// override, the `raise_exception` / `strftime_now` globals and the `{% generation %}` block.
//
//   zaya::jinja::Template tmpl(source);
//   std::string prompt = tmpl.render(context);   // context: {"messages": [...], "add_generation_prompt": true, ...}
#include <ctime>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "zaya/error.h"

namespace zaya::jinja {

// Syntax or runtime error inside the template (undefined attribute access, type error, unknown filter...).
// what() is "chat template: line L, column C: <reason>".
struct TemplateError : Error {
  TemplateError(const std::string& reason, int line, int column);
  int line() const { return line_; }
  int column() const { return column_; }
  const std::string& reason() const { return reason_; }

 private:
  std::string reason_;
  int line_, column_;
};

// Thrown by the template's own `raise_exception(msg)`: what() is exactly `msg`.
struct TemplateException : Error {
  using Error::Error;
};

struct RenderOptions {
  // Wall-clock time seen by strftime_now(); unset means the current local time. Only the calendar fields
  // (tm_year, tm_mon, tm_mday, tm_hour, tm_min, tm_sec) need to be filled; weekday/yearday are derived.
  std::optional<std::tm> now;
};

class Template {
 public:
  // Parses the template; throws TemplateError on a syntax error (or an unknown filter / test name).
  explicit Template(std::string_view source);
  ~Template();
  Template(const Template&);
  Template& operator=(const Template&);
  Template(Template&&) noexcept;
  Template& operator=(Template&&) noexcept;

  // Renders with the context's top-level keys as template variables (object key order is kept).
  std::string render(const nlohmann::ordered_json& context, const RenderOptions& options = {}) const;

  struct Impl;

 private:
  std::shared_ptr<const Impl> impl_;
};

}  // namespace zaya::jinja
