#include "server/connections.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <linux/tcp.h>  // tcp_info with tcpi_bytes_received (glibc's is older)
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>

namespace zaya::server {

// ---- WorkerPool ---------------------------------------------------------------------------------------------------

WorkerPool::WorkerPool(size_t max_threads) : max_(std::max<size_t>(max_threads, 1)) {}

WorkerPool::~WorkerPool() { shutdown(); }

void WorkerPool::submit(std::function<void()> fn) {
  std::lock_guard<std::mutex> lk(mu_);
  jobs_.push_back(std::move(fn));
  if (jobs_.size() > idle_ && threads_.size() < max_) threads_.emplace_back([this] { work(); });
  cv_.notify_one();
}

void WorkerPool::work() {
  for (;;) {
    std::function<void()> job;
    {
      std::unique_lock<std::mutex> lk(mu_);
      ++idle_;
      cv_.wait(lk, [&] { return stop_ || !jobs_.empty(); });
      --idle_;
      if (jobs_.empty()) return;  // stopping
      job = std::move(jobs_.front());
      jobs_.pop_front();
    }
    job();
  }
}

void WorkerPool::shutdown() {
  std::vector<std::thread> threads;
  {
    std::lock_guard<std::mutex> lk(mu_);
    stop_ = true;
    threads.swap(threads_);
  }
  cv_.notify_all();
  for (auto& t : threads) t.join();
}

// ---- ConnectionGuard ----------------------------------------------------------------------------------------------

namespace {

bool endpoint(const sockaddr_storage& a, std::string& addr, int& port) {
  char buf[INET6_ADDRSTRLEN] = {};
  if (a.ss_family == AF_INET) {
    const auto& s = reinterpret_cast<const sockaddr_in&>(a);
    ::inet_ntop(AF_INET, &s.sin_addr, buf, sizeof buf);
    port = ntohs(s.sin_port);
  } else if (a.ss_family == AF_INET6) {
    const auto& s = reinterpret_cast<const sockaddr_in6&>(a);
    ::inet_ntop(AF_INET6, &s.sin6_addr, buf, sizeof buf);
    port = ntohs(s.sin6_port);
  } else {
    return false;
  }
  addr = buf;
  return true;
}

// Bytes the connection has received so far (Linux TCP_INFO), 0 when unknown.
uint64_t bytes_received(int fd) {
  tcp_info ti{};
  socklen_t n = sizeof ti;
  if (::getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &n) != 0) return 0;
  return ti.tcpi_bytes_received;
}

bool is_loopback(const std::string& addr) {
  return addr.rfind("127.", 0) == 0 || addr == "::1" || addr.rfind("::ffff:127.", 0) == 0;
}

}  // namespace

ConnectionGuard::ConnectionGuard(int port, int read_seconds, size_t per_client, uint64_t max_request_bytes)
    : port_(port), read_limit_(read_seconds), per_client_(per_client), max_request_bytes_(max_request_bytes) {}

ConnectionGuard::~ConnectionGuard() { stop(); }

void ConnectionGuard::begin(const std::string& addr, int port) {
  std::lock_guard<std::mutex> lk(mu_);
  ++active_[{addr, port}];
}

void ConnectionGuard::end(const std::string& addr, int port) {
  std::lock_guard<std::mutex> lk(mu_);
  const Peer p{addr, port};
  if (auto it = active_.find(p); it != active_.end() && --it->second <= 0) active_.erase(it);
  last_end_[p] = Clock::now();
}

void ConnectionGuard::start() {
  std::lock_guard<std::mutex> lk(mu_);
  if (!stop_) return;
  stop_ = false;
  thread_ = std::thread([this] {
    std::unique_lock<std::mutex> lk(mu_);
    while (!stop_) {
      lk.unlock();
      scan();
      lk.lock();
      cv_.wait_for(lk, std::chrono::milliseconds(250), [&] { return stop_; });
    }
  });
}

