#include "server/http.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>

#include "zaya/error.h"

namespace zaya::server {

namespace {

using Clock = std::chrono::steady_clock;

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::string trim(std::string_view s) {
  size_t a = 0, b = s.size();
  while (a < b && (s[a] == ' ' || s[a] == '\t')) ++a;
  while (b > a && (s[b - 1] == ' ' || s[b - 1] == '\t')) --b;
  return std::string(s.substr(a, b - a));
}

const char* reason(int status) {
  switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 204: return "No Content";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 411: return "Length Required";
    case 413: return "Payload Too Large";
    case 415: return "Unsupported Media Type";
    case 422: return "Unprocessable Entity";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return "Status";
  }
}

// The transport's own errors use the same JSON shape as the API's.
std::string error_body(const std::string& message, const std::string& code) {
  nlohmann::json j = {{"error", {{"message", message}, {"type", "invalid_request_error"}, {"param", nullptr},
                                 {"code", code}}}};
  return j.dump();
}

bool is_token_char(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || std::strchr("!#$%&'*+-.^_`|~", c) != nullptr;
}

// Buffered reads with a deadline.
struct Reader {
  int fd;
  std::string buf;
  // Appends whatever arrives before the deadline; false on timeout, EOF or error.
  bool more(Clock::time_point deadline, bool* timed_out = nullptr) {
    for (;;) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
      if (left <= 0) {
        if (timed_out) *timed_out = true;
        return false;
      }
      pollfd p{fd, POLLIN, 0};
      const int r = ::poll(&p, 1, static_cast<int>(std::min<long long>(left, 1000)));
      if (r < 0 && errno == EINTR) continue;
      if (r < 0) return false;
      if (r == 0) continue;
      char tmp[16384];
      const ssize_t n = ::recv(fd, tmp, sizeof tmp, 0);
      if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
      if (n <= 0) return false;
      buf.append(tmp, static_cast<size_t>(n));
      return true;
    }
  }
};

