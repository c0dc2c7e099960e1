#include "zaya/output_parser.h"

#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "test_util.h"
#include "zaya/error.h"

namespace {

using zaya::OutputEvent;
using zaya::OutputParser;
using zaya::OutputParserOptions;
using ojson = nlohmann::ordered_json;
using Type = OutputEvent::Type;

bool is_delta(Type t) { return t == Type::Reasoning || t == Type::Content || t == Type::ToolCallArgs; }

// Events folded so that adjacent deltas of one kind (and call) are one event; printable for comparisons.
std::vector<std::string> merged(const std::vector<OutputEvent>& events) {
  std::vector<OutputEvent> m;
  for (const auto& e : events) {
    if (!m.empty() && is_delta(e.type) && m.back().type == e.type && m.back().index == e.index)
      m.back().text += e.text;
    else
      m.push_back(e);
  }
  std::vector<std::string> out;
  for (const auto& e : m) {
    std::string s = std::string(zaya::event_type_name(e.type)) + "[" + std::to_string(e.index) + "]:" + e.text;
    if (e.type == Type::ToolCallEnd) s += " id=" + e.call.id + " args=" + e.call.arguments.dump();
    if (e.type == Type::ToolCallError) s += " raw=" + e.raw;
    out.push_back(s);
  }
  return out;
}

std::vector<OutputEvent> feed_chunks(const std::string& text, const std::vector<size_t>& cuts,
                                     const OutputParserOptions& opt) {
  OutputParser p(opt);
  std::vector<OutputEvent> all;
  size_t prev = 0;
  for (size_t c : cuts) {
    auto ev = p.feed(std::string_view(text).substr(prev, c - prev));
    all.insert(all.end(), ev.begin(), ev.end());
    prev = c;
  }
  auto ev = p.feed(std::string_view(text).substr(prev));
  all.insert(all.end(), ev.begin(), ev.end());
  ev = p.finish();
  all.insert(all.end(), ev.begin(), ev.end());
  return all;
}

std::vector<OutputEvent> feed_every(const std::string& text, size_t chunk, const OutputParserOptions& opt) {
  std::vector<size_t> cuts;
  for (size_t i = chunk; i < text.size(); i += chunk) cuts.push_back(i);
  return feed_chunks(text, cuts, opt);
}

// The merged event stream must not depend on how the text is split: all fixed chunk sizes, and every 2-way split.
void expect_chunking_invariant(const std::string& text, const OutputParserOptions& opt = {}) {
  const auto want = merged(feed_chunks(text, {}, opt));
  for (size_t chunk = 1; chunk <= text.size(); ++chunk)
    ASSERT_EQ(merged(feed_every(text, chunk, opt)), want) << "chunk size " << chunk << " of: " << text;
  for (size_t cut = 1; cut < text.size(); ++cut)
    ASSERT_EQ(merged(feed_chunks(text, {cut}, opt)), want) << "split at " << cut << " of: " << text;
  // Tool-call argument deltas of each call concatenate to the final arguments JSON.
  std::map<int, std::string> args;
  for (const auto& e : feed_every(text, 1, opt)) {
    if (e.type == Type::ToolCallArgs) args[e.index] += e.text;
    if (e.type == Type::ToolCallEnd) {
      EXPECT_EQ(args[e.index], e.call.arguments.dump());
    }
  }
}

OutputParserOptions thinking() {
  OutputParserOptions o;
  o.start_in_reasoning = true;
  return o;
}

TEST(ReasoningParser, SplitsThinkBlock) {
  auto r = OutputParser::parse_full("<think>\nLet me add.\n</think>\n\nThe answer is 4.");
  EXPECT_EQ(r.reasoning, "Let me add.");
  EXPECT_EQ(r.content, "The answer is 4.");
  EXPECT_TRUE(r.tool_calls.empty());
  auto plain = OutputParser::parse_full("No thinking here.");
  EXPECT_EQ(plain.reasoning, "");
  EXPECT_EQ(plain.content, "No thinking here.");
  // enable_thinking=false prompt ends with the closed block: the model writes content only.
  EXPECT_EQ(OutputParser::parse_full("Hi!").content, "Hi!");
}

TEST(ReasoningParser, StartInsideThinkBlock) {
  auto r = OutputParser::parse_full("Step one.\nStep two.\n</think>\n\nDone.", thinking());
  EXPECT_EQ(r.reasoning, "Step one.\nStep two.");
  EXPECT_EQ(r.content, "Done.");
  // A model that (re)opens the block itself.
  auto again = OutputParser::parse_full("<think>\nHmm.\n</think>\n\nOK", thinking());
  EXPECT_EQ(again.reasoning, "Hmm.");
  EXPECT_EQ(again.content, "OK");
  // Stream cut inside reasoning: everything is reasoning.
  auto cut = OutputParser::parse_full("still thinking\n", thinking());
  EXPECT_EQ(cut.reasoning, "still thinking");
  EXPECT_EQ(cut.content, "");
}

TEST(ReasoningParser, TagsOnlyAtTheirPlace) {
  // <think> after content is content; </think> outside reasoning is content.
  auto r = OutputParser::parse_full("Use the <think> tag.</think> ok");
  EXPECT_EQ(r.reasoning, "");
  EXPECT_EQ(r.content, "Use the <think> tag.</think> ok");
  // parse_reasoning=false: tags are content.
  OutputParserOptions o;
  o.parse_reasoning = false;
  EXPECT_EQ(OutputParser::parse_full("<think>x</think>y", o).content, "<think>x</think>y");
  // Near-miss tags are released.
  auto near = OutputParser::parse_full("<thinking>x", {});
  EXPECT_EQ(near.content, "<thinking>x");
  auto near2 = OutputParser::parse_full("a</thinkx>b</think>c", thinking());
  EXPECT_EQ(near2.reasoning, "a</thinkx>b");
  EXPECT_EQ(near2.content, "c");
  // A partial tag at the very end is flushed as text.
  EXPECT_EQ(OutputParser::parse_full("abc</thi", thinking()).reasoning, "abc</thi");
  EXPECT_EQ(OutputParser::parse_full("<thi").content, "<thi");
}

TEST(ReasoningParser, ChunkingInvariant) {
  for (const std::string text : {
           "<think>\nLet me think.\nTwo lines.\n</think>\n\nThe answer.\n",
           "\n\n<think>\n\nx\n\n</think>\n\n\nAnswer with </think> inside and <think> too",
           "<thin>not a tag</thin>",
           "caf\xC3\xA9 \xE2\x82\xAC <think>late</think>",
       })
    expect_chunking_invariant(text);
  for (const std::string text : {
           "reason\n\n</think>\n\nanswer",
           "<think>\nre-opened\n</think>answer",
           "never closed \xF0\x9F\x98\x80\n",
           "a</th</think>b",
       })
    expect_chunking_invariant(text, thinking());
}

TEST(ReasoningParser, StreamsReasoningBeforeCloseTag) {
  OutputParser p(thinking());
  auto ev = p.feed("Thinking about it");
  ASSERT_EQ(ev.size(), 1u);
  EXPECT_EQ(ev[0].type, Type::Reasoning);
  EXPECT_EQ(ev[0].text, "Thinking about it");
  ev = p.feed("\n</th");  // held: could be the close tag with its stripped newline
  EXPECT_TRUE(ev.empty());
  ev = p.feed("ink>\n\nHi");
  ASSERT_EQ(ev.size(), 1u);
  EXPECT_EQ(ev[0].type, Type::Content);
  EXPECT_EQ(ev[0].text, "Hi");
  EXPECT_TRUE(p.finish().empty());
  EXPECT_THROW(p.feed("x"), zaya::Error);
}

// ---- tool calls ----

struct ChatCase {
  std::string name;
  ojson context;
  std::string expected;
};

std::vector<ChatCase> chat_cases() {
  const std::string path =
      zaya::test::require_path(zaya::test::data_dir() + "/golden/zaya1-text/tiny-a/chat-cases.jsonl");
  std::ifstream in(path);
  std::vector<ChatCase> cases;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    auto j = ojson::parse(line);
    if (!j.contains("expected")) continue;
    cases.push_back({j["case"].get<std::string>(), j["context"], j["expected"].get<std::string>()});
  }
  if (cases.empty()) ADD_FAILURE() << "no chat cases in " << path;
  return cases;
}

