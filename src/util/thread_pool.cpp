#include "zaya/thread_pool.h"

#include <algorithm>
#include <memory>

namespace zaya {

namespace {
thread_local bool t_inside_pool = false;
}

ThreadPool::ThreadPool(size_t n_threads) {
  if (n_threads == 0) n_threads = std::max<size_t>(1, std::thread::hardware_concurrency());
  for (size_t i = 1; i < n_threads; ++i) workers_.emplace_back([this] { worker_loop(); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    stop_ = true;
  }
  cv_work_.notify_all();
  for (auto& w : workers_) w.join();
}

void ThreadPool::run_chunks() {
  for (;;) {
    size_t b, e;
    const std::function<void(size_t, size_t)>* job;
    {
      std::lock_guard<std::mutex> lk(mu_);
      if (next_chunk_ >= n_chunks_) return;
      const size_t c = next_chunk_++;
      b = c * job_chunk_;
      e = std::min(job_n_, b + job_chunk_);
      job = job_;
    }
    (*job)(b, e);
    {
      std::lock_guard<std::mutex> lk(mu_);
      if (++chunks_done_ == n_chunks_) cv_done_.notify_all();
    }
  }
}

void ThreadPool::worker_loop() {
  t_inside_pool = true;
  uint64_t seen = 0;
  for (;;) {
    {
      std::unique_lock<std::mutex> lk(mu_);
      cv_work_.wait(lk, [&] { return stop_ || generation_ != seen; });
      if (stop_) return;
      seen = generation_;
    }
    run_chunks();
  }
}

void ThreadPool::parallel_for(size_t n, size_t grain, const std::function<void(size_t, size_t)>& fn) {
  if (n == 0) return;
  grain = std::max<size_t>(1, grain);
  if (workers_.empty() || t_inside_pool || n <= grain) {
    fn(0, n);
    return;
  }
  std::lock_guard<std::mutex> call(call_mu_);
  // A few chunks per thread balance uneven work without much locking.
  const size_t max_chunks = size() * 4;
  size_t chunk = std::max(grain, (n + max_chunks - 1) / max_chunks);
  {
    std::lock_guard<std::mutex> lk(mu_);
    job_ = &fn;
    job_n_ = n;
    job_chunk_ = chunk;
    n_chunks_ = (n + chunk - 1) / chunk;
    next_chunk_ = 0;
    chunks_done_ = 0;
    ++generation_;
  }
  cv_work_.notify_all();
  t_inside_pool = true;
  run_chunks();
  t_inside_pool = false;
  std::unique_lock<std::mutex> lk(mu_);
  cv_done_.wait(lk, [&] { return chunks_done_ == n_chunks_; });
  job_ = nullptr;
}

namespace {
std::unique_ptr<ThreadPool>& pool_slot() {
  static std::unique_ptr<ThreadPool> p;
  return p;
}
std::mutex g_pool_mu;
}  // namespace

ThreadPool& default_pool() {
  std::lock_guard<std::mutex> lk(g_pool_mu);
  auto& p = pool_slot();
  if (!p) p = std::make_unique<ThreadPool>(0);
  return *p;
}

void set_num_threads(size_t n) {
  std::lock_guard<std::mutex> lk(g_pool_mu);
  pool_slot() = std::make_unique<ThreadPool>(n);
}

}  // namespace zaya