bool send_raw(int fd, std::string_view data) {
  while (!data.empty()) {
    const ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;  // includes SO_SNDTIMEO expiry
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

void send_error_and_close(int fd, int status, const std::string& message, const std::string& code) {
  const std::string body = error_body(message, code);
  std::string out = "HTTP/1.1 " + std::to_string(status) + " " + reason(status) +
                    "\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
                    "\r\nConnection: close\r\n\r\n" + body;
  send_raw(fd, out);
}

void set_timeouts(int fd, int seconds) {
  timeval tv{};
  tv.tv_sec = seconds;
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
}

}  // namespace

std::string HttpRequest::header(std::string_view name) const {
  for (const auto& [k, v] : headers)
    if (k == name) return v;
  return "";
}

std::string HttpResponse::header(std::string_view name) const {
  for (const auto& [k, v] : headers)
    if (k == name) return v;
  return "";
}

// ---------------------------------------------------------------------------------------------------------------
// HttpExchange

bool HttpExchange::send_all(std::string_view data) {
  if (failed_) return false;
  if (!send_raw(fd_, data)) failed_ = true;
  return !failed_;
}

void HttpExchange::respond(int status, const std::string& content_type, const std::string& body,
                           const Headers& extra) {
  if (state_ != State::Idle) return;
  state_ = State::Done;
  status_ = status;
  std::string head = "HTTP/1.1 " + std::to_string(status) + " " + reason(status) + "\r\n";
  if (!content_type.empty()) head += "Content-Type: " + content_type + "\r\n";
  head += "Content-Length: " + std::to_string(body.size()) + "\r\n";
  head += keep_alive_ ? "Connection: keep-alive\r\n" : "Connection: close\r\n";
  for (const auto& [k, v] : extra) head += k + ": " + v + "\r\n";
  head += "\r\n";
  if (!head_) head += body;
  send_all(head);
}

bool HttpExchange::begin_stream(int status, const std::string& content_type, const Headers& extra) {
  if (state_ != State::Idle) return false;
  state_ = State::Streaming;
  status_ = status;
  std::string head = "HTTP/1.1 " + std::to_string(status) + " " + reason(status) + "\r\n";
  head += "Content-Type: " + content_type + "\r\nTransfer-Encoding: chunked\r\nCache-Control: no-cache\r\n";
  head += keep_alive_ ? "Connection: keep-alive\r\n" : "Connection: close\r\n";
  for (const auto& [k, v] : extra) head += k + ": " + v + "\r\n";
  head += "\r\n";
  return send_all(head);
}

bool HttpExchange::write(std::string_view data) {
  if (state_ != State::Streaming) return false;
  if (data.empty()) return !failed_ && !client_gone();
  char size[32];
  std::snprintf(size, sizeof size, "%zx\r\n", data.size());
  std::string chunk = size;
  chunk.append(data);
  chunk += "\r\n";
  return send_all(chunk);
}

void HttpExchange::end_stream() {
  if (state_ != State::Streaming) return;
  state_ = State::Done;
  send_all("0\r\n\r\n");
}

bool HttpExchange::client_gone() {
  if (failed_) return true;
  pollfd p{fd_, static_cast<short>(POLLIN | POLLRDHUP), 0};
  if (::poll(&p, 1, 0) <= 0) return false;
  if (p.revents & (POLLHUP | POLLERR | POLLRDHUP | POLLNVAL)) return true;
  if (p.revents & POLLIN) {
    char c;
    const ssize_t n = ::recv(fd_, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    return n == 0;  // data waiting (a pipelined request) is not a hang-up
  }
  return false;
}

// ---------------------------------------------------------------------------------------------------------------
// HttpServer

HttpServer::HttpServer(HttpServerOptions opts, HttpHandler handler) : opt_(opts), handler_(std::move(handler)) {}

HttpServer::~HttpServer() {
  stop();
  if (listen_fd_ >= 0) ::close(listen_fd_);
}

int HttpServer::listen(const std::string& host, int port) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* res = nullptr;
  const std::string service = std::to_string(port);
  if (int rc = ::getaddrinfo(host.empty() ? nullptr : host.c_str(), service.c_str(), &hints, &res); rc != 0)
    throw Error(cat("cannot resolve host '", host, "': ", gai_strerror(rc)));
  std::string last_error = "no address";
  for (addrinfo* a = res; a; a = a->ai_next) {
    int fd = ::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) continue;
    int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (::bind(fd, a->ai_addr, a->ai_addrlen) == 0 && ::listen(fd, 512) == 0) {
      listen_fd_ = fd;
      break;
    }
    last_error = std::strerror(errno);
    ::close(fd);
  }
  ::freeaddrinfo(res);
  if (listen_fd_ < 0) throw Error(cat("cannot listen on ", host, ":", port, ": ", last_error));
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&ss), &len);
  if (ss.ss_family == AF_INET6) return ntohs(reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port);
  return ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
}

void HttpServer::serve() {
  if (listen_fd_ < 0) throw Error("HttpServer::serve: listen() first");
  while (!stopping_) {
    pollfd p{listen_fd_, POLLIN, 0};
    const int r = ::poll(&p, 1, 200);
    if (r <= 0) continue;
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    const int fd = ::accept4(listen_fd_, reinterpret_cast<sockaddr*>(&ss), &len, SOCK_CLOEXEC);
    if (fd < 0) continue;
    char host[INET6_ADDRSTRLEN] = "?";
    if (ss.ss_family == AF_INET) ::inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(&ss)->sin_addr, host, sizeof host);
    if (ss.ss_family == AF_INET6) ::inet_ntop(AF_INET6, &reinterpret_cast<sockaddr_in6*>(&ss)->sin6_addr, host, sizeof host);
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);  // SSE chunks must not wait for Nagle
    timeval tv{};
    tv.tv_sec = opt_.write_timeout_s;
    ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if (n_conn_ >= opt_.max_connections) {
      send_error_and_close(fd, 503, "too many open connections", "too_many_connections");
      ::close(fd);
      continue;
    }
    {
      std::lock_guard<std::mutex> lk(mu_);
      conns_.insert(fd);
      ++n_conn_;
    }
    std::thread([this, fd, remote = std::string(host)] { handle_connection(fd, remote); }).detach();
  }
}

void HttpServer::stop() {
  stopping_ = true;
  std::unique_lock<std::mutex> lk(mu_);
  // The listener is only shut down here (serve() may still be polling it); the destructor closes it.
  if (listen_fd_ >= 0) ::shutdown(listen_fd_, SHUT_RDWR);
  for (int fd : conns_) ::shutdown(fd, SHUT_RDWR);
  cv_.wait_for(lk, std::chrono::seconds(30), [&] { return n_conn_ == 0; });
}

