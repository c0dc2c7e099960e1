#pragma once
// A fixed pool of worker threads for data-parallel loops. Work is split into contiguous chunks; which thread runs a
// chunk never changes what the chunk computes, so results do not depend on the thread count.
#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace zaya {

// What the pool's threads did while stats were on (ThreadPool::set_stats): the thread idle time of a profile.
struct PoolStats {
  uint64_t regions = 0;   // parallel_for calls that used the workers
  uint64_t busy_ns = 0;   // time all threads (the caller included) spent running chunks
  uint64_t wait_ns = 0;   // time the caller spent waiting for the others at the end of a region
};

class ThreadPool {
 public:
  // n_threads = 0 picks the number of hardware threads.
  explicit ThreadPool(size_t n_threads = 0);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  size_t size() const { return workers_.size() + 1; }  // the calling thread takes part

  // Calls fn(begin, end) over [0, n) split into chunks of at least `grain` items. Blocks until all are done.
  // Re-entrant calls from inside fn run serially on the calling thread.
  void parallel_for(size_t n, size_t grain, const std::function<void(size_t, size_t)>& fn);

  // Counting for profiles: two clock reads per chunk and per region while on, one relaxed load while off.
  void set_stats(bool on);
  PoolStats stats() const;

 private:
  void worker_loop();
  void run_chunks();

  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::condition_variable cv_work_, cv_done_;
  const std::function<void(size_t, size_t)>* job_ = nullptr;
  size_t job_n_ = 0, job_chunk_ = 0, n_chunks_ = 0;
  std::atomic<size_t> next_chunk_{0}, chunks_done_{0};
  std::atomic<uint64_t> generation_{0};
  size_t active_ = 0;  // workers inside run_chunks (guarded by mu_)
  bool stop_ = false;
  std::mutex call_mu_;  // one parallel_for at a time per pool
  std::atomic<bool> stats_on_{false};
  std::atomic<uint64_t> regions_{0}, busy_ns_{0}, wait_ns_{0};
};

// The process-wide pool the kernels use; set_num_threads() rebuilds it (call it before any work starts).
ThreadPool& default_pool();
void set_num_threads(size_t n);

}  // namespace zaya