std::string strip_nl(std::string s, bool left, bool right) {
  if (left) s.erase(0, s.find_first_not_of('\n') == std::string::npos ? s.size() : s.find_first_not_of('\n'));
  if (right) {
    while (!s.empty() && s.back() == '\n') s.pop_back();
  }
  return s;
}

TEST(ToolCallParser, RoundTripsRenderedChatCases) {
  const std::string open = "<|im_start|>assistant\n", close = "<|im_end|>";
  int checked_calls = 0, checked_turns = 0;
  for (const auto& c : chat_cases()) {
    const auto& messages = c.context["messages"];
    int last_user = -1;
    for (size_t i = 0; i < messages.size(); ++i)
      if (messages[i]["role"] == "user") last_user = static_cast<int>(i);
    // Rendered assistant turns in order (the trailing generation prompt has no <|im_end|>).
    std::vector<std::string> turns;
    for (size_t pos = c.expected.find(open); pos != std::string::npos; pos = c.expected.find(open, pos)) {
      pos += open.size();
      const size_t end = c.expected.find(close, pos);
      if (end == std::string::npos) break;
      turns.push_back(c.expected.substr(pos, end - pos));
    }
    size_t t = 0;
    for (size_t i = 0; i < messages.size(); ++i) {
      const auto& m = messages[i];
      if (m["role"] != "assistant") continue;
      ASSERT_LT(t, turns.size()) << c.name;
      const std::string& turn = turns[t++];
      SCOPED_TRACE(c.name + " turn: " + turn);

      // What the template keeps of the message.
      std::string content = m["content"].is_string() ? m["content"].get<std::string>() : "";
      std::string reasoning = m.contains("reasoning_content") ? m["reasoning_content"].get<std::string>() : "";
      if (!m.contains("reasoning_content") && content.find("</think>") != std::string::npos) {
        reasoning = content.substr(0, content.find("</think>"));
        if (reasoning.find("<think>") != std::string::npos)
          reasoning = reasoning.substr(reasoning.rfind("<think>") + 7);
        content = content.substr(content.rfind("</think>") + 8);
      }
      reasoning = strip_nl(reasoning, true, true);
      content = strip_nl(content, true, false);
      if (static_cast<int>(i) < last_user) reasoning.clear();

      OutputParserOptions opt;
      opt.tools = c.context.contains("tools") ? nlohmann::json::parse(c.context["tools"].dump()) : nlohmann::json();
      auto r = OutputParser::parse_full(turn, opt);
      EXPECT_EQ(r.reasoning, reasoning);
      EXPECT_EQ(r.content, content);
      EXPECT_TRUE(r.errors.empty());
      const auto calls = m.contains("tool_calls") ? m["tool_calls"] : ojson::array();
      ASSERT_EQ(r.tool_calls.size(), calls.size());
      for (size_t k = 0; k < calls.size(); ++k) {
        const auto& fn = calls[k].contains("function") ? calls[k]["function"] : calls[k];
        EXPECT_EQ(r.tool_calls[k].name, fn["name"].get<std::string>());
        EXPECT_EQ(r.tool_calls[k].arguments, fn["arguments"]);
        EXPECT_EQ(r.tool_calls[k].arguments.dump(), fn["arguments"].dump());  // same order too
        EXPECT_EQ(r.tool_calls[k].id, "call_" + std::to_string(k));
        ++checked_calls;
      }
      // Without the tool schemas the JSON fallback alone must give the same arguments here.
      auto bare = OutputParser::parse_full(turn);
      ASSERT_EQ(bare.tool_calls.size(), calls.size());
      for (size_t k = 0; k < calls.size(); ++k)
        EXPECT_EQ(bare.tool_calls[k].arguments,
                  (calls[k].contains("function") ? calls[k]["function"] : calls[k])["arguments"]);
      expect_chunking_invariant(turn, opt);
      ++checked_turns;
    }
  }
  EXPECT_GE(checked_calls, 3);
  EXPECT_GE(checked_turns, 4);
}

