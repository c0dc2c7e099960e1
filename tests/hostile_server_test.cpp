// Hostile HTTP clients (issue 13, findings 1 and 7, and the server hardening): a request that nests JSON inside a
// string, numbers out of range, slow or lying clients, foreign browser origins and non-JSON bodies get a clean
// 4xx with an OpenAI error object, quickly, and the server keeps answering /health.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "test_util.h"
#include "zaya/server.h"

using nlohmann::json;
using zaya::server::Server;
using zaya::server::ServerOptions;
using Clock = std::chrono::steady_clock;

namespace {

std::unique_ptr<Server> start(ServerOptions o = {}) {
  o.model_dir = zaya::test::require_path(zaya::test::data_dir() + "/golden/zaya1-text/tiny-a");
  o.host = "127.0.0.1";
  o.port = 0;
  o.log_requests = false;
  o.ctx = 512;
  auto s = std::make_unique<Server>(o);
  s->start();
  return s;
}

struct Reply {
  int status = 0;
  httplib::Headers headers;
  std::string body;
  std::string code() const {
    const json j = json::parse(body, nullptr, false);
    return j.is_object() && j.contains("error") ? j["error"].value("code", "") : "";
  }
};

Reply send(int port, const std::string& method, const std::string& path, const std::string& body = "",
           httplib::Headers headers = {{"Content-Type", "application/json"}}) {
  httplib::Client c("127.0.0.1", port);
  c.set_read_timeout(30, 0);
  httplib::Request req;
  req.method = method;
  req.path = path;
  req.headers = std::move(headers);
  req.body = body;
  auto res = c.send(req);
  if (!res) throw std::runtime_error("HTTP " + method + " " + path + ": " + httplib::to_string(res.error()));
  return {res->status, res->headers, res->body};
}

int connect_to(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  ::inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// Sends raw bytes and returns what comes back before the server closes or `wait_s` passes.
std::string raw(int port, const std::string& bytes, double wait_s = 10) {
  const int fd = connect_to(port);
  std::string out;
  if (fd < 0) return out;
  ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
  const auto deadline = Clock::now() + std::chrono::milliseconds(int(wait_s * 1000));
  char buf[4096];
  while (Clock::now() < deadline) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0) {
      if (out.find("\r\n\r\n") != std::string::npos) break;  // an answer, and nothing more for now
      continue;
    }
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    out.append(buf, size_t(n));
  }
  ::close(fd);
  return out;
}

json chat(const std::string& user) {
  return {{"messages", json::array({{{"role", "user"}, {"content", user}}})}, {"max_tokens", 2}, {"temperature", 0}};
}

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

}  // namespace

TEST(HostileServer, JsonNestedInsideToolCallArgumentsIsRefused) {
  auto srv = start();
  const int port = srv->port();
  // ~30,000 levels inside the string: the body's own depth is 6, so only the string's own check stops it.
  for (const std::string& args : {std::string(30000, '[') + std::string(30000, ']'),
                                  [] {
                                    std::string s;
                                    for (int i = 0; i < 30000; ++i) s += "{\"a\":";
                                    return s + "1" + std::string(30000, '}');
                                  }()}) {
    json body = chat("hi");
    body["messages"].push_back({{"role", "assistant"},
                                {"content", nullptr},
                                {"tool_calls", json::array({{{"id", "c1"},
                                                             {"type", "function"},
                                                             {"function", {{"name", "f"}, {"arguments", args}}}}})}});
    body["messages"].push_back({{"role", "user"}, {"content", "again"}});
    for (const char* path : {"/v1/chat/completions", "/tokenize"}) {
      const Reply r = send(port, "POST", path, body.dump());  // SIGSEGV of the whole server before
      EXPECT_EQ(r.status, 400) << path << " " << r.body.substr(0, 300);
      EXPECT_EQ(r.code(), "invalid_value") << r.body.substr(0, 300);
      EXPECT_NE(r.body.find("function.arguments is nested deeper than 64 levels"), std::string::npos) << r.body;
    }
  }
  EXPECT_EQ(send(port, "GET", "/health").status, 200);
  // Arguments within the limit still reach the template.
  json ok = chat("hi");
  ok["messages"].push_back({{"role", "assistant"}, {"content", ""},
                            {"tool_calls", json::array({{{"type", "function"},
                                                         {"function", {{"name", "f"}, {"arguments", R"({"x": [[1]]})"}}}}})}});
  ok["messages"].push_back({{"role", "tool"}, {"content", "done"}});
  EXPECT_EQ(send(port, "POST", "/tokenize", ok.dump()).status, 200);
}

