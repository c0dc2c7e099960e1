// zaya serve over real HTTP on loopback: the OpenAI endpoints (plain and streamed), tools, reasoning, prompt reuse,
// concurrency with batching (seeded outputs equal sequential runs), every error path, auth, disconnects, the CLI
// binary, and the official `openai` npm client.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>
#include <thread>

#include "zaya/server.h"
#include "test_util.h"

using nlohmann::json;
using zaya::server::Server;
using zaya::server::ServerOptions;

namespace {

struct HttpResponse {
  int status = 0;
  httplib::Headers headers;
  std::string body;
  std::string header(const std::string& name) const {
    auto it = headers.find(name);
    return it == headers.end() ? "" : it->second;
  }
};

using HeaderList = std::vector<std::pair<std::string, std::string>>;

// A keep-alive test client over cpp-httplib's httplib::Client. Throws on connection failures.
class HttpClient {
 public:
  HttpClient(const std::string& host, int port) : cli_(host, port), host_(host), port_(port) {
    cli_.set_keep_alive(true);
    cli_.set_read_timeout(60, 0);
    cli_.set_write_timeout(60, 0);
  }
  // on_data receives the body as it arrives; returning false closes the connection early.
  HttpResponse request(const std::string& method, const std::string& path, const std::string& body = "",
                       const HeaderList& headers = {},
                       const std::function<bool(std::string_view)>& on_data = {}) {
    httplib::Request req;
    req.method = method;
    req.path = path;
    for (const auto& [k, v] : headers) req.set_header(k, v);
    req.body = body;
    HttpResponse out;
    if (on_data)
      req.content_receiver = [&](const char* d, size_t n, uint64_t, uint64_t) { return on_data(std::string_view(d, n)); };
    else
      req.content_receiver = [&](const char* d, size_t n, uint64_t, uint64_t) {
        out.body.append(d, n);
        return true;
      };
    auto res = cli_.send(req);
    if (!res) throw std::runtime_error("HTTP " + method + " " + path + ": " + httplib::to_string(res.error()));
    out.status = res->status;
    out.headers = res->headers;
    return out;
  }
  HttpResponse post_json(const std::string& path, const std::string& body, const HeaderList& headers = {}) {
    auto h = headers;
    h.emplace_back("Content-Type", "application/json");
    return request("POST", path, body, h);
  }
  HttpResponse get(const std::string& path, const HeaderList& headers = {}) { return request("GET", path, "", headers); }
  // Sends raw bytes on a fresh connection and returns everything the server sends back until it closes (or 10 s).
  std::string raw(const std::string& bytes) {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(port_));
    ::inet_pton(AF_INET, host_.c_str(), &a.sin_addr);
    std::string out;
    if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) {
      size_t at = 0;
      while (at < bytes.size()) {
        const ssize_t n = ::send(fd, bytes.data() + at, bytes.size() - at, MSG_NOSIGNAL);
        if (n <= 0) break;
        at += static_cast<size_t>(n);
      }
      char buf[4096];
      for (;;) {
        pollfd p{fd, POLLIN, 0};
        if (::poll(&p, 1, out.empty() ? 10000 : 300) <= 0) break;
        const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
        if (n <= 0) break;
        out.append(buf, static_cast<size_t>(n));
      }
    }
    ::close(fd);
    return out;
  }

 private:
  httplib::Client cli_;
  std::string host_;
  int port_;
};

std::string model_dir(const char* name) {
  return zaya::test::require_path(zaya::test::data_dir() + "/golden/zaya1-text/" + name);
}

std::unique_ptr<Server> start_server(ServerOptions o, const char* model = "tiny-a") {
  o.model_dir = model_dir(model);
  o.host = "127.0.0.1";
  o.port = 0;
  o.log_requests = getenv("ZAYA_LOG") != nullptr;
  auto s = std::make_unique<Server>(o);
  s->start();
  return s;
}

json chat_body(const std::string& user, int max_tokens, uint64_t seed, bool stream = false) {
  json b = {{"model", "any"},
            {"messages", json::array({{{"role", "user"}, {"content", user}}})},
            {"max_tokens", max_tokens},
            {"seed", seed},
            {"temperature", 0.9}};
  if (stream) b["stream"] = true;
  return b;
}

// The `data:` payloads of an SSE body.
std::vector<std::string> sse_events(const std::string& body) {
  std::vector<std::string> out;
  size_t at = 0;
  while (at < body.size()) {
    size_t end = body.find("\n\n", at);
    if (end == std::string::npos) end = body.size();
    const std::string ev = body.substr(at, end - at);
    if (ev.rfind("data: ", 0) == 0) out.push_back(ev.substr(6));
    else if (!ev.empty()) out.push_back("<<not an SSE data line: " + ev + ">>");
    at = end + 2;
  }
  return out;
}

struct StreamResult {
  std::string content, reasoning, finish;
  json usage;
  std::vector<json> chunks;
  bool done = false;
};

