#pragma once
// HTTP transport of `zaya serve`: cpp-httplib behind a small interface of our own, so that only http.cpp includes
// <httplib.h>. Every request goes to one handler, which answers through an Exchange: one plain response, or a
// chunked stream whose body runs after the handler has returned. Client disconnects are detected here too.
#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "zaya/limits.h"

namespace zaya::server {

using Headers = std::vector<std::pair<std::string, std::string>>;

struct HttpRequest {
  std::string method, path, remote_addr;
  std::string_view body;  // valid while the handler runs
  Headers headers;
  // The first value of a header (names compare case-insensitively), "" when absent.
  std::string header(std::string_view name) const;
};

// Where a handler's answer goes.
class Exchange {
 public:
  using Writer = std::function<bool(std::string_view)>;  // false: the client is gone, stop producing
  using Gone = std::function<bool()>;
  using StreamBody = std::function<void(const Writer&, const Gone&)>;

  virtual ~Exchange() = default;
  virtual void respond(int status, const std::string& content_type, const std::string& body,
                       const Headers& extra = {}) = 0;
  // Starts a streamed response. `body` writes the chunks, on the same worker thread, after the handler has
  // returned; `release` runs once the stream is over, however it ended (`completed`: the body ran to its end and
  // the client got everything).
  virtual void stream(int status, const std::string& content_type, StreamBody body,
                      std::function<void(bool completed)> release, const Headers& extra = {}) = 0;
  // Has the client closed the connection? (Non-blocking.)
  virtual bool client_gone() = 0;

  int status() const { return status_; }  // 0: nothing answered yet
  bool streaming() const { return streaming_; }

 protected:
  int status_ = 0;
  bool streaming_ = false;
};

struct HttpOptions {
  size_t workers = limits::kMaxConnections;  // threads (one per open connection), made on demand up to this
  size_t max_body_bytes = 8u << 20;
  int read_timeout_s = 30, write_timeout_s = 30, keep_alive_s = 5;
  int request_read_s = limits::kMaxRequestReadSeconds;  // to deliver a whole request (see server/connections.h)
  size_t per_client = limits::kMaxConnectionsPerClient;  // open connections per non-loopback address
  size_t keep_alive_max = 1000;  // requests per connection
  int backlog = 512;             // pending connections the listening socket queues
};

// A plain answer (for errors the transport answers itself: malformed HTTP, a body over the limit, …).
struct HttpAnswer {
  std::string content_type, body;
  Headers headers;
};

class HttpServer {
 public:
  using Handler = std::function<void(const HttpRequest&, Exchange&)>;
  using ErrorPage = std::function<HttpAnswer(int status)>;

  // A handler that returns without answering (the client left) gets status 499 (client closed request).
  HttpServer(HttpOptions opt, Handler handler, ErrorPage error_page);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds (port 0: any free port); returns the port, or -1 with errno set.
  int bind(const std::string& host, int port);
  // Serves on a background thread.
  void start();
  // Closes the listening socket and open connections and joins the thread. Idempotent.
  void stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace zaya::server