TEST(HostileServer, NumbersOutOfRangeAre400) {
  auto srv = start();
  for (const char* num : {"1e999", "-1e999", "123456789012345678901234567890e999"}) {
    const std::string body = R"({"messages": [{"role": "user", "content": "hi"}], "temperature": )" + std::string(num) + "}";
    const Reply r = send(srv->port(), "POST", "/v1/chat/completions", body);  // was 500
    EXPECT_EQ(r.status, 400) << r.body;
    EXPECT_EQ(r.code(), "invalid_json") << r.body;
  }
}

TEST(HostileServer, BearerSchemeIsCaseInsensitive) {
  ServerOptions o;
  o.api_key = "sekrit";
  auto srv = start(o);
  for (const char* auth : {"Bearer sekrit", "bearer sekrit", "BEARER sekrit", "bEaReR  sekrit"})
    EXPECT_EQ(send(srv->port(), "GET", "/v1/models", "", {{"Authorization", auth}}).status, 200) << auth;
  for (const char* auth : {"Basic sekrit", "Bearer", "Bearer ", "Bearersekrit", "Bearer sekrit2", "sekrit"})
    EXPECT_EQ(send(srv->port(), "GET", "/v1/models", "", {{"Authorization", auth}}).status, 401) << auth;
}

TEST(HostileServer, BadContentLengthIsAnsweredAtOnce) {
  ServerOptions o;
  o.max_body_bytes = 64 * 1024;
  auto srv = start(o);
  const std::string head = "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n";
  const std::pair<std::string, const char*> cases[] = {
      {"Content-Length: -1\r\n", "400"},
      {"Content-Length: 18446744073709551615\r\n", "400"},
      {"Content-Length: 99999999999999\r\n", "413"},
      {"Content-Length: 70000\r\n", "413"},
      {"Content-Length: 1\r\nContent-Length: 2\r\n", "400"},
      {"Transfer-Encoding: chunked\r\n", "411"},
  };
  for (const auto& [hdr, status] : cases) {
    const auto t0 = Clock::now();
    const std::string out = raw(srv->port(), head + hdr + "\r\n", 20);  // 413 came after the 30 s read timeout
    EXPECT_LT(seconds_since(t0), 3.0) << hdr;
    EXPECT_EQ(out.rfind(std::string("HTTP/1.1 ") + status, 0), 0u) << hdr << out;
    EXPECT_NE(out.find("\"error\""), std::string::npos) << out;
  }
  EXPECT_EQ(send(srv->port(), "GET", "/health").status, 200);
}

