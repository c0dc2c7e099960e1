#include "zaya/jinja.h"

#include "chat/jinja_ast.h"
#include "chat/jinja_eval.h"
#include "chat/jinja_lexer.h"

namespace zaya::jinja {

TemplateError::TemplateError(const std::string& reason, int line, int column)
    : Error(cat("chat template: line ", line, ", column ", column, ": ", reason)),
      reason_(reason),
      line_(line),
      column_(column) {}

struct Template::Impl {
  detail::SourceMap map;
  detail::Body body;
};

Template::Template(std::string_view source) {
  auto impl = std::make_shared<Impl>();
  std::vector<detail::Token> tokens = detail::tokenize(source, impl->map);
  impl->body = detail::parse(tokens, impl->map);
  impl_ = std::move(impl);
}

Template::~Template() = default;
Template::Template(const Template&) = default;
Template& Template::operator=(const Template&) = default;
Template::Template(Template&&) noexcept = default;
Template& Template::operator=(Template&&) noexcept = default;

std::string Template::render(const nlohmann::ordered_json& context, const RenderOptions& options) const {
  detail::Renderer r(impl_->map, options);
  return r.render(impl_->body, context);
}

}  // namespace zaya::jinja