// Checks the SSE framing while folding a chat stream.
StreamResult fold_chat_stream(const std::string& body) {
  StreamResult r;
  auto events = sse_events(body);
  EXPECT_FALSE(events.empty());
  for (size_t i = 0; i < events.size(); ++i) {
    if (events[i] == "[DONE]") {
      EXPECT_EQ(i + 1, events.size()) << "[DONE] must be last";
      r.done = true;
      break;
    }
    json c = json::parse(events[i]);
    r.chunks.push_back(c);
    EXPECT_EQ(c["object"], "chat.completion.chunk");
    if (c.contains("usage") && !c["usage"].is_null()) r.usage = c["usage"];
    for (const auto& ch : c["choices"]) {
      const json& d = ch["delta"];
      if (d.contains("content") && d["content"].is_string()) r.content += d["content"].get<std::string>();
      if (d.contains("reasoning_content")) r.reasoning += d["reasoning_content"].get<std::string>();
      if (!ch["finish_reason"].is_null()) r.finish = ch["finish_reason"];
    }
  }
  EXPECT_TRUE(r.done) << "the stream must end with data: [DONE]";
  return r;
}

void expect_error(const HttpResponse& r, int status, const std::string& code) {
  EXPECT_EQ(r.status, status) << r.body;
  json j;
  ASSERT_NO_THROW(j = json::parse(r.body)) << r.body;
  ASSERT_TRUE(j.contains("error")) << r.body;
  EXPECT_TRUE(j["error"]["message"].is_string());
  EXPECT_TRUE(j["error"]["type"].is_string());
  if (!code.empty()) {
    EXPECT_EQ(j["error"]["code"], code) << r.body;
  }
}

class ServerTiny : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    ServerOptions o;
    o.parallel = 4;
    o.ctx = 512;
    o.max_body_bytes = 64 * 1024;
    server_ = start_server(o).release();
  }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
  }
  HttpClient client() { return HttpClient("127.0.0.1", server_->port()); }
  static Server* server_;
};
Server* ServerTiny::server_ = nullptr;

}  // namespace

TEST_F(ServerTiny, HealthModelsAndRouting) {
  auto c = client();
  auto h = c.get("/health");
  ASSERT_EQ(h.status, 200);
  EXPECT_EQ(json::parse(h.body)["status"], "ok");
  auto m = c.get("/v1/models");
  ASSERT_EQ(m.status, 200);
  json mj = json::parse(m.body);
  EXPECT_EQ(mj["object"], "list");
  ASSERT_EQ(mj["data"].size(), 1u);
  EXPECT_EQ(mj["data"][0]["id"], "tiny-a");
  EXPECT_EQ(mj["data"][0]["object"], "model");
  EXPECT_EQ(c.get("/v1/models/tiny-a").status, 200);
  expect_error(c.get("/v1/models/gpt-4"), 404, "model_not_found");
  expect_error(c.get("/v1/nothing"), 404, "not_found");
  expect_error(c.get("/v1/chat/completions"), 405, "method_not_allowed");
}

TEST_F(ServerTiny, ChatCompletionPlainAndStreamedAgree) {
  auto c = client();
  auto r = c.post_json("/v1/chat/completions", chat_body("hello there", 12, 42).dump());
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_NE(r.header("content-type").find("application/json"), std::string::npos);
  json j = json::parse(r.body);
  EXPECT_EQ(j["object"], "chat.completion");
  EXPECT_EQ(j["id"].get<std::string>().rfind("chatcmpl-", 0), 0u);
  EXPECT_TRUE(j["created"].is_number_integer());
  EXPECT_EQ(j["model"], "tiny-a");
  ASSERT_EQ(j["choices"].size(), 1u);
  const json& ch = j["choices"][0];
  EXPECT_EQ(ch["index"], 0);
  EXPECT_EQ(ch["message"]["role"], "assistant");
  EXPECT_TRUE(ch["message"]["content"].is_string());
  EXPECT_TRUE(ch["finish_reason"] == "stop" || ch["finish_reason"] == "length");
  const json& u = j["usage"];
  EXPECT_GT(u["prompt_tokens"].get<int>(), 0);
  EXPECT_EQ(u["total_tokens"], u["prompt_tokens"].get<int>() + u["completion_tokens"].get<int>());
  EXPECT_TRUE(u["prompt_tokens_details"]["cached_tokens"].is_number_integer());

  auto body = chat_body("hello there", 12, 42, true);
  body["stream_options"] = {{"include_usage", true}};
  auto s = c.post_json("/v1/chat/completions", body.dump());
  ASSERT_EQ(s.status, 200) << s.body;
  EXPECT_NE(s.header("content-type").find("text/event-stream"), std::string::npos);
  auto f = fold_chat_stream(s.body);
  ASSERT_GE(f.chunks.size(), 3u);
  EXPECT_EQ(f.chunks[0]["choices"][0]["delta"]["role"], "assistant");
  EXPECT_EQ(f.content, ch["message"]["content"]);
  EXPECT_EQ(f.finish, ch["finish_reason"]);
  // The usage chunk comes last with no choices; all chunks share one id.
  EXPECT_TRUE(f.chunks.back()["choices"].empty());
  EXPECT_EQ(f.usage["completion_tokens"], u["completion_tokens"]);
  for (const auto& k : f.chunks) EXPECT_EQ(k["id"], f.chunks[0]["id"]);
  // The chunk carrying finish_reason has an empty delta.
  const json& fin = f.chunks[f.chunks.size() - 2]["choices"][0];
  EXPECT_EQ(fin["finish_reason"], ch["finish_reason"]);
  EXPECT_TRUE(fin["delta"].empty());
}

