// cpp-httplib behind HttpServer / Exchange, and client-disconnect detection.
#include "server/http.h"

#include "server/connections.h"

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <thread>

#include <arpa/inet.h>
#include <dirent.h>
#include <httplib.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

namespace zaya::server {

namespace {

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
class BacklogServer : public httplib::Server {
 public:
  void widen_backlog(int backlog) { ::listen(svr_sock_, backlog); }
};

// Connection threads made on demand (server/connections.h) behind cpp-httplib's task queue.
class PoolQueue : public httplib::TaskQueue {
 public:
  explicit PoolQueue(size_t max_threads) : pool_(max_threads) {}
  void enqueue(std::function<void()> fn) override { pool_.submit(std::move(fn)); }
  void shutdown() override { pool_.shutdown(); }

 private:
  WorkerPool pool_;
};

// Set by the pre-routing check on the worker thread whose request it refused; the logger (which runs once the
// answer is written, on the same thread) then ends the connection.
thread_local bool t_refused = false;

// The body size a request announces, checked before cpp-httplib reads (or, past its limit, skips) the body:
// cpp-httplib reads a negative or huge Content-Length as a huge one and waits out the read timeout skipping it,
// and takes a chunked body without any limit. 0: fine, else the status to answer with.
int check_body_size(const httplib::Request& req, size_t max_body) {
  size_t header_bytes = req.method.size() + req.target.size() + req.version.size();
  for (const auto& [k, v] : req.headers) header_bytes += k.size() + v.size() + 4;
  if (header_bytes > limits::kMaxHeaderBytes) return 431;
  if (req.has_header("Transfer-Encoding")) return 411;  // chunked request bodies: a Content-Length is required
  // cpp-httplib would parse a multipart body itself; no endpoint takes one (the JSON endpoints answer 415 to any
  // other type once routed).
  std::string ct = req.get_header_value("Content-Type");
  for (char& c : ct) c = char(std::tolower(static_cast<unsigned char>(c)));
  if (ct.rfind("multipart/", 0) == 0) return 415;
  if (!req.has_header("Content-Length")) return 0;
  if (req.get_header_value_count("Content-Length") != 1) return 400;
  const std::string v = req.get_header_value("Content-Length");
  if (v.empty() || v.size() > 19 || v.find_first_not_of("0123456789") != std::string::npos) return 400;
  return std::stoull(v) > max_body ? 413 : 0;
}

class HttplibExchange : public Exchange {
 public:
  HttplibExchange(const httplib::Request& req, httplib::Response& res, ConnectionGuard* guard)
      : req_(req), res_(res), guard_(guard) {}

  void respond(int status, const std::string& content_type, const std::string& body, const Headers& extra) override {
    res_.status = status_ = status;
    for (const auto& [k, v] : extra) res_.set_header(k.c_str(), v);
    if (!content_type.empty()) res_.set_content(body, content_type.c_str());
  }

