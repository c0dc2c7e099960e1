#include "server/engine.h"

#include <algorithm>

#include "generate/generation.h"
#include "zaya/error.h"
#include "zaya/tokenizer.h"

namespace zaya::server {

namespace {
double ms_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

// Does a task's prompt hold image tokens at `pos` or later?
bool images_from(const Task& t, size_t pos) {
  const auto& f = t.images.flags;
  return pos < f.size() &&
         std::any_of(f.begin() + static_cast<std::ptrdiff_t>(pos), f.end(), [](uint8_t x) { return x != 0; });
}
}  // namespace

// ---------------------------------------------------------------------------------------------------------------
// Task

bool Task::wait(std::vector<StepOutput>& out, std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lk(mu_);
  cv_.wait_for(lk, timeout, [&] { return done_ || !pieces_.empty(); });
  while (!pieces_.empty()) {
    out.push_back(std::move(pieces_.front()));
    pieces_.pop_front();
  }
  return done_;
}

TaskSummary Task::summary() const {
  std::lock_guard<std::mutex> lk(mu_);
  return summary_;
}

void Task::push(StepOutput p) {
  {
    std::lock_guard<std::mutex> lk(mu_);
    pieces_.push_back(std::move(p));
  }
  cv_.notify_all();
}

void Task::finish(TaskSummary s) {
  {
    std::lock_guard<std::mutex> lk(mu_);
    summary_ = std::move(s);
    done_ = true;
  }
  cv_.notify_all();
}

// ---------------------------------------------------------------------------------------------------------------
// Engine

struct Engine::Slot {
  int id = 0;
  // What the state holds (the cache), kept across tasks.
  DecodeState state;
  std::vector<int32_t> tokens;
  std::vector<float> last_logits;
  uint64_t last_used = 0;

  // The running task.
  std::shared_ptr<Task> task;
  uint64_t seq = 0;         // admission order (prefill chunks are scheduled first come, first served)
  bool prefilling = false;
  size_t pos = 0;           // prompt tokens in the state
  int32_t pending = -1;     // sampled token to feed in the next step
  size_t cached = 0;
  std::unique_ptr<Generation> gen;
  Clock::time_point admitted, first_token;
};

Engine::Engine(const Model& model, const Tokenizer& tok, EngineOptions opts, Metrics& metrics)
    : model_(model), tok_(tok), opt_(opts), metrics_(metrics) {
  if (opt_.parallel < 1) throw Error("--parallel must be at least 1");
  if (opt_.batch_tokens < 1) throw Error("the batch size must be at least 1 token");
  const int64_t max_pos = model.config().max_positions;
  ctx_ = opt_.ctx > 0 ? std::min(opt_.ctx, max_pos) : max_pos;
  if (opt_.max_snapshots == 0) opt_.max_snapshots = 4 * static_cast<size_t>(opt_.parallel);
  pool_.set_limits(opt_.max_snapshots, opt_.max_snapshot_bytes);
  for (int i = 0; i < opt_.parallel; ++i) {
    auto s = std::make_unique<Slot>();
    s->id = i;
    s->state = model.new_state();
    slots_.push_back(std::move(s));
  }
  thread_ = std::thread([this] { loop(); });
}

Engine::~Engine() { stop(); }

void Engine::stop() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

Engine::Admit Engine::submit(const std::shared_ptr<Task>& task) {
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (stop_) return Admit::Stopped;
    const size_t free_slots = slots_.size() - busy_;
    if (queue_.size() >= opt_.queue + free_slots) return Admit::QueueFull;
    queue_.push_back(task);
  }
  cv_.notify_all();
  return Admit::Ok;
}

Engine::Stats Engine::stats() const {
  std::lock_guard<std::mutex> lk(mu_);
  Stats s;
  s.queued = queue_.size();
  s.busy = busy_;
  s.slots = slots_.size();
  s.snapshots = pool_count_;
  s.snapshot_bytes = pool_bytes_;
  return s;
}

