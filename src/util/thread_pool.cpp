#include "util/thread_pool.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <memory>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define ZAYA_CPU_RELAX() _mm_pause()
#elif defined(__aarch64__)
#define ZAYA_CPU_RELAX() asm volatile("yield")
#else
#define ZAYA_CPU_RELAX() ((void)0)
#endif

namespace zaya {

namespace {
thread_local bool t_inside_pool = false;
uint64_t now_ns() {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch()).count());
}
// A decode step issues hundreds of short parallel loops; workers spin this long before sleeping so that waking them
// costs nothing while a forward pass runs, and they still sleep when the model is idle.
constexpr auto kSpin = std::chrono::microseconds(200);
}  // namespace

ThreadPool::ThreadPool(size_t n_threads) {
  if (n_threads == 0) n_threads = std::max<size_t>(1, std::thread::hardware_concurrency());
  for (size_t i = 1; i < n_threads; ++i) workers_.emplace_back([this] { worker_loop(); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    stop_ = true;
    generation_.fetch_add(1, std::memory_order_release);
  }
  cv_work_.notify_all();
  for (auto& w : workers_) w.join();
}

void ThreadPool::run_chunks() {
  const auto* job = job_;
  for (;;) {
    const size_t c = next_chunk_.fetch_add(1, std::memory_order_acq_rel);
    if (c >= n_chunks_) return;
    const size_t b = c * job_chunk_, e = std::min(job_n_, b + job_chunk_);
    if (stats_on_.load(std::memory_order_relaxed)) {
      const uint64_t t0 = now_ns();
      (*job)(b, e);
      busy_ns_.fetch_add(now_ns() - t0, std::memory_order_relaxed);
    } else {
      (*job)(b, e);
    }
    if (chunks_done_.fetch_add(1, std::memory_order_acq_rel) + 1 == n_chunks_) {
      std::lock_guard<std::mutex> lk(mu_);
      cv_done_.notify_all();
    }
  }
}

void ThreadPool::worker_loop() {
  t_inside_pool = true;
  uint64_t seen = 0;
  for (;;) {
    // Spin briefly for the next job, then sleep.
    const auto until = std::chrono::steady_clock::now() + kSpin;
    uint64_t g = generation_.load(std::memory_order_acquire);
    while (g == seen && std::chrono::steady_clock::now() < until) {
      for (int i = 0; i < 8; ++i) ZAYA_CPU_RELAX();  // ~0.15 µs on Zen 4: a decode step hands out ~400 jobs
      g = generation_.load(std::memory_order_acquire);
    }
    if (g == seen) {
      std::unique_lock<std::mutex> lk(mu_);
      cv_work_.wait(lk, [&] { return generation_.load(std::memory_order_acquire) != seen; });
      g = generation_.load(std::memory_order_acquire);
    }
    seen = g;
    {
      std::lock_guard<std::mutex> lk(mu_);
      if (stop_) return;
      ++active_;
    }
    run_chunks();
    {
      std::lock_guard<std::mutex> lk(mu_);
      if (--active_ == 0) cv_done_.notify_all();
    }
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
  // A few chunks per thread balance uneven work without much contention.
  const size_t max_chunks = size() * 4;
  const size_t chunk = std::max(grain, (n + max_chunks - 1) / max_chunks);
  {
    std::unique_lock<std::mutex> lk(mu_);
    // Workers still draining the previous job must leave it before its fields change.
    cv_done_.wait(lk, [&] { return active_ == 0; });
    job_ = &fn;
    job_n_ = n;
    job_chunk_ = chunk;
    n_chunks_ = (n + chunk - 1) / chunk;
    next_chunk_.store(0, std::memory_order_relaxed);
    chunks_done_.store(0, std::memory_order_relaxed);
    generation_.fetch_add(1, std::memory_order_release);
  }
  cv_work_.notify_all();
  t_inside_pool = true;
  run_chunks();
  t_inside_pool = false;
  const bool stats = stats_on_.load(std::memory_order_relaxed);
  const uint64_t t_wait = stats ? now_ns() : 0;
  // Spin for the stragglers first: chunks are short.
  const auto until = std::chrono::steady_clock::now() + kSpin;
  while (chunks_done_.load(std::memory_order_acquire) != n_chunks_ && std::chrono::steady_clock::now() < until)
    ZAYA_CPU_RELAX();
  {
    std::unique_lock<std::mutex> lk(mu_);
    cv_done_.wait(lk, [&] { return chunks_done_.load(std::memory_order_acquire) == n_chunks_; });
  }
  if (stats) {
    wait_ns_.fetch_add(now_ns() - t_wait, std::memory_order_relaxed);
    regions_.fetch_add(1, std::memory_order_relaxed);
  }
}

void ThreadPool::set_stats(bool on) {
  if (on) regions_ = 0, busy_ns_ = 0, wait_ns_ = 0;
  stats_on_ = on;
}

PoolStats ThreadPool::stats() const { return {regions_.load(), busy_ns_.load(), wait_ns_.load()}; }

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