TEST_F(ServerTiny, ContentPartsStopAndLogprobs) {
  auto c = client();
  json b = chat_body("x", 6, 5);
  b["messages"] = json::array({{{"role", "developer"}, {"content", "Be brief."}},
                               {{"role", "user"}, {"content", json::array({{{"type", "text"}, {"text", "hello"}}})}}});
  b["logprobs"] = true;
  b["top_logprobs"] = 3;
  b["stop"] = json::array({"zzzz", "qqqq"});
  auto r = c.post_json("/v1/chat/completions", b.dump());
  ASSERT_EQ(r.status, 200) << r.body;
  json j = json::parse(r.body);
  const json& lp = j["choices"][0]["logprobs"]["content"];
  ASSERT_TRUE(lp.is_array());
  ASSERT_FALSE(lp.empty());
  for (const auto& e : lp) {
    EXPECT_TRUE(e["token"].is_string());
    EXPECT_LE(e["logprob"].get<double>(), 0.0);
    EXPECT_EQ(e["top_logprobs"].size(), 3u);
    EXPECT_TRUE(e["bytes"].is_array());
  }
  // A stop string taken from an unconstrained run cuts the text there (two ASCII letters, so it is valid UTF-8).
  auto full = json::parse(c.post_json("/v1/chat/completions", chat_body("stop test", 24, 11).dump()).body);
  const std::string text = full["choices"][0]["message"]["content"];
  size_t at = 1;
  while (at + 1 < text.size() && !(std::isalpha(static_cast<unsigned char>(text[at])) &&
                                   std::isalpha(static_cast<unsigned char>(text[at + 1]))))
    ++at;
  ASSERT_LT(at + 1, text.size()) << text;
  auto sb = chat_body("stop test", 24, 11);
  const std::string stop = text.substr(at, 2);
  sb["stop"] = stop;
  auto sj = json::parse(c.post_json("/v1/chat/completions", sb.dump()).body);
  EXPECT_EQ(sj["choices"][0]["message"]["content"], text.substr(0, text.find(stop)));
  EXPECT_EQ(sj["choices"][0]["finish_reason"], "stop");
}

TEST_F(ServerTiny, CompletionsPlainAndStreamed) {
  auto c = client();
  json b = {{"model", "x"}, {"prompt", "The GNU General"}, {"max_tokens", 10}, {"seed", 3}, {"logprobs", 2}};
  auto r = c.post_json("/v1/completions", b.dump());
  ASSERT_EQ(r.status, 200) << r.body;
  json j = json::parse(r.body);
  EXPECT_EQ(j["object"], "text_completion");
  const std::string text = j["choices"][0]["text"];
  EXPECT_EQ(j["choices"][0]["logprobs"]["tokens"].size(), j["choices"][0]["logprobs"]["token_logprobs"].size());
  b["stream"] = true;
  b.erase("logprobs");
  auto s = c.post_json("/v1/completions", b.dump());
  ASSERT_EQ(s.status, 200);
  std::string streamed, finish;
  auto events = sse_events(s.body);
  ASSERT_EQ(events.back(), "[DONE]");
  for (size_t i = 0; i + 1 < events.size(); ++i) {
    json k = json::parse(events[i]);
    EXPECT_EQ(k["object"], "text_completion");
    streamed += k["choices"][0]["text"].get<std::string>();
    if (!k["choices"][0]["finish_reason"].is_null()) finish = k["choices"][0]["finish_reason"];
  }
  EXPECT_EQ(streamed, text);
  EXPECT_EQ(finish, j["choices"][0]["finish_reason"]);
  // Token-id prompts and echo.
  json ids = {{"prompt", json::array({2, 374, 89, 81})}, {"max_tokens", 3}, {"seed", 1}, {"echo", true}};
  auto e = c.post_json("/v1/completions", ids.dump());
  ASSERT_EQ(e.status, 200) << e.body;
  EXPECT_EQ(json::parse(e.body)["usage"]["prompt_tokens"], 4);
}

