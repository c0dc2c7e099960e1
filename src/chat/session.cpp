#include "zaya/session.h"

#include <algorithm>

#include "zaya/error.h"
#include "zaya/stop.h"
#include "zaya/tokenizer.h"

namespace zaya {

const char* finish_reason_name(FinishReason r) {
  switch (r) {
    case FinishReason::Stop: return "stop";
    case FinishReason::Length: return "length";
    case FinishReason::Cancelled: return "cancelled";
  }
  return "?";
}

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

GenerationResult Session::generate(const GenerateOptions& opts,
                                   const std::function<bool(const std::string&, int32_t)>& on_text) {
  if (tokens_.empty() || last_logits_.empty()) throw Error("generate: no prompt has been processed");
  if (opts.max_tokens < 0) throw Error("max_tokens must be >= 0");
  const ModelConfig& cfg = model_.config();
  Sampler sampler(opts.sampling, static_cast<size_t>(cfg.vocab));
  StopStringMatcher stopper(opts.stop);
  std::vector<int32_t> stop_ids = opts.stop_token_ids;
  if (!opts.ignore_eos) {
    for (int64_t e : cfg.eos_token_ids) stop_ids.push_back(static_cast<int32_t>(e));
    if (tok_)
      for (int32_t e : tok_->eos_ids()) stop_ids.push_back(e);
  }
  std::vector<int> history(tokens_.begin(), tokens_.end());
  std::unique_ptr<StreamingDetokenizer> detok;
  if (tok_) detok = std::make_unique<StreamingDetokenizer>(*tok_, opts.skip_special_tokens);

  GenerationResult res;
  auto emit = [&](const std::string& text, int32_t id) {
    if (text.empty()) return true;
    res.text += text;
    return on_text ? on_text(text, id) : true;
  };
  const auto t0 = std::chrono::steady_clock::now();
  bool done = false;
  for (int i = 0; i < opts.max_tokens && !done; ++i) {
    int32_t id;
    if (opts.top_logprobs >= 0) {
      SampleResult s = sampler.sample_with_logprobs(last_logits_.data(), history, opts.top_logprobs);
      id = s.token;
      res.logprobs.push_back(std::move(s));
    } else {
      id = sampler.sample(last_logits_.data(), history);
    }
    res.tokens.push_back(id);
    history.push_back(id);
    if (std::find(stop_ids.begin(), stop_ids.end(), id) != stop_ids.end()) {
      res.finish = FinishReason::Stop;
      res.stop_token = id;
      done = true;
    } else if (detok) {
      auto r = stopper.feed(detok->put(id));
      if (!emit(r.text, id)) res.finish = FinishReason::Cancelled, done = true;
      if (r.stopped) res.finish = FinishReason::Stop, res.stop_string = r.stop, done = true;
    }
    // Without a tokenizer there is no text: report every id (the stop token too).
    if (!detok && on_text && !on_text(std::string(), id) && !done) res.finish = FinishReason::Cancelled, done = true;
    // Every sampled token enters the state, so the session history matches what was generated (a following chat
    // turn then only adds its new tokens).
    if (state_.position() < state_.max_positions()) {
      feed(std::span(&id, 1));
    } else if (!done) {
      res.finish = FinishReason::Length;  // the context is full
      done = true;
    }
  }
  if (detok && !stopper.stopped()) {
    auto r = stopper.feed(detok->flush());
    emit(r.text + stopper.finish(), -1);
  }
  res.generation_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return res;
}

GenerationResult Session::complete(std::span<const int32_t> prompt, const GenerateOptions& opts,
                                   const std::function<bool(const std::string&, int32_t)>& on_text) {
  const auto t0 = std::chrono::steady_clock::now();
  const size_t cached = prefill(prompt);
  const double pp = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  GenerationResult r = generate(opts, on_text);
  r.prompt_tokens = prompt.size();
  r.cached_tokens = cached;
  r.prompt_seconds = pp;
  return r;
}

}  // namespace zaya
