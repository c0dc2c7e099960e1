// Routes of `zaya serve` and the OpenAI wire format of their responses (plain JSON and SSE streams).
#include "server/server.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <limits>
#include <map>
#include <random>
#include <set>
#include <thread>

#include <arpa/inet.h>
#include <dirent.h>
#include <httplib.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "server/engine.h"
#include "server/metrics.h"
#include "server/request.h"
#include "zaya/chat.h"
#include "zaya/error.h"
#include "zaya/jinja.h"
#include "zaya/model.h"
#include "zaya/output_parser.h"
#include "zaya/tokenizer.h"

namespace zaya::server {

namespace {

using ojson = nlohmann::ordered_json;

std::string dump(const ojson& j) { return j.dump(-1, ' ', false, ojson::error_handler_t::replace); }

std::string random_id(const char* prefix, size_t n = 24) {
  static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  thread_local std::mt19937_64 rng(std::random_device{}());
  std::string s = prefix;
  for (size_t i = 0; i < n; ++i) s += alphabet[rng() % (sizeof alphabet - 1)];
  return s;
}

int64_t unix_now() { return static_cast<int64_t>(std::time(nullptr)); }

bool constant_time_equal(const std::string& a, const std::string& b) {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  for (size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i % std::max<size_t>(b.size(), 1)]);
  return diff == 0;
}

using Headers = std::vector<std::pair<std::string, std::string>>;
const Headers kCors = {{"Access-Control-Allow-Origin", "*"}};

// The socket of the connection a request arrived on. cpp-httplib does not hand it to handlers, so it is found among
// this process's descriptors by its two endpoints (local port, peer address and port), which are unique while the
// connection is open. -1 when not found.
int find_connection_fd(const httplib::Request& req) {
  DIR* dir = ::opendir("/proc/self/fd");
  if (!dir) return -1;
  int found = -1;
  while (dirent* e = ::readdir(dir)) {
    char* end = nullptr;
    const long fd = std::strtol(e->d_name, &end, 10);
    if (end == e->d_name || *end != '\0' || fd == ::dirfd(dir)) continue;
    sockaddr_storage local{}, peer{};
    socklen_t ll = sizeof local, pl = sizeof peer;
    if (::getsockname(static_cast<int>(fd), reinterpret_cast<sockaddr*>(&local), &ll) != 0) continue;
    if (::getpeername(static_cast<int>(fd), reinterpret_cast<sockaddr*>(&peer), &pl) != 0) continue;
    auto port_of = [](const sockaddr_storage& a) -> int {
      if (a.ss_family == AF_INET) return ntohs(reinterpret_cast<const sockaddr_in&>(a).sin_port);
      if (a.ss_family == AF_INET6) return ntohs(reinterpret_cast<const sockaddr_in6&>(a).sin6_port);
      return -1;
    };
    auto addr_of = [](const sockaddr_storage& a) -> std::string {
      char buf[INET6_ADDRSTRLEN] = {};
      if (a.ss_family == AF_INET) ::inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in&>(a).sin_addr, buf, sizeof buf);
      if (a.ss_family == AF_INET6) ::inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6&>(a).sin6_addr, buf, sizeof buf);
      return buf;
    };
    if (port_of(local) == req.local_port && port_of(peer) == req.remote_port && addr_of(peer) == req.remote_addr) {
      found = static_cast<int>(fd);
      break;
    }
  }
  ::closedir(dir);
  return found;
}

// Non-blocking: has the client closed its side of the connection (or did the connection fail)?
bool socket_gone(int fd) {
  if (fd < 0) return false;
  pollfd p{fd, static_cast<short>(POLLIN | POLLRDHUP), 0};
  if (::poll(&p, 1, 0) <= 0) return false;
  if (p.revents & (POLLHUP | POLLERR | POLLRDHUP | POLLNVAL)) return true;
  if (p.revents & POLLIN) {
    char c;
    return ::recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT) == 0;  // data waiting (a pipelined request) is not a hang-up
  }
  return false;
}

// cpp-httplib 0.11 listens with a backlog of 5, which drops connections when a burst of clients connects at once
// (32 concurrent streams in the tests): this subclass re-listens with a larger backlog once bound.
class HttpServer : public httplib::Server {
 public:
  void widen_backlog(int backlog) { ::listen(svr_sock_, backlog); }
};

// Where a handler's answer goes: one plain response, or a stream (chunked) whose body runs after the handler has
// returned, on the same cpp-httplib worker thread, while cpp-httplib writes the chunks.
class Exchange {
 public:
  using Writer = std::function<bool(std::string_view)>;  // false: the client is gone, stop producing
  using Gone = std::function<bool()>;
  using StreamBody = std::function<void(const Writer&, const Gone&)>;

  Exchange(const httplib::Request& req, httplib::Response& res) : req_(req), res_(res) {}

  void respond(int status, const std::string& content_type, const std::string& body, const Headers& extra = {}) {
    res_.status = status_ = status;
    for (const auto& [k, v] : extra) res_.set_header(k.c_str(), v);
    if (!content_type.empty()) res_.set_content(body, content_type.c_str());
  }