void Engine::loop() {
  for (;;) {
    {
      std::unique_lock<std::mutex> lk(mu_);
      // Wake at least every 100 ms so queued tasks can time out even while nothing runs.
      cv_.wait_for(lk, std::chrono::milliseconds(100),
                   [&] { return stop_ || busy_ > 0 || (!queue_.empty() && busy_ < slots_.size()); });
      if (stop_) break;
      admit_locked(lk);
    }
    // Slot assignment runs unlocked: it may snapshot states and finish tasks, which take the lock themselves.
    for (auto& t : admitted_now_) assign(std::move(t));
    admitted_now_.clear();
    step();
  }
  // Shutting down: nothing more runs.
  for (auto& s : slots_)
    if (s->task) finish(*s, "cancelled", "the server is shutting down");
  std::lock_guard<std::mutex> lk(mu_);
  for (auto& t : queue_) {
    TaskSummary sum;
    sum.finish = "rejected";
    sum.error = "the server is shutting down";
    t->finish(sum);
  }
  queue_.clear();
}

void Engine::admit_locked(std::unique_lock<std::mutex>&) {
  const auto now = Clock::now();
  // Drop queued tasks whose client left or whose time ran out (anywhere in the queue, not only at the front).
  for (auto it = queue_.begin(); it != queue_.end();) {
    auto& t = *it;
    if (t->cancelled() || now > t->deadline) {
      TaskSummary sum;
      sum.finish = t->cancelled() ? "cancelled" : "timeout";
      sum.error = t->cancelled() ? "cancelled" : "timed out waiting for a free slot";
      sum.queue_ms = ms_between(t->created, now);
      metrics_.rejected(t->cancelled() ? "cancelled_in_queue" : "queue_timeout");
      t->finish(sum);
      it = queue_.erase(it);
    } else {
      ++it;
    }
  }
  while (!queue_.empty() && busy_ < slots_.size()) {
    admitted_now_.push_back(std::move(queue_.front()));
    queue_.pop_front();
    ++busy_;
  }
}

void Engine::assign(std::shared_ptr<Task> t) {
  // The longest cached history that is a prefix of the prompt: an idle slot's live state or a snapshot.
  size_t best = 0;
  Slot* best_slot = nullptr;
  const size_t least = least_reuse(*t);
  for (auto& s : slots_)
    if (!s->task && s->tokens.size() > best && s->tokens.size() >= least &&
        can_resume(s->tokens, s->last_logits, t->key()))
      best = s->tokens.size(), best_slot = s.get();
  const int best_snap = pool_.find(t->key(), std::max(best, least > 0 ? least - 1 : 0));
  if (best_snap >= 0) best = pool_.use(static_cast<size_t>(best_snap)).tokens.size(), best_slot = nullptr;
  Slot* slot = best_slot;
  if (!slot) {
    // An idle slot holding nothing, else the least recently used idle one (its state goes to the pool first).
    for (auto& s : slots_) {
      if (s->task) continue;
      if (!slot) slot = s.get();
      else if (slot->tokens.empty()) break;
      else if (s->tokens.empty() || s->last_used < slot->last_used) slot = s.get();
    }
    // Copy the snapshot out first: stashing the slot's state may evict pool entries and move the rest.
    PrefixSnapshot from;
    if (best_snap >= 0) {
      const PrefixSnapshot& snap = pool_.use(static_cast<size_t>(best_snap));
      from.tokens = snap.tokens;
      from.state = snap.state;
      from.last_logits = snap.last_logits;
    }
    stash_live(*slot);
    if (best_snap >= 0) {
      slot->state = std::move(from.state);
      slot->tokens = std::move(from.tokens);
      slot->last_logits = std::move(from.last_logits);
    } else {
      slot->state.reset();
      slot->tokens.clear();
      slot->last_logits.clear();
    }
  }
  slot->cached = best;
  start_task(*slot, std::move(t));
}

size_t Engine::least_reuse(const Task& t) const {
  if (!t.has_images() || model_.attention_mask() == AttentionMask::Causal) return 0;
  // Under zyphra-fa2-prefix the tokens up to two past the last image token attend to each other within one prefill
  // (image-pairs needs less): a fresh prefill and a resumed one agree only if the cache holds that whole span.
  const auto& f = t.images.flags;
  size_t end = f.size();  // one past the last image token
  while (end > 0 && f[end - 1] == 0) --end;
  return std::min(end + 2, f.size());
}

