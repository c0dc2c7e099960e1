#pragma once
// A generation session: one DecodeState plus the tokens it holds, prompt reuse through state snapshots, and the
// generation loop around the shared per-sequence step (src/generate/generation.h: sampling, stop tokens, stop
// strings, streaming detokenization, output parsing).
//
// The CCA conv state cannot be rolled back token by token, so a session keeps snapshots of its state at prompt
// boundaries (the end of every prompt it processed, and every `snapshot_interval` tokens of a long prefill) and
// resumes a new prompt from the longest snapshot that is a prefix of it.
#include <chrono>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "zaya/decode_state.h"
#include "zaya/generate.h"
#include "zaya/model.h"
#include "zaya/sampler.h"
#include "zaya/snapshot_pool.h"
#include "zaya/vision.h"

namespace zaya {

class Tokenizer;

struct GenerationResult {
  std::vector<int32_t> tokens;  // generated ids (the stop token included when one ended the generation)
  std::vector<SampleResult> logprobs;  // per generated token when top_logprobs >= 0
  std::string text;             // streamed text, stop strings removed
  FinishReason finish = FinishReason::Length;
  std::string stop_string;      // the stop string that ended it, if any
  int32_t stop_token = -1;      // the stop token that ended it, if any
  size_t prompt_tokens = 0, cached_tokens = 0;
  double prompt_seconds = 0, generation_seconds = 0;
};

class Session {
 public:
  // The model (and tokenizer, when text is wanted) must outlive the session. tokenizer may be null for id-only use.
  Session(const Model& model, const Tokenizer* tokenizer, size_t max_snapshots = 8, size_t snapshot_interval = 0);

  // Brings the state to exactly `prompt`, reusing the longest cached prefix. Returns the number of prompt tokens
  // that did not need processing. Throws zaya::Error (and leaves the session reset) on bad ids or overflow.
  size_t prefill(std::span<const int32_t> prompt);
  // The same for a prompt with images (vision.h): prefixes are matched on its cache key, and the part that is not
  // cached runs as one call (the image tokens and the mask policy's prefix must be in one pass).
  size_t prefill(const MultimodalPrompt& prompt);

  using OnText = std::function<bool(const std::string& text, int32_t id)>;
  using OnStep = std::function<bool(const StepOutput& step)>;

  // Generates after the current state (call prefill first). on_text receives each safe-to-show text piece and the id
  // that produced it (without a tokenizer: every generated id, with empty text); returning false cancels. The
  // generated tokens become part of the session's history.
  GenerationResult generate(const GenerateOptions& opts, const OnText& on_text = {});
  // As generate(), with every step's output (each token, then the final flush with token -1): parsed events too.
  GenerationResult generate_steps(const GenerateOptions& opts, const OnStep& on_step);

  // prefill + generate; fills prompt statistics in the result.
  GenerationResult complete(std::span<const int32_t> prompt, const GenerateOptions& opts, const OnText& on_text = {});
  GenerationResult complete_steps(std::span<const int32_t> prompt, const GenerateOptions& opts, const OnStep& on_step);
  GenerationResult complete(const MultimodalPrompt& prompt, const GenerateOptions& opts, const OnText& on_text = {});
  GenerationResult complete_steps(const MultimodalPrompt& prompt, const GenerateOptions& opts, const OnStep& on_step);

  void reset();
  // What the state holds, as cache keys: token ids, with image tokens as negative per-image keys (vision.h).
  const std::vector<int32_t>& tokens() const { return tokens_; }
  const DecodeState& state() const { return state_; }
  size_t snapshot_count() const { return snapshots_.size(); }

 private:
  // prefill, then `generate`, with the prompt statistics filled in.
  GenerationResult after_prefill(size_t prompt_tokens, const std::function<size_t()>& prefill,
                                 const std::function<GenerationResult()>& generate);
  size_t prefill_keyed(std::span<const int32_t> ids, std::span<const int32_t> key, const MultimodalPrompt* images);
  void save_snapshot();
  // Runs ids through the model (key: what the history records; images: rows [at, at+ids.size()) of a multimodal
  // prompt); keeps last_logits_.
  void feed(std::span<const int32_t> ids, std::span<const int32_t> key, const MultimodalPrompt* images = nullptr,
            size_t at = 0);

  const Model& model_;
  const Tokenizer* tok_;
  DecodeState state_;
  std::vector<int32_t> tokens_;
  std::vector<float> last_logits_;  // logits after tokens_.back()
  SnapshotPool snapshots_;
  size_t snapshot_interval_;
};

}  // namespace zaya
