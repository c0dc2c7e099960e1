#pragma once
// Token sampling from one row of logits.
//
// Processing order (HF / vLLM style):
//   1. penalties over the last `penalty_last_n` tokens of `history` (repetition, then presence/frequency),
//   2. logit_bias added (after penalties, so a +/-inf or +/-100 bias is the user's final word),
//   3. temperature == 0: greedy argmax (ties -> lowest id); otherwise
//   4. temperature scaling, top-k, top-p (over the top-k renormalised distribution), min-p (relative to the max
//      probability), then one draw from the survivors.
// Ties in the order "more likely first" are broken by lower id, so top-k/top-p cut-offs are deterministic.
// No step sorts the whole vocabulary: top-k keeps a bounded heap and sorts only its k survivors; without top-k,
// top-p finds its cut-off from a histogram of probability mass over log-probability bins and sorts only the tokens
// of the bin where the cut-off falls; min-p is a plain threshold. Cost is O(vocab) per token plus small sorts.
//
// Logprobs (for OpenAI `logprobs` / `top_logprobs`) are the log-softmax of the RAW logits passed in, before
// penalties, bias and temperature — i.e. what the model itself predicted (same as vLLM's default "raw_logprobs").
//
// NaN logits are treated as -inf (never chosen). If any processed logit is +inf, the draw is uniform among the
// +inf tokens (greedy: lowest such id). If nothing is selectable (all -inf/NaN), sample() throws zaya::Error.
//
// Determinism: the RNG is std::mt19937_64 (its output sequence is fixed by the standard) and uniforms are built
// from its top 53 bits, so the same seed, params, logits and history give the same tokens on every platform.
#include <cstddef>
#include <cstdint>
#include <map>
#include <random>
#include <span>
#include <vector>

namespace zaya {

struct SamplingParams {
  float temperature = 0.8f;        // 0 -> greedy
  int top_k = 0;                   // 0 -> off
  float top_p = 1.0f;              // in (0, 1]; 1 -> off
  float min_p = 0.0f;              // in [0, 1]; 0 -> off
  float repetition_penalty = 1.0f; // > 0; 1 -> off. Seen tokens: positive logits /= p, negative logits *= p
  float presence_penalty = 0.0f;   // OpenAI: logit -= presence if the token was seen
  float frequency_penalty = 0.0f;  // OpenAI: logit -= frequency * count
  int penalty_last_n = 64;         // window of history for all penalties; -1 -> whole history, 0 -> off
  std::map<int, float> logit_bias; // token id -> added to the logit (may be +/-inf to force / ban)
  uint64_t seed = 0;               // callers wanting a fresh stream per request pass random_seed()
};

// Throws zaya::Error describing the first invalid field (vocab is used to range-check logit_bias ids).
void validate(const SamplingParams& p, size_t vocab);

// A seed from std::random_device, for requests that did not give one.
uint64_t random_seed();

struct TokenLogprob {
  int token = -1;
  float logprob = 0.0f;
};

struct SampleResult {
  int token = -1;
  float logprob = 0.0f;            // raw-logit log-softmax of `token`
  std::vector<TokenLogprob> top;   // the top_n most likely tokens under the raw logits, most likely first
};

class Sampler {
 public:
  // Validates params; throws zaya::Error when invalid.
  Sampler(SamplingParams params, size_t vocab);

  // logits: `vocab` floats (not modified). history: the previous token ids (prompt + generated so far); ids must be
  // in [0, vocab).
  int sample(const float* logits, std::span<const int> history);

  // As sample(), and also the chosen token's logprob and the top_n alternatives (top_n >= 0; costs one extra pass).
  SampleResult sample_with_logprobs(const float* logits, std::span<const int> history, int top_n);

  const SamplingParams& params() const { return params_; }
  size_t vocab() const { return vocab_; }
  void reseed(uint64_t seed);

  // How many candidates the last draw had to sort (diagnostics; lets tests check that no full sort happened).
  size_t last_sorted_count() const { return last_sorted_; }

 private:
  void process(const float* logits, std::span<const int> history);  // fills work_ (penalties + bias, NaN -> -inf)
  int choose();                                                       // picks from work_
  double uniform();                                                   // [0, 1)
  template <typename Weight>
  int draw(const std::vector<int>& ids, Weight weight, double total);  // one draw from ids with weight(j)
  int draw_all(const float* w);                                       // one draw over the whole vocabulary

  SamplingParams params_;
  size_t vocab_;
  std::mt19937_64 rng_;
  std::vector<float> work_;           // processed logits
  std::vector<int32_t> counts_;       // scratch: per-token counts in the penalty window (kept all-zero between calls)
  std::vector<int> touched_;          // scratch: tokens with counts_ != 0
  std::vector<int> pool_;             // scratch: candidate ids
  std::vector<float> weight_;         // scratch: unnormalised probabilities (of pool_ or of every token)
  std::vector<int> boundary_;         // scratch: top-p candidates in the histogram bin where the cutoff falls
  std::vector<double> bin_mass_;      // scratch: top-p probability mass per log-probability bin
  std::vector<double> block_sum_;     // scratch: probability mass per block of the vocabulary
  size_t last_sorted_ = 0;
};

}  // namespace zaya