TEST(ToolCallParser, StreamsEvents) {
  const std::string text =
      "Checking.\n<zyphra_tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n"
      "<parameter=days>\n3\n</parameter>\n</function>\n</zyphra_tool_call>";
  OutputParser p;
  std::vector<OutputEvent> ev;
  for (char ch : text) {
    auto e = p.feed(std::string(1, ch));
    ev.insert(ev.end(), e.begin(), e.end());
  }
  auto tail = p.finish();
  ev.insert(ev.end(), tail.begin(), tail.end());
  EXPECT_EQ(merged(ev), (std::vector<std::string>{
                            "content[-1]:Checking.",
                            "tool_call_begin[0]:get_weather",
                            "tool_call_args[0]:{\"city\":\"Paris\",\"days\":3}",
                            "tool_call_end[0]:get_weather id=call_0 args={\"city\":\"Paris\",\"days\":3}",
                        }));
  // The begin event arrives as soon as the header is complete, before any argument.
  OutputParser q;
  auto e1 = q.feed("<zyphra_tool_call>\n<function=f>\n<parameter=a>\nlong value");
  ASSERT_EQ(e1.size(), 1u);
  EXPECT_EQ(e1[0].type, Type::ToolCallBegin);
  EXPECT_EQ(e1[0].call.name, "f");
  EXPECT_EQ(e1[0].call.id, "call_0");
}