TEST_F(ServerTiny, TokenizeDetokenizeMetrics) {
  auto c = client();
  auto t = c.post_json("/tokenize", R"({"content": "the license", "with_pieces": true})");
  ASSERT_EQ(t.status, 200) << t.body;
  json tj = json::parse(t.body);
  ASSERT_FALSE(tj["tokens"].empty());
  EXPECT_EQ(tj["pieces"].size(), tj["tokens"].size());
  auto d = c.post_json("/detokenize", json{{"tokens", tj["tokens"]}}.dump());
  ASSERT_EQ(d.status, 200);
  EXPECT_EQ(json::parse(d.body)["content"], "the license");
  auto withbos = json::parse(c.post_json("/tokenize", R"({"content": "the", "add_special": true})").body);
  EXPECT_EQ(withbos["tokens"][0], 2);
  auto chat = json::parse(c.post_json("/tokenize", R"({"messages": [{"role": "user", "content": "hi"}]})").body);
  EXPECT_GT(chat["count"].get<int>(), 5);
  expect_error(c.post_json("/detokenize", R"({"tokens": [1, 99999]})"), 400, "invalid_value");
  expect_error(c.post_json("/tokenize", R"({"content": 5})"), 400, "invalid_type");

  c.post_json("/v1/chat/completions", chat_body("metrics", 4, 1).dump());
  auto m = c.get("/metrics");
  ASSERT_EQ(m.status, 200);
  EXPECT_NE(m.header("content-type").find("text/plain"), std::string::npos);
  for (const char* name : {"zaya_requests_total{", "zaya_prompt_tokens_total ", "zaya_generation_tokens_total ",
                           "zaya_prompt_tokens_per_second ", "zaya_generation_tokens_per_second ", "zaya_queue_depth ",
                           "zaya_prompt_cache_hits_total ", "# TYPE zaya_requests_total counter"})
    EXPECT_NE(m.body.find(name), std::string::npos) << name;
}

TEST_F(ServerTiny, ToolCallsPlainAndStreamed) {
  auto c = client();
  json tools = json::array({{{"type", "function"},
                             {"function", {{"name", "get_weather"},
                                           {"description", "weather"},
                                           {"parameters", {{"type", "object"},
                                                           {"properties", {{"city", {{"type", "string"}}}}}}}}}}});
  // Random weights never write a call by themselves: tool_choice forces the call header and logit_bias forces EOS
  // (<|im_end|> = 106) right after it, which closes the call.
  json b = chat_body("weather in Paris?", 8, 1);
  b["tools"] = tools;
  b["tool_choice"] = {{"type", "function"}, {"function", {{"name", "get_weather"}}}};
  b["logit_bias"] = {{"106", 100}};
  auto r = c.post_json("/v1/chat/completions", b.dump());
  ASSERT_EQ(r.status, 200) << r.body;
  json j = json::parse(r.body);
  const json& ch = j["choices"][0];
  EXPECT_EQ(ch["finish_reason"], "tool_calls");
  ASSERT_EQ(ch["message"]["tool_calls"].size(), 1u) << r.body;
  const json& call = ch["message"]["tool_calls"][0];
  EXPECT_EQ(call["type"], "function");
  EXPECT_EQ(call["function"]["name"], "get_weather");
  ASSERT_TRUE(call["function"]["arguments"].is_string());
  EXPECT_TRUE(json::parse(call["function"]["arguments"].get<std::string>()).is_object());
  EXPECT_TRUE(ch["message"]["content"].is_null());

  b["stream"] = true;
  auto s = c.post_json("/v1/chat/completions", b.dump());
  ASSERT_EQ(s.status, 200);
  auto f = fold_chat_stream(s.body);
  EXPECT_EQ(f.finish, "tool_calls");
  std::string name, args, id;
  for (const auto& k : f.chunks)
    for (const auto& c2 : k["choices"])
      if (c2["delta"].contains("tool_calls"))
        for (const auto& d : c2["delta"]["tool_calls"]) {
          EXPECT_EQ(d["index"], 0);
          if (d.contains("id")) id = d["id"];
          if (d.contains("function") && d["function"].contains("name")) name += d["function"]["name"].get<std::string>();
          if (d.contains("function") && d["function"].contains("arguments"))
            args += d["function"]["arguments"].get<std::string>();
        }
  EXPECT_EQ(name, "get_weather");
  EXPECT_FALSE(id.empty());
  EXPECT_TRUE(json::parse(args.empty() ? "{}" : args).is_object());

  // tool_choice none: the call tag is banned, no tool calls come back.
  json n = chat_body("weather?", 6, 2);
  n["tools"] = tools;
  n["tool_choice"] = "none";
  auto nr = json::parse(c.post_json("/v1/chat/completions", n.dump()).body);
  EXPECT_FALSE(nr["choices"][0]["message"].contains("tool_calls"));
  // A conversation with a call and its result renders.
  json conv = chat_body("x", 4, 3);
  conv["tools"] = tools;
  conv["messages"] = json::parse(R"([{"role":"user","content":"Weather?"},
     {"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}}]},
     {"role":"tool","tool_call_id":"c1","content":"sunny"}])");
  EXPECT_EQ(c.post_json("/v1/chat/completions", conv.dump()).status, 200);
}