void ConnectionGuard::stop() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void ConnectionGuard::scan() {
  // The connections of our port among this process's descriptors (cpp-httplib does not hand them out).
  std::map<int, std::pair<ino_t, Peer>> now_open;
  if (DIR* dir = ::opendir("/proc/self/fd")) {
    while (dirent* e = ::readdir(dir)) {
      char* endp = nullptr;
      const long fd = std::strtol(e->d_name, &endp, 10);
      if (endp == e->d_name || *endp != '\0' || fd == ::dirfd(dir)) continue;
      struct stat st {};
      if (::fstat(int(fd), &st) != 0 || !S_ISSOCK(st.st_mode)) continue;
      sockaddr_storage local{}, peer{};
      socklen_t ll = sizeof local, pl = sizeof peer;
      if (::getsockname(int(fd), reinterpret_cast<sockaddr*>(&local), &ll) != 0) continue;
      std::string laddr, paddr;
      int lport = 0, pport = 0;
      if (!endpoint(local, laddr, lport) || lport != port_) continue;
      if (::getpeername(int(fd), reinterpret_cast<sockaddr*>(&peer), &pl) != 0) continue;  // the listener
      if (!endpoint(peer, paddr, pport)) continue;
      now_open[int(fd)] = {st.st_ino, {paddr, pport}};
    }
    ::closedir(dir);
  }
  const auto now = Clock::now();
  std::vector<int> cut;
  std::map<std::string, std::vector<int>> by_client;  // non-loopback clients' idle connections, for the cap
  std::map<std::string, size_t> per_client;
  {
    std::lock_guard<std::mutex> lk(mu_);
    for (auto it = conns_.begin(); it != conns_.end();) {  // gone, or the descriptor now holds another socket
      auto o = now_open.find(it->first);
      if (o == now_open.end() || o->second.first != it->second.ino) it = conns_.erase(it);
      else ++it;
    }
    for (const auto& [fd, info] : now_open) {
      auto [it, fresh] = conns_.try_emplace(fd);
      Conn& c = it->second;
      const uint64_t bytes = bytes_received(fd);
      if (fresh) c = Conn{info.first, info.second, now, now, 0};
      if (active_.count(c.peer)) c.idle_since = now, c.bytes_at_idle = bytes;
      if (auto le = last_end_.find(c.peer); le != last_end_.end() && le->second > c.idle_since)
        c.idle_since = le->second, c.bytes_at_idle = bytes;
      // Too slow, or more bytes than any request may hold, without a request to show for it.
      if (now - c.idle_since > read_limit_ || bytes - c.bytes_at_idle > max_request_bytes_) cut.push_back(fd);
      else if (!is_loopback(c.peer.first)) {
        ++per_client[c.peer.first];
        if (!active_.count(c.peer)) by_client[c.peer.first].push_back(fd);
      }
    }
    // Forget the ends of requests whose connections are gone (peers' ports are not reused for long).
    for (auto it = last_end_.begin(); it != last_end_.end();) {
      bool open = false;
      for (const auto& [fd, c] : conns_) open = open || c.peer == it->first;
      it = open ? std::next(it) : last_end_.erase(it);
    }
  }
  for (auto& [client, fds] : by_client) {
    size_t n = per_client[client];
    std::sort(fds.begin(), fds.end(), [&](int a, int b) { return conns_[a].first_seen > conns_[b].first_seen; });
    for (size_t k = 0; k < fds.size() && n > per_client_; ++k, --n) cut.push_back(fds[k]);
  }
  for (int fd : cut) {
    struct stat st {};
    // Still the same socket (a descriptor can be reused between the scan and now)?
    if (::fstat(fd, &st) == 0 && st.st_ino == conns_[fd].ino) ::shutdown(fd, SHUT_RDWR);
    conns_.erase(fd);
  }
}

}  // namespace zaya::server