void HttpServer::handle_connection(int fd, std::string remote) {
  Reader rd{fd, {}};
  for (;;) {
    if (stopping_) break;
    // Wait for the next request (keep-alive idle time), then read it whole within read_timeout.
    if (rd.buf.empty() && !rd.more(Clock::now() + std::chrono::seconds(opt_.keep_alive_timeout_s))) break;
    const auto deadline = Clock::now() + std::chrono::seconds(opt_.read_timeout_s);
    size_t hdr_end;
    bool timed_out = false, ok = true;
    while ((hdr_end = rd.buf.find("\r\n\r\n")) == std::string::npos) {
      if (rd.buf.size() > opt_.max_header_bytes) {
        send_error_and_close(fd, 431, "request headers are too large", "headers_too_large");
        ok = false;
        break;
      }
      if (!rd.more(deadline, &timed_out)) {
        if (timed_out) send_error_and_close(fd, 408, "timed out reading the request", "request_timeout");
        ok = false;
        break;
      }
    }
    if (!ok) break;
    if (hdr_end > opt_.max_header_bytes) {
      send_error_and_close(fd, 431, "request headers are too large", "headers_too_large");
      break;
    }
    HttpRequest req;
    req.remote = remote;
    std::string_view head(rd.buf.data(), hdr_end);
    auto bad = [&](const std::string& why) {
      send_error_and_close(fd, 400, why, "bad_http_request");
      ok = false;
    };
    {
      const size_t eol = head.find("\r\n");
      std::string_view line = head.substr(0, eol);
      const size_t s1 = line.find(' '), s2 = line.rfind(' ');
      if (s1 == std::string_view::npos || s2 == s1) {
        bad("malformed request line");
        break;
      }
      req.method = std::string(line.substr(0, s1));
      req.target = std::string(line.substr(s1 + 1, s2 - s1 - 1));
      req.version = std::string(line.substr(s2 + 1));
      if (req.method.empty() || !std::all_of(req.method.begin(), req.method.end(), is_token_char) ||
          req.target.empty() || req.target.find(' ') != std::string::npos) {
        bad("malformed request line");
        break;
      }
      if (req.version != "HTTP/1.1" && req.version != "HTTP/1.0") {
        send_error_and_close(fd, 505, "only HTTP/1.0 and HTTP/1.1 are supported", "http_version");
        break;
      }
      std::string target = req.target;
      if (target.rfind("http://", 0) == 0) {  // absolute form
        const size_t slash = target.find('/', 7);
        target = slash == std::string::npos ? "/" : target.substr(slash);
      }
      const size_t q = target.find('?');
      req.path = target.substr(0, q);
      if (q != std::string::npos) req.query = target.substr(q + 1);
      size_t at = eol == std::string_view::npos ? head.size() : eol + 2;
      while (at < head.size()) {
        size_t e = head.find("\r\n", at);
        if (e == std::string_view::npos) e = head.size();
        std::string_view h = head.substr(at, e - at);
        at = e + 2;
        const size_t colon = h.find(':');
        if (colon == 0 || colon == std::string_view::npos ||
            !std::all_of(h.begin(), h.begin() + colon, is_token_char)) {
          ok = false;
          break;
        }
        req.headers.emplace_back(lower(std::string(h.substr(0, colon))), trim(h.substr(colon + 1)));
      }
      if (!ok || req.headers.size() > 200) {
        bad("malformed header line");
        break;
      }
    }
    rd.buf.erase(0, hdr_end + 4);

    // Body.
    const std::string te = lower(req.header("transfer-encoding")), cl = req.header("content-length");
    if (!te.empty() && te != "chunked") {
      send_error_and_close(fd, 501, "unsupported transfer-encoding", "bad_http_request");
      break;
    }
    if (!te.empty() && !cl.empty()) {
      bad("both Content-Length and Transfer-Encoding given");
      break;
    }
    const bool expect_continue = lower(req.header("expect")) == "100-continue";
    if (!cl.empty()) {
      if (cl.size() > 18 || !std::all_of(cl.begin(), cl.end(), [](char c) { return c >= '0' && c <= '9'; })) {
        bad("invalid Content-Length");
        break;
      }
      const size_t n = std::stoull(cl);
      if (n > opt_.max_body_bytes) {
        send_error_and_close(fd, 413, cat("request body of ", n, " bytes exceeds the limit of ", opt_.max_body_bytes,
                                          " bytes"), "request_too_large");
        break;
      }
      if (expect_continue && rd.buf.size() < n) send_raw(fd, "HTTP/1.1 100 Continue\r\n\r\n");
      while (rd.buf.size() < n && ok)
        if (!rd.more(deadline, &timed_out)) ok = false;
      if (!ok) {
        if (timed_out) send_error_and_close(fd, 408, "timed out reading the request body", "request_timeout");
        break;
      }
      req.body = rd.buf.substr(0, n);
      rd.buf.erase(0, n);
    } else if (te == "chunked") {
      if (expect_continue) send_raw(fd, "HTTP/1.1 100 Continue\r\n\r\n");
      auto line = [&](std::string& out) {
        size_t e;
        while ((e = rd.buf.find("\r\n")) == std::string::npos) {
          if (rd.buf.size() > 4096 || !rd.more(deadline, &timed_out)) return false;
        }
        out = rd.buf.substr(0, e);
        rd.buf.erase(0, e + 2);
        return true;
      };
      std::string l;
      bool too_large = false;
      for (;;) {
        if (!line(l)) {
          ok = false;
          break;
        }
        const std::string hex = trim(l.substr(0, l.find(';')));
        if (hex.empty() || hex.size() > 15 || !std::all_of(hex.begin(), hex.end(), ::isxdigit)) {
          ok = false;
          break;
        }
        const size_t n = std::stoull(hex, nullptr, 16);
        if (n == 0) {
          while (line(l) && !l.empty()) {}  // trailers
          break;
        }
        if (req.body.size() + n > opt_.max_body_bytes) {
          too_large = true;
          break;
        }
        while (rd.buf.size() < n + 2 && ok)
          if (!rd.more(deadline, &timed_out)) ok = false;
        if (!ok) break;
        req.body.append(rd.buf, 0, n);
        rd.buf.erase(0, n + 2);
      }
      if (too_large) {
        send_error_and_close(fd, 413, cat("request body exceeds the limit of ", opt_.max_body_bytes, " bytes"),
                             "request_too_large");
        break;
      }
      if (!ok) {
        if (timed_out) send_error_and_close(fd, 408, "timed out reading the request body", "request_timeout");
        else bad("malformed chunked body");
        break;
      }
    }

    HttpExchange ex;
    ex.fd_ = fd;
    ex.head_ = req.method == "HEAD";
    const std::string conn = lower(req.header("connection"));
    ex.keep_alive_ = req.version == "HTTP/1.1" ? conn != "close" : conn == "keep-alive";
    if (stopping_) ex.keep_alive_ = false;
    try {
      handler_(req, ex);
    } catch (const std::exception& e) {
      if (!ex.responded()) ex.respond(500, "application/json", error_body(e.what(), "internal_error"));
      else ex.failed_ = true;
    }
    if (!ex.responded()) ex.respond(500, "application/json", error_body("no response", "internal_error"));
    if (ex.state_ == HttpExchange::State::Streaming) ex.end_stream();
    if (ex.failed_ || !ex.keep_alive_) break;
  }
  ::shutdown(fd, SHUT_RDWR);
  std::lock_guard<std::mutex> lk(mu_);
  conns_.erase(fd);
  ::close(fd);
  --n_conn_;
  cv_.notify_all();
}