TEST_F(ServerTiny, ChatTemplateKwargsReachTheTemplate) {
  auto c = client();
  // enable_thinking=false renders the closed empty think block after the generation prompt.
  json msgs = json::array({{{"role", "user"}, {"content", "no thinking"}}});
  auto off = json::parse(c.post_json("/tokenize", json{{"messages", msgs}, {"chat_template_kwargs", {{"enable_thinking", false}}}}.dump()).body);
  auto dflt = json::parse(c.post_json("/tokenize", json{{"messages", msgs}}.dump()).body);
  EXPECT_GT(off["count"].get<int>(), dflt["count"].get<int>());
  json b = chat_body("no thinking", 4, 1);
  b["chat_template_kwargs"] = {{"enable_thinking", false}, {"custom_variable", 1}};
  EXPECT_EQ(c.post_json("/v1/chat/completions", b.dump()).status, 200);
}

TEST(ServerReasoning, ReasoningContentIsSeparated) {
  // A template whose generation prompt opens <think> (as reasoning models' templates do): the model's output is
  // reasoning until it writes </think>.
  std::string tmpl = zaya::test::read_file(model_dir("tiny-a") + "/chat_template.jinja");
  const size_t at = tmpl.rfind("{{- '<|im_start|>assistant\\n' -}}");
  ASSERT_NE(at, std::string::npos);
  tmpl.insert(at + std::string("{{- '<|im_start|>assistant\\n").size(), "<think>\\n");
  const std::string path = (std::filesystem::temp_directory_path() / "zaya_server_think.jinja").string();
  std::ofstream(path) << tmpl;
  ServerOptions o;
  o.chat_template = path;
  auto srv = start_server(o);
  HttpClient c("127.0.0.1", srv->port());
  json b = chat_body("think first", 10, 1);
  b["logit_bias"] = {{"100", -100}};  // no </think>: all of it is reasoning
  auto r = json::parse(c.post_json("/v1/chat/completions", b.dump()).body);
  const json& msg = r["choices"][0]["message"];
  ASSERT_TRUE(msg.contains("reasoning_content")) << r.dump();
  EXPECT_FALSE(msg["reasoning_content"].get<std::string>().empty());
  EXPECT_EQ(msg["content"], "");
  EXPECT_GT(r["usage"]["completion_tokens_details"]["reasoning_tokens"].get<int>(), 0);
  b["stream"] = true;
  auto f = fold_chat_stream(c.post_json("/v1/chat/completions", b.dump()).body);
  EXPECT_EQ(f.reasoning, msg["reasoning_content"]);
  EXPECT_EQ(f.content, "");
  // Forcing </think> (id 100) ends the reasoning at once: later text is content.
  json e = chat_body("think first", 3, 1);
  e["logit_bias"] = {{"100", 100}};
  auto er = json::parse(c.post_json("/v1/chat/completions", e.dump()).body);
  EXPECT_EQ(er["choices"][0]["message"]["content"], "</think></think>") << er.dump();
  std::filesystem::remove(path);
}

TEST(ServerCache, SecondTurnReusesTheFirst) {
  ServerOptions o;
  o.parallel = 2;
  auto srv = start_server(o, "trained-small");
  HttpClient c("127.0.0.1", srv->port());
  json msgs = json::array({{{"role", "system"}, {"content", std::string(600, 'a').replace(0, 20, "You answer questions")}},
                           {{"role", "user"}, {"content", "What is the GNU General Public License?"}}});
  json b = {{"messages", msgs}, {"max_tokens", 16}, {"seed", 1}};
  auto r1 = json::parse(c.post_json("/v1/chat/completions", b.dump()).body);
  const int p1 = r1["usage"]["prompt_tokens"];
  EXPECT_EQ(r1["usage"]["prompt_tokens_details"]["cached_tokens"], 0);
  msgs.push_back({{"role", "assistant"}, {"content", r1["choices"][0]["message"]["content"]}});
  msgs.push_back({{"role", "user"}, {"content", "And the LGPL?"}});
  b["messages"] = msgs;
  auto r2 = json::parse(c.post_json("/v1/chat/completions", b.dump()).body);
  const int cached = r2["usage"]["prompt_tokens_details"]["cached_tokens"];
  EXPECT_GE(cached, p1) << r2.dump();
  EXPECT_LT(cached, r2["usage"]["prompt_tokens"].get<int>());
  EXPECT_EQ(r2["timings"]["prompt_tokens_processed"], r2["usage"]["prompt_tokens"].get<int>() - cached);
  // The same request again is answered from the snapshot at its prompt's end, with the same output.
  auto r3 = json::parse(c.post_json("/v1/chat/completions", b.dump()).body);
  EXPECT_EQ(r3["usage"]["prompt_tokens_details"]["cached_tokens"], r3["usage"]["prompt_tokens"]);
  EXPECT_EQ(r3["choices"][0]["message"]["content"], r2["choices"][0]["message"]["content"]);
  auto m = c.get("/metrics").body;
  EXPECT_NE(m.find("zaya_prompt_cache_hits_total 2"), std::string::npos) << m;
}