void Engine::start_task(Slot& s, std::shared_ptr<Task> t) {
  s.task = std::move(t);
  const Task& task = *s.task;
  s.seq = ++admitted_;
  s.admitted = Clock::now();
  s.pos = s.cached;
  s.pending = -1;
  const auto room = static_cast<size_t>(std::max<int64_t>(0, ctx_ - static_cast<int64_t>(task.prompt.size())));
  try {
    s.gen = std::make_unique<Generation>(model_.config(), &tok_, task.params, task.prompt, room);
  } catch (const std::exception& e) {  // options the request parser let through: this task fails, not the engine
    return finish(s, "error", e.what());
  }
  metrics_.prompt_cache(task.prompt.size(), s.cached);
  s.prefilling = s.pos < task.prompt.size();
  if (!s.prefilling) {  // the whole prompt is cached, with its last logits
    s.first_token = Clock::now();
    sample_next(s);
  }
}

void Engine::finish(Slot& s, const std::string& reason, const std::string& error) {
  Task& t = *s.task;
  // A client that left or a failed pass gets nothing more; every other end shows the held-back text.
  if (reason != "cancelled" && reason != "error" && s.gen) {
    StepOutput tail = s.gen->flush();
    if (!tail.text.empty() || !tail.events.empty()) t.push(std::move(tail));
  }
  const size_t generated = s.gen ? s.gen->generated() : 0;
  const auto now = Clock::now();
  TaskSummary sum;
  sum.finish = reason;
  sum.error = error;
  sum.prompt_tokens = t.prompt.size();
  sum.cached_tokens = s.cached;
  sum.completion_tokens = generated;
  sum.images = t.image_count;
  sum.vision_ms = t.vision_ms;
  sum.queue_ms = ms_between(t.created, s.admitted);
  if (s.prefilling) {
    sum.prompt_ms = ms_between(s.admitted, now);
  } else {
    sum.prompt_ms = ms_between(s.admitted, s.first_token);
    sum.generation_ms = ms_between(s.first_token, now);
  }
  sum.slot = s.id;
  sum.started = true;
  metrics_.generated(generated);
  metrics_.finished(reason);
  t.finish(sum);
  s.task.reset();
  s.gen.reset();
  s.pending = -1;
  s.prefilling = false;
  s.last_used = ++clock_;
  std::lock_guard<std::mutex> lk(mu_);
  --busy_;
}

void Engine::sample_next(Slot& s) {
  Generation& gen = *s.gen;
  if (!gen.done()) {  // done before any token: max_tokens 0
    StepOutput out = gen.step(s.last_logits.data());
    s.pending = out.token;
    s.task->push(std::move(out));
  }
  if (gen.done()) finish(s, finish_reason_name(gen.finish()));
}

void Engine::add_snapshot(PrefixSnapshot snap) {
  pool_.add(std::move(snap));
  std::lock_guard<std::mutex> lk(mu_);
  pool_count_ = pool_.size();
  pool_bytes_ = pool_.total_bytes();
}

void Engine::save_snapshot(const Slot& s) {
  if (s.tokens.empty() || opt_.max_snapshots == 0) return;
  PrefixSnapshot snap;
  snap.tokens = s.tokens;
  snap.state = s.state;
  snap.last_logits = s.last_logits;
  add_snapshot(std::move(snap));
}

void Engine::stash_live(Slot& s) {
  if (s.tokens.empty()) return;
  PrefixSnapshot snap;
  snap.tokens = std::move(s.tokens);
  snap.state = std::move(s.state);
  snap.last_logits = std::move(s.last_logits);
  s.state = model_.new_state();
  s.tokens.clear();
  s.last_logits.clear();
  add_snapshot(std::move(snap));
}

