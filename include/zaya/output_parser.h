#pragma once
// Incremental parser for generated assistant text: splits <think>…</think> reasoning from the answer and parses
// ZAYA1 tool calls
//
//   <zyphra_tool_call>\n<function=NAME>\n<parameter=ARG>\nVALUE\n</parameter>\n...</function>\n</zyphra_tool_call>
//
// into structured calls, emitting events as text arrives so a server can stream them. Text that could be the start
// of a tag is held back until it is decided, so the merged event stream does not depend on how the text is split.
//
// Whitespace follows the tiny ZAYA1 chat template (tests/data/golden/zaya1-text/tiny-a/chat_template.jinja), so
// parsing a rendered assistant turn gives back the message:
//   * reasoning: newlines right after <think> and right before </think> are dropped (template: strip('\n'));
//   * content: leading newlines are dropped (template: lstrip('\n')); one newline right before a tool call is the
//     template's separator and is dropped; whitespace between and after tool calls is dropped;
//   * parameter values: exactly one leading and one trailing newline are removed. The template writes strings raw
//     and everything else as JSON, so a value that parses as a JSON number/bool/null/object/array (with no
//     surrounding whitespace) becomes that JSON value, anything else stays a string. A value that parses as a JSON
//     *string* stays raw text (the template never quotes strings, so the quotes were part of the value). If
//     `tools` lists the function and declares the parameter "type": "string", the value always stays raw.
//
// Reasoning: `<think>` is recognised only at the very start of the output (after leading newlines); `</think>` only
// while in reasoning. With start_in_reasoning (the prompt already opened a think block) a repeated `<think>` at the
// start is swallowed. Text after </think> is content.
//
// Tool-call arguments are streamed one parameter at a time (a value's type is only known once it is closed); the
// ToolCallArgs deltas of one call concatenate to exactly `arguments.dump()` (compact JSON, parameter order kept).
//
// Malformed tool calls (documented choice):
//   * `<zyphra_tool_call>` not followed by a valid `<function=NAME>` header: it was not a tool call; the text is
//     reported as content (nothing about a call has been emitted yet).
//   * after the header (ToolCallBegin already emitted): bad syntax, a duplicate parameter, or end of stream before
//     `</function>` gives a ToolCallError event (with the call's index and the raw text of the block up to the error) and the rest
//     of the block up to `</zyphra_tool_call>` is dropped. The call never gets ToolCallEnd.
//   * `</function>` followed by end of stream or by something other than `</zyphra_tool_call>` is accepted
//     (lenient: stop strings or EOS may cut the closing tag).
#include <cstddef>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace zaya {

struct ToolCall {
  std::string id;                    // id_prefix + index, e.g. "call_0"
  std::string name;
  nlohmann::ordered_json arguments;  // always an object
};

struct OutputEvent {
  enum class Type {
    Reasoning,      // text: reasoning delta
    Content,        // text: content delta
    ToolCallBegin,  // index, call.id, call.name (text: name)
    ToolCallArgs,   // index, text: a piece of the arguments JSON
    ToolCallEnd,    // index, call: the complete call
    ToolCallError,  // index, text: what was wrong, raw: the raw text of the block
  };
  Type type = Type::Content;
  std::string text;
  int index = -1;
  ToolCall call;
  std::string raw;
};

const char* event_type_name(OutputEvent::Type t);

struct OutputParserOptions {
  bool start_in_reasoning = false;  // the generation prompt left the model inside <think>
  bool parse_reasoning = true;      // false: think tags are ordinary content
  bool parse_tool_calls = true;     // false: tool-call tags are ordinary content
  nlohmann::json tools;             // optional OpenAI-style tool list (for parameters declared "type": "string")
  std::string id_prefix = "call_";  // servers may put a per-request random part here
};

struct ParsedOutput {
  std::string reasoning;
  std::string content;
  std::vector<ToolCall> tool_calls;
  std::vector<std::string> errors;  // ToolCallError messages, in order
};

class OutputParser {
 public:
  explicit OutputParser(OutputParserOptions options = {});

  // Feeds the next decoded piece; returns the events it decides (adjacent deltas of one type merged).
  std::vector<OutputEvent> feed(std::string_view piece);
  // End of stream: decides everything still held back.
  std::vector<OutputEvent> finish();

  // Parses a whole generated text (feed + finish, events folded).
  static ParsedOutput parse_full(std::string_view text, const OutputParserOptions& options = {});

 private:
  enum class State { Content, Reasoning, AfterToolCall, ToolCall, SkipToolCall, Done };
  enum class Sub { Header, Body, Value, Close };

  void run(bool final, std::vector<OutputEvent>& out);
  bool step(bool final, std::vector<OutputEvent>& out);  // one decision; false: need more text
  bool step_content(bool final, std::vector<OutputEvent>& out);
  bool step_reasoning(bool final, std::vector<OutputEvent>& out);
  bool step_after_call(bool final, std::vector<OutputEvent>& out);
  bool step_tool_call(bool final, std::vector<OutputEvent>& out);
  bool step_skip(bool final, std::vector<OutputEvent>& out);
  void consume(size_t n);  // drops n bytes of buf_, recording them in the raw block text while in a tool call
  void fail_call(const std::string& why, bool final, std::vector<OutputEvent>& out);
  nlohmann::ordered_json convert_value(const std::string& param, const std::string& raw) const;

  OutputParserOptions opt_;
  std::set<std::string> string_params_;  // "function\nparameter" pairs declared as strings in opt_.tools
  State state_;
  std::string buf_;                      // undecided text
  bool at_output_start_ = true;          // nothing emitted yet: <think> may still open
  bool content_start_ = true;            // strip leading newlines of content
  bool reasoning_start_ = true;          // strip leading newlines (and a repeated <think>) of reasoning

  // Current tool call.
  Sub sub_ = Sub::Header;
  int n_calls_ = 0;
  ToolCall call_;
  std::string raw_;          // raw text of the block so far (for errors)
  std::string param_;        // parameter whose value is being read
  size_t value_scanned_ = 0; // bytes of buf_ already searched for </parameter>
};

}  // namespace zaya