TEST(ServerConcurrency, ThirtyTwoSeededStreamsEqualSequentialRuns) {
  ServerOptions o;
  o.parallel = 8;
  o.queue = 64;
  auto srv = start_server(o, "trained-small");
  const int n = 32;
  auto body = [](int i) {
    json b = chat_body("Tell me about license number " + std::to_string(i % 5), 20 + i % 7, 1000 + i, true);
    b["temperature"] = 1.0;
    b["top_p"] = 0.95;
    return b.dump();
  };
  std::vector<std::string> concurrent(n), sequential(n);
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int i = 0; i < n; ++i)
    threads.emplace_back([&, i] {
      try {
        HttpClient c("127.0.0.1", srv->port());
        auto r = c.post_json("/v1/chat/completions", body(i));
        if (r.status != 200) ++failures;
        concurrent[i] = r.body;
      } catch (const std::exception& e) {
        ++failures;
        concurrent[i] = e.what();
      }
    });
  for (auto& t : threads) t.join();
  for (int i = 0; i < n; ++i) EXPECT_EQ(concurrent[i].rfind("HTTP", 0), std::string::npos) << concurrent[i];
  ASSERT_EQ(failures.load(), 0);
  HttpClient c("127.0.0.1", srv->port());
  const std::string metrics = c.get("/metrics").body;
  for (int i = 0; i < n; ++i) sequential[i] = c.post_json("/v1/chat/completions", body(i)).body;
  for (int i = 0; i < n; ++i) {
    auto a = fold_chat_stream(concurrent[i]), b = fold_chat_stream(sequential[i]);
    EXPECT_EQ(a.content, b.content) << "request " << i;
    EXPECT_EQ(a.finish, b.finish) << "request " << i;
  }
  // The decode steps really were batched: more sequences than passes.
  std::smatch steps, seqs;
  ASSERT_TRUE(std::regex_search(metrics, steps, std::regex("zaya_batch_steps_total (\\d+)")));
  ASSERT_TRUE(std::regex_search(metrics, seqs, std::regex("zaya_batch_sequences_total (\\d+)")));
  EXPECT_GT(std::stoll(seqs[1]), 2 * std::stoll(steps[1])) << metrics;
}