TEST(ToolCallParser, MultipleCallsAndValueTypes) {
  const std::string text =
      "<think>\nNeed two.\n</think>\n\n"
      "<zyphra_tool_call>\n<function=a>\n<parameter=s>\nline1\nline2\n</parameter>\n"
      "<parameter=n>\n-1.5e3\n</parameter>\n<parameter=b>\ntrue\n</parameter>\n<parameter=z>\nnull\n</parameter>\n"
      "<parameter=arr>\n[1, \"x\", {\"k\": [false]}]\n</parameter>\n<parameter=q>\n\"quoted\"\n</parameter>\n"
      "<parameter=sp>\n 42\n</parameter>\n<parameter=e>\n\n</parameter>\n</function>\n</zyphra_tool_call>\n"
      "<zyphra_tool_call>\n<function=b_fn>\n</function>\n</zyphra_tool_call>";
  auto r = OutputParser::parse_full(text);
  EXPECT_EQ(r.reasoning, "Need two.");
  EXPECT_EQ(r.content, "");
  ASSERT_EQ(r.tool_calls.size(), 2u);
  const auto& a = r.tool_calls[0].arguments;
  EXPECT_EQ(a["s"], "line1\nline2");
  EXPECT_EQ(a["n"], -1500.0);
  EXPECT_EQ(a["b"], true);
  EXPECT_TRUE(a["z"].is_null());
  EXPECT_EQ(a["arr"], ojson::parse(R"([1, "x", {"k": [false]}])"));
  EXPECT_EQ(a["q"], "\"quoted\"");  // strings are never JSON-quoted by the template
  EXPECT_EQ(a["sp"], " 42");        // tojson never writes surrounding whitespace
  EXPECT_EQ(a["e"], "");
  EXPECT_EQ(r.tool_calls[1].name, "b_fn");
  EXPECT_EQ(r.tool_calls[1].arguments, ojson::object());
  EXPECT_EQ(r.tool_calls[1].id, "call_1");
  expect_chunking_invariant(text);
}

TEST(ToolCallParser, SchemaKeepsStringParametersRaw) {
  const std::string text =
      "<zyphra_tool_call>\n<function=set>\n<parameter=code>\n5\n</parameter>\n<parameter=n>\n5\n</parameter>\n"
      "</function>\n</zyphra_tool_call>";
  OutputParserOptions opt;
  opt.tools = nlohmann::json::parse(R"([{"type": "function", "function": {"name": "set", "parameters":
      {"type": "object", "properties": {"code": {"type": "string"}, "n": {"type": "integer"}}}}}])");
  opt.id_prefix = "call_req7_";
  auto r = OutputParser::parse_full(text, opt);
  ASSERT_EQ(r.tool_calls.size(), 1u);
  EXPECT_EQ(r.tool_calls[0].arguments, ojson::parse(R"({"code": "5", "n": 5})"));
  EXPECT_EQ(r.tool_calls[0].id, "call_req7_0");
  EXPECT_EQ(OutputParser::parse_full(text).tool_calls[0].arguments, ojson::parse(R"({"code": 5, "n": 5})"));
}

