#include "server/request.h"

#include <cmath>
#include <limits>

#include "util/json_limits.h"
#include "zaya/error.h"
#include "zaya/limits.h"

namespace zaya::server {

using ojson = nlohmann::ordered_json;

bool valid_utf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t n;
    uint32_t cp;
    if ((c & 0xE0) == 0xC0) n = 1, cp = c & 0x1F;
    else if ((c & 0xF0) == 0xE0) n = 2, cp = c & 0x0F;
    else if ((c & 0xF8) == 0xF0) n = 3, cp = c & 0x07;
    else return false;
    if (i + n >= s.size()) return false;  // truncated sequence
    for (size_t k = 1; k <= n; ++k) {
      const unsigned char d = static_cast<unsigned char>(s[i + k]);
      if ((d & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (d & 0x3F);
    }
    if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000)) return false;  // overlong
    if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += n + 1;
  }
  return true;
}

ojson parse_body(std::string_view body) {
  if (body.empty()) throw ApiError(400, "the request body is empty; expected a JSON object", "invalid_json");
  if (!valid_utf8(body)) throw ApiError(400, "the request body is not valid UTF-8", "invalid_utf8");
  // Deep nesting would exhaust the stack in recursive consumers (copies, the template engine): refuse it up front.
  if (json_nesting_depth(body) > limits::kMaxJsonDepth)
    throw ApiError(400, cat("the request body is nested deeper than ", limits::kMaxJsonDepth, " levels"), "invalid_json");
  ojson j;
  try {
    j = ojson::parse(body);
  } catch (const ojson::exception& e) {  // parse errors, and numbers out of range (1e999)
    throw ApiError(400, std::string("malformed JSON: ") + e.what(), "invalid_json");
  }
  if (!j.is_object()) throw ApiError(400, "the request body must be a JSON object", "invalid_json");
  return j;
}

