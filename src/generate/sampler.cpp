#include "zaya/sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "zaya/error.h"

namespace zaya {

namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();
constexpr float kPosInf = std::numeric_limits<float>::infinity();

constexpr float kExpMin = -87.0f;       // below this expf underflows to (near) zero: treated as exactly 0
constexpr size_t kBins = 1024;          // top-p histogram over log-probability (s = (l - max) / T <= 0)
constexpr float kBinsPerUnit = 16.0f;   // bin width 1/16 nat
constexpr float kBinRange = kBins / kBinsPerUnit;
constexpr size_t kBlock = 4096;         // block size for the whole-vocabulary draw

// w[i] = exp((l[i] - m) * scale) for arguments <= 0, exactly 0 below kExpMin (and for -inf). Cephes-style expf
// (about 1 ulp) in plain IEEE float arithmetic, so results are the same everywhere (unlike libm), written in one
// branch-free loop body. GCC only vectorises the selects with -fno-trapping-math, which changes no results here
// (nothing inspects FP exception flags).
#if defined(__GNUC__) && !defined(__clang__)
__attribute__((optimize("no-trapping-math")))
#endif
void exp_shifted(const float* __restrict l, float* __restrict w, size_t n, float m, float scale) {
  for (size_t i = 0; i < n; ++i) {
    const float s = (l[i] - m) * scale;
    const float x = s < kExpMin ? kExpMin : s;
    const float fx = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;  // round(x / ln 2)
    float r = x - fx * 0.693359375f;
    r = r - fx * -2.12194440e-4f;
    const float z = r * r;
    float y = 1.9875691500e-4f;
    y = y * r + 1.3981999507e-3f;
    y = y * r + 8.3334519073e-3f;
    y = y * r + 4.1665795894e-2f;
    y = y * r + 1.6666665459e-1f;
    y = y * r + 5.0000001201e-1f;
    y = y * z + r + 1.0f;
    const float e = y * __builtin_bit_cast(float, (static_cast<int32_t>(fx) + 127) << 23);  // no std:: call: see above
    w[i] = s < kExpMin ? 0.0f : e;
  }
}

// Largest value (NaN-free input), with 8 independent lanes so it vectorises.
#if defined(__GNUC__) && !defined(__clang__)
__attribute__((optimize("no-trapping-math")))
#endif
float max_value(const float* __restrict l, size_t n) {
  float acc[8];
  for (float& a : acc) a = -std::numeric_limits<float>::infinity();
  size_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (size_t j = 0; j < 8; ++j) acc[j] = l[i + j] > acc[j] ? l[i + j] : acc[j];
  for (; i < n; ++i) acc[0] = l[i] > acc[0] ? l[i] : acc[0];
  float m = acc[0];
  for (float a : acc) m = a > m ? a : m;
  return m;
}

// Sum with 8 fixed partial sums: fast without reassociation flags, and the same order on every machine.
double sum(const float* w, size_t n) {
  double acc[8] = {};
  size_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (size_t j = 0; j < 8; ++j) acc[j] += w[i + j];
  for (; i < n; ++i) acc[i % 8] += w[i];
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

// Strict weak order "more likely first", ties broken by lower id, so every partial sort is deterministic.
struct MoreLikely {
  const float* l;
  bool operator()(int a, int b) const { return l[a] > l[b] || (l[a] == l[b] && a < b); }
};

}  // namespace

void validate(const SamplingParams& p, size_t vocab) {
  if (vocab == 0) throw Error("sampler: vocabulary size must be positive");
  if (!(p.temperature >= 0.0f) || !std::isfinite(p.temperature))
    throw Error(cat("sampling: temperature must be a finite number >= 0, got ", p.temperature));
  if (p.top_k < 0) throw Error(cat("sampling: top_k must be >= 0 (0 disables it), got ", p.top_k));
  if (!(p.top_p > 0.0f && p.top_p <= 1.0f))
    throw Error(cat("sampling: top_p must be in (0, 1], got ", p.top_p));
  if (!(p.min_p >= 0.0f && p.min_p <= 1.0f))
    throw Error(cat("sampling: min_p must be in [0, 1], got ", p.min_p));
  if (!(p.repetition_penalty > 0.0f) || !std::isfinite(p.repetition_penalty))
    throw Error(cat("sampling: repetition_penalty must be a finite number > 0, got ", p.repetition_penalty));
  if (!std::isfinite(p.presence_penalty))
    throw Error(cat("sampling: presence_penalty must be finite, got ", p.presence_penalty));
  if (!std::isfinite(p.frequency_penalty))
    throw Error(cat("sampling: frequency_penalty must be finite, got ", p.frequency_penalty));
  if (p.penalty_last_n < -1)
    throw Error(cat("sampling: penalty_last_n must be -1 (whole history), 0 (off) or positive, got ",
                    p.penalty_last_n));
  for (const auto& [id, bias] : p.logit_bias) {
    if (id < 0 || static_cast<size_t>(id) >= vocab)
      throw Error(cat("sampling: logit_bias token id ", id, " is outside the vocabulary [0, ", vocab, ")"));
    if (std::isnan(bias)) throw Error(cat("sampling: logit_bias for token ", id, " is NaN"));
  }
}

uint64_t random_seed() {
  std::random_device rd;
  return (static_cast<uint64_t>(rd()) << 32) ^ static_cast<uint64_t>(rd());
}

Sampler::Sampler(SamplingParams params, size_t vocab) : params_(std::move(params)), vocab_(vocab) {
  validate(params_, vocab_);
  rng_.seed(params_.seed);
  work_.resize(vocab_);
  counts_.assign(vocab_, 0);
}

void Sampler::reseed(uint64_t seed) {
  params_.seed = seed;
  rng_.seed(seed);
}

double Sampler::uniform() { return static_cast<double>(rng_() >> 11) * 0x1.0p-53; }

void Sampler::process(const float* logits, std::span<const int> history) {
  for (size_t i = 0; i < vocab_; ++i) work_[i] = std::isnan(logits[i]) ? kNegInf : logits[i];

  const SamplingParams& p = params_;
  const bool penalize =
      p.repetition_penalty != 1.0f || p.presence_penalty != 0.0f || p.frequency_penalty != 0.0f;
  if (penalize && p.penalty_last_n != 0 && !history.empty()) {
    size_t start = 0;
    if (p.penalty_last_n > 0 && history.size() > static_cast<size_t>(p.penalty_last_n))
      start = history.size() - static_cast<size_t>(p.penalty_last_n);
    const auto window = history.subspan(start);
    // Check first so a bad id cannot leave counts_ dirty.
    for (int t : window)
      if (t < 0 || static_cast<size_t>(t) >= vocab_)
        throw Error(cat("sampler: history token id ", t, " is outside the vocabulary [0, ", vocab_, ")"));
    for (int t : window)
      if (counts_[t]++ == 0) touched_.push_back(t);
    for (int t : touched_) {
      float l = work_[t];
      if (p.repetition_penalty != 1.0f) l = l > 0.0f ? l / p.repetition_penalty : l * p.repetition_penalty;
      l -= p.presence_penalty + p.frequency_penalty * static_cast<float>(counts_[t]);
      work_[t] = std::isnan(l) ? kNegInf : l;
      counts_[t] = 0;
    }
    touched_.clear();
  }

  for (const auto& [id, bias] : p.logit_bias) {
    const float l = work_[id] + bias;
    work_[id] = std::isnan(l) ? kNegInf : l;  // -inf logit + inf bias: the model ruled it out, keep it out
  }
}

int Sampler::choose() {
  const SamplingParams& p = params_;
  const float* l = work_.data();
  last_sorted_ = 0;

  const float m = max_value(l, vocab_);
  const size_t argmax = static_cast<size_t>(std::find(l, l + vocab_, m) - l);  // lowest id among ties
  if (m == kNegInf) throw Error("sampler: no token can be sampled (all logits are -inf or NaN after processing)");

  if (m == kPosInf) {  // exp() would give inf/inf: pick among the +inf tokens only
    if (p.temperature == 0.0f) return static_cast<int>(argmax);
    pool_.clear();
    for (size_t i = 0; i < vocab_; ++i)
      if (l[i] == kPosInf) pool_.push_back(static_cast<int>(i));
    const size_t k = std::min(pool_.size() - 1, static_cast<size_t>(uniform() * static_cast<double>(pool_.size())));
    return pool_[k];
  }
  const float inv_t = 1.0f / p.temperature;
  if (p.temperature == 0.0f || !std::isfinite(inv_t)) return static_cast<int>(argmax);  // tiny T: greedy limit

  const MoreLikely cmp{l};
  const bool use_top_p = p.top_p < 1.0f;
  // min-p keeps p >= min_p * p_max, i.e. (l - max) / T >= log(min_p).
  const float log_min_p = p.min_p > 0.0f ? std::log(p.min_p) : kNegInf;

  if (p.top_k > 0 && static_cast<size_t>(p.top_k) < vocab_) {
    // top-k by a bounded heap (one compare per token for most of the vocabulary), then sort the k survivors.
    const size_t k = static_cast<size_t>(p.top_k);
    pool_.clear();
    for (size_t i = 0; i < vocab_; ++i) {
      const int id = static_cast<int>(i);
      if (l[i] == kNegInf) continue;
      if (pool_.size() < k) {
        pool_.push_back(id);
        std::push_heap(pool_.begin(), pool_.end(), cmp);  // front: the least likely kept token
      } else if (l[i] > l[pool_.front()]) {
        std::pop_heap(pool_.begin(), pool_.end(), cmp);
        pool_.back() = id;
        std::push_heap(pool_.begin(), pool_.end(), cmp);
      }
    }
    std::sort(pool_.begin(), pool_.end(), cmp);
    last_sorted_ = pool_.size();

    // top-p is relative to the top-k mass; both filters keep a prefix of the sorted survivors.
    weight_.resize(pool_.size());
    double z = 0.0;
    for (size_t j = 0; j < pool_.size(); ++j) z += weight_[j] = std::exp((l[pool_[j]] - m) * inv_t);
    const double mass_needed = static_cast<double>(p.top_p) * z;
    size_t kept = 0;
    double total = 0.0;
    for (; kept < pool_.size(); ++kept) {
      if (kept > 0 && (l[pool_[kept]] - m) * inv_t < log_min_p) break;
      total += weight_[kept];
      if (use_top_p && total >= mass_needed) {
        ++kept;
        break;
      }
    }
    pool_.resize(kept);
    return draw(pool_, [&](size_t j) { return weight_[j]; }, total);
  }

  // Whole vocabulary: exp of every logit once (vectorised), never a full sort.
  weight_.resize(vocab_);
  float* w = weight_.data();
  exp_shifted(l, w, vocab_, m, inv_t);
  if (!use_top_p && log_min_p == kNegInf) return draw_all(w);

  pool_.clear();
  double total = 0.0;
  if (use_top_p) {
    // Histogram of probability mass over log-probability bins finds the bin where top-p's cumulative mass is
    // crossed; every token in better bins is kept unsorted and only the crossing bin is sorted.
    bin_mass_.assign(kBins, 0.0);
    auto bin_of = [&](float s) { return s <= -kBinRange ? kBins - 1 : static_cast<size_t>(-s * kBinsPerUnit); };
    for (size_t i = 0; i < vocab_; ++i)
      if (w[i] > 0.0f) bin_mass_[bin_of((l[i] - m) * inv_t)] += w[i];
    const double mass_needed = static_cast<double>(p.top_p) * sum(w, vocab_);
    size_t b = 0;
    double below = 0.0;  // mass of bins better than b
    for (; b + 1 < kBins; ++b) {
      if (below + bin_mass_[b] >= mass_needed) break;
      below += bin_mass_[b];
    }
    boundary_.clear();
    for (size_t i = 0; i < vocab_; ++i) {
      if (l[i] == kNegInf) continue;
      const float s = (l[i] - m) * inv_t;
      if (s < log_min_p) continue;
      const size_t bi = bin_of(s);
      if (bi < b) {
        pool_.push_back(static_cast<int>(i));
        total += w[i];
      } else if (bi == b) {
        boundary_.push_back(static_cast<int>(i));
      }
    }
    std::sort(boundary_.begin(), boundary_.end(), cmp);
    last_sorted_ = boundary_.size();
    double cum = below;
    for (int id : boundary_) {
      pool_.push_back(id);
      total += w[id];
      cum += w[id];
      if (cum >= mass_needed) break;
    }
  } else {
    for (size_t i = 0; i < vocab_; ++i)
      if ((l[i] - m) * inv_t >= log_min_p && l[i] != kNegInf) {
        pool_.push_back(static_cast<int>(i));
        total += w[i];
      }
  }
  return draw(pool_, [&](size_t j) { return w[pool_[j]]; }, total);
}

template <typename Weight>
int Sampler::draw(const std::vector<int>& ids, Weight weight, double total) {
  const double target = uniform() * total;
  double acc = 0.0;
  for (size_t j = 0; j < ids.size(); ++j) {
    acc += weight(j);
    if (target < acc) return ids[j];
  }
  return ids.back();  // rounding left target == total
}

int Sampler::draw_all(const float* w) {
  // Block sums first, so the draw scans one block instead of the whole vocabulary.
  const size_t n_blocks = (vocab_ + kBlock - 1) / kBlock;
  block_sum_.resize(n_blocks);
  double total = 0.0;
  for (size_t b = 0; b < n_blocks; ++b) {
    block_sum_[b] = sum(w + b * kBlock, std::min(kBlock, vocab_ - b * kBlock));
    total += block_sum_[b];
  }
  const double target = uniform() * total;
  double acc = 0.0;
  size_t b = 0;
  while (b + 1 < n_blocks && (block_sum_[b] == 0.0 || target >= acc + block_sum_[b])) acc += block_sum_[b++];
  const size_t begin = b * kBlock, end = std::min(vocab_, begin + kBlock);
  size_t last = begin;
  for (size_t i = begin; i < end; ++i) {
    if (w[i] == 0.0f) continue;
    acc += w[i];
    last = i;
    if (target < acc) break;
  }
  return static_cast<int>(last);  // also the rounding case target == total
}

int Sampler::sample(const float* logits, std::span<const int> history) {
  process(logits, history);
  return choose();
}

SampleResult Sampler::sample_with_logprobs(const float* logits, std::span<const int> history, int top_n) {
  if (top_n < 0) throw Error(cat("sampler: top_n must be >= 0, got ", top_n));
  SampleResult r;
  r.token = sample(logits, history);

  // Raw-logit log-softmax; reuse work_ for the sanitised raw logits.
  for (size_t i = 0; i < vocab_; ++i) work_[i] = std::isnan(logits[i]) ? kNegInf : logits[i];
  const float* l = work_.data();
  const float m = *std::max_element(work_.begin(), work_.end());
  // Finite max: the usual log-sum-exp. +inf max: the +inf tokens share all the mass. All -inf: every logprob -inf.
  double lse = 0.0;
  if (std::isfinite(m)) {
    weight_.resize(vocab_);
    exp_shifted(l, weight_.data(), vocab_, m, 1.0f);
    lse = static_cast<double>(m) + std::log(sum(weight_.data(), vocab_));
  } else if (m == kPosInf) {
    lse = std::log(static_cast<double>(std::count(work_.begin(), work_.end(), kPosInf)));
  }
  auto lp = [&](int id) -> float {
    if (std::isfinite(m)) return static_cast<float>(l[id] - lse);
    if (m == kPosInf && l[id] == kPosInf) return static_cast<float>(-lse);
    return kNegInf;
  };
  r.logprob = lp(r.token);

  const size_t n = std::min(static_cast<size_t>(top_n), vocab_);
  if (n > 0) {
    pool_.resize(vocab_);
    for (size_t i = 0; i < vocab_; ++i) pool_[i] = static_cast<int>(i);
    const MoreLikely cmp{l};
    std::nth_element(pool_.begin(), pool_.begin() + (n - 1), pool_.end(), cmp);
    std::sort(pool_.begin(), pool_.begin() + n, cmp);
    r.top.reserve(n);
    for (size_t j = 0; j < n; ++j) r.top.push_back({pool_[j], lp(pool_[j])});
  }
  return r;
}

}  // namespace zaya
