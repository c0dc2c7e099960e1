#pragma once
// Perplexity of a model over a token stream and its KL divergence from a reference model (the questions
// llama-perplexity answers), with the definition of the golden data (tests/data/golden/zaya1-text/README.md,
// "Perplexity definition"): the ids are cut into consecutive non-overlapping chunks of ctx−1 tokens, each chunk
// runs as a fresh sequence [<bos>] + chunk, and position i of a window predicts chunk token i, so every id is
// scored exactly once. All statistics are computed in float64 from the fp32 logits.
//
// Both models stream window by window: memory holds one window's logits of each model plus a few numbers per
// token (the per-token KL values the p99 needs), never the logits of the whole text.
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace zaya {

class Model;
class Tokenizer;

// Chunk ids[begin, begin + len), run as [<bos>] + chunk.
struct PerplexityWindow {
  size_t begin = 0, len = 0;
};

// The windows covering n_ids ids with windows of ctx positions (chunks of ctx−1 ids; the last may be shorter).
// Throws zaya::Error when ctx < 2, n_ids == 0, or n_ids < ctx−1 (the text is shorter than one chunk).
std::vector<PerplexityWindow> perplexity_windows(size_t n_ids, int64_t ctx);

// −log_softmax(logits)[target] in float64.
double token_nll(std::span<const float> logits, int32_t target);
// KL(softmax(ref) ‖ softmax(model)) = Σ p_ref·(log p_ref − log p_model), in float64. Sizes must match.
double kl_divergence(std::span<const float> ref_logits, std::span<const float> model_logits);
// Nearest-rank percentile (p in (0, 1]): the ⌈p·n⌉-th smallest value. `values` is reordered. 0 for an empty set.
double percentile(std::vector<float>& values, double p);

struct PerplexityProgress {
  size_t windows_done = 0, windows = 0;
  size_t tokens_done = 0, tokens = 0;
  double seconds = 0;      // since the evaluation started
  double running_ppl = 0;  // over the tokens scored so far
};

struct PerplexityOptions {
  int64_t ctx = 512;     // positions per window, <bos> included
  int64_t bos_id = -1;   // -1: the model config's bos_token_id
  std::function<void(const PerplexityProgress&)> progress;  // called after every window (may be empty)
};

// Present when a reference model was given. KL(ref ‖ model) per scored position.
struct KldStats {
  double mean = 0, p99 = 0, max = 0;
  double top1_agree = 0;  // fraction of positions whose argmax (lowest index on ties) is the same in both
  double ppl_ref = 0, nll_ref_mean = 0;
  double ppl_ratio = 0;  // ppl / ppl_ref
};

struct PerplexityResult {
  double ppl = 0, nll_mean = 0, nll_sum = 0;
  size_t tokens = 0, windows = 0;
  int64_t ctx = 0;
  double seconds = 0;
  std::vector<double> window_nll;  // summed NLL of each window
  std::optional<KldStats> kld;
};

// Scores `ids` with `model` (and, when given, the same windows with `reference`, which must have the same vocabulary).
// Throws zaya::Error for a ctx outside [2, max positions of either model], too few ids, ids outside the vocabulary,
// or a vocabulary mismatch.
PerplexityResult evaluate_perplexity(const Model& model, std::span<const int32_t> ids, const PerplexityOptions& opts,
                                     const Model* reference = nullptr);

// The ids a text is scored as: encoded in one piece without special tokens (as the golden valid.ids were).
// Throws zaya::Error naming `source` for an empty or non-UTF-8 text.
std::vector<int32_t> perplexity_tokens(const Tokenizer& tokenizer, std::string_view text, const std::string& source);

}  // namespace zaya