TEST(ServerErrors, EveryBadInputGetsAJsonError) {
  ServerOptions o;
  o.parallel = 2;
  o.ctx = 64;
  o.max_body_bytes = 4096;
  auto srv = start_server(o);
  HttpClient c("127.0.0.1", srv->port());
  auto post = [&](const std::string& body) { return c.post_json("/v1/chat/completions", body); };
  const std::string ok_msgs = R"("messages": [{"role": "user", "content": "hi"}])";
  expect_error(post(R"({"messages": [{"role": "user", "content": "hi"})"), 400, "invalid_json");
  expect_error(post(""), 400, "invalid_json");
  expect_error(post("[1, 2]"), 400, "invalid_json");
  expect_error(post(R"({"messages": "hi"})"), 400, "invalid_type");
  expect_error(post(R"({"messages": []})"), 400, "invalid_value");
  expect_error(post(R"({"model": "x"})"), 400, "missing_required_parameter");
  expect_error(post(R"({"messages": [{"role": "wizard", "content": "hi"}]})"), 400, "invalid_value");
  expect_error(post(R"({"messages": [{"role": "user"}]})"), 400, "missing_required_parameter");
  expect_error(post(R"({"messages": [{"role": "user", "content": 5}]})"), 400, "invalid_type");
  expect_error(post(R"({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]})"),
               400, "unsupported_content_type");
  expect_error(post("{" + ok_msgs + R"(, "temperature": "hot"})"), 400, "invalid_type");
  expect_error(post("{" + ok_msgs + R"(, "temperature": 3})"), 400, "invalid_value");
  expect_error(post("{" + ok_msgs + R"(, "top_p": 0})"), 400, "invalid_value");
  expect_error(post("{" + ok_msgs + R"(, "max_tokens": 2.5})"), 400, "invalid_type");
  expect_error(post("{" + ok_msgs + R"(, "max_tokens": 0})"), 400, "invalid_value");
  expect_error(post("{" + ok_msgs + R"(, "stream": "yes"})"), 400, "invalid_type");
  expect_error(post("{" + ok_msgs + R"(, "stop": ["a", 1]})"), 400, "invalid_type");
  expect_error(post("{" + ok_msgs + R"(, "stop": [""]})"), 400, "invalid_value");
  expect_error(post("{" + ok_msgs + R"(, "n": 2})"), 400, "unsupported_parameter");
  expect_error(post("{" + ok_msgs + R"(, "response_format": {"type": "json_object"}})"), 400, "unsupported_parameter");
  expect_error(post("{" + ok_msgs + R"(, "functions": [{"name": "f"}]})"), 400, "unsupported_parameter");
  expect_error(post("{" + ok_msgs + R"(, "logit_bias": {"abc": 1}})"), 400, "invalid_value");
  expect_error(post("{" + ok_msgs + R"(, "logit_bias": {"5": 1000}})"), 400, "invalid_value");
  expect_error(post("{" + ok_msgs + R"(, "top_logprobs": 2})"), 400, "invalid_value");
  expect_error(post("{" + ok_msgs + R"(, "stream_options": {"include_usage": true}})"), 400, "invalid_value");
  expect_error(post("{" + ok_msgs + R"(, "tool_choice": "required"})"), 400, "invalid_value");
  expect_error(post("{" + ok_msgs + R"(, "tools": [{"type": "function", "function": {"name": "a b"}}]})"), 400, "invalid_value");
  expect_error(post("{" + ok_msgs + R"(, "tools": [{"type": "function", "function": {"name": "f"}}], "tool_choice": {"type": "function", "function": {"name": "g"}}})"),
               400, "invalid_value");
  expect_error(post("{" + ok_msgs + R"(, "chat_template_kwargs": {"enable_thinking": "no"}})"), 400, "invalid_type");
  // A template error (system message not first) is a 400 too.
  expect_error(post(R"({"messages": [{"role": "user", "content": "a"}, {"role": "system", "content": "b"}]})"), 400,
               "invalid_messages");
  // Context limits (ctx 64).
  expect_error(post(R"({"messages": [{"role": "user", "content": ")" + std::string(300, 'z') + R"("}]})"), 400,
               "context_length_exceeded");
  expect_error(post("{" + ok_msgs + R"(, "max_tokens": 100})"), 400, "context_length_exceeded");
  // Body over the limit (4096 bytes).
  expect_error(post(R"({"messages": [{"role": "user", "content": ")" + std::string(5000, 'z') + R"("}]})"), 413,
               "request_too_large");
  // Bad UTF-8 in the body.
  expect_error(post("{" + ok_msgs.substr(0, ok_msgs.size() - 5) + "\xff\xfe\"}]}"), 400, "invalid_utf8");
  expect_error(post(R"({"messages": [{"role": "user", "content": "\ud800"}]})"), 400, "invalid_json");
  // Hostile nesting (would blow the stack of recursive consumers) is refused.
  expect_error(post("{" + ok_msgs + R"(, "metadata": )" + std::string(1000, '[') + std::string(1000, ']') + "}"), 400,
               "invalid_json");
  // Completions-specific.
  expect_error(c.post_json("/v1/completions", R"({"prompt": ""})"), 400, "invalid_value");
  expect_error(c.post_json("/v1/completions", R"({"prompt": ["a", "b"]})"), 400, "unsupported_parameter");
  expect_error(c.post_json("/v1/completions", R"({"prompt": [1, 100000]})"), 400, "invalid_value");
  expect_error(c.post_json("/v1/completions", R"({"prompt": "a", "best_of": 3})"), 400, "unsupported_parameter");
  expect_error(c.post_json("/v1/completions", R"({"prompt": "a", "suffix": "b"})"), 400, "unsupported_parameter");
  expect_error(c.post_json("/v1/completions", R"({"prompt": "a", "logprobs": 9})"), 400, "invalid_value");
  // Broken HTTP.
  HttpClient raw("127.0.0.1", srv->port());
  EXPECT_NE(raw.raw("GARBAGE\r\n\r\n").find("400"), std::string::npos);
  EXPECT_NE(raw.raw("POST /v1/chat/completions HTTP/1.1\r\nContent-Length: abc\r\n\r\n").find("400 Bad Request"),
            std::string::npos);
  // cpp-httplib answers an unsupported HTTP version and an oversized header line with a plain 400 (JSON body).
  const std::string v2 = raw.raw("GET / HTTP/2.0\r\n\r\n");
  EXPECT_NE(v2.find("400 Bad Request"), std::string::npos) << v2;
  EXPECT_NE(v2.find("\"code\":\"bad_http_request\""), std::string::npos) << v2;
  const std::string big = raw.raw("GET /health HTTP/1.1\r\n" + std::string(70000, 'x') + "\r\n\r\n");
  EXPECT_NE(big.find("400 Bad Request"), std::string::npos) << big;
  EXPECT_NE(big.find("\"code\":\"bad_http_request\""), std::string::npos) << big;
  // Unknown harmless fields are ignored, and after all this the server still serves.
  auto good = post("{" + ok_msgs + R"(, "max_tokens": 3, "user": "u1", "metadata": {"a": "b"}, "store": false, "some_vendor_field": 1})");
  EXPECT_EQ(good.status, 200) << good.body;
  EXPECT_EQ(c.get("/health").status, 200);
}

