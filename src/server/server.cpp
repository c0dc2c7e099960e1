// `zaya serve`: the loaded context, the router and the HTTP transport wired together, and their start and stop.
#include "zaya/server.h"

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <mutex>

#include "server/context.h"
#include "server/http.h"
#include "server/routes.h"
#include "zaya/error.h"

namespace zaya::server {

namespace {
HttpOptions http_options(const ServerOptions& o) {
  HttpOptions h;
  h.workers = std::max<size_t>(o.max_connections, 4);
  h.request_read_s = o.request_read_s;
  h.max_body_bytes = o.max_body_bytes;
  h.read_timeout_s = o.read_timeout_s;
  return h;
}
}  // namespace

struct Server::Impl {
  explicit Impl(ServerOptions o)
      : ctx(std::move(o)), router(ctx),
        http(http_options(ctx.opt), [this](const HttpRequest& req, Exchange& ex) { router.handle(req, ex); },
             &Router::transport_error) {}

  ServerContext ctx;
  Router router;
  HttpServer http;
  int port = 0;
  std::mutex stop_mu;
  std::condition_variable stop_cv;
  bool stopped = false;
};

Server::Server(ServerOptions opts) : impl_(std::make_unique<Impl>(std::move(opts))) {}

Server::~Server() { stop(); }

int Server::start() {
  const ServerOptions& opt = impl_->ctx.opt;
  impl_->port = impl_->http.bind(opt.host, opt.port);
  if (impl_->port < 0) throw Error(cat("cannot listen on ", opt.host, ":", opt.port, ": ", std::strerror(errno)));
  impl_->http.start();
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
  impl_->ctx.engine->stop();
  impl_->http.stop();
  impl_->stop_cv.notify_all();
}

}  // namespace zaya::server
