#pragma once
// A small HTTP/1.1 server and client over POSIX sockets, just what `zaya serve` and its tests need: keep-alive,
// Content-Length and chunked request bodies, `Expect: 100-continue`, plain and chunked (streamed) responses, limits
// on header and body sizes, read/write timeouts, and detection of a client that went away mid-response.
//
// Why not cpp-httplib: Debian's libcpp-httplib-dev ships a declarations-only header plus a shared library built
// with OpenSSL/zlib/brotli, so using it needs extra link flags and matching defines in the build; this file keeps
// the server dependency-free. Everything above this layer only sees HttpRequest / HttpExchange.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

namespace zaya::server {

struct HttpRequest {
  std::string method, target, path, query, version;
  std::vector<std::pair<std::string, std::string>> headers;  // names lower-cased, in arrival order
  std::string body;
  std::string remote;
  // First value of a header (name in lower case), or "".
  std::string header(std::string_view name) const;
};

// One request/response exchange on a connection. A handler either calls respond() once, or begin_stream(), any
// number of write()s and end_stream(). A handler that does neither gets a 500.
class HttpExchange {
 public:
  using Headers = std::vector<std::pair<std::string, std::string>>;
  void respond(int status, const std::string& content_type, const std::string& body, const Headers& extra = {});
  // Starts a chunked response. Returns false when the client is gone.
  bool begin_stream(int status, const std::string& content_type, const Headers& extra = {});
  // Sends one chunk; false when the client is gone (then stop producing).
  bool write(std::string_view data);
  void end_stream();
  // Non-blocking: has the client closed its side or the connection failed?
  bool client_gone();
  bool responded() const { return state_ != State::Idle; }
  int status() const { return status_; }

 private:
  friend class HttpServer;
  enum class State { Idle, Streaming, Done };
  bool send_all(std::string_view data);
  int fd_ = -1;
  bool keep_alive_ = true, head_ = false, failed_ = false;
  State state_ = State::Idle;
  int write_timeout_ms_ = 30000;
  int status_ = 0;
};

struct HttpServerOptions {
  size_t max_header_bytes = 64 * 1024;
  size_t max_body_bytes = 8 * 1024 * 1024;
  int read_timeout_s = 30;       // whole request (headers + body) must arrive within this
  int keep_alive_timeout_s = 30; // idle time allowed between requests on one connection
  int write_timeout_s = 30;
  size_t max_connections = 256;  // beyond: 503 and close
};

using HttpHandler = std::function<void(const HttpRequest&, HttpExchange&)>;

class HttpServer {
 public:
  HttpServer(HttpServerOptions opts, HttpHandler handler);
  ~HttpServer();
  // Binds and listens (port 0 picks a free one); throws zaya::Error on failure. Returns the bound port.
  int listen(const std::string& host, int port);
  // Accepts connections until stop(); blocks.
  void serve();
  // Closes the listener and every open connection, then waits for their threads.
  void stop();
  size_t open_connections() const { return n_conn_.load(); }

 private:
  void handle_connection(int fd, std::string remote);
  HttpServerOptions opt_;
  HttpHandler handler_;
  int listen_fd_ = -1;
  std::atomic<bool> stopping_{false};
  std::atomic<size_t> n_conn_{0};
  std::mutex mu_;
  std::condition_variable cv_;
  std::set<int> conns_;
};

// Minimal blocking client (tests and tools). One connection per client object; reconnects when needed.
struct HttpResponse {
  int status = 0;
  std::vector<std::pair<std::string, std::string>> headers;  // names lower-cased
  std::string body;
  std::string header(std::string_view name) const;
};

class HttpClient {
 public:
  HttpClient(std::string host, int port, int timeout_s = 60);
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;
  // on_data receives the (de-chunked) body as it arrives; returning false closes the connection early.
  // Throws zaya::Error on connection failures and timeouts.
  HttpResponse request(const std::string& method, const std::string& path, const std::string& body = "",
                       const std::vector<std::pair<std::string, std::string>>& headers = {},
                       const std::function<bool(std::string_view)>& on_data = {});
  HttpResponse post_json(const std::string& path, const std::string& body,
                         const std::vector<std::pair<std::string, std::string>>& headers = {}) {
    auto h = headers;
    h.emplace_back("Content-Type", "application/json");
    return request("POST", path, body, h);
  }
  HttpResponse get(const std::string& path, const std::vector<std::pair<std::string, std::string>>& headers = {}) {
    return request("GET", path, "", headers);
  }
  // Sends raw bytes on a fresh connection and returns everything the server sends back until it closes.
  std::string raw(const std::string& bytes);
  void close();

 private:
  void connect_();
  std::string host_;
  int port_, timeout_s_, fd_ = -1;
};

}  // namespace zaya::server