  void stream(int status, const std::string& content_type, StreamBody body, std::function<void(bool)> release,
              const Headers& extra) override {
    res_.status = status_ = status;
    streaming_ = true;
    for (const auto& [k, v] : extra) res_.set_header(k.c_str(), v);
    struct State {
      StreamBody body;
      std::function<void(bool)> release;
      int fd;
      bool completed = false;
    };
    // The connection is busy until the stream ends (the watchdog leaves it alone).
    if (guard_) {
      guard_->begin(req_.remote_addr, req_.remote_port);
      release = [guard = guard_, addr = req_.remote_addr, port = req_.remote_port,
                 inner = std::move(release)](bool completed) {
        guard->end(addr, port);
        if (inner) inner(completed);
      };
    }
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

  bool client_gone() override { return socket_gone(fd()); }

 private:
  int fd() {
    if (fd_ == -2) fd_ = find_connection_fd(req_);  // the /proc scan runs once, and only when asked
    return fd_;
  }
  const httplib::Request& req_;
  httplib::Response& res_;
  ConnectionGuard* guard_;
  int fd_ = -2;
};

}  // namespace

std::string HttpRequest::header(std::string_view name) const {
  auto same = [&](const std::string& k) {
    return k.size() == name.size() && std::equal(k.begin(), k.end(), name.begin(), [](char a, char b) {
             return std::tolower(static_cast<unsigned char>(a)) == std::tolower(static_cast<unsigned char>(b));
           });
  };
  for (const auto& [k, v] : headers)
    if (same(k)) return v;
  return "";
}

struct HttpServer::Impl {
  HttpOptions opt;
  BacklogServer http;
  std::thread thread;
  std::unique_ptr<ConnectionGuard> guard;  // made once the port is known
};

HttpServer::HttpServer(HttpOptions opt, Handler handler, ErrorPage error_page) : impl_(std::make_unique<Impl>()) {
  impl_->opt = opt;
  auto& http = impl_->http;
  const size_t workers = opt.workers;
  http.new_task_queue = [workers] { return new PoolQueue(workers); };
  http.set_payload_max_length(opt.max_body_bytes);
  http.set_read_timeout(opt.read_timeout_s, 0);
  http.set_write_timeout(opt.write_timeout_s, 0);
  http.set_keep_alive_timeout(opt.keep_alive_s);
  http.set_keep_alive_max_count(opt.keep_alive_max);
  // Every method and path goes to the one handler, which routes (so it answers unknown paths and wrong methods).
  Impl* impl = impl_.get();
  const auto h = [handler = std::move(handler), impl](const httplib::Request& req, httplib::Response& res) {
    HttpRequest r{req.method, req.path, req.remote_addr, req.body, Headers(req.headers.begin(), req.headers.end())};
    ConnectionGuard* guard = impl->guard.get();
    if (guard) guard->begin(req.remote_addr, req.remote_port);
    struct End {
      ConnectionGuard* g;
      const httplib::Request& q;
      ~End() {
        if (g) g->end(q.remote_addr, q.remote_port);
      }
    } end{guard, req};
    HttplibExchange ex(req, res, guard);
    handler(r, ex);
    if (!ex.status()) {  // the client left before any response
      res.status = 499;
      res.set_content("", "text/plain");
    }
  };
  // Before the body is read: a body that may not be read at all is refused now, and the connection closes after
  // the answer (its unread bytes are no request).
  http.set_pre_routing_handler([impl, error_page](const httplib::Request& req, httplib::Response& res) {
    const int status = check_body_size(req, impl->opt.max_body_bytes);
    if (status == 0) return httplib::Server::HandlerResponse::Unhandled;
    res.status = status;
    const HttpAnswer a = error_page(status);
    res.set_content(a.body, a.content_type.c_str());
    for (const auto& [k, v] : a.headers) res.set_header(k.c_str(), v);
    res.set_header("Connection", "close");
    t_refused = true;
    return httplib::Server::HandlerResponse::Handled;
  });
  // Runs once a response is written: a connection whose request body was refused unread ends here (cpp-httplib
  // would read that body as the next request).
  http.set_logger([](const httplib::Request& req, const httplib::Response&) {
    if (t_refused) ::shutdown(find_connection_fd(req), SHUT_RDWR);
    t_refused = false;
  });
  http.Get(".*", h);
  http.Post(".*", h);
  http.Put(".*", h);
  http.Patch(".*", h);
  http.Delete(".*", h);
  http.Options(".*", h);
  http.set_error_handler(httplib::Server::HandlerWithResponse(
      [error_page](const httplib::Request&, httplib::Response& res) {
        if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;  // the handler's own answer
        const HttpAnswer a = error_page(res.status);
        res.set_content(a.body, a.content_type.c_str());
        for (const auto& [k, v] : a.headers) res.set_header(k.c_str(), v);
        return httplib::Server::HandlerResponse::Handled;
      }));
}

HttpServer::~HttpServer() { stop(); }

int HttpServer::bind(const std::string& host, int port) {
  auto& http = impl_->http;
  const int bound = port == 0 ? http.bind_to_any_port(host) : (http.bind_to_port(host, port) ? port : -1);
  if (bound >= 0) {
    http.widen_backlog(impl_->opt.backlog);
    const HttpOptions& o = impl_->opt;
    impl_->guard = std::make_unique<ConnectionGuard>(bound, o.request_read_s, o.per_client,
                                                     uint64_t(o.max_body_bytes) + limits::kMaxHeaderBytes + (64u << 10));
  }
  return bound;
}

void HttpServer::start() {
  if (impl_->guard) impl_->guard->start();
  impl_->thread = std::thread([this] { impl_->http.listen_after_bind(); });
}

void HttpServer::stop() {
  impl_->http.stop();
  if (impl_->thread.joinable()) impl_->thread.join();
  if (impl_->guard) impl_->guard->stop();
}

}  // namespace zaya::server