TEST(ToolCallParser, ContentAroundCalls) {
  // Text after the calls is content; whitespace between calls is dropped.
  auto r = OutputParser::parse_full(
      "Before.\n\n<zyphra_tool_call>\n<function=f>\n</function>\n</zyphra_tool_call>\n\n  After.");
  EXPECT_EQ(r.content, "Before.\nAfter.");
  ASSERT_EQ(r.tool_calls.size(), 1u);
  // parse_tool_calls=false: everything is content.
  OutputParserOptions o;
  o.parse_tool_calls = false;
  const std::string t = "<zyphra_tool_call>\n<function=f>\n</function>\n</zyphra_tool_call>";
  EXPECT_EQ(OutputParser::parse_full(t, o).content, t);
}

TEST(ToolCallParser, MalformedCalls) {
  {
    // No valid header: not a call, reported as content.
    const std::string t = "See <zyphra_tool_call> for details <function=oops";
    auto r = OutputParser::parse_full(t);
    EXPECT_EQ(r.content, t);
    EXPECT_TRUE(r.tool_calls.empty());
    EXPECT_TRUE(r.errors.empty());
    expect_chunking_invariant(t);
    auto nl = OutputParser::parse_full("<zyphra_tool_call>\n<function=bad\nname>\n</function>");
    EXPECT_EQ(nl.content, "<zyphra_tool_call>\n<function=bad\nname>\n</function>");
  }
  {
    // Unterminated value at end of stream: an error event, no call.
    const std::string t = "<zyphra_tool_call>\n<function=f>\n<parameter=a>\nhalf a val";
    OutputParser p;
    auto ev = p.feed(t);
    auto tail = p.finish();
    ev.insert(ev.end(), tail.begin(), tail.end());
    ASSERT_EQ(ev.size(), 2u);
    EXPECT_EQ(ev[0].type, Type::ToolCallBegin);
    EXPECT_EQ(ev[1].type, Type::ToolCallError);
    EXPECT_EQ(ev[1].index, 0);
    EXPECT_NE(ev[1].text.find("unterminated"), std::string::npos) << ev[1].text;
    EXPECT_EQ(ev[1].raw, t);
    expect_chunking_invariant(t);
  }
  {
    // Duplicate parameter and garbage in the body fail that call only; the next call still parses.
    const std::string t =
        "<zyphra_tool_call>\n<function=f>\n<parameter=a>\n1\n</parameter>\n<parameter=a>\n2\n</parameter>\n"
        "</function>\n</zyphra_tool_call>\n"
        "<zyphra_tool_call>\n<function=g>\nrandom words\n</function>\n</zyphra_tool_call>\n"
        "<zyphra_tool_call>\n<function=h>\n<parameter=x>\nok\n</parameter>\n</function>\n</zyphra_tool_call>";
    auto r = OutputParser::parse_full(t);
    ASSERT_EQ(r.errors.size(), 2u);
    EXPECT_NE(r.errors[0].find("duplicate"), std::string::npos) << r.errors[0];
    ASSERT_EQ(r.tool_calls.size(), 1u);
    EXPECT_EQ(r.tool_calls[0].name, "h");
    EXPECT_EQ(r.tool_calls[0].id, "call_2");
    EXPECT_EQ(r.tool_calls[0].arguments, ojson::parse(R"({"x": "ok"})"));
    EXPECT_EQ(r.content, "");
    expect_chunking_invariant(t);
  }
  {
    // Missing </zyphra_tool_call> after </function>: accepted.
    const std::string t = "<zyphra_tool_call>\n<function=f>\n<parameter=a>\n1\n</parameter>\n</function>";
    auto r = OutputParser::parse_full(t);
    ASSERT_EQ(r.tool_calls.size(), 1u);
    EXPECT_TRUE(r.errors.empty());
    expect_chunking_invariant(t);
    // Missing </function>: an error.
    auto e = OutputParser::parse_full("<zyphra_tool_call>\n<function=f>\n<parameter=a>\n1\n</parameter>\n");
    EXPECT_TRUE(e.tool_calls.empty());
    ASSERT_EQ(e.errors.size(), 1u);
  }
}

}  // namespace