// ---------------------------------------------------------------------------------------------------------------
// HttpClient

HttpClient::HttpClient(std::string host, int port, int timeout_s)
    : host_(std::move(host)), port_(port), timeout_s_(timeout_s) {}

HttpClient::~HttpClient() { close(); }

void HttpClient::close() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

void HttpClient::connect_() {
  close();
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  if (::getaddrinfo(host_.c_str(), std::to_string(port_).c_str(), &hints, &res) != 0)
    throw Error(cat("cannot resolve ", host_));
  for (addrinfo* a = res; a; a = a->ai_next) {
    int fd = ::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) continue;
    if (::connect(fd, a->ai_addr, a->ai_addrlen) == 0) {
      fd_ = fd;
      break;
    }
    ::close(fd);
  }
  ::freeaddrinfo(res);
  if (fd_ < 0) throw Error(cat("cannot connect to ", host_, ":", port_));
  set_timeouts(fd_, timeout_s_);
  int one = 1;
  ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

HttpResponse HttpClient::request(const std::string& method, const std::string& path, const std::string& body,
                                 const std::vector<std::pair<std::string, std::string>>& headers,
                                 const std::function<bool(std::string_view)>& on_data) {
  std::string msg = method + " " + path + " HTTP/1.1\r\nHost: " + host_ + ":" + std::to_string(port_) + "\r\n";
  bool has_length = false;
  for (const auto& [k, v] : headers) {
    msg += k + ": " + v + "\r\n";
    if (lower(k) == "content-length" || lower(k) == "transfer-encoding") has_length = true;
  }
  if (!has_length && (!body.empty() || method == "POST" || method == "PUT"))
    msg += "Content-Length: " + std::to_string(body.size()) + "\r\n";
  msg += "\r\n" + body;
  const bool reused = fd_ >= 0;
  if (fd_ < 0) connect_();
  if (!send_raw(fd_, msg)) {
    if (!reused) throw Error("send failed");
    connect_();
    if (!send_raw(fd_, msg)) throw Error("send failed");
  }
  std::string buf;
  auto fill = [&]() {
    char tmp[16384];
    const ssize_t n = ::recv(fd_, tmp, sizeof tmp, 0);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) throw Error("timed out waiting for the server");
    if (n <= 0) return false;
    buf.append(tmp, static_cast<size_t>(n));
    return true;
  };
  HttpResponse res;
  size_t hdr_end;
  for (;;) {
    while ((hdr_end = buf.find("\r\n\r\n")) == std::string::npos)
      if (!fill()) {
        // A kept-alive connection the server closed before answering: retry once on a new one.
        if (reused && buf.empty()) {
          close();
          return request(method, path, body, headers, on_data);
        }
        close();
        throw Error("connection closed before a response");
      }
    std::string_view head(buf.data(), hdr_end);
    const size_t sp = head.find(' ');
    res.status = sp == std::string_view::npos ? 0 : std::atoi(std::string(head.substr(sp + 1, 3)).c_str());
    res.headers.clear();
    size_t at = head.find("\r\n");
    while (at != std::string_view::npos && at + 2 < head.size()) {
      at += 2;
      size_t e = head.find("\r\n", at);
      std::string_view h = head.substr(at, e == std::string_view::npos ? std::string_view::npos : e - at);
      const size_t colon = h.find(':');
      if (colon != std::string_view::npos)
        res.headers.emplace_back(lower(std::string(h.substr(0, colon))), trim(h.substr(colon + 1)));
      at = e;
    }
    buf.erase(0, hdr_end + 4);
    if (res.status != 100) break;
  }
  bool keep = lower(res.header("connection")) != "close";
  bool go_on = true;
  auto deliver = [&](std::string_view d) {
    if (d.empty()) return;
    if (on_data) {
      if (go_on && !on_data(d)) go_on = false;
    } else {
      res.body.append(d);
    }
  };
  if (method == "HEAD" || res.status == 204 || res.status == 304) {
  } else if (lower(res.header("transfer-encoding")) == "chunked") {
    for (;;) {
      size_t e;
      while ((e = buf.find("\r\n")) == std::string::npos)
        if (!fill()) throw Error("connection closed inside a chunked body");
      const size_t n = std::stoull(buf.substr(0, e), nullptr, 16);
      buf.erase(0, e + 2);
      if (n == 0) {
        while ((e = buf.find("\r\n")) != 0) {
          if (e == std::string::npos) {
            if (!fill()) break;
            continue;
          }
          buf.erase(0, e + 2);
        }
        if (buf.size() >= 2) buf.erase(0, 2);
        break;
      }
      while (buf.size() < n + 2)
        if (!fill()) throw Error("connection closed inside a chunk");
      deliver(std::string_view(buf.data(), n));
      buf.erase(0, n + 2);
      if (!go_on) {
        keep = false;
        break;
      }
    }
  } else if (!res.header("content-length").empty()) {
    const size_t n = std::stoull(res.header("content-length"));
    while (buf.size() < n)
      if (!fill()) throw Error("connection closed inside the body");
    deliver(std::string_view(buf.data(), n));
  } else {
    while (fill()) {}
    deliver(buf);
    keep = false;
  }
  if (!keep) close();
  return res;
}

std::string HttpClient::raw(const std::string& bytes) {
  connect_();
  send_raw(fd_, bytes);
  std::string out;
  char tmp[16384];
  for (;;) {
    const ssize_t n = ::recv(fd_, tmp, sizeof tmp, 0);
    if (n <= 0) break;
    out.append(tmp, static_cast<size_t>(n));
  }
  close();
  return out;
}

}  // namespace zaya::server
