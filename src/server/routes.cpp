#include "server/routes.h"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <string_view>

#include "server/completions.h"
#include "server/openai.h"
#include "server/request.h"
#include "zaya/error.h"
#include "zaya/jinja.h"
#include "zaya/limits.h"

namespace zaya::server {

namespace {

// The CORS headers of the request being answered on this thread (set by Router::handle): empty unless the request
// came from a browser origin that is allowed.
thread_local Headers t_cors;

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
         });
}

// http(s)://localhost, 127.x.x.x or [::1], any port.
bool loopback_origin(const std::string& origin) {
  std::string_view o = origin;
  if (o.rfind("http://", 0) == 0) o.remove_prefix(7);
  else if (o.rfind("https://", 0) == 0) o.remove_prefix(8);
  else return false;
  std::string_view host = o;
  if (host.rfind("[::1]", 0) == 0) host = host.substr(5);
  else {
    const size_t colon = host.find(':');
    std::string_view name = host.substr(0, colon);
    if (!(iequals(name, "localhost") || name.rfind("127.", 0) == 0)) return false;
    if (name.rfind("127.", 0) == 0 && name.find_first_not_of("0123456789.") != std::string_view::npos) return false;
    host = colon == std::string_view::npos ? std::string_view() : host.substr(colon);
  }
  if (host.empty()) return true;
  return host[0] == ':' && host.size() > 1 && host.size() <= 6 && host.find_first_not_of("0123456789", 1) == std::string_view::npos;
}

bool constant_time_equal(const std::string& a, const std::string& b) {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  for (size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i % std::max<size_t>(b.size(), 1)]);
  return diff == 0;
}

double ms_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

void respond_json(Exchange& ex, const ojson& j) { ex.respond(200, "application/json", dump(j), t_cors); }

// JSON endpoints take JSON: a browser can send text/plain, form and multipart bodies to any origin without a
// preflight, so only application/json (parameters allowed) is read.
bool json_content_type(const std::string& ct) {
  std::string_view v = ct;
  v = v.substr(0, v.find(';'));
  while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
  while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
  return iequals(v, "application/json");
}

}  // namespace

bool Router::origin_allowed(const std::string& origin) const {
  if (loopback_origin(origin)) return true;
  for (const auto& o : ctx_.opt.cors_origins)
    if (o == "*" || iequals(o, origin)) return true;
  return false;
}

void Router::handle(const HttpRequest& req, Exchange& ex) {
  const auto t0 = std::chrono::steady_clock::now();
  std::string endpoint = "other";
  const std::string origin = req.header("Origin");
  t_cors.clear();
  if (!origin.empty() && origin_allowed(origin)) t_cors = {{"Access-Control-Allow-Origin", origin}, {"Vary", "Origin"}};
  else if (!origin.empty()) t_cors = {{"Vary", "Origin"}};
  auto fail = [&](const ApiError& e) { ex.respond(e.status, "application/json", e.json(), t_cors); };
  try {
    // A page from another origin may not use the API (its requests would run even where it cannot read the answer).
    if (!origin.empty() && !origin_allowed(origin))
      throw ApiError(403, cat("origin '", origin, "' is not allowed: start zaya serve with --cors-origin ", origin),
                     "origin_not_allowed");
    route(req, ex, endpoint, t0);
  } catch (const ApiError& e) {
    fail(e);
  } catch (const jinja::TemplateException& e) {
    fail(ApiError(400, cat("chat template: ", e.what()), "invalid_messages"));
  } catch (const Error& e) {
    fail(ApiError(400, e.what(), "invalid_request"));
  } catch (const std::exception& e) {
    fail(ApiError(500, e.what(), "internal_error", "", "server_error"));
  }
  const int status = ex.status() ? ex.status() : 499;  // nothing answered: the client left
  ctx_.metrics.request(endpoint, status);
  if (ctx_.opt.log_requests && !ex.streaming()) log_request(req, status, t0);  // a stream logs when it ends
}