  // Starts a streamed response. `body` writes the chunks; `release` runs once the stream is over, however it ended
  // (`completed`: the body ran to its end and the client got everything).
  void stream(int status, const std::string& content_type, StreamBody body, std::function<void(bool)> release,
              const Headers& extra = {}) {
    res_.status = status_ = status;
    streaming_ = true;
    for (const auto& [k, v] : extra) res_.set_header(k.c_str(), v);
    struct State {
      StreamBody body;
      std::function<void(bool)> release;
      int fd;
      bool completed = false;
    };
    auto st = std::make_shared<State>(State{std::move(body), std::move(release), fd()});
    res_.set_chunked_content_provider(
        content_type,
        [st](size_t, httplib::DataSink& sink) {
          bool ok = true;
          const Gone gone = [&] { return !ok || socket_gone(st->fd); };
          const Writer write = [&](std::string_view d) {
            if (ok && !d.empty()) ok = sink.write(d.data(), d.size());
            return ok && !(d.empty() && socket_gone(st->fd));
          };
          st->body(write, gone);
          if (!ok) return false;
          sink.done();
          st->completed = true;
          return true;
        },
        [st](bool success) {
          if (st->release) st->release(success && st->completed);
        });
  }

  bool client_gone() { return socket_gone(fd()); }
  int status() const { return status_; }
  bool streaming() const { return streaming_; }

 private:
  int fd() {
    if (fd_ == -2) fd_ = find_connection_fd(req_);
    return fd_;
  }
  const httplib::Request& req_;
  httplib::Response& res_;
  int status_ = 0;
  int fd_ = -2;
  bool streaming_ = false;
};

}  // namespace

struct Server::Impl {
  ServerOptions opt;
  std::unique_ptr<Model> model;
  Tokenizer tok;
  std::unique_ptr<ChatFormatter> fmt;
  SamplingParams defaults;
  std::string model_name;
  int64_t created = unix_now();
  size_t vocab = 0;
  int32_t tool_call_token = -1;
  Metrics metrics;
  std::unique_ptr<Engine> engine;
  std::unique_ptr<HttpServer> http;
  std::thread thread;
  int port = 0;
  std::mutex stop_mu;
  std::condition_variable stop_cv;
  bool stopped = false;

  explicit Impl(ServerOptions o) : opt(std::move(o)), tok(Tokenizer::load(opt.model_dir)) {
    LoadOptions lo;
    lo.verbose = opt.verbose_load;
    lo.exact = opt.exact;
    model = Model::load(opt.model_dir, lo);
    fmt = std::make_unique<ChatFormatter>(tok, opt.chat_template);
    // OpenAI's defaults (temperature 1, no truncation), then the model's generation_config.json.
    SamplingParams base;
    base.temperature = 1.0f;
    base.top_k = 0;
    base.top_p = 1.0f;
    base.min_p = 0.0f;
    defaults = sampling_defaults(opt.model_dir, base);
    vocab = static_cast<size_t>(model->config().vocab);
    if (auto id = tok.token_to_id("<zyphra_tool_call>")) tool_call_token = *id;
    model_name = opt.model_name;
    if (model_name.empty()) {
      std::filesystem::path p(opt.model_dir);
      model_name = p.filename().empty() ? p.parent_path().filename().string() : p.filename().string();
    }
    EngineOptions eo;
    eo.parallel = opt.parallel;
    eo.ctx = opt.ctx;
    eo.queue = opt.queue;
    eo.batch_tokens = opt.batch_tokens;
    eo.max_snapshots = opt.cache_snapshots;
    eo.snapshot_interval = opt.snapshot_interval;
    engine = std::make_unique<Engine>(*model, tok, eo, metrics);
    setup_http();
  }

  // cpp-httplib: every method and path goes to handle(), which routes (so unknown paths get 404 and known paths with
  // the wrong method 405, both as OpenAI-style JSON); errors cpp-httplib answers itself (malformed HTTP, 413, …) get
  // a JSON body from the error handler.
  void setup_http() {
    http = std::make_unique<HttpServer>();
    const size_t workers = std::max<size_t>(opt.max_connections, 4);
    http->new_task_queue = [workers] { return new httplib::ThreadPool(workers); };
    http->set_payload_max_length(opt.max_body_bytes);
    http->set_read_timeout(opt.read_timeout_s, 0);
    http->set_write_timeout(30, 0);
    http->set_keep_alive_timeout(5);
    http->set_keep_alive_max_count(1000);
    const auto h = [this](const httplib::Request& req, httplib::Response& res) { handle(req, res); };
    http->Get(".*", h);
    http->Post(".*", h);
    http->Put(".*", h);
    http->Patch(".*", h);
    http->Delete(".*", h);
    http->Options(".*", h);
    http->set_error_handler(httplib::Server::HandlerWithResponse([](const httplib::Request&, httplib::Response& res) {
      if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;  // one of ours: already JSON
      std::string message = "malformed HTTP request", code = "bad_http_request";
      if (res.status == 413) code = "request_too_large", message = "request body exceeds the size limit";
      else if (res.status == 404) code = "not_found";
      else if (res.status == 414) code = "uri_too_long";
      res.set_content(ApiError(res.status, message, code).json(), "application/json");
      res.set_header("Access-Control-Allow-Origin", "*");
      return httplib::Server::HandlerResponse::Handled;
    }));
  }