TEST(ServerErrors, QueueFullTimeoutsAndDisconnects) {
  ServerOptions o;
  o.parallel = 1;
  o.queue = 0;
  o.timeout_s = 20;
  auto srv = start_server(o);
  const int port = srv->port();
  // A long generation holds the only slot; the client reads one chunk, then a second request finds no room.
  json longreq = chat_body("go on", 3000, 1, true);
  longreq["ignore_eos"] = true;
  std::atomic<bool> got_chunk{false}, release{false};
  std::thread holder([&] {
    HttpClient c("127.0.0.1", port);
    try {
      c.request("POST", "/v1/chat/completions", longreq.dump(), {{"Content-Type", "application/json"}},
                [&](std::string_view) {
                  got_chunk = true;
                  while (!release) std::this_thread::sleep_for(std::chrono::milliseconds(5));
                  return false;  // hang up mid-stream
                });
    } catch (...) {
    }
  });
  while (!got_chunk) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  HttpClient c("127.0.0.1", port);
  auto busy = c.post_json("/v1/chat/completions", chat_body("hi", 3, 1).dump());
  expect_error(busy, 429, "server_busy");
  release = true;
  holder.join();
  // The disconnect frees the slot at once: the next request runs and the cancellation is counted.
  auto start = std::chrono::steady_clock::now();
  HttpResponse after;
  do {
    after = c.post_json("/v1/chat/completions", chat_body("hi", 3, 1).dump());
  } while (after.status == 429 && std::chrono::steady_clock::now() - start < std::chrono::seconds(5));
  EXPECT_EQ(after.status, 200) << after.body;
  auto m = c.get("/metrics").body;
  EXPECT_NE(m.find("zaya_requests_finished_total{reason=\"cancelled\"} 1"), std::string::npos) << m;
  EXPECT_TRUE(std::regex_search(m, std::regex("zaya_requests_rejected_total\\{reason=\"queue_full\"\\} [1-9]"))) << m;

  // Per-request time limit: a generation that runs out of time ends early with finish_reason "length".
  ServerOptions t;
  t.parallel = 1;
  t.timeout_s = 0.05;
  auto slow = start_server(t);
  HttpClient sc("127.0.0.1", slow->port());
  json big = chat_body("go", 4000, 1);
  big["ignore_eos"] = true;
  auto r = sc.post_json("/v1/chat/completions", big.dump());
  ASSERT_EQ(r.status, 200) << r.body;
  json rj = json::parse(r.body);
  EXPECT_EQ(rj["choices"][0]["finish_reason"], "length");
  EXPECT_LT(rj["usage"]["completion_tokens"].get<int>(), 4000);
}

TEST(ServerAuth, BearerKeyIsRequired) {
  ServerOptions o;
  o.api_key = "sekrit";
  auto srv = start_server(o);
  HttpClient c("127.0.0.1", srv->port());
  EXPECT_EQ(c.get("/health").status, 200);
  expect_error(c.get("/v1/models"), 401, "invalid_api_key");
  expect_error(c.get("/v1/models", {{"Authorization", "Bearer wrong"}}), 401, "invalid_api_key");
  expect_error(c.get("/v1/models", {{"Authorization", "sekrit"}}), 401, "invalid_api_key");
  expect_error(c.post_json("/v1/chat/completions", chat_body("hi", 2, 1).dump()), 401, "invalid_api_key");
  expect_error(c.get("/metrics"), 401, "invalid_api_key");
  EXPECT_EQ(c.get("/v1/models", {{"Authorization", "Bearer sekrit"}}).status, 200);
  EXPECT_EQ(c.post_json("/v1/chat/completions", chat_body("hi", 2, 1).dump(), {{"Authorization", "Bearer sekrit"}}).status,
            200);
}

// The real binary, driven by the official OpenAI Node client.
TEST(ServerOpenAIClient, OfficialNodeClientAgainstTheCli) {
  const std::string npm_dir = zaya::test::assets_dir() + "/npm";
  zaya::test::require_path(npm_dir + "/node_modules/openai/package.json");
  std::string node_version;
  ASSERT_EQ(zaya::test::run_command("node --version", &node_version), 0) << "node is required (scripts/setup.sh)";
  const std::string script = zaya::test::require_path(std::string(ZAYA_TEST_DATA_DIR) + "/../openai_client/client.mjs");
  const std::string log = (std::filesystem::temp_directory_path() / ("zaya_serve_" + std::to_string(getpid()) + ".log")).string();
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    FILE* f = std::freopen(log.c_str(), "w", stderr);
    (void)f;
    const std::string cli = zaya::test::cli_path(), model = model_dir("tiny-a");
    execl(cli.c_str(), cli.c_str(), "serve", "-m", model.c_str(), "--port", "0", "--parallel", "2", "--api-key", "k123",
          static_cast<char*>(nullptr));
    _exit(127);
  }
  int port = 0;
  for (int i = 0; i < 200 && port == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    std::ifstream in(log);
    std::stringstream ss;
    ss << in.rdbuf();
    std::smatch m;
    const std::string text = ss.str();
    if (std::regex_search(text, m, std::regex("listening on http://127.0.0.1:(\\d+)"))) port = std::stoi(m[1]);
  }
  if (port == 0) {
    kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
    FAIL() << "zaya serve did not start: " << zaya::test::read_file(log);
  }
  std::string out, err;
  const int rc = zaya::test::run_command("node " + script + " " + npm_dir + " http://127.0.0.1:" + std::to_string(port) +
                                             "/v1 k123", &out, &err);
  EXPECT_EQ(rc, 0) << out << err;
  EXPECT_NE(out.find("checks passed"), std::string::npos) << out << err;
  kill(pid, SIGTERM);
  int status = 0;
  waitpid(pid, &status, 0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "clean shutdown on SIGTERM; log: " << zaya::test::read_file(log);
  std::filesystem::remove(log);
}
