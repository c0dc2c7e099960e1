#pragma once
// The generation engine behind `zaya serve`: N slots, each with its own DecodeState, a bounded FIFO queue, and one
// scheduler thread that runs the decode steps of every active slot, plus prefill chunks of newly admitted prompts,
// as one Model::forward_batch call per step.
//
// Determinism: the kernels are batch-invariant and prefill is chunk-invariant, and every task owns its generation
// step (src/generate/generation.h, the same one Session runs; its sampler seeded from the request), so a task's
// tokens do not depend on what else runs or on cache hits.
//
// Prompt reuse: the CCA conv / previous-input state cannot be rolled back token by token, so reuse is only from a
// state whose whole token history is a prefix of the new prompt. Candidates are the idle slots' live states (the
// end of the turn they last ran) and a shared LRU pool of snapshots taken at the end of every prompt, every
// `snapshot_interval` prompt tokens, and of a slot's live state when the slot is handed to an unrelated request.
// Histories are cache keys (zaya/vision.h, MultimodalPrompt::key): an image token carries its image's fingerprint, so
// equal ids with other images never match. A prompt with uncached images is prefilled in one pass (the mask policy
// spans the prefill call), and under a non-causal policy resumes only past its images (least_reuse).
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "server/metrics.h"
#include "zaya/decode_state.h"
#include "zaya/generate.h"
#include "zaya/model.h"
#include "zaya/snapshot_pool.h"
#include "zaya/vision.h"

namespace zaya {
class Tokenizer;
}

namespace zaya::server {

using Clock = std::chrono::steady_clock;

struct TaskSummary {
  std::string finish = "stop";  // stop | length | cancelled | timeout | error | rejected
  std::string error;
  size_t prompt_tokens = 0, cached_tokens = 0, completion_tokens = 0;
  double queue_ms = 0, prompt_ms = 0, generation_ms = 0;
  size_t images = 0;     // images in the prompt (ZAYA1-VL)
  double vision_ms = 0;  // their decoding, preprocessing and vision encoder time
  int slot = -1;
  bool started = false;  // reached a slot (a task that timed out in the queue did not)
};

class Task {
 public:
  Task(std::vector<int32_t> prompt, GenerateOptions params, Clock::time_point deadline)
      : prompt(std::move(prompt)), params(std::move(params)), deadline(deadline), created(Clock::now()) {}
  // A prompt with images (ZAYA1-VL): its ids become `prompt`; the embedding rows, flags and cache key stay in
  // `images`. `count` and `vision_ms` only go into the summary.
  Task(MultimodalPrompt mm, size_t count, double vision_ms, GenerateOptions params, Clock::time_point deadline)
      : prompt(std::move(mm.ids)), images(std::move(mm)), image_count(count), vision_ms(vision_ms),
        params(std::move(params)), deadline(deadline), created(Clock::now()) {}
  const std::vector<int32_t> prompt;
  const MultimodalPrompt images;  // empty for a text prompt (its ids moved to `prompt` otherwise)
  const size_t image_count = 0;
  const double vision_ms = 0;
  const GenerateOptions params;
  const Clock::time_point deadline;
  const Clock::time_point created;

  bool has_images() const { return !images.flags.empty(); }
  // What prompt reuse matches on: the ids, with each image token replaced by its image's fingerprint key.
  const std::vector<int32_t>& key() const { return has_images() ? images.key : prompt; }

  void cancel() { cancelled_ = true; }
  bool cancelled() const { return cancelled_; }

  // Consumer: waits up to `timeout` for output, moves what is there into `out`. Returns true once the task is
  // finished and everything it produced has been handed out (summary() is then final).
  bool wait(std::vector<StepOutput>& out, std::chrono::milliseconds timeout);
  TaskSummary summary() const;

  // Producer (the engine).
  void push(StepOutput p);
  void finish(TaskSummary s);

 private:
  std::atomic<bool> cancelled_{false};
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<StepOutput> pieces_;
  bool done_ = false;
  TaskSummary summary_;
};

struct EngineOptions {
  int parallel = 1;
  int64_t ctx = 0;                // per-slot context in tokens; 0: the model's max_position_embeddings
  size_t queue = 64;              // tasks allowed to wait for a slot
  size_t batch_tokens = 512;      // tokens per model pass (all decode tokens + prefill chunks)
  size_t max_snapshots = 0;       // 0: 4 per slot
  size_t max_snapshot_bytes = size_t(4) << 30;
  size_t snapshot_interval = 512; // prompt tokens between snapshots of a long prefill (0: only at prompt ends)
};

class Engine {
 public:
  Engine(const Model& model, const Tokenizer& tok, EngineOptions opts, Metrics& metrics);
  ~Engine();

  enum class Admit { Ok, QueueFull, Stopped };
  Admit submit(const std::shared_ptr<Task>& task);
  // Finishes every task (cancelled) and joins the scheduler thread.
  void stop();

  int64_t ctx() const { return ctx_; }
  int parallel() const { return opt_.parallel; }
  struct Stats {
    size_t queued = 0, busy = 0, slots = 0, snapshots = 0, snapshot_bytes = 0;
  };
  Stats stats() const;

 private:
  struct Slot;

  void loop();
  void admit_locked(std::unique_lock<std::mutex>& lk);  // moves queued tasks to admitted_now_
  void assign(std::shared_ptr<Task> t);                 // picks a slot and starts the task
  // The shortest cached prefix a task may resume from (0: any). A prompt with images under a non-causal mask policy
  // resumes only from a prefix that holds every token its images' prefill span covers, so that its tokens are those
  // of a fresh prefill (as `zaya run --image` computes them), whatever the cache holds.
  size_t least_reuse(const Task& t) const;
  void start_task(Slot& s, std::shared_ptr<Task> t);
  void step();
  void sample_next(Slot& s);
  void finish(Slot& s, const std::string& reason, const std::string& error = "");
  void save_snapshot(const Slot& s);
  void stash_live(Slot& s);
  void add_snapshot(PrefixSnapshot snap);

  const Model& model_;
  const Tokenizer& tok_;
  EngineOptions opt_;
  Metrics& metrics_;
  int64_t ctx_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::shared_ptr<Task>> queue_;
  std::vector<std::shared_ptr<Task>> admitted_now_;
  size_t busy_ = 0;
  bool stop_ = false;

  std::vector<std::unique_ptr<Slot>> slots_;  // touched only by the scheduler thread (busy_ under mu_)
  SnapshotPool pool_{0};                      // scheduler thread only; sizes mirrored under mu_ for stats
  size_t pool_count_ = 0, pool_bytes_ = 0;    // under mu_
  uint64_t clock_ = 0, admitted_ = 0;
  std::thread thread_;
};

}  // namespace zaya::server
