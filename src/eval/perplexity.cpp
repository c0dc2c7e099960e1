// Perplexity and KL divergence over fixed windows (zaya/perplexity.h).
#include "zaya/perplexity.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include "zaya/error.h"
#include "zaya/model.h"
#include "util/thread_pool.h"
#include "zaya/tokenizer.h"

namespace zaya {

namespace {

// log Σ exp(x) in float64, with the row's max and its first index (the argmax) on the side.
struct RowNorm {
  double max = 0, log_z = 0;  // log_softmax(x)_i = x_i − max − log_z
  size_t argmax = 0;
};

RowNorm row_norm(const float* x, size_t n) {
  RowNorm r;
  float mx = x[0];
  for (size_t i = 1; i < n; ++i)
    if (x[i] > mx) mx = x[i], r.argmax = i;
  r.max = mx;
  double s = 0;
  for (size_t i = 0; i < n; ++i) s += std::exp(static_cast<double>(x[i]) - r.max);
  r.log_z = std::log(s);
  return r;
}

double log_prob(const float* x, const RowNorm& r, size_t i) { return static_cast<double>(x[i]) - r.max - r.log_z; }

double kl_rows(const float* ref, const RowNorm& rn, const float* model, const RowNorm& mn, size_t n) {
  double kl = 0;
  for (size_t i = 0; i < n; ++i) {
    const double lr = log_prob(ref, rn, i);
    kl += std::exp(lr) * (lr - log_prob(model, mn, i));
  }
  return std::max(kl, 0.0);  // rounding can leave a tiny negative for identical rows
}

bool finite_row(const float* x, size_t n) {
  for (size_t i = 0; i < n; ++i)
    if (!std::isfinite(x[i])) return false;
  return true;
}

// What one scored position contributes.
struct RowStats {
  double nll = 0, nll_ref = 0, kld = 0;
  bool top1 = false;
  bool finite = true, ref_finite = true;  // the pool cannot carry exceptions: checked after the loop
};

}  // namespace

std::vector<PerplexityWindow> perplexity_windows(size_t n_ids, int64_t ctx) {
  if (ctx < 2) throw Error(cat("perplexity: context ", ctx, " is too small (a window needs <bos> and at least one token: ctx >= 2)"));
  if (n_ids == 0) throw Error("perplexity: the text has no tokens");
  const size_t chunk = static_cast<size_t>(ctx - 1);
  if (n_ids < chunk)
    throw Error(cat("perplexity: the text has ", n_ids, " tokens, fewer than one chunk of ctx-1 = ", chunk,
                    " tokens; give a longer text or a smaller --ctx"));
  std::vector<PerplexityWindow> w;
  for (size_t at = 0; at < n_ids; at += chunk) w.push_back({at, std::min(chunk, n_ids - at)});
  return w;
}

double token_nll(std::span<const float> logits, int32_t target) {
  if (logits.empty() || target < 0 || static_cast<size_t>(target) >= logits.size())
    throw Error(cat("token_nll: target ", target, " outside a row of ", logits.size(), " logits"));
  const RowNorm r = row_norm(logits.data(), logits.size());
  return -log_prob(logits.data(), r, static_cast<size_t>(target));
}

double kl_divergence(std::span<const float> ref_logits, std::span<const float> model_logits) {
  if (ref_logits.size() != model_logits.size() || ref_logits.empty())
    throw Error(cat("kl_divergence: rows of ", ref_logits.size(), " and ", model_logits.size(), " logits"));
  const size_t n = ref_logits.size();
  return kl_rows(ref_logits.data(), row_norm(ref_logits.data(), n), model_logits.data(),
                 row_norm(model_logits.data(), n), n);
}

double percentile(std::vector<float>& values, double p) {
  if (values.empty()) return 0;
  if (!(p > 0 && p <= 1)) throw Error(cat("percentile: p = ", p, " is outside (0, 1]"));
  const size_t rank = static_cast<size_t>(std::ceil(p * static_cast<double>(values.size())));
  const size_t k = std::clamp<size_t>(rank, 1, values.size()) - 1;
  std::nth_element(values.begin(), values.begin() + static_cast<std::ptrdiff_t>(k), values.end());
  return values[k];
}

PerplexityResult evaluate_perplexity(const Model& model, std::span<const int32_t> ids, const PerplexityOptions& opts,
                                     const Model* reference) {
  const auto t0 = std::chrono::steady_clock::now();
  const ModelConfig& cfg = model.config();
  const size_t V = static_cast<size_t>(cfg.vocab);
  int64_t limit = cfg.max_positions;
  if (reference) {
    if (reference->config().vocab != cfg.vocab)
      throw Error(cat("perplexity: the reference model's vocabulary (", reference->config().vocab,
                      ") differs from the model's (", cfg.vocab, "); KL divergence needs the same tokens"));
    limit = std::min(limit, reference->config().max_positions);
  }
  if (opts.ctx > limit)
    throw Error(cat("perplexity: context ", opts.ctx, " exceeds the model's limit of ", limit,
                    " positions (max_position_embeddings)"));
  const std::vector<PerplexityWindow> windows = perplexity_windows(ids.size(), opts.ctx);
  const int64_t bos = opts.bos_id >= 0 ? opts.bos_id : cfg.bos_token_id;
  if (bos < 0 || bos >= cfg.vocab)
    throw Error(cat("perplexity: no usable <bos> id (", bos, "); the model config has no bos_token_id in the vocabulary"));
  for (size_t i = 0; i < ids.size(); ++i)
    if (ids[i] < 0 || ids[i] >= cfg.vocab)
      throw Error(cat("perplexity: token ", i, " has id ", ids[i], ", outside the vocabulary of ", cfg.vocab));

  PerplexityResult res;
  res.ctx = opts.ctx;
  res.windows = windows.size();
  res.tokens = ids.size();
  std::vector<float> kld_values;  // one per scored token, for the p99
  if (reference) kld_values.reserve(ids.size());
  double nll_ref_sum = 0, kld_sum = 0, kld_max = 0;
  size_t agree = 0, done = 0;
  std::vector<int32_t> seq;
  std::vector<RowStats> rows;
  for (size_t wi = 0; wi < windows.size(); ++wi) {
    const PerplexityWindow& w = windows[wi];
    // [<bos>] + chunk; the last chunk token is only a target, so the model sees bos + the first len−1 tokens.
    seq.assign(1, static_cast<int32_t>(bos));
    seq.insert(seq.end(), ids.begin() + static_cast<std::ptrdiff_t>(w.begin),
               ids.begin() + static_cast<std::ptrdiff_t>(w.begin + w.len - 1));
    DecodeState st = model.new_state();
    const std::vector<float> logits = model.forward(seq, st, LogitsMode::All);
    std::vector<float> ref_logits;
    if (reference) {
      DecodeState rs = reference->new_state();
      ref_logits = reference->forward(seq, rs, LogitsMode::All);
    }
    rows.assign(w.len, {});
    // Rows are independent; each is written by one chunk and summed afterwards in order, so the result does not
    // depend on the thread count.
    default_pool().parallel_for(w.len, 16, [&](size_t b, size_t e) {
      for (size_t i = b; i < e; ++i) {
        const float* m = &logits[i * V];
        const size_t target = static_cast<size_t>(ids[w.begin + i]);
        RowStats& r = rows[i];
        if (!(r.finite = finite_row(m, V))) continue;
        const RowNorm mn = row_norm(m, V);
        r.nll = -log_prob(m, mn, target);
        if (reference) {
          const float* q = &ref_logits[i * V];
          if (!(r.ref_finite = finite_row(q, V))) continue;
          const RowNorm qn = row_norm(q, V);
          r.nll_ref = -log_prob(q, qn, target);
          r.kld = kl_rows(q, qn, m, mn, V);
          r.top1 = qn.argmax == mn.argmax;
        }
      }
    });
    double wsum = 0, wsum_ref = 0;  // per window, then over windows: the same order for both models
    for (size_t i = 0; i < rows.size(); ++i) {
      const RowStats& r = rows[i];
      if (!r.finite || !r.ref_finite)
        throw Error(cat("perplexity: the ", r.finite ? "reference" : "model", " gave non-finite logits at token ",
                        w.begin + i, " (window ", wi, ")"));
      wsum += r.nll;
      if (reference) {
        wsum_ref += r.nll_ref;
        kld_sum += r.kld;
        kld_max = std::max(kld_max, r.kld);
        agree += r.top1 ? 1 : 0;
        kld_values.push_back(static_cast<float>(r.kld));
      }
    }
    nll_ref_sum += wsum_ref;
    res.window_nll.push_back(wsum);
    res.nll_sum += wsum;
    done += w.len;
    if (opts.progress) {
      PerplexityProgress p;
      p.windows_done = wi + 1;
      p.windows = windows.size();
      p.tokens_done = done;
      p.tokens = ids.size();
      p.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      p.running_ppl = std::exp(res.nll_sum / static_cast<double>(done));
      opts.progress(p);
    }
  }
  const double n = static_cast<double>(res.tokens);
  res.nll_mean = res.nll_sum / n;
  res.ppl = std::exp(res.nll_mean);
  if (reference) {
    KldStats k;
    k.mean = kld_sum / n;
    k.max = kld_max;
    k.p99 = percentile(kld_values, 0.99);
    k.top1_agree = static_cast<double>(agree) / n;
    k.nll_ref_mean = nll_ref_sum / n;
    k.ppl_ref = std::exp(k.nll_ref_mean);
    k.ppl_ratio = res.ppl / k.ppl_ref;
    res.kld = k;
  }
  res.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return res;
}

std::vector<int32_t> perplexity_tokens(const Tokenizer& tokenizer, std::string_view text, const std::string& source) {
  if (text.empty()) throw Error(cat(source, ": the text is empty"));
  try {
    return tokenizer.encode(text, /*add_special_tokens=*/false);
  } catch (const Error& e) {
    throw Error(cat(source, ": ", e.what()));
  }
}

}  // namespace zaya
