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

void Session::feed(std::span<const int32_t> ids, std::span<const int32_t> key, const MultimodalPrompt* images,
                   size_t at) {
  if (ids.empty()) return;
  Model::BatchItem item(ids, &state_, LogitsMode::Last);
  if (images) {
    const size_t H = static_cast<size_t>(model_.config().hidden);
    item.embeddings = std::span(images->embeddings).subspan(at * H, ids.size() * H);
    item.flags = std::span(images->flags).subspan(at, ids.size());
  }
  model_.forward_batch(std::span(&item, 1));
  last_logits_ = std::move(item.logits);
  tokens_.insert(tokens_.end(), key.begin(), key.end());
}

void Session::save_snapshot() { snapshots_.add(PrefixSnapshot{tokens_, state_, last_logits_, 0}); }

size_t Session::prefill(std::span<const int32_t> prompt) { return prefill_keyed(prompt, prompt, nullptr); }

size_t Session::prefill(const MultimodalPrompt& prompt) {
  if (prompt.key.size() != prompt.ids.size() || prompt.flags.size() != prompt.ids.size())
    throw Error("prefill: a multimodal prompt needs one key and one flag per token");
  return prefill_keyed(prompt.ids, prompt.key, &prompt);
}

size_t Session::prefill_keyed(std::span<const int32_t> prompt, std::span<const int32_t> key,
                              const MultimodalPrompt* images) {
  if (prompt.empty()) throw Error("empty prompt: at least one token is needed");
  // Under a non-causal mask the tokens up to two past the last image attend to each other within one prefill, so a
  // resumed prompt agrees with a fresh one only if the cache holds that whole span (the server's rule too).
  size_t least = 0;
  if (images && model_.attention_mask() != AttentionMask::Causal) {
    size_t end = images->flags.size();
    while (end > 0 && images->flags[end - 1] == 0) --end;
    if (end > 0) least = std::min(end + 2, images->flags.size());
  }
  // The live state if it can resume the prompt, else the longest snapshot that can.
  size_t best = tokens_.size() >= least && can_resume(tokens_, last_logits_, key) ? tokens_.size() : 0;
  if (const int i = snapshots_.find(key, std::max(best, least > 0 ? least - 1 : 0)); i >= 0) {
    const PrefixSnapshot& from = snapshots_.use(static_cast<size_t>(i));
    state_ = from.state;
    tokens_ = from.tokens;
    last_logits_ = from.last_logits;
    best = tokens_.size();
  } else if (best == 0) {
    reset();
  }
  // Images must reach the model in one pass with the rest of the uncached prompt; text prompts may be cut into
  // snapshot intervals.
  bool uncached_images = false;
  if (images)
    for (size_t t = best; t < prompt.size(); ++t) uncached_images = uncached_images || images->flags[t];
  const size_t interval = uncached_images ? 0 : snapshot_interval_;
  // A prompt equal to what is cached still needs its last logits; they are kept with the state.
  try {
    size_t at = best;
    while (at < prompt.size()) {
      size_t end = prompt.size();
      if (interval > 0) end = std::min(end, (at / interval + 1) * interval);
      feed(prompt.subspan(at, end - at), key.subspan(at, end - at), images, at);
      at = end;
      if (interval > 0 && at % interval == 0 && at < prompt.size()) save_snapshot();
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
  // The sampler's history holds token ids: image keys (negative) go back to the image token.
  std::vector<int32_t> history = tokens_;
  for (int32_t& id : history)
    if (id < 0) id = static_cast<int32_t>(model_.config().vl.image_token_id);
  Generation gen(model_.config(), tok_, opts, history, room);
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
    if (state_.position() < state_.max_positions()) feed(std::span(&id, 1), std::span(&id, 1));
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
  return after_prefill(prompt.size(), [&] { return prefill(prompt); }, [&] { return generate(opts, on_text); });
}

GenerationResult Session::complete_steps(std::span<const int32_t> prompt, const GenerateOptions& opts,
                                         const OnStep& on_step) {
  return after_prefill(prompt.size(), [&] { return prefill(prompt); }, [&] { return generate_steps(opts, on_step); });
}

GenerationResult Session::complete(const MultimodalPrompt& prompt, const GenerateOptions& opts, const OnText& on_text) {
  return after_prefill(prompt.ids.size(), [&] { return prefill(prompt); }, [&] { return generate(opts, on_text); });
}

GenerationResult Session::complete_steps(const MultimodalPrompt& prompt, const GenerateOptions& opts,
                                         const OnStep& on_step) {
  return after_prefill(prompt.ids.size(), [&] { return prefill(prompt); },
                       [&] { return generate_steps(opts, on_step); });
}

GenerationResult Session::after_prefill(size_t prompt_tokens, const std::function<size_t()>& prefill,
                                        const std::function<GenerationResult()>& generate) {
  const auto t0 = std::chrono::steady_clock::now();
  const size_t cached = prefill();
  const double pp = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  GenerationResult r = generate();
  r.prompt_tokens = prompt_tokens;
  r.cached_tokens = cached;
  r.prompt_seconds = pp;
  return r;
}

}  // namespace zaya
