#pragma once
// Routing of `zaya serve`: the routing table (unknown paths 404, wrong methods 405), bearer-key auth, CORS, the
// mapping of failures to OpenAI error JSON, request logging and counters, and the small endpoints (health, models,
// metrics, tokenize, detokenize). The generation endpoints live in completions.cpp.
#include <chrono>
#include <string>

#include "server/context.h"
#include "server/http.h"
#include "server/reply.h"

namespace zaya::server {

class Router {
 public:
  explicit Router(ServerContext& ctx) : ctx_(ctx) {}

  // One request, whatever its path and method.
  void handle(const HttpRequest& req, Exchange& ex);
  // The answer to requests the transport rejects itself (malformed HTTP, a body over the limit, …).
  static HttpAnswer transport_error(int status);

 private:
  using Time = std::chrono::steady_clock::time_point;

  void route(const HttpRequest& req, Exchange& ex, std::string& endpoint, Time t0);
  void authorize(const HttpRequest& req) const;
  bool origin_allowed(const std::string& origin) const;  // loopback origins and --cors-origin
  AnswerTo answer_to(const HttpRequest& req, Time t0) const;  // CORS, and the log line of a stream
  void log_request(const HttpRequest& req, int status, Time t0) const;

  void models(Exchange& ex) const;
  void model_one(const std::string& id, Exchange& ex) const;
  void health(Exchange& ex) const;
  void metrics_text(Exchange& ex) const;
  void tokenize(const HttpRequest& req, Exchange& ex) const;
  void detokenize(const HttpRequest& req, Exchange& ex) const;

  ServerContext& ctx_;
};

}  // namespace zaya::server