HttpAnswer Router::transport_error(int status) {
  std::string message = "malformed HTTP request", code = "bad_http_request";
  if (status == 413) code = "request_too_large", message = "request body exceeds the size limit";
  else if (status == 415) code = "unsupported_media_type", message = "Content-Type must be application/json";
  else if (status == 411) code = "length_required", message = "a Content-Length is required (no chunked request bodies)";
  else if (status == 431)
    code = "request_header_fields_too_large", message = cat("request headers exceed ", limits::kMaxHeaderBytes, " bytes");
  else if (status == 404) code = "not_found";
  else if (status == 414) code = "uri_too_long";
  return {"application/json", ApiError(status, message, code).json(), {}};
}

void Router::route(const HttpRequest& req, Exchange& ex, std::string& endpoint, Time t0) {
  using Fn = void (*)(Router&, const HttpRequest&, Exchange&, Time);
  struct Route {
    const char* path;
    const char* method;
    Fn fn;
  };
  static const Route routes[] = {
      {"/v1/chat/completions", "POST",
       [](Router& r, const HttpRequest& q, Exchange& x, Time t) { chat_completion(r.ctx_, q, x, r.answer_to(q, t)); }},
      {"/v1/completions", "POST",
       [](Router& r, const HttpRequest& q, Exchange& x, Time t) { text_completion(r.ctx_, q, x, r.answer_to(q, t)); }},
      {"/v1/models", "GET", [](Router& r, const HttpRequest&, Exchange& x, Time) { r.models(x); }},
      {"/health", "GET", [](Router& r, const HttpRequest&, Exchange& x, Time) { r.health(x); }},
      {"/tokenize", "POST", [](Router& r, const HttpRequest& q, Exchange& x, Time) { r.tokenize(q, x); }},
      {"/detokenize", "POST", [](Router& r, const HttpRequest& q, Exchange& x, Time) { r.detokenize(q, x); }},
      {"/metrics", "GET", [](Router& r, const HttpRequest&, Exchange& x, Time) { r.metrics_text(x); }},
  };
  std::string path = req.path;
  // Accept the common aliases without the /v1 prefix (some clients are configured with a bare base URL).
  if (path == "/chat/completions" || path == "/completions" || path == "/models") path = "/v1" + path;
  if (path.size() > 1 && path.back() == '/') path.pop_back();
  if (req.method == "OPTIONS") {  // CORS preflight
    endpoint = "options";
    auto h = t_cors;
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
  if (!hit && !model_get) throw ApiError(405, cat(req.method, " is not allowed on ", req.path), "method_not_allowed");
  if (path != "/health") authorize(req);
  if (req.method == "POST" && !json_content_type(req.header("Content-Type")))
    throw ApiError(415,
                   cat("Content-Type must be application/json, got '", req.header("Content-Type"), "'"),
                   "unsupported_media_type");
  if (!model_id.empty()) return model_one(model_id, ex);
  hit->fn(*this, req, ex, t0);
}

void Router::authorize(const HttpRequest& req) const {
  if (ctx_.opt.api_key.empty()) return;
  const std::string auth = req.header("Authorization");
  // The scheme is case-insensitive (RFC 7235): "Bearer", "bearer", "BEARER", then one or more spaces.
  size_t sp = auth.find(' ');
  const bool bearer = sp != std::string::npos && iequals(std::string_view(auth).substr(0, sp), "Bearer");
  while (sp != std::string::npos && sp < auth.size() && auth[sp] == ' ') ++sp;
  if (!bearer || sp >= auth.size() || !constant_time_equal(auth.substr(sp), ctx_.opt.api_key))
    throw ApiError(401, auth.empty() ? "missing API key: send 'Authorization: Bearer <key>'" : "incorrect API key",
                   "invalid_api_key");
}

AnswerTo Router::answer_to(const HttpRequest& req, Time t0) const {
  return {t_cors, [log = ctx_.opt.log_requests, t0, remote = req.remote_addr, method = req.method,
                  path = req.path](bool completed) {
            if (log)
              std::fprintf(stderr, "zaya serve: %s %s %s 200 %.1f ms%s\n", remote.c_str(), method.c_str(),
                           path.c_str(), ms_since(t0), completed ? "" : " (stream ended early)");
          }};
}

void Router::log_request(const HttpRequest& req, int status, Time t0) const {
  std::fprintf(stderr, "zaya serve: %s %s %s %d %.1f ms\n", req.remote_addr.c_str(), req.method.c_str(),
               req.path.c_str(), status, ms_since(t0));
}

// ---------------------------------------------------------------------------------------------------------------
// The small endpoints.

namespace {
ojson model_object(const ServerContext& ctx) {
  return {{"id", ctx.model_name}, {"object", "model"}, {"created", ctx.created}, {"owned_by", "zaya"},
          {"max_model_len", ctx.engine->ctx()}};
}

// An optional boolean field of a body.
bool flag(const ojson& body, const char* key) {
  if (!body.contains(key) || body[key].is_null()) return false;
  if (!body[key].is_boolean()) throw ApiError(400, cat("'", key, "' must be a boolean"), "invalid_type", key);
  return body[key];
}
}  // namespace

void Router::models(Exchange& ex) const {
  respond_json(ex, {{"object", "list"}, {"data", ojson::array({model_object(ctx_)})}});
}

void Router::model_one(const std::string& id, Exchange& ex) const {
  if (id != ctx_.model_name) throw ApiError(404, cat("the model '", id, "' does not exist"), "model_not_found", "model");
  respond_json(ex, model_object(ctx_));
}

void Router::health(Exchange& ex) const {
  const auto s = ctx_.engine->stats();
  respond_json(ex, {{"status", "ok"}, {"model", ctx_.model_name}, {"slots_total", s.slots},
                    {"slots_idle", s.slots - s.busy}, {"queue_depth", s.queued}});
}

void Router::metrics_text(Exchange& ex) const {
  const auto s = ctx_.engine->stats();
  ex.respond(200, "text/plain; version=0.0.4; charset=utf-8",
             ctx_.metrics.render(s.queued, s.busy, s.slots, s.snapshots, s.snapshot_bytes), t_cors);
}

void Router::tokenize(const HttpRequest& req, Exchange& ex) const {
  const ojson body = parse_body(req.body);
  const bool add_special = flag(body, "add_special"), with_pieces = flag(body, "with_pieces");
  std::string text;
  if (body.contains("messages")) {
    // Tokenize a chat as /v1/chat/completions would render it.
    const ChatRequest cr = parse_chat_request(body, ctx_.defaults, ctx_.vocab);
    if (!cr.images.empty())
      throw ApiError(400, "/tokenize does not take images (their token count depends on the image)",
                     "unsupported_content_type", cr.images.front().param);
    text = ctx_.fmt->render(cr.messages, cr.render);
  } else {
    const char* key = body.contains("content") ? "content" : "prompt";
    if (!body.contains(key)) throw ApiError(400, "'content' is required", "missing_required_parameter", "content");
    if (!body[key].is_string()) throw ApiError(400, cat("'", key, "' must be a string"), "invalid_type", key);
    text = body[key];
  }
  const auto ids = ctx_.tok.encode(text, add_special);
  ojson j = {{"tokens", ids}, {"count", ids.size()}, {"max_model_len", ctx_.engine->ctx()}};
  if (with_pieces) {
    ojson pieces = ojson::array();
    for (int32_t id : ids) pieces.push_back({{"id", id}, {"piece", ctx_.tok.decode(std::span(&id, 1), false)}});
    j["pieces"] = pieces;
  }
  respond_json(ex, j);
}

void Router::detokenize(const HttpRequest& req, Exchange& ex) const {
  const ojson body = parse_body(req.body);
  if (!body.contains("tokens")) throw ApiError(400, "'tokens' is required", "missing_required_parameter", "tokens");
  if (!body["tokens"].is_array()) throw ApiError(400, "'tokens' must be a list of token ids", "invalid_type", "tokens");
  std::vector<int32_t> ids;
  for (const auto& x : body["tokens"]) {
    if (!x.is_number_integer()) throw ApiError(400, "'tokens' must be a list of token ids", "invalid_type", "tokens");
    const int64_t id = x.get<int64_t>();
    if (id < 0 || id >= static_cast<int64_t>(ctx_.vocab))
      throw ApiError(400, cat("token id ", id, " is outside the vocabulary [0, ", ctx_.vocab, ")"), "invalid_value",
                     "tokens");
    ids.push_back(static_cast<int32_t>(id));
  }
  bool skip = false;
  if (body.contains("skip_special_tokens") && body["skip_special_tokens"].is_boolean()) skip = body["skip_special_tokens"];
  respond_json(ex, {{"content", ctx_.tok.decode(ids, skip)}});
}

}  // namespace zaya::server