namespace {

// Typed field access with OpenAI-style errors. A JSON null counts as absent (clients send explicit nulls).
struct Fields {
  const ojson& j;
  const ojson* get(const char* k) const {
    auto it = j.find(k);
    if (it == j.end() || it->is_null()) return nullptr;
    return &*it;
  }
  [[noreturn]] static void type_error(const char* k, const char* want) {
    throw ApiError(400, cat("'", k, "' must be ", want), "invalid_type", k);
  }
  [[noreturn]] static void value_error(const char* k, const std::string& why) {
    throw ApiError(400, cat("invalid '", k, "': ", why), "invalid_value", k);
  }
  std::optional<double> number(const char* k, double lo, double hi, bool lo_open = false) const {
    const ojson* v = get(k);
    if (!v) return std::nullopt;
    if (!v->is_number()) type_error(k, "a number");
    const double d = v->get<double>();
    if (!std::isfinite(d) || d < lo || d > hi || (lo_open && d == lo))
      value_error(k, cat(d, " is outside ", lo_open ? "(" : "[", lo, ", ", hi, "]"));
    return d;
  }
  std::optional<int64_t> integer(const char* k, int64_t lo, int64_t hi) const {
    const ojson* v = get(k);
    if (!v) return std::nullopt;
    // 3.0 is an integer to JavaScript clients; 3.5 is not.
    if (v->is_number_float()) {
      const double d = v->get<double>();
      if (!std::isfinite(d) || std::floor(d) != d) type_error(k, "an integer");
      if (d < static_cast<double>(lo) || d > static_cast<double>(hi)) value_error(k, cat(d, " is outside [", lo, ", ", hi, "]"));
      return static_cast<int64_t>(d);
    }
    if (!v->is_number_integer()) type_error(k, "an integer");
    if (v->is_number_unsigned() && v->get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
      value_error(k, "too large");
    const int64_t x = v->get<int64_t>();
    if (x < lo || x > hi) value_error(k, cat(x, " is outside [", lo, ", ", hi, "]"));
    return x;
  }
  std::optional<bool> boolean(const char* k) const {
    const ojson* v = get(k);
    if (!v) return std::nullopt;
    if (!v->is_boolean()) type_error(k, "a boolean");
    return v->get<bool>();
  }
  std::optional<std::string> string(const char* k) const {
    const ojson* v = get(k);
    if (!v) return std::nullopt;
    if (!v->is_string()) type_error(k, "a string");
    return v->get<std::string>();
  }
};

[[noreturn]] void unsupported(const char* param, const std::string& why) {
  throw ApiError(400, why, "unsupported_parameter", param);
}

// Fields shared by both endpoints: sampling, limits, stop, stream.
void parse_common(const Fields& f, GenerateOptions& g, bool& max_given, bool& stream, bool& include_usage,
                  std::string& model, const SamplingParams& defaults, size_t vocab, bool chat) {
  if (auto m = f.string("model")) model = *m;
  g.sampling = defaults;
  const int64_t big = std::numeric_limits<int32_t>::max();
  std::optional<int64_t> mt = chat ? f.integer("max_completion_tokens", 1, big) : std::nullopt;
  if (!mt) mt = f.integer("max_tokens", chat ? 1 : 0, big);
  if (mt) {
    g.max_tokens = static_cast<int>(*mt);
    max_given = true;
  }
  if (auto v = f.number("temperature", 0, 2)) g.sampling.temperature = static_cast<float>(*v);
  if (auto v = f.number("top_p", 0, 1, true)) g.sampling.top_p = static_cast<float>(*v);
  if (auto v = f.integer("top_k", -1, big)) g.sampling.top_k = static_cast<int>(std::max<int64_t>(*v, 0));
  if (auto v = f.number("min_p", 0, 1)) g.sampling.min_p = static_cast<float>(*v);
  if (auto v = f.number("presence_penalty", -2, 2)) g.sampling.presence_penalty = static_cast<float>(*v);
  if (auto v = f.number("frequency_penalty", -2, 2)) g.sampling.frequency_penalty = static_cast<float>(*v);
  if (auto v = f.number("repetition_penalty", 0, 10, true)) g.sampling.repetition_penalty = static_cast<float>(*v);
  if (auto v = f.integer("repeat_last_n", -1, big)) g.sampling.penalty_last_n = static_cast<int>(*v);
  if (auto v = f.integer("seed", std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max()))
    g.sampling.seed = static_cast<uint64_t>(*v);
  else
    g.sampling.seed = random_seed();
  if (const ojson* lb = f.get("logit_bias")) {
    if (!lb->is_object()) Fields::type_error("logit_bias", "an object mapping token ids to numbers");
    for (auto it = lb->begin(); it != lb->end(); ++it) {
      const std::string& key = it.key();
      char* end = nullptr;
      const long long id = std::strtoll(key.c_str(), &end, 10);
      if (key.empty() || *end != '\0' || id < 0 || id >= static_cast<long long>(vocab))
        Fields::value_error("logit_bias", cat("'", key, "' is not a token id in [0, ", vocab, ")"));
      if (!it->is_number()) Fields::type_error("logit_bias", "an object mapping token ids to numbers");
      const double b = it->get<double>();
      if (!(b >= -100 && b <= 100)) Fields::value_error("logit_bias", cat("bias ", b, " is outside [-100, 100]"));
      g.sampling.logit_bias[static_cast<int>(id)] = static_cast<float>(b);
    }
  }
  if (const ojson* s = f.get("stop")) {
    std::vector<std::string> stops;
    if (s->is_string()) {
      stops.push_back(s->get<std::string>());
    } else if (s->is_array()) {
      for (const auto& x : *s) {
        if (!x.is_string()) Fields::type_error("stop", "a string or a list of strings");
        stops.push_back(x.get<std::string>());
      }
    } else {
      Fields::type_error("stop", "a string or a list of strings");
    }
    if (stops.size() > 16) Fields::value_error("stop", "at most 16 stop strings");
    for (const auto& x : stops)
      if (x.empty()) Fields::value_error("stop", "stop strings must not be empty");
    g.stop = stops;
  }
  if (auto v = f.boolean("ignore_eos")) g.ignore_eos = *v;
  if (auto v = f.boolean("skip_special_tokens")) g.skip_special_tokens = *v;
  if (auto n = f.integer("n", std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max())) {
    if (*n < 1) Fields::value_error("n", "must be at least 1");
    if (*n > 1) unsupported("n", "n > 1 is not supported: send one request per choice");
  }
  if (auto v = f.boolean("stream")) stream = *v;
  if (const ojson* so = f.get("stream_options")) {
    if (!so->is_object()) Fields::type_error("stream_options", "an object");
    if (!stream) Fields::value_error("stream_options", "only allowed when 'stream' is true");
    Fields sf{*so};
    if (auto v = sf.boolean("include_usage")) include_usage = *v;
  }
  if (f.get("response_format")) {
    const ojson& rf = *f.get("response_format");
    if (!rf.is_object() || !rf.contains("type") || !rf["type"].is_string())
      Fields::type_error("response_format", "an object with a string 'type'");
    if (rf["type"] != "text")
      unsupported("response_format", "only response_format {\"type\": \"text\"} is supported (no JSON mode)");
  }
  try {
    validate(g.sampling, vocab);
  } catch (const std::exception& e) {
    throw ApiError(400, e.what(), "invalid_value");
  }
}

// A message's content for the template: text parts as they are, each image part as a kImageMarker line (the way
// image_content() builds the content of `zaya run --image`), its URL appended to `images`.
std::string content_text(const ojson& content, const std::string& where, std::vector<ImageRef>& images) {
  if (content.is_null()) return "";
  if (content.is_string()) return content.get<std::string>();
  if (!content.is_array()) throw ApiError(400, where + ".content must be a string or a list of content parts",
                                          "invalid_type", where + ".content");
  std::string out;
  for (size_t k = 0; k < content.size(); ++k) {
    const ojson& part = content[k];
    if (part.is_string()) {
      out += part.get<std::string>();
      continue;
    }
    if (!part.is_object() || !part.contains("type") || !part["type"].is_string())
      throw ApiError(400, where + ".content parts must be objects with a 'type'", "invalid_type", where + ".content");
    const std::string type = part["type"];
    if (type == "image_url") {
      const std::string param = cat(where, ".content[", k, "].image_url");
      const ojson* iu = part.contains("image_url") ? &part["image_url"] : nullptr;
      if (iu && iu->is_object() && iu->contains("url")) iu = &(*iu)["url"];
      if (!iu || !iu->is_string())
        throw ApiError(400, param + " must be {\"url\": \"…\"} or a URL string", "invalid_type", param);
      images.push_back({iu->get<std::string>(), param});
      out += std::string(kImageMarker) + "\n";
      continue;
    }
    if (type != "text")
      throw ApiError(400, cat(where, ".content: content part type '", type,
                              "' is not supported (text and image_url only)"),
                     "unsupported_content_type", where + ".content");
    if (!part.contains("text") || !part["text"].is_string())
      throw ApiError(400, where + ".content: a text part needs a string 'text'", "invalid_type", where + ".content");
    out += part["text"].get<std::string>();
  }
  return out;
}

bool valid_function_name(const std::string& n) {
  if (n.empty() || n.size() > 64) return false;
  for (char c : n)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.')) return false;
  return true;
}

}  // namespace

ChatRequest parse_chat_request(const ojson& body, const SamplingParams& defaults, size_t vocab) {
  ChatRequest r;
  Fields f{body};
  for (const char* k : {"functions", "function_call"})
    if (f.get(k)) unsupported(k, cat("'", k, "' is deprecated and not supported; use 'tools' and 'tool_choice'"));
  if (f.get("audio")) unsupported("audio", "audio output is not supported");
  if (const ojson* m = f.get("modalities")) {
    if (!m->is_array()) Fields::type_error("modalities", "a list of strings");
    for (const auto& x : *m)
      if (x != "text") unsupported("modalities", "only the 'text' modality is supported");
  }
  parse_common(f, r.gen, r.max_tokens_given, r.stream, r.include_usage, r.model, defaults, vocab, true);
  if (auto v = f.boolean("logprobs")) r.logprobs = *v;
  if (auto v = f.integer("top_logprobs", 0, 20)) {
    if (!r.logprobs) Fields::value_error("top_logprobs", "requires 'logprobs': true");
    r.gen.top_logprobs = static_cast<int>(*v);
  } else if (r.logprobs) {
    r.gen.top_logprobs = 0;
  }

  // Messages.
  const ojson* msgs = f.get("messages");
  if (!msgs) throw ApiError(400, "'messages' is required", "missing_required_parameter", "messages");
  if (!msgs->is_array()) Fields::type_error("messages", "a list of message objects");
  if (msgs->empty()) throw ApiError(400, "'messages' must contain at least one message", "invalid_value", "messages");
  r.messages = ojson::array();
  for (size_t i = 0; i < msgs->size(); ++i) {
    const ojson& m = (*msgs)[i];
    const std::string where = cat("messages[", i, "]");
    if (!m.is_object()) throw ApiError(400, where + " must be an object", "invalid_type", where);
    if (!m.contains("role") || !m["role"].is_string())
      throw ApiError(400, where + ".role must be a string", "invalid_type", where + ".role");
    std::string role = m["role"];
    if (role == "developer") role = "system";
    if (role != "system" && role != "user" && role != "assistant" && role != "tool")
      throw ApiError(400, cat(where, ".role '", role, "' is not one of system, developer, user, assistant, tool"),
                     "invalid_value", where + ".role");
    const bool has_calls = m.contains("tool_calls") && !m["tool_calls"].is_null();
    if (!m.contains("content") || (m["content"].is_null() && !(role == "assistant" && has_calls)))
      if (role != "assistant")
        throw ApiError(400, where + ".content is required", "missing_required_parameter", where + ".content");
    const ojson& content = m.contains("content") ? m["content"] : ojson();
    ojson out = {{"role", role}, {"content", content_text(content, where, r.images)}};
    if (m.contains("name") && m["name"].is_string()) out["name"] = m["name"];
    if (m.contains("reasoning_content") && m["reasoning_content"].is_string())
      out["reasoning_content"] = m["reasoning_content"];
    if (role == "tool") {
      if (m.contains("tool_call_id") && !m["tool_call_id"].is_null()) {
        if (!m["tool_call_id"].is_string())
          throw ApiError(400, where + ".tool_call_id must be a string", "invalid_type", where + ".tool_call_id");
        out["tool_call_id"] = m["tool_call_id"];
      }
    }
    if (has_calls) {
      if (role != "assistant")
        throw ApiError(400, where + ": only assistant messages have tool_calls", "invalid_value", where + ".tool_calls");
      const ojson& calls = m["tool_calls"];
      if (!calls.is_array()) throw ApiError(400, where + ".tool_calls must be a list", "invalid_type", where + ".tool_calls");
      ojson out_calls = ojson::array();
      for (size_t k = 0; k < calls.size(); ++k) {
        const ojson& c = calls[k];
        const std::string cw = cat(where, ".tool_calls[", k, "]");
        if (!c.is_object() || !c.contains("function") || !c["function"].is_object())
          throw ApiError(400, cw + " must be an object with a 'function'", "invalid_type", cw);
        const ojson& fn = c["function"];
        if (!fn.contains("name") || !fn["name"].is_string())
          throw ApiError(400, cw + ".function.name must be a string", "invalid_type", cw + ".function.name");
        ojson args = ojson::object();
        if (fn.contains("arguments") && !fn["arguments"].is_null()) {
          // OpenAI sends arguments as a JSON string; the template wants the object.
          if (fn["arguments"].is_string()) {
            const std::string a = fn["arguments"];
            // JSON inside a string passed the body's depth check as one string: it gets its own.
            if (json_nesting_depth(a) > limits::kMaxJsonDepth)
              throw ApiError(400, cat(cw, ".function.arguments is nested deeper than ", limits::kMaxJsonDepth, " levels"),
                             "invalid_value", cw + ".function.arguments");
            try {
              args = a.empty() ? ojson::object() : ojson::parse(a);
            } catch (const std::exception&) {
              throw ApiError(400, cw + ".function.arguments is not valid JSON", "invalid_value", cw + ".function.arguments");
            }
          } else {
            args = fn["arguments"];
          }
          if (!args.is_object())
            throw ApiError(400, cw + ".function.arguments must encode a JSON object", "invalid_value",
                           cw + ".function.arguments");
        }
        ojson oc = {{"type", "function"}, {"function", {{"name", fn["name"]}, {"arguments", args}}}};
        if (c.contains("id") && c["id"].is_string()) oc["id"] = c["id"];
        out_calls.push_back(oc);
      }
      out["tool_calls"] = out_calls;
    }
    r.messages.push_back(std::move(out));
  }

  // Tools.
  if (const ojson* tools = f.get("tools")) {
    if (!tools->is_array()) Fields::type_error("tools", "a list of tool objects");
    for (size_t i = 0; i < tools->size(); ++i) {
      const ojson& t = (*tools)[i];
      const std::string where = cat("tools[", i, "]");
      if (!t.is_object()) throw ApiError(400, where + " must be an object", "invalid_type", where);
      if (!t.contains("type") || t["type"] != "function")
        throw ApiError(400, where + ".type must be \"function\"", "invalid_value", where + ".type");
      if (!t.contains("function") || !t["function"].is_object())
        throw ApiError(400, where + ".function must be an object", "invalid_type", where + ".function");
      const ojson& fn = t["function"];
      if (!fn.contains("name") || !fn["name"].is_string() || !valid_function_name(fn["name"]))
        throw ApiError(400, where + ".function.name must be 1-64 letters, digits, '_', '-' or '.'", "invalid_value",
                       where + ".function.name");
      if (fn.contains("parameters") && !fn["parameters"].is_null() && !fn["parameters"].is_object())
        throw ApiError(400, where + ".function.parameters must be a JSON Schema object", "invalid_type",
                       where + ".function.parameters");
    }
    if (!tools->empty()) r.tools = *tools;
  }
  if (const ojson* tc = f.get("tool_choice")) {
    if (tc->is_string()) {
      const std::string s = *tc;
      if (s == "auto") r.tool_choice = ToolChoice::Auto;
      else if (s == "none") r.tool_choice = ToolChoice::None;
      else if (s == "required") r.tool_choice = ToolChoice::Required;
      else Fields::value_error("tool_choice", "must be 'none', 'auto', 'required' or a function object");
    } else if (tc->is_object() && tc->contains("function") && (*tc)["function"].is_object() &&
               (*tc)["function"].contains("name") && (*tc)["function"]["name"].is_string()) {
      r.tool_choice = ToolChoice::Named;
      r.tool_name = (*tc)["function"]["name"];
    } else {
      Fields::type_error("tool_choice", "'none', 'auto', 'required' or {\"type\": \"function\", \"function\": {\"name\": …}}");
    }
    if ((r.tool_choice == ToolChoice::Required || r.tool_choice == ToolChoice::Named) && r.tools.is_null())
      Fields::value_error("tool_choice", "needs 'tools'");
    if (r.tool_choice == ToolChoice::Named) {
      bool found = false;
      for (const auto& t : r.tools) found = found || t["function"]["name"] == r.tool_name;
      if (!found) Fields::value_error("tool_choice", cat("no tool named '", r.tool_name, "' in 'tools'"));
    }
  }
  if (auto v = f.boolean("parallel_tool_calls")) r.parallel_tool_calls = *v;

  // Template variables.
  if (const ojson* kw = f.get("chat_template_kwargs")) {
    if (!kw->is_object()) Fields::type_error("chat_template_kwargs", "an object");
    for (auto it = kw->begin(); it != kw->end(); ++it) {
      if (it.key() == "enable_thinking") {
        if (!it->is_boolean()) throw ApiError(400, "chat_template_kwargs.enable_thinking must be a boolean",
                                              "invalid_type", "chat_template_kwargs.enable_thinking");
        r.render.enable_thinking = it->get<bool>();
      } else if (it.key() == "messages" || it.key() == "tools" || it.key() == "add_generation_prompt") {
        throw ApiError(400, cat("chat_template_kwargs may not set '", it.key(), "'"), "invalid_value",
                       "chat_template_kwargs");
      } else {
        r.render.extra[it.key()] = *it;
      }
    }
  }
  r.render.tools = r.tools;
  return r;
}

CompletionRequest parse_completion_request(const ojson& body, const SamplingParams& defaults, size_t vocab) {
  CompletionRequest r;
  Fields f{body};
  parse_common(f, r.gen, r.max_tokens_given, r.stream, r.include_usage, r.model, defaults, vocab, false);
  if (!r.max_tokens_given) r.gen.max_tokens = 16;  // the OpenAI default for completions
  if (auto b = f.integer("best_of", 1, 1000); b && *b > 1) unsupported("best_of", "best_of > 1 is not supported");
  if (auto s = f.string("suffix"); s && !s->empty()) unsupported("suffix", "'suffix' (insertion) is not supported");
  if (auto v = f.boolean("echo")) r.echo = *v;
  if (auto v = f.integer("logprobs", 0, 5)) {
    r.logprobs = static_cast<int>(*v);
    r.gen.top_logprobs = r.logprobs;
    if (r.echo) unsupported("logprobs", "logprobs together with echo (prompt logprobs) is not supported");
  }
  const ojson* p = f.get("prompt");
  if (!p) throw ApiError(400, "'prompt' is required", "missing_required_parameter", "prompt");
  auto ids_of = [&](const ojson& arr) {
    std::vector<int32_t> ids;
    for (const auto& x : arr) {
      if (!x.is_number_integer()) Fields::type_error("prompt", "a string, a list of strings or a list of token ids");
      const int64_t id = x.get<int64_t>();
      if (id < 0 || id >= static_cast<int64_t>(vocab))
        Fields::value_error("prompt", cat("token id ", id, " is outside the vocabulary [0, ", vocab, ")"));
      ids.push_back(static_cast<int32_t>(id));
    }
    return ids;
  };
  if (p->is_string()) {
    r.prompt_text = p->get<std::string>();
  } else if (p->is_array()) {
    if (p->empty()) Fields::value_error("prompt", "must not be empty");
    if ((*p)[0].is_string()) {
      if (p->size() > 1) unsupported("prompt", "several prompts in one request are not supported");
      r.prompt_text = (*p)[0].get<std::string>();
    } else if ((*p)[0].is_array()) {
      if (p->size() > 1) unsupported("prompt", "several prompts in one request are not supported");
      r.prompt_ids = ids_of((*p)[0]);
    } else {
      r.prompt_ids = ids_of(*p);
    }
    if (!r.prompt_text && r.prompt_ids.empty()) Fields::value_error("prompt", "must not be empty");
  } else {
    Fields::type_error("prompt", "a string, a list of strings or a list of token ids");
  }
  if (r.prompt_text && r.prompt_text->empty()) Fields::value_error("prompt", "must not be empty");
  return r;
}

}  // namespace zaya::server
