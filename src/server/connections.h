#pragma once
// The transport's defences against slow and greedy clients (docs/limits.md):
//   WorkerPool       one thread per open connection, made on demand up to a cap, so connections that trickle their
//                    headers cannot hold every thread while /health waits behind them;
//   ConnectionGuard  a watchdog that shuts down connections that have not delivered a complete request within
//                    limits::kMaxRequestReadSeconds (counted from the connection's start or its previous
//                    response) or that sent more than a request can hold (endless header lines), and, for clients
//                    other than loopback, connections past limits::kMaxConnectionsPerClient.
#include <chrono>
#include <cstdint>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <sys/types.h>
#include <thread>
#include <utility>
#include <vector>

namespace zaya::server {

class WorkerPool {
 public:
  explicit WorkerPool(size_t max_threads);
  ~WorkerPool();
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  // Runs fn on an idle thread, a new one while under the cap, else when a thread frees up.
  void submit(std::function<void()> fn);
  // Runs what was queued, then joins every thread. Idempotent.
  void shutdown();

 private:
  void work();

  const size_t max_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> jobs_;
  std::vector<std::thread> threads_;
  size_t idle_ = 0;
  bool stop_ = false;
};

class ConnectionGuard {
 public:
  // port: the listening port whose accepted connections are watched; max_request_bytes: the most a request (line,
  // headers and body) may take.
  ConnectionGuard(int port, int read_seconds, size_t per_client, uint64_t max_request_bytes);
  ~ConnectionGuard();
  ConnectionGuard(const ConnectionGuard&) = delete;
  ConnectionGuard& operator=(const ConnectionGuard&) = delete;

  // A request on the connection from peer (address, port) is being answered (begin) / has been (end): while one
  // is, the connection is never cut.
  void begin(const std::string& addr, int port);
  void end(const std::string& addr, int port);

  void start();
  void stop();

 private:
  using Clock = std::chrono::steady_clock;
  using Peer = std::pair<std::string, int>;
  struct Conn {
    ino_t ino = 0;
    Peer peer;
    Clock::time_point first_seen, idle_since;
    uint64_t bytes_at_idle = 0;  // bytes received by then
  };
  void scan();

  const int port_;
  const std::chrono::seconds read_limit_;
  const size_t per_client_;
  const uint64_t max_request_bytes_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = true;
  std::thread thread_;
  std::map<Peer, int> active_;                  // requests being answered, by peer
  std::map<Peer, Clock::time_point> last_end_;  // when the last one ended
  std::map<int, Conn> conns_;                   // by descriptor (scan thread only)
};

}  // namespace zaya::server