  // ------------------------------------------------------------------------------------------------------------
  void handle(const httplib::Request& req, httplib::Response& res) {
    const auto t0 = std::chrono::steady_clock::now();
    std::string endpoint = "other";
    Exchange ex(req, res);
    try {
      route(req, ex, endpoint);
    } catch (const ApiError& e) {
      ex.respond(e.status, "application/json", e.json(), kCors);
    } catch (const jinja::TemplateException& e) {
      ex.respond(400, "application/json", ApiError(400, cat("chat template: ", e.what()), "invalid_messages").json(),
                 kCors);
    } catch (const Error& e) {
      ex.respond(400, "application/json", ApiError(400, e.what(), "invalid_request").json(), kCors);
    } catch (const std::exception& e) {
      ex.respond(500, "application/json", ApiError(500, e.what(), "internal_error", "", "server_error").json(), kCors);
    }
    if (!ex.status()) {  // the client left before any response
      res.status = 499;
      res.set_content("", "text/plain");
    }
    const int status = ex.status() ? ex.status() : 499;
    metrics.request(endpoint, status);
    if (opt.log_requests && !ex.streaming()) log_request(req, status, t0);
  }

  void log_request(const httplib::Request& req, int status, std::chrono::steady_clock::time_point t0) const {
    std::fprintf(stderr, "zaya serve: %s %s %s %d %.1f ms\n", req.remote_addr.c_str(), req.method.c_str(),
                 req.path.c_str(), status,
                 std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }

  // Called by a stream's body when it ends (the request line is logged then, with the stream's duration).
  std::function<void(bool)> stream_logger(const httplib::Request& req, std::function<void()> on_abort) {
    const auto t0 = std::chrono::steady_clock::now();
    return [this, t0, remote = req.remote_addr, method = req.method, path = req.path,
            on_abort = std::move(on_abort)](bool completed) {
      if (!completed && on_abort) on_abort();
      if (opt.log_requests)
        std::fprintf(stderr, "zaya serve: %s %s %s 200 %.1f ms%s\n", remote.c_str(), method.c_str(), path.c_str(),
                     std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count(),
                     completed ? "" : " (stream ended early)");
    };
  }

  void route(const httplib::Request& req, Exchange& ex, std::string& endpoint) {
    struct Route {
      const char* path;
      const char* method;
      void (Impl::*fn)(const httplib::Request&, Exchange&);
    };
    static const Route routes[] = {
        {"/v1/chat/completions", "POST", &Impl::chat},
        {"/v1/completions", "POST", &Impl::completions},
        {"/v1/models", "GET", &Impl::models},
        {"/health", "GET", &Impl::health},
        {"/tokenize", "POST", &Impl::tokenize},
        {"/detokenize", "POST", &Impl::detokenize},
        {"/metrics", "GET", &Impl::metrics_text},
    };
    std::string path = req.path;
    // Accept the common aliases without the /v1 prefix (some clients are configured with a bare base URL).
    if (path == "/chat/completions" || path == "/completions" || path == "/models") path = "/v1" + path;
    if (path.size() > 1 && path.back() == '/') path.pop_back();
    if (req.method == "OPTIONS") {  // CORS preflight
      endpoint = "options";
      auto h = kCors;
      h.emplace_back("Access-Control-Allow-Methods", "GET, POST, OPTIONS");
      h.emplace_back("Access-Control-Allow-Headers", "Authorization, Content-Type");
      ex.respond(204, "", "", h);
      return;
    }
    const Route* hit = nullptr;
    bool path_known = false;
    std::string model_id;
    for (const auto& r : routes)
      if (path == r.path) {
        path_known = true;
        if (req.method == r.method || (req.method == "HEAD" && std::string(r.method) == "GET")) hit = &r;
      }
    if (!path_known && path.rfind("/v1/models/", 0) == 0) {
      path_known = true;
      model_id = path.substr(11);
      if (req.method == "GET" || req.method == "HEAD") endpoint = "models";
    }
    if (hit) endpoint = hit->path;
    if (!path_known) throw ApiError(404, cat("no route for ", req.method, " ", req.path), "not_found");
    const bool model_get = !model_id.empty() && (req.method == "GET" || req.method == "HEAD");
    if (!hit && !model_get)
      throw ApiError(405, cat(req.method, " is not allowed on ", req.path), "method_not_allowed");
    if (!opt.api_key.empty() && path != "/health") {
      const std::string auth = req.get_header_value("Authorization");
      const std::string prefix = "Bearer ";
      if (auth.size() <= prefix.size() || auth.compare(0, prefix.size(), prefix) != 0 ||
          !constant_time_equal(auth.substr(prefix.size()), opt.api_key))
        throw ApiError(401, auth.empty() ? "missing API key: send 'Authorization: Bearer <key>'" : "incorrect API key",
                       "invalid_api_key");
    }
    if (!model_id.empty()) return model_one(model_id, ex);
    (this->*(hit->fn))(req, ex);
  }

  // ------------------------------------------------------------------------------------------------------------
  // Simple endpoints.

  ojson model_object() const {
    return {{"id", model_name}, {"object", "model"}, {"created", created}, {"owned_by", "zaya"},
            {"max_model_len", engine->ctx()}};
  }

  void models(const httplib::Request&, Exchange& ex) {
    ojson j = {{"object", "list"}, {"data", ojson::array({model_object()})}};
    ex.respond(200, "application/json", dump(j), kCors);
  }

  void model_one(const std::string& id, Exchange& ex) {
    if (id != model_name) throw ApiError(404, cat("the model '", id, "' does not exist"), "model_not_found", "model");
    ex.respond(200, "application/json", dump(model_object()), kCors);
  }

  void health(const httplib::Request&, Exchange& ex) {
    const auto s = engine->stats();
    ojson j = {{"status", "ok"}, {"model", model_name}, {"slots_total", s.slots}, {"slots_idle", s.slots - s.busy},
               {"queue_depth", s.queued}};
    ex.respond(200, "application/json", dump(j), kCors);
  }

  void metrics_text(const httplib::Request&, Exchange& ex) {
    const auto s = engine->stats();
    ex.respond(200, "text/plain; version=0.0.4; charset=utf-8",
               metrics.render(s.queued, s.busy, s.slots, s.snapshots, s.snapshot_bytes), kCors);
  }

  void tokenize(const httplib::Request& req, Exchange& ex) {
    const ojson body = parse_body(req.body);
    bool add_special = false, with_pieces = false;
    if (body.contains("add_special") && !body["add_special"].is_null()) {
      if (!body["add_special"].is_boolean()) throw ApiError(400, "'add_special' must be a boolean", "invalid_type", "add_special");
      add_special = body["add_special"];
    }
    if (body.contains("with_pieces") && !body["with_pieces"].is_null()) {
      if (!body["with_pieces"].is_boolean()) throw ApiError(400, "'with_pieces' must be a boolean", "invalid_type", "with_pieces");
      with_pieces = body["with_pieces"];
    }
    std::string text;
    if (body.contains("messages")) {
      // Tokenize a chat as /v1/chat/completions would render it.
      ojson req_body = body;
      const ChatRequest cr = parse_chat_request(req_body, defaults, vocab);
      text = fmt->render(cr.messages, cr.render);
    } else {
      const char* key = body.contains("content") ? "content" : "prompt";
      if (!body.contains(key)) throw ApiError(400, "'content' is required", "missing_required_parameter", "content");
      if (!body[key].is_string()) throw ApiError(400, cat("'", key, "' must be a string"), "invalid_type", key);
      text = body[key];
    }
    const auto ids = tok.encode(text, add_special);
    ojson j = {{"tokens", ids}, {"count", ids.size()}, {"max_model_len", engine->ctx()}};
    if (with_pieces) {
      ojson pieces = ojson::array();
      for (int32_t id : ids) pieces.push_back({{"id", id}, {"piece", tok.decode(std::span(&id, 1), false)}});
      j["pieces"] = pieces;
    }
    ex.respond(200, "application/json", dump(j), kCors);
  }

  void detokenize(const httplib::Request& req, Exchange& ex) {
    const ojson body = parse_body(req.body);
    if (!body.contains("tokens")) throw ApiError(400, "'tokens' is required", "missing_required_parameter", "tokens");
    if (!body["tokens"].is_array()) throw ApiError(400, "'tokens' must be a list of token ids", "invalid_type", "tokens");
    std::vector<int32_t> ids;
    for (const auto& x : body["tokens"]) {
      if (!x.is_number_integer()) throw ApiError(400, "'tokens' must be a list of token ids", "invalid_type", "tokens");
      const int64_t id = x.get<int64_t>();
      if (id < 0 || id >= static_cast<int64_t>(vocab))
        throw ApiError(400, cat("token id ", id, " is outside the vocabulary [0, ", vocab, ")"), "invalid_value", "tokens");
      ids.push_back(static_cast<int32_t>(id));
    }
    bool skip = false;
    if (body.contains("skip_special_tokens") && body["skip_special_tokens"].is_boolean()) skip = body["skip_special_tokens"];
    ex.respond(200, "application/json", dump(ojson{{"content", tok.decode(ids, skip)}}), kCors);
  }

  // ------------------------------------------------------------------------------------------------------------
  // Generation plumbing shared by both completion endpoints.

  // Checks the prompt against the context and settles max_tokens.
  void fit_context(size_t prompt_tokens, GenerateOptions& gen, bool max_given) {
    const int64_t ctx = engine->ctx();
    if (prompt_tokens == 0) throw ApiError(400, "the prompt encodes to no tokens", "invalid_value", "prompt");
    if (static_cast<int64_t>(prompt_tokens) >= ctx)
      throw ApiError(400, cat("this model's maximum context length is ", ctx, " tokens, but the prompt has ",
                              prompt_tokens, " tokens"), "context_length_exceeded", "messages");
    const int64_t room = ctx - static_cast<int64_t>(prompt_tokens);
    if (!max_given) {
      gen.max_tokens = static_cast<int>(std::min<int64_t>(room, std::numeric_limits<int>::max()));
    } else if (gen.max_tokens > room) {
      throw ApiError(400, cat("this model's maximum context length is ", ctx, " tokens; you requested ",
                              static_cast<int64_t>(prompt_tokens) + gen.max_tokens, " tokens (", prompt_tokens,
                              " in the prompt, ", gen.max_tokens, " for the completion)"),
                     "context_length_exceeded", "max_tokens");
    }
  }

  std::shared_ptr<Task> submit(std::vector<int32_t> ids, const GenerateOptions& gen) {
    const auto deadline = Clock::now() + std::chrono::milliseconds(static_cast<int64_t>(opt.timeout_s * 1000));
    auto task = std::make_shared<Task>(std::move(ids), gen, deadline);
    switch (engine->submit(task)) {
      case Engine::Admit::Ok: return task;
      case Engine::Admit::QueueFull:
        metrics.rejected("queue_full");
        throw ApiError(429, cat("the server is busy: all ", engine->parallel(), " slots are in use and ", opt.queue,
                                " requests are already waiting; retry later"), "server_busy", "", "rate_limit_error");
      case Engine::Admit::Stopped: break;
    }
    throw ApiError(503, "the server is shutting down", "shutting_down", "", "server_error");
  }

  // Waits for the task to reach a slot (first output) so queue timeouts can still be answered with an HTTP error.
  // Returns false when the client left (the task is cancelled).
  bool await_start(Task& task, Exchange& ex, std::vector<StepOutput>& pieces, bool& done) {
    for (;;) {
      done = task.wait(pieces, std::chrono::milliseconds(50));
      if (done || !pieces.empty()) break;
      if (ex.client_gone()) {
        task.cancel();
        return false;
      }
    }
    if (done) {
      const TaskSummary s = task.summary();
      if (!s.started) {
        if (s.finish == "timeout")
          throw ApiError(503, s.error, "queue_timeout", "", "server_error");
        throw ApiError(503, s.error.empty() ? "the request was not run" : s.error, "not_run", "", "server_error");
      }
      if (s.finish == "error" && pieces.empty()) throw ApiError(500, s.error, "generation_error", "", "server_error");
    }
    return true;
  }

  static ojson usage_json(const TaskSummary& s, size_t reasoning_tokens, bool chat) {
    ojson u = {{"prompt_tokens", s.prompt_tokens}, {"completion_tokens", s.completion_tokens},
               {"total_tokens", s.prompt_tokens + s.completion_tokens},
               {"prompt_tokens_details", {{"cached_tokens", s.cached_tokens}}}};
    if (chat) u["completion_tokens_details"] = {{"reasoning_tokens", reasoning_tokens}};
    return u;
  }

  static ojson timings_json(const TaskSummary& s) {
    const double processed = static_cast<double>(s.prompt_tokens - s.cached_tokens);
    return {{"queue_ms", s.queue_ms},
            {"prompt_ms", s.prompt_ms},
            {"prompt_tokens_processed", s.prompt_tokens - s.cached_tokens},
            {"prompt_per_second", s.prompt_ms > 0 ? processed * 1000.0 / s.prompt_ms : 0.0},
            {"predicted_ms", s.generation_ms},
            {"predicted_per_second", s.generation_ms > 0 ? s.completion_tokens * 1000.0 / s.generation_ms : 0.0},
            {"slot", s.slot}};
  }

  static std::string finish_name(const std::string& f) {
    if (f == "timeout") return "length";  // the request's time ran out: cut like a length limit
    return f;
  }

  std::string token_text(int32_t id, bool skip_special = false) const { return tok.decode(std::span(&id, 1), skip_special); }

  ojson chat_logprob(const StepOutput& p) const {
    auto entry = [&](int32_t id, float lp) {
      const std::string t = token_text(id);
      ojson bytes = ojson::array();
      for (unsigned char c : t) bytes.push_back(static_cast<int>(c));
      return ojson{{"token", t}, {"logprob", lp}, {"bytes", bytes}};
    };
    ojson e = entry(p.token, p.logprob.logprob);
    ojson top = ojson::array();
    for (const auto& t : p.logprob.top) top.push_back(entry(t.token, t.logprob));
    e["top_logprobs"] = top;
    return e;
  }

  // ------------------------------------------------------------------------------------------------------------
  // POST /v1/chat/completions

  // Turns generated text into OpenAI message parts: reasoning, content, tool calls.
  struct ChatAccumulator {
    std::string content, reasoning;
    std::vector<ToolCall> calls;
    // Streamed deltas (empty when not streaming).
    std::vector<ojson> deltas;
    bool streaming = false;
    std::map<int, int> stream_index;  // parser index → index in the response (failed calls are skipped)

    void handle(std::vector<OutputEvent> events) {
      for (auto& e : events) {
        switch (e.type) {
          case OutputEvent::Type::Reasoning:
            reasoning += e.text;
            if (streaming) push_delta("reasoning_content", e.text);
            break;
          case OutputEvent::Type::Content:
            content += e.text;
            if (streaming) push_delta("content", e.text);
            break;
          case OutputEvent::Type::ToolCallBegin: {
            const int idx = static_cast<int>(stream_index.size());
            stream_index[e.index] = idx;
            if (streaming)
              deltas.push_back({{"tool_calls", ojson::array({{{"index", idx}, {"id", e.call.id}, {"type", "function"},
                                                               {"function", {{"name", e.call.name}, {"arguments", ""}}}}})}});
            break;
          }
          case OutputEvent::Type::ToolCallArgs:
            if (streaming)
              deltas.push_back({{"tool_calls", ojson::array({{{"index", stream_index[e.index]},
                                                               {"function", {{"arguments", e.text}}}}})}});
            break;
          case OutputEvent::Type::ToolCallEnd:
            calls.push_back(e.call);
            break;
          case OutputEvent::Type::ToolCallError:
            // Not a usable call: its text is shown as content instead.
            content += e.raw;
            if (streaming) push_delta("content", e.raw);
            break;
        }
      }
    }
    void push_delta(const char* key, const std::string& text) {
      if (text.empty()) return;
      if (!deltas.empty() && deltas.back().size() == 1 && deltas.back().contains(key)) {
        deltas.back()[key] = deltas.back()[key].get<std::string>() + text;
        return;
      }
      deltas.push_back({{key, text}});
    }
  };

  void chat(const httplib::Request& req, Exchange& ex) {
    const ojson body = parse_body(req.body);
    ChatRequest cr = parse_chat_request(body, defaults, vocab);
    std::string prompt = fmt->render(cr.messages, cr.render);
    bool in_think = ChatFormatter::ends_inside_think(prompt);
    std::string forced;  // output text the server writes for the model (tool_choice required / named)
    if (cr.tool_choice == ToolChoice::Required || cr.tool_choice == ToolChoice::Named) {
      if (in_think) forced += "</think>\n\n";
      forced += "<zyphra_tool_call>\n<function=";
      if (cr.tool_choice == ToolChoice::Named) forced += cr.tool_name + ">\n";
    }
    if (cr.tool_choice == ToolChoice::None && tool_call_token >= 0)
      cr.gen.sampling.logit_bias[tool_call_token] = -std::numeric_limits<float>::infinity();
    std::vector<int32_t> ids = tok.encode(prompt + forced, false);
    fit_context(ids.size(), cr.gen, cr.max_tokens_given);

    OutputParsing& parse = cr.gen.parse.emplace();
    parse.parser.start_in_reasoning = in_think;
    parse.parser.parse_tool_calls = !cr.tools.is_null() && cr.tool_choice != ToolChoice::None;
    if (!cr.tools.is_null()) parse.parser.tools = cr.tools;
    parse.parser.id_prefix = random_id("call_", 8) + "_";
    parse.prefix = forced;
    parse.close_call_at_stop = true;
    parse.single_tool_call = !cr.parallel_tool_calls;
    auto run = std::make_shared<ChatRun>();  // shared with the stream body, which runs after this handler returns
    ChatAccumulator& acc = run->acc;
    acc.streaming = cr.stream;

    run->task = submit(std::move(ids), cr.gen);
    run->id = random_id("chatcmpl-");
    run->created_at = unix_now();
    if (!await_start(*run->task, ex, run->pieces, run->done)) return;
    if (!cr.stream) return chat_run(*run, cr, &ex, nullptr, nullptr);
    ex.stream(200, "text/event-stream",
              [this, run, cr = std::move(cr)](const Exchange::Writer& write, const Exchange::Gone& gone) {
                chat_run(*run, cr, nullptr, &write, &gone);
              },
              stream_logger(req, [run] { run->task->cancel(); }), kCors);
  }

  struct ChatRun {
    ChatAccumulator acc;
    std::shared_ptr<Task> task;
    std::string id;
    int64_t created_at = 0;
    std::vector<StepOutput> pieces;
    bool done = false;
  };

  // The rest of a chat completion once its task runs: the plain answer through `ex`, or (write != nullptr) the
  // SSE stream through `write`.
  void chat_run(ChatRun& run, const ChatRequest& cr, Exchange* ex, const Exchange::Writer* write,
                const Exchange::Gone* gone) {
    ChatAccumulator& acc = run.acc;
    auto& task = run.task;
    const std::string& id = run.id;
    const int64_t created_at = run.created_at;
    std::vector<StepOutput>& pieces = run.pieces;
    bool& done = run.done;
    ojson logprobs = ojson::array();
    auto consume = [&](std::vector<StepOutput>& ps, ojson& lp_out) {
      for (auto& p : ps) {
        acc.handle(std::move(p.events));
        if (p.has_logprob && cr.logprobs && !p.stop_token) lp_out.push_back(chat_logprob(p));
      }
      ps.clear();
    };
    auto chunk = [&](const ojson& delta, const ojson& finish, const ojson& lp) {
      ojson c = {{"id", id}, {"object", "chat.completion.chunk"}, {"created", created_at}, {"model", model_name},
                 {"system_fingerprint", "fp_zaya"},
                 {"choices", ojson::array({{{"index", 0}, {"delta", delta}, {"logprobs", lp}, {"finish_reason", finish}}})}};
      if (cr.include_usage) c["usage"] = nullptr;
      return "data: " + dump(c) + "\n\n";
    };

    if (!cr.stream) {
      consume(pieces, logprobs);
      while (!done) {
        done = task->wait(pieces, std::chrono::milliseconds(50));
        consume(pieces, logprobs);
        if (!done && ex->client_gone()) {
          task->cancel();
          return;
        }
      }
      const TaskSummary s = task->summary();
      if (s.finish == "error") throw ApiError(500, s.error, "generation_error", "", "server_error");
      std::string finish = acc.calls.empty() ? finish_name(s.finish) : "tool_calls";
      if (finish == "cancelled") {
        if (!s.error.empty()) throw ApiError(503, s.error, "shutting_down", "", "server_error");
        return;  // the client left
      }
      ojson msg = {{"role", "assistant"}, {"content", acc.content}};
      if (!acc.reasoning.empty()) msg["reasoning_content"] = acc.reasoning;
      if (!acc.calls.empty()) {
        ojson calls = ojson::array();
        for (const auto& c : acc.calls)
          calls.push_back({{"id", c.id}, {"type", "function"},
                           {"function", {{"name", c.name}, {"arguments", c.arguments.dump(-1, ' ', false, ojson::error_handler_t::replace)}}}});
        msg["tool_calls"] = calls;
        if (acc.content.empty()) msg["content"] = nullptr;
      }
      msg["refusal"] = nullptr;
      ojson choice = {{"index", 0}, {"message", msg}, {"logprobs", nullptr}, {"finish_reason", finish}};
      if (cr.logprobs) choice["logprobs"] = {{"content", logprobs}, {"refusal", nullptr}};
      const size_t reasoning_tokens = acc.reasoning.empty() ? 0 : tok.encode(acc.reasoning, false).size();
      ojson j = {{"id", id},           {"object", "chat.completion"},  {"created", created_at},
                 {"model", model_name}, {"system_fingerprint", "fp_zaya"}, {"choices", ojson::array({choice})},
                 {"usage", usage_json(s, reasoning_tokens, true)}, {"timings", timings_json(s)}};
      ex->respond(200, "application/json", dump(j), kCors);
      return;
    }

    // Streaming: role first, then deltas as they come, the finish chunk, optional usage, [DONE].
    auto send = [&](const std::string& s) {
      if ((*write)(s)) return true;
      task->cancel();
      return false;
    };
    if (!send(chunk({{"role", "assistant"}, {"content", ""}}, nullptr, nullptr))) return;
    auto flush = [&](ojson& lp) {
      // Logprobs ride on the last chunk of the batch (or an empty delta when the text is still held back).
      if (acc.deltas.empty() && !lp.empty()) acc.deltas.push_back(ojson::object());
      for (size_t i = 0; i < acc.deltas.size(); ++i) {
        const bool last = i + 1 == acc.deltas.size();
        ojson l = (last && !lp.empty()) ? ojson{{"content", lp}, {"refusal", nullptr}} : ojson(nullptr);
        if (!send(chunk(acc.deltas[i], nullptr, l))) return false;
      }
      acc.deltas.clear();
      lp = ojson::array();
      return true;
    };
    for (;;) {
      ojson lp = ojson::array();
      consume(pieces, lp);
      if (!flush(lp)) return;
      if (done) break;
      done = task->wait(pieces, std::chrono::milliseconds(50));
      if (!done && pieces.empty() && (*gone)()) return task->cancel();
    }
    const TaskSummary s = task->summary();
    if (s.finish == "error") {
      send("data: " + ApiError(500, s.error, "generation_error", "", "server_error").json() + "\n\n");
      send("data: [DONE]\n\n");
      return;
    }
    ojson none = ojson::array();
    if (!flush(none)) return;
    std::string finish = acc.calls.empty() ? finish_name(s.finish) : "tool_calls";
    if (finish == "cancelled") return;
    std::string fin = chunk(ojson::object(), finish, nullptr);
    {
      ojson c = ojson::parse(fin.substr(6));
      c["timings"] = timings_json(s);
      fin = "data: " + dump(c) + "\n\n";
    }
    if (!send(fin)) return;
    if (cr.include_usage) {
      const size_t reasoning_tokens = acc.reasoning.empty() ? 0 : tok.encode(acc.reasoning, false).size();
      ojson u = {{"id", id}, {"object", "chat.completion.chunk"}, {"created", created_at}, {"model", model_name},
                 {"system_fingerprint", "fp_zaya"}, {"choices", ojson::array()},
                 {"usage", usage_json(s, reasoning_tokens, true)}};
      if (!send("data: " + dump(u) + "\n\n")) return;
    }
    send("data: [DONE]\n\n");
  }

  // ------------------------------------------------------------------------------------------------------------
  // POST /v1/completions

  void completions(const httplib::Request& req, Exchange& ex) {
    const ojson body = parse_body(req.body);
    CompletionRequest cr = parse_completion_request(body, defaults, vocab);
    std::vector<int32_t> ids = cr.prompt_text ? tok.encode(*cr.prompt_text, true) : cr.prompt_ids;
    fit_context(ids.size(), cr.gen, cr.max_tokens_given);
    const std::string echo_text = !cr.echo ? "" : cr.prompt_text ? *cr.prompt_text : tok.decode(ids, false);

    auto run = std::make_shared<CompletionRun>();  // shared with the stream body, which runs after this returns
    run->echo_text = echo_text;
    run->task = submit(std::move(ids), cr.gen);
    run->id = random_id("cmpl-");
    run->created_at = unix_now();
    if (!await_start(*run->task, ex, run->pieces, run->done)) return;
    if (!cr.stream) return completion_run(*run, cr, &ex, nullptr, nullptr);
    ex.stream(200, "text/event-stream",
              [this, run, cr = std::move(cr)](const Exchange::Writer& write, const Exchange::Gone& gone) {
                completion_run(*run, cr, nullptr, &write, &gone);
              },
              stream_logger(req, [run] { run->task->cancel(); }), kCors);
  }

  struct CompletionRun {
    std::string echo_text;
    std::shared_ptr<Task> task;
    std::string id;
    int64_t created_at = 0;
    std::vector<StepOutput> pieces;
    bool done = false;
  };

  void completion_run(CompletionRun& run, const CompletionRequest& cr, Exchange* ex, const Exchange::Writer* write,
                      const Exchange::Gone* gone) {
    const std::string& echo_text = run.echo_text;
    auto& task = run.task;
    const std::string& id = run.id;
    const int64_t created_at = run.created_at;
    std::vector<StepOutput>& pieces = run.pieces;
    bool& done = run.done;
    std::string text = echo_text;
    ojson lp_tokens = ojson::array(), lp_values = ojson::array(), lp_top = ojson::array(), lp_offsets = ojson::array();
    size_t offset = text.size();
    auto consume = [&](std::vector<StepOutput>& ps, std::string& out, ojson* lp) {
      for (auto& p : ps) {
        if (p.has_logprob && !p.stop_token && cr.logprobs >= 0) {
          // Token strings as they appear in the text (special tokens skipped there are empty here too).
          const std::string t = token_text(p.token, cr.gen.skip_special_tokens);
          ojson top = ojson::object();
          for (const auto& x : p.logprob.top) top[token_text(x.token, cr.gen.skip_special_tokens)] = x.logprob;
          if (lp) {
            (*lp)["tokens"].push_back(t);
            (*lp)["token_logprobs"].push_back(p.logprob.logprob);
            (*lp)["top_logprobs"].push_back(top);
            (*lp)["text_offset"].push_back(offset);
          }
          offset += t.size();
        }
        out += p.text;
      }
      ps.clear();
    };
    auto choice_lp = [&]() {
      return ojson{{"tokens", ojson::array()}, {"token_logprobs", ojson::array()}, {"top_logprobs", ojson::array()},
                   {"text_offset", ojson::array()}};
    };

    if (!cr.stream) {
      ojson lp = choice_lp();
      consume(pieces, text, &lp);
      while (!done) {
        done = task->wait(pieces, std::chrono::milliseconds(50));
        consume(pieces, text, &lp);
        if (!done && ex->client_gone()) {
          task->cancel();
          return;
        }
      }
      const TaskSummary s = task->summary();
      if (s.finish == "error") throw ApiError(500, s.error, "generation_error", "", "server_error");
      if (s.finish == "cancelled") return;
      ojson choice = {{"text", text}, {"index", 0}, {"logprobs", nullptr}, {"finish_reason", finish_name(s.finish)}};
      if (cr.logprobs >= 0) choice["logprobs"] = lp;
      ojson j = {{"id", id}, {"object", "text_completion"}, {"created", created_at}, {"model", model_name},
                 {"system_fingerprint", "fp_zaya"}, {"choices", ojson::array({choice})},
                 {"usage", usage_json(s, 0, false)}, {"timings", timings_json(s)}};
      ex->respond(200, "application/json", dump(j), kCors);
      return;
    }

    auto chunk = [&](const std::string& t, const ojson& finish, const ojson& lp) {
      ojson c = {{"id", id}, {"object", "text_completion"}, {"created", created_at}, {"model", model_name},
                 {"system_fingerprint", "fp_zaya"},
                 {"choices", ojson::array({{{"text", t}, {"index", 0}, {"logprobs", lp}, {"finish_reason", finish}}})}};
      if (cr.include_usage) c["usage"] = nullptr;
      return c;
    };
    auto send = [&](const ojson& c) {
      if ((*write)("data: " + dump(c) + "\n\n")) return true;
      task->cancel();
      return false;
    };
    if (!echo_text.empty() && !send(chunk(echo_text, nullptr, nullptr))) return;
    for (;;) {
      std::string out;
      ojson lp = choice_lp();
      consume(pieces, out, &lp);
      const bool has_lp = cr.logprobs >= 0 && !lp["tokens"].empty();
      if ((!out.empty() || has_lp) && !send(chunk(out, nullptr, has_lp ? lp : ojson(nullptr)))) return;
      if (done) break;
      done = task->wait(pieces, std::chrono::milliseconds(50));
      if (!done && pieces.empty() && (*gone)()) return task->cancel();
    }
    const TaskSummary s = task->summary();
    if (s.finish == "error") {
      (*write)("data: " + ApiError(500, s.error, "generation_error", "", "server_error").json() + "\n\n");
      (*write)("data: [DONE]\n\n");
      return;
    }
    if (s.finish == "cancelled") return;
    ojson fin = chunk("", finish_name(s.finish), nullptr);
    fin["timings"] = timings_json(s);
    if (!send(fin)) return;
    if (cr.include_usage) {
      ojson u = {{"id", id}, {"object", "text_completion"}, {"created", created_at}, {"model", model_name},
                 {"system_fingerprint", "fp_zaya"}, {"choices", ojson::array()}, {"usage", usage_json(s, 0, false)}};
      if (!send(u)) return;
    }
    (*write)("data: [DONE]\n\n");
  }
};

Server::Server(ServerOptions opts) : impl_(std::make_unique<Impl>(std::move(opts))) {}

Server::~Server() { stop(); }

int Server::start() {
  auto& http = *impl_->http;
  impl_->port = impl_->opt.port == 0 ? http.bind_to_any_port(impl_->opt.host)
                                     : (http.bind_to_port(impl_->opt.host, impl_->opt.port) ? impl_->opt.port : -1);
  if (impl_->port < 0)
    throw Error(cat("cannot listen on ", impl_->opt.host, ":", impl_->opt.port, ": ", std::strerror(errno)));
  http.widen_backlog(512);
  impl_->thread = std::thread([this] { impl_->http->listen_after_bind(); });
  return impl_->port;
}

int Server::port() const { return impl_->port; }

void Server::wait() {
  std::unique_lock<std::mutex> lk(impl_->stop_mu);
  impl_->stop_cv.wait(lk, [&] { return impl_->stopped; });
}

void Server::stop() {
  {
    std::lock_guard<std::mutex> lk(impl_->stop_mu);
    if (impl_->stopped) return;
    impl_->stopped = true;
  }
  // Generations end first (their handlers then finish), then connections close and the accept loop ends.
  impl_->engine->stop();
  impl_->http->stop();
  if (impl_->thread.joinable()) impl_->thread.join();
  impl_->stop_cv.notify_all();
}

}  // namespace zaya::server