void Engine::step() {
  // Cancellations and generation time limits first.
  const auto now = Clock::now();
  for (auto& s : slots_) {
    if (!s->task) continue;
    if (s->task->cancelled()) finish(*s, "cancelled");
    else if (now > s->task->deadline) finish(*s, "timeout");
  }
  std::vector<Model::BatchItem> items;
  std::vector<Slot*> who;
  size_t budget = opt_.batch_tokens, n_decode = 0, n_prefill = 0;
  for (auto& s : slots_)
    if (s->task && s->pending >= 0) {
      items.push_back({std::span(&s->pending, 1), &s->state, LogitsMode::Last, {}});
      who.push_back(s.get());
      budget = budget > 0 ? budget - 1 : 0;
      ++n_decode;
    }
  // Prefill chunks, oldest request first; at least a few tokens per step so prompts advance under full decode load.
  budget = std::max<size_t>(budget, std::min<size_t>(opt_.batch_tokens, 16));
  std::vector<Slot*> pre;
  for (auto& s : slots_)
    if (s->task && s->prefilling) pre.push_back(s.get());
  std::sort(pre.begin(), pre.end(), [](Slot* a, Slot* b) { return a->seq < b->seq; });
  const size_t H = static_cast<size_t>(model_.config().hidden);
  for (Slot* s : pre) {
    if (budget == 0) break;
    const Task& task = *s->task;
    const auto& prompt = task.prompt;
    size_t n = std::min(prompt.size() - s->pos, budget);
    if (opt_.snapshot_interval > 0)
      n = std::min(n, (s->pos / opt_.snapshot_interval + 1) * opt_.snapshot_interval - s->pos);
    // Uncached images reach the model in one pass with the rest of the prompt, as in Session::prefill: the mask
    // policy spans the whole prefill call. Such a chunk may exceed the budget (then it ends this step's prefill).
    if (images_from(task, s->pos)) n = prompt.size() - s->pos;
    const bool last = s->pos + n == prompt.size();
    items.push_back({std::span(prompt).subspan(s->pos, n), &s->state, last ? LogitsMode::Last : LogitsMode::None, {}});
    if (task.has_images()) {
      items.back().embeddings = std::span(task.images.embeddings).subspan(s->pos * H, n * H);
      items.back().flags = std::span(task.images.flags).subspan(s->pos, n);
    }
    who.push_back(s);
    budget -= std::min(n, budget);
    n_prefill += n;
  }
  if (items.empty()) return;
  const auto t0 = Clock::now();
  try {
    model_.forward_batch(items);
  } catch (const std::exception& e) {
    // forward_batch validates before touching any state, so only these tasks fail; their slots start clean.
    for (Slot* s : who) {
      s->state.reset();
      s->tokens.clear();
      s->last_logits.clear();
      finish(*s, "error", e.what());
    }
    return;
  }
  metrics_.step(n_prefill, n_decode, items.size(), std::chrono::duration<double>(Clock::now() - t0).count());
  for (size_t i = 0; i < items.size(); ++i) {
    Slot& s = *who[i];
    if (!s.prefilling) {
      s.tokens.push_back(s.pending);
      s.pending = -1;
      s.last_logits = std::move(items[i].logits);
      sample_next(s);
      continue;
    }
    const auto& prompt = s.task->prompt;
    // The state's history is kept as cache keys (image tokens carry their image's fingerprint).
    const auto key = std::span(s.task->key()).subspan(s.pos, items[i].ids.size());
    s.tokens.insert(s.tokens.end(), key.begin(), key.end());
    s.pos += items[i].ids.size();
    s.last_logits.clear();  // no longer those of the last token held
    if (s.pos == prompt.size()) {
      s.last_logits = std::move(items[i].logits);
      s.prefilling = false;
      s.first_token = Clock::now();
      save_snapshot(s);  // the end of the prompt: a regenerated or edited next turn resumes here
      sample_next(s);
    } else if (opt_.snapshot_interval > 0 && s.pos % opt_.snapshot_interval == 0) {
      // Mid-prompt snapshots need the logits of their last token only when a later prompt ends exactly there;
      // compute nothing extra and keep them without logits (usable as strict prefixes).
      PrefixSnapshot snap;
      snap.tokens = s.tokens;
      snap.state = s.state;
      // Keep only the newest interval snapshot of this prompt: drop older ones that are prefixes of it.
      pool_.drop_prefixes_of(snap.tokens);
      add_snapshot(std::move(snap));
    }
  }
}

}  // namespace zaya::server