TEST(HostileServer, TricklingClientsDoNotStarveHealth) {
  ServerOptions o;
  o.request_read_s = 3;
  auto srv = start(o);
  const int port = srv->port();
  // 300 connections that send part of a request line and then nothing (or a byte now and then).
  std::vector<int> slow;
  for (int i = 0; i < 300; ++i) {
    const int fd = connect_to(port);
    ASSERT_GE(fd, 0);
    ::send(fd, "GET /hea", 8, MSG_NOSIGNAL);
    slow.push_back(fd);
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  for (int i = 0; i < 3; ++i) {
    const auto t0 = Clock::now();
    EXPECT_EQ(send(port, "GET", "/health").status, 200);
    EXPECT_LT(seconds_since(t0), 1.0) << "/health waited behind the trickling connections";
  }
  // The slow ones are closed once their time to deliver a request is up.
  const auto t0 = Clock::now();
  size_t closed = 0;
  for (int fd : slow) {
    pollfd p{fd, POLLIN, 0};
    char c;
    while (seconds_since(t0) < 10 && ::poll(&p, 1, 200) == 0) ::send(fd, "l", 1, MSG_NOSIGNAL);
    if (::poll(&p, 1, 0) > 0 && ::recv(fd, &c, 1, MSG_DONTWAIT) <= 0) ++closed;
    ::close(fd);
  }
  EXPECT_EQ(closed, slow.size());
  EXPECT_LT(seconds_since(t0), 10.0);
  EXPECT_EQ(send(port, "GET", "/health").status, 200);
}

TEST(HostileServer, EndlessHeaderLinesAreCut) {
  ServerOptions o;
  o.max_body_bytes = 64 * 1024;
  auto srv = start(o);
  const int fd = connect_to(srv->port());
  ASSERT_GE(fd, 0);
  std::string line = "X-Filler: " + std::string(4000, 'x') + "\r\n";
  ::send(fd, "GET /health HTTP/1.1\r\n", 22, MSG_NOSIGNAL);
  const auto t0 = Clock::now();
  size_t sent = 0;
  bool cut = false;
  while (!cut && seconds_since(t0) < 10) {
    const ssize_t n = ::send(fd, line.data(), line.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) sent += size_t(n);
    else if (errno != EAGAIN && errno != EWOULDBLOCK) cut = true;  // reset
    pollfd p{fd, POLLIN, 0};
    char c;
    if (::poll(&p, 1, n > 0 ? 0 : 5) > 0 && ::recv(fd, &c, 1, MSG_DONTWAIT) <= 0) cut = true;  // the server's FIN
  }
  ::close(fd);
  EXPECT_TRUE(cut);
  EXPECT_LT(seconds_since(t0), 10.0) << "a request of " << sent << " header bytes was never cut";
  EXPECT_EQ(send(srv->port(), "GET", "/health").status, 200);
}

TEST(HostileServer, JsonEndpointsTakeOnlyJson) {
  auto srv = start();
  const std::string body = chat("hi").dump();
  for (const char* ct : {"text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", ""}) {
    httplib::Headers h;
    if (*ct) h.emplace("Content-Type", ct);
    const Reply r = send(srv->port(), "POST", "/v1/chat/completions", body, h);
    EXPECT_EQ(r.status, 415) << ct;
    EXPECT_EQ(r.code(), "unsupported_media_type") << r.body;
  }
  EXPECT_EQ(send(srv->port(), "POST", "/tokenize", R"({"content": "a"})", {{"Content-Type", "text/plain"}}).status, 415);
  EXPECT_EQ(send(srv->port(), "POST", "/v1/chat/completions", body,
                 {{"Content-Type", "Application/JSON; charset=utf-8"}}).status, 200);
}

TEST(HostileServer, CorsAllowsLoopbackOriginsByDefault) {
  auto srv = start();
  const int port = srv->port();
  for (const char* origin : {"http://localhost:3000", "http://127.0.0.1:8080", "http://[::1]:5173", "https://localhost"}) {
    const Reply r = send(port, "GET", "/v1/models", "", {{"Origin", origin}});
    EXPECT_EQ(r.status, 200) << origin;
    EXPECT_EQ(r.headers.count("Access-Control-Allow-Origin") ? r.headers.find("Access-Control-Allow-Origin")->second : "",
              origin);
  }
  for (const char* origin : {"https://evil.example", "http://localhost.evil.example", "http://127.0.0.1.evil:80", "null"}) {
    const Reply r = send(port, "POST", "/v1/chat/completions", chat("hi").dump(),
                         {{"Origin", origin}, {"Content-Type", "application/json"}});
    EXPECT_EQ(r.status, 403) << origin;
    EXPECT_EQ(r.code(), "origin_not_allowed");
    EXPECT_EQ(r.headers.count("Access-Control-Allow-Origin"), 0u) << origin;
    EXPECT_EQ(send(port, "OPTIONS", "/v1/chat/completions", "", {{"Origin", origin}}).status, 403);
  }
  // No Origin (curl, SDKs): no CORS headers needed, and none given.
  const Reply plain = send(port, "GET", "/v1/models", "", {});
  EXPECT_EQ(plain.status, 200);
  EXPECT_EQ(plain.headers.count("Access-Control-Allow-Origin"), 0u);
}

TEST(HostileServer, CorsOriginFlagAllowsOthers) {
  ServerOptions o;
  o.cors_origins = {"https://app.example"};
  auto srv = start(o);
  const Reply r = send(srv->port(), "OPTIONS", "/v1/chat/completions", "", {{"Origin", "https://app.example"}});
  EXPECT_EQ(r.status, 204);
  EXPECT_EQ(r.headers.find("Access-Control-Allow-Origin")->second, "https://app.example");
  EXPECT_EQ(send(srv->port(), "GET", "/v1/models", "", {{"Origin", "https://other.example"}}).status, 403);
  ServerOptions any;
  any.cors_origins = {"*"};
  auto srv2 = start(any);
  EXPECT_EQ(send(srv2->port(), "GET", "/v1/models", "", {{"Origin", "https://other.example"}}).status, 200);
}
