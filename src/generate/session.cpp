#include "zaya/session.h"

#include <algorithm>

#include "generate/generation.h"
#include "zaya/error.h"
#include "zaya/tokenizer.h"

namespace zaya {

Session::Session(const Model& model, const Tokenizer* tokenizer, size_t max_snapshots, size_t snapshot_interval)
    : model_(model), tok_(tokenizer), state_(model.new_state()), snapshots_(max_snapshots),
      snapshot_interval_(snapshot_interval) {}

void Session::reset() {
  state_.reset();
  tokens_.clear();
  last_logits_.clear();
}

void Session::feed(std::span<const int32_t> ids) {
  if (ids.empty()) return;
  last_logits_ = model_.forward(ids, state_, LogitsMode::Last);
  tokens_.insert(tokens_.end(), ids.begin(), ids.end());
}

void Session::save_snapshot() { snapshots_.add(PrefixSnapshot{tokens_, state_, last_logits_, 0}); }

size_t Session::prefill(std::span<const int32_t> prompt) {
  if (prompt.empty()) throw Error("empty prompt: at least one token is needed");
  // The live state if it can resume the prompt, else the longest snapshot that can.
  size_t best = can_resume(tokens_, last_logits_, prompt) ? tokens_.size() : 0;
  if (const int i = snapshots_.find(prompt, best); i >= 0) {
    const PrefixSnapshot& from = snapshots_.use(static_cast<size_t>(i));
    state_ = from.state;
    tokens_ = from.tokens;
    last_logits_ = from.last_logits;
    best = tokens_.size();
  } else if (best == 0) {
    reset();
  }
  // A prompt equal to what is cached still needs its last logits; they are kept with the state.
  try {
    size_t at = best;
    while (at < prompt.size()) {
      size_t end = prompt.size();
      if (snapshot_interval_ > 0) end = std::min(end, (at / snapshot_interval_ + 1) * snapshot_interval_);
      feed(prompt.subspan(at, end - at));
      at = end;
      if (snapshot_interval_ > 0 && at % snapshot_interval_ == 0 && at < prompt.size()) save_snapshot();
    }
  } catch (...) {
    reset();
    throw;
  }
  save_snapshot();
  return best;
}

GenerationResult Session::generate(const GenerateOptions& opts, const OnText& on_text) {
  // Without a tokenizer every id is reported (with empty text); with one, only steps that show text.
  return generate_steps(opts, [&](const StepOutput& o) {
    if (!on_text) return true;
    if (!tok_) return o.token < 0 || on_text(std::string(), o.token);
    return o.text.empty() || on_text(o.text, o.token);
  });
}

GenerationResult Session::generate_steps(const GenerateOptions& opts, const OnStep& on_step) {
  if (tokens_.empty() || last_logits_.empty()) throw Error("generate: no prompt has been processed");
  const auto room = static_cast<size_t>(std::max<int64_t>(0, state_.max_positions() - state_.position()));
  Generation gen(model_.config(), tok_, opts, tokens_, room);
  GenerationResult res;
  bool cancelled = false;
  const auto t0 = std::chrono::steady_clock::now();
  while (!gen.done() && !cancelled) {
    StepOutput out = gen.step(last_logits_.data());
    const int32_t id = out.token;
    res.tokens.push_back(id);
    if (out.has_logprob) res.logprobs.push_back(out.logprob);
    res.text += out.text;
    // A stop token or string ends the generation as "stop" even when the caller cancels on that same step.
    if (on_step && !on_step(out) && !(gen.done() && gen.finish() == FinishReason::Stop)) cancelled = true;
    // Every sampled token enters the state while there is room, so the session history matches what was
    // generated (a following chat turn then only adds its new tokens).
    if (state_.position() < state_.max_positions()) feed(std::span(&id, 1));
  }
  // The held-back text goes out even after a cancel (it was generated before the stop was asked for).
  StepOutput tail = gen.flush();
  res.text += tail.text;
  if (on_step) on_step(tail);
  res.finish = cancelled ? FinishReason::Cancelled : gen.finish();
  res.stop_string = gen.stop_string();
  res.stop_token = gen.stop_token();
  res.generation_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return res;
}

GenerationResult Session::complete(std::span<const int32_t> prompt, const GenerateOptions& opts,
                                   const OnText& on_text) {
  return after_prefill(prompt, [&] { return generate(opts, on_text); });
}

GenerationResult Session::complete_steps(std::span<const int32_t> prompt, const GenerateOptions& opts,
                                         const OnStep& on_step) {
  return after_prefill(prompt, [&] { return generate_steps(opts, on_step); });
}

GenerationResult Session::after_prefill(std::span<const int32_t> prompt,
                                        const std::function<GenerationResult()>& generate) {
  const auto t0 = std::chrono::steady_clock::now();
  const size_t cached = prefill(prompt);
  const double pp = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  GenerationResult r = generate();
  r.prompt_tokens = prompt.size();
  r.cached_tokens = cached;
  r.prompt_seconds = pp;
  return r;
}

}  // namespace zaya
