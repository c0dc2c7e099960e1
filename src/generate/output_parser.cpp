#include "zaya/output_parser.h"

#include <algorithm>

#include "zaya/error.h"
#include "generate/stop.h"
#include "util/json_limits.h"
#include "zaya/limits.h"

namespace zaya {

namespace {

using ojson = nlohmann::ordered_json;
using Type = OutputEvent::Type;

constexpr std::string_view kThinkOpen = "<think>";
constexpr std::string_view kThinkClose = "</think>";
constexpr std::string_view kCallOpen = "<zyphra_tool_call>";
constexpr std::string_view kNlCallOpen = "\n<zyphra_tool_call>";
constexpr std::string_view kCallClose = "</zyphra_tool_call>";
constexpr std::string_view kFunction = "<function=";
constexpr std::string_view kFunctionClose = "</function>";
constexpr std::string_view kParam = "<parameter=";
constexpr std::string_view kParamClose = "</parameter>";
constexpr size_t kMaxNameLen = 256;  // a "name" longer than this is not a name: stop waiting for '>'

bool is_space(char c) { return c == ' ' || c == '\n' || c == '\r' || c == '\t'; }

// Longest k < tag.size() such that s ends with the first k bytes of tag.
size_t partial_suffix(std::string_view s, std::string_view tag) {
  for (size_t k = std::min(s.size(), tag.size() - 1); k > 0; --k)
    if (s.substr(s.size() - k) == tag.substr(0, k)) return k;
  return 0;
}

// s is a proper prefix of tag (could still become it).
bool could_become(std::string_view s, std::string_view tag) { return s.size() < tag.size() && tag.starts_with(s); }

std::string dump(const ojson& j) { return j.dump(-1, ' ', false, ojson::error_handler_t::replace); }

void push(std::vector<OutputEvent>& out, Type type, std::string_view text, int index = -1) {
  if (text.empty()) return;
  if (!out.empty() && out.back().type == type && out.back().index == index &&
      (type == Type::Reasoning || type == Type::Content || type == Type::ToolCallArgs)) {
    out.back().text.append(text);
    return;
  }
  OutputEvent e;
  e.type = type;
  e.text = std::string(text);
  e.index = index;
  out.push_back(std::move(e));
}

}  // namespace

const char* event_type_name(OutputEvent::Type t) {
  switch (t) {
    case Type::Reasoning: return "reasoning";
    case Type::Content: return "content";
    case Type::ToolCallBegin: return "tool_call_begin";
    case Type::ToolCallArgs: return "tool_call_args";
    case Type::ToolCallEnd: return "tool_call_end";
    case Type::ToolCallError: return "tool_call_error";
  }
  return "?";
}

OutputParser::OutputParser(OutputParserOptions options) : opt_(std::move(options)) {
  if (opt_.start_in_reasoning && opt_.parse_reasoning) {
    state_ = State::Reasoning;
    at_output_start_ = false;
  } else {
    state_ = State::Content;
  }
  if (opt_.tools.is_array()) {
    for (const auto& tool : opt_.tools) {
      const auto& fn = tool.contains("function") ? tool["function"] : tool;
      if (!fn.is_object() || !fn.contains("name") || !fn["name"].is_string()) continue;
      const auto params = fn.value("parameters", nlohmann::json::object());
      if (!params.is_object() || !params.contains("properties") || !params["properties"].is_object()) continue;
      for (const auto& [k, schema] : params["properties"].items())
        if (schema.is_object() && schema.value("type", nlohmann::json()) == "string")
          string_params_.insert(fn["name"].get<std::string>() + "\n" + k);
    }
  }
}

std::vector<OutputEvent> OutputParser::feed(std::string_view piece) {
  if (state_ == State::Done) throw Error("output parser: feed() after finish()");
  std::vector<OutputEvent> out;
  buf_.append(piece);
  run(false, out);
  return out;
}

std::vector<OutputEvent> OutputParser::finish() {
  std::vector<OutputEvent> out;
  if (state_ == State::Done) return out;
  run(true, out);
  buf_.clear();
  state_ = State::Done;
  return out;
}

void OutputParser::run(bool final, std::vector<OutputEvent>& out) {
  while (step(final, out)) {
  }
}

bool OutputParser::step(bool final, std::vector<OutputEvent>& out) {
  switch (state_) {
    case State::Content: return step_content(final, out);
    case State::Reasoning: return step_reasoning(final, out);
    case State::AfterToolCall: return step_after_call(final, out);
    case State::ToolCall: return step_tool_call(final, out);
    case State::SkipToolCall: return step_skip(final, out);
    case State::Done: return false;
  }
  return false;
}

void OutputParser::consume(size_t n) {
  if (state_ == State::ToolCall) raw_.append(buf_, 0, n);
  buf_.erase(0, n);
}

bool OutputParser::step_content(bool final, std::vector<OutputEvent>& out) {
  if (content_start_) {
    const size_t nl = buf_.find_first_not_of('\n');
    buf_.erase(0, nl == std::string::npos ? buf_.size() : nl);
    if (buf_.empty()) return false;
  }
  if (at_output_start_ && opt_.parse_reasoning) {
    if (buf_.starts_with(kThinkOpen)) {
      buf_.erase(0, kThinkOpen.size());
      state_ = State::Reasoning;
      at_output_start_ = false;
      reasoning_start_ = true;
      return true;
    }
    if (could_become(buf_, kThinkOpen) && !final) return false;
    at_output_start_ = false;
  }

  if (opt_.parse_tool_calls) {
    const size_t pos = buf_.find(kCallOpen);
    if (pos != std::string::npos) {
      size_t text_len = pos;
      if (text_len > 0 && buf_[text_len - 1] == '\n') --text_len;  // the template's separator before a call
      push(out, Type::Content, std::string_view(buf_).substr(0, text_len));
      buf_.erase(0, pos + kCallOpen.size());
      content_start_ = false;
      state_ = State::ToolCall;
      sub_ = Sub::Header;
      raw_ = kCallOpen;
      return true;
    }
  }

  size_t hold = 0;
  if (!final && opt_.parse_tool_calls)
    hold = std::max(partial_suffix(buf_, kNlCallOpen), partial_suffix(buf_, kCallOpen));
  const size_t emit =
      final ? buf_.size() : utf8_complete_prefix(std::string_view(buf_).substr(0, buf_.size() - hold));
  if (emit > 0) {
    push(out, Type::Content, std::string_view(buf_).substr(0, emit));
    buf_.erase(0, emit);
    content_start_ = false;
  }
  return false;
}

bool OutputParser::step_reasoning(bool final, std::vector<OutputEvent>& out) {
  if (reasoning_start_) {
    const size_t nl = buf_.find_first_not_of('\n');
    buf_.erase(0, nl == std::string::npos ? buf_.size() : nl);
    if (buf_.empty()) return false;
    if (buf_.starts_with(kThinkOpen)) {  // a model that opens the block the prompt already opened
      buf_.erase(0, kThinkOpen.size());
      return true;
    }
    if (could_become(buf_, kThinkOpen) && !final) return false;
    reasoning_start_ = false;
  }

  const size_t pos = buf_.find(kThinkClose);
  if (pos != std::string::npos) {
    size_t text_len = pos;
    while (text_len > 0 && buf_[text_len - 1] == '\n') --text_len;  // template: reasoning.strip('\n')
    push(out, Type::Reasoning, std::string_view(buf_).substr(0, text_len));
    buf_.erase(0, pos + kThinkClose.size());
    state_ = State::Content;
    content_start_ = true;
    return true;
  }

  size_t emit;
  if (final) {
    emit = buf_.size();
    while (emit > 0 && buf_[emit - 1] == '\n') --emit;
  } else {
    // Hold a possible "</think>" start and the newlines before it (they are stripped if it is the close tag).
    emit = buf_.size() - partial_suffix(buf_, kThinkClose);
    while (emit > 0 && buf_[emit - 1] == '\n') --emit;
    emit = utf8_complete_prefix(std::string_view(buf_).substr(0, emit));
  }
  push(out, Type::Reasoning, std::string_view(buf_).substr(0, emit));
  if (final) buf_.clear();
  else buf_.erase(0, emit);
  return false;
}

bool OutputParser::step_after_call(bool final, std::vector<OutputEvent>& out) {
  (void)out;
  size_t ws = 0;
  while (ws < buf_.size() && is_space(buf_[ws])) ++ws;
  buf_.erase(0, ws);
  if (buf_.empty()) return false;
  if (buf_.starts_with(kCallOpen)) {
    buf_.erase(0, kCallOpen.size());
    state_ = State::ToolCall;
    sub_ = Sub::Header;
    raw_ = kCallOpen;
    return true;
  }
  if (could_become(buf_, kCallOpen) && !final) return false;
  state_ = State::Content;  // text after the calls: content (the whitespace before it is dropped)
  content_start_ = true;
  return true;
}

void OutputParser::fail_call(const std::string& why, bool final, std::vector<OutputEvent>& out) {
  OutputEvent e;
  e.type = Type::ToolCallError;
  e.index = n_calls_ - 1;
  e.text = why;
  // Up to where the error was found (at end of stream: all of it), so it does not depend on the chunking.
  e.raw = final ? raw_ + buf_ : raw_;
  raw_.clear();
  e.call = call_;
  out.push_back(std::move(e));
  state_ = State::SkipToolCall;
}

bool OutputParser::step_skip(bool final, std::vector<OutputEvent>& out) {
  (void)out;
  const size_t pos = buf_.find(kCallClose);
  if (pos != std::string::npos) {
    buf_.erase(0, pos + kCallClose.size());
    state_ = State::AfterToolCall;
    return true;
  }
  if (final) buf_.clear();
  else buf_.erase(0, buf_.size() - std::min(buf_.size(), kCallClose.size() - 1));
  return false;
}

ojson OutputParser::convert_value(const std::string& param, const std::string& raw) const {
  if (string_params_.count(call_.name + "\n" + param)) return raw;
  // The template writes non-strings with tojson, which never adds surrounding whitespace.
  if (raw.empty() || is_space(raw.front()) || is_space(raw.back())) return raw;
  // Model output is untrusted too: JSON nested past the limit stays a string.
  if (json_nesting_depth(raw) > limits::kMaxJsonDepth) return raw;
  ojson j = ojson::parse(raw, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || j.is_string()) return raw;
  return j;
}

bool OutputParser::step_tool_call(bool final, std::vector<OutputEvent>& out) {
  if (sub_ != Sub::Value) {
    size_t ws = 0;
    while (ws < buf_.size() && is_space(buf_[ws])) ++ws;
    consume(ws);
  }

  // Reads "<tag=NAME>" at the start of buf_. 1: got it, 0: need more text, -1: malformed.
  auto read_name = [&](std::string_view tag, std::string& name) -> int {
    const size_t gt = buf_.find('>', tag.size());
    const std::string_view region =
        std::string_view(buf_).substr(tag.size(), gt == std::string::npos ? std::string::npos : gt - tag.size());
    if (region.find_first_of("<\n") != std::string_view::npos || region.size() > kMaxNameLen) return -1;
    if (gt == std::string::npos) return final ? -1 : 0;
    if (region.empty()) return -1;
    name = std::string(region);
    consume(gt + 1);
    return 1;
  };

  switch (sub_) {
    case Sub::Header: {
      bool bad = false;
      std::string name;
      if (buf_.starts_with(kFunction)) {
        const int r = read_name(kFunction, name);
        if (r == 0) return false;
        bad = r < 0;
      } else if (!buf_.empty() && !could_become(buf_, kFunction)) {
        bad = true;
      } else if (!final) {
        return false;
      } else {
        bad = true;
      }
      if (bad) {  // not a tool call after all: everything read so far is content
        push(out, Type::Content, raw_);
        raw_.clear();
        state_ = State::Content;
        content_start_ = false;
        return true;
      }
      call_ = ToolCall{opt_.id_prefix + std::to_string(n_calls_), name, ojson::object()};
      OutputEvent e;
      e.type = Type::ToolCallBegin;
      e.index = n_calls_++;
      e.text = name;
      e.call = call_;
      out.push_back(std::move(e));
      sub_ = Sub::Body;
      return true;
    }
    case Sub::Body: {
      if (buf_.empty()) {
        if (final) fail_call("unterminated tool call (no </function>)", final, out);
        return final;
      }
      if (buf_.starts_with(kParam)) {
        std::string name;
        const int r = read_name(kParam, name);
        if (r == 0) return false;
        if (r < 0) {
          fail_call("malformed <parameter=NAME> tag", final, out);
          return true;
        }
        if (call_.arguments.contains(name)) {
          fail_call(cat("duplicate parameter '", name, "'"), final, out);
          return true;
        }
        param_ = name;
        value_scanned_ = 0;
        sub_ = Sub::Value;
        return true;
      }
      if (buf_.starts_with(kFunctionClose)) {
        consume(kFunctionClose.size());
        sub_ = Sub::Close;
        return true;
      }
      if (!final && (could_become(buf_, kParam) || could_become(buf_, kFunctionClose))) return false;
      fail_call("expected <parameter=NAME> or </function>", final, out);
      return true;
    }
    case Sub::Value: {
      const size_t from = value_scanned_ >= kParamClose.size() ? value_scanned_ - (kParamClose.size() - 1) : 0;
      const size_t pos = buf_.find(kParamClose, from);
      if (pos == std::string::npos) {
        value_scanned_ = buf_.size();
        if (final) fail_call(cat("unterminated value of parameter '", param_, "'"), final, out);
        return final;
      }
      // The template writes "\n" VALUE "\n" inside the tags: remove exactly those.
      std::string_view v = std::string_view(buf_).substr(0, pos);
      if (v.starts_with('\n')) v.remove_prefix(1);
      if (v.ends_with('\n')) v.remove_suffix(1);
      ojson value = convert_value(param_, std::string(v));
      std::string delta = call_.arguments.empty() ? "{" : ",";
      delta += dump(ojson(param_)) + ":" + dump(value);
      call_.arguments[param_] = std::move(value);
      push(out, Type::ToolCallArgs, delta, n_calls_ - 1);
      consume(pos + kParamClose.size());
      sub_ = Sub::Body;
      return true;
    }
    case Sub::Close: {
      if (!buf_.empty() && buf_.starts_with(kCallClose)) {
        consume(kCallClose.size());
      } else if (!final && (buf_.empty() || could_become(buf_, kCallClose))) {
        return false;
      }
      // Lenient: a missing </zyphra_tool_call> (stream ended, or other text follows) still completes the call.
      push(out, Type::ToolCallArgs, call_.arguments.empty() ? "{}" : "}", n_calls_ - 1);
      OutputEvent e;
      e.type = Type::ToolCallEnd;
      e.index = n_calls_ - 1;
      e.text = call_.name;
      e.call = call_;
      out.push_back(std::move(e));
      raw_.clear();
      state_ = State::AfterToolCall;
      return true;
    }
  }
  return false;
}

ParsedOutput OutputParser::parse_full(std::string_view text, const OutputParserOptions& options) {
  OutputParser p(options);
  auto events = p.feed(text);
  auto tail = p.finish();
  events.insert(events.end(), std::make_move_iterator(tail.begin()), std::make_move_iterator(tail.end()));
  ParsedOutput r;
  for (auto& e : events) {
    switch (e.type) {
      case Type::Reasoning: r.reasoning += e.text; break;
      case Type::Content: r.content += e.text; break;
      case Type::ToolCallEnd: r.tool_calls.push_back(std::move(e.call)); break;
      case Type::ToolCallError: r.errors.push_back(std::move(e.text)); break;
      default: break;
    }
  }
  return r;
}

}  // namespace zaya
