#include "zaya/sampler.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <numeric>
#include <vector>

#include "zaya/error.h"

namespace {

using zaya::Sampler;
using zaya::SamplingParams;

constexpr float kInf = std::numeric_limits<float>::infinity();

SamplingParams params(float temperature, uint64_t seed = 1) {
  SamplingParams p;
  p.temperature = temperature;
  p.seed = seed;
  return p;
}

std::vector<double> softmax(const std::vector<float>& l, double t = 1.0) {
  const double m = *std::max_element(l.begin(), l.end());
  std::vector<double> p(l.size());
  double z = 0;
  for (size_t i = 0; i < l.size(); ++i) z += p[i] = std::exp((l[i] - m) / t);
  for (double& x : p) x /= z;
  return p;
}

std::vector<int> histogram(Sampler& s, const std::vector<float>& logits, int n, std::span<const int> hist = {}) {
  std::vector<int> h(logits.size(), 0);
  for (int i = 0; i < n; ++i) ++h[s.sample(logits.data(), hist)];
  return h;
}

// Pearson chi-square of observed counts against probabilities (cells with p == 0 must be empty).
double chi_square(const std::vector<int>& obs, const std::vector<double>& p, int n) {
  double chi = 0;
  for (size_t i = 0; i < obs.size(); ++i) {
    if (p[i] == 0) {
      EXPECT_EQ(obs[i], 0) << "token " << i << " has probability 0";
      continue;
    }
    const double e = p[i] * n;
    chi += (obs[i] - e) * (obs[i] - e) / e;
  }
  return chi;
}

// Deterministic pseudo-normal logits (sum of uniforms), independent of the sampler's RNG.
std::vector<float> random_logits(size_t n, uint64_t seed, float scale = 3.0f) {
  std::vector<float> l(n);
  uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
  auto next = [&] {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    return static_cast<float>((x >> 11) * 0x1.0p-53);
  };
  for (auto& v : l) v = scale * (next() + next() + next() + next() - 2.0f);
  return l;
}

TEST(Sampler, GreedyIsArgmaxLowestIdOnTies) {
  Sampler s(params(0.0f), 6);
  const std::vector<float> l = {0.1f, 3.0f, -2.0f, 3.0f, 2.9f, 1.0f};
  for (int i = 0; i < 5; ++i) EXPECT_EQ(s.sample(l.data(), {}), 1);
  for (uint64_t seed = 0; seed < 20; ++seed) {
    auto r = random_logits(1000, seed);
    Sampler g(params(0.0f), r.size());
    EXPECT_EQ(g.sample(r.data(), {}), std::max_element(r.begin(), r.end()) - r.begin());
  }
}

TEST(Sampler, TemperatureDistributionMatchesSoftmax) {
  const std::vector<float> l = {1.0f, 2.0f, 3.0f, 0.5f, -1.0f};
  const int n = 40000;
  for (float t : {1.0f, 0.5f, 2.0f}) {
    Sampler s(params(t, 1234), l.size());
    auto h = histogram(s, l, n);
    // 4 degrees of freedom: P(chi2 > 25) ~ 5e-5.
    EXPECT_LT(chi_square(h, softmax(l, t), n), 25.0) << "temperature " << t;
  }
}

TEST(Sampler, TopK1EqualsGreedy) {
  for (uint64_t seed = 0; seed < 30; ++seed) {
    auto l = random_logits(5000, seed);
    SamplingParams p = params(1.5f, seed);
    p.top_k = 1;
    Sampler s(p, l.size()), g(params(0.0f), l.size());
    EXPECT_EQ(s.sample(l.data(), {}), g.sample(l.data(), {}));
  }
}

TEST(Sampler, TopKRestrictsToKBest) {
  const std::vector<float> l = {1.0f, 4.0f, 3.0f, 0.5f, 2.0f, -1.0f};
  SamplingParams p = params(1.0f, 7);
  p.top_k = 3;
  Sampler s(p, l.size());
  const int n = 30000;
  auto h = histogram(s, l, n);
  // Survivors 1, 2, 4 renormalised.
  std::vector<double> expect(l.size(), 0.0);
  const double z = std::exp(4.0) + std::exp(3.0) + std::exp(2.0);
  expect[1] = std::exp(4.0) / z, expect[2] = std::exp(3.0) / z, expect[4] = std::exp(2.0) / z;
  EXPECT_LT(chi_square(h, expect, n), 22.0);
}

TEST(Sampler, CombinedFiltersAndBannedTokens) {
  // probs 0.4 0.3 0.2 0.1 (+ a banned token): top_k 3 -> mass 0.9; top_p 0.7 of it needs 0.63 -> {0, 1};
  // with min_p 0.8 only token 0 would survive.
  const std::vector<float> l = {std::log(0.4f), std::log(0.3f), -kInf, std::log(0.2f), std::log(0.1f)};
  SamplingParams p = params(1.0f, 17);
  p.top_k = 3;
  p.top_p = 0.7f;
  Sampler s(p, l.size());
  const int n = 20000;
  auto h = histogram(s, l, n);
  EXPECT_LT(chi_square(h, {4.0 / 7, 3.0 / 7, 0, 0, 0}, n), 16.0);
  p.min_p = 0.8f;
  Sampler strict(p, l.size());
  for (int i = 0; i < 100; ++i) EXPECT_EQ(strict.sample(l.data(), {}), 0);
  // top_k larger than the number of live tokens.
  SamplingParams q = params(1.0f, 3);
  q.top_k = 4;
  std::vector<float> mostly_banned(100, -kInf);
  mostly_banned[10] = 0.0f, mostly_banned[90] = 0.0f;
  Sampler few(q, mostly_banned.size());
  auto hb = histogram(few, mostly_banned, 2000);
  EXPECT_EQ(hb[10] + hb[90], 2000);
  EXPECT_GT(hb[10], 800);
  EXPECT_GT(hb[90], 800);
}

TEST(Sampler, TinyTopPKeepsOnlyTopToken) {
  auto l = random_logits(2000, 3, 1.0f);
  const int best = static_cast<int>(std::max_element(l.begin(), l.end()) - l.begin());
  SamplingParams p = params(1.0f, 3);
  p.top_p = 1e-6f;
  Sampler s(p, l.size());
  for (int i = 0; i < 200; ++i) EXPECT_EQ(s.sample(l.data(), {}), best);
}

TEST(Sampler, TopPKeepsSmallestPrefixReachingMass) {
  // probs 0.4 0.3 0.2 0.1: top_p 0.6 keeps {0, 1} (0.4 < 0.6 <= 0.7), renormalised 4:3.
  const std::vector<float> l = {std::log(0.4f), std::log(0.3f), std::log(0.2f), std::log(0.1f)};
  SamplingParams p = params(1.0f, 11);
  p.top_p = 0.6f;
  Sampler s(p, l.size());
  const int n = 20000;
  auto h = histogram(s, l, n);
  EXPECT_LT(chi_square(h, {4.0 / 7, 3.0 / 7, 0, 0}, n), 16.0);
}

TEST(Sampler, TopPGrowsCandidateSetBeyondFirstBatch) {
  // 1000 equal logits: top_p 0.5 needs ~500 candidates (ties ordered by id), more than the first batch of 64.
  std::vector<float> l(1000, 0.0f);
  SamplingParams p = params(1.0f, 5);
  p.top_p = 0.5f;
  Sampler s(p, l.size());
  int max_id = 0;
  for (int i = 0; i < 3000; ++i) max_id = std::max(max_id, s.sample(l.data(), {}));
  EXPECT_GE(max_id, 450);
  EXPECT_LE(max_id, 501);
  EXPECT_GE(s.last_sorted_count(), 500u);
}

TEST(Sampler, MinPFiltersRelativeToMax) {
  // probs 0.5 0.3 0.15 0.05; min_p 0.2 -> threshold 0.1: token 3 is dropped.
  const std::vector<float> l = {std::log(0.5f), std::log(0.3f), std::log(0.15f), std::log(0.05f)};
  SamplingParams p = params(1.0f, 13);
  p.min_p = 0.2f;
  Sampler s(p, l.size());
  const int n = 20000;
  auto h = histogram(s, l, n);
  EXPECT_LT(chi_square(h, {0.5 / 0.95, 0.3 / 0.95, 0.15 / 0.95, 0}, n), 20.0);
  // min_p 1 keeps only the max.
  p.min_p = 1.0f;
  Sampler only(p, l.size());
  for (int i = 0; i < 100; ++i) EXPECT_EQ(only.sample(l.data(), {}), 0);
}

TEST(Sampler, RepetitionPenaltyDividesPositiveMultipliesNegative) {
  SamplingParams p = params(0.0f);
  p.repetition_penalty = 1.2f;
  Sampler s(p, 3);
  const std::vector<int> hist = {0};
  const std::vector<float> pos = {2.0f, 1.9f, 0.0f};  // 2 / 1.2 = 1.67 < 1.9
  EXPECT_EQ(s.sample(pos.data(), hist), 1);
  EXPECT_EQ(s.sample(pos.data(), {}), 0);
  const std::vector<float> neg = {-1.0f, -1.1f, -5.0f};  // -1 * 1.2 = -1.2 < -1.1
  EXPECT_EQ(s.sample(neg.data(), hist), 1);
  // The caller's logits are untouched.
  EXPECT_EQ(pos[0], 2.0f);
}

TEST(Sampler, PresenceAndFrequencyPenalties) {
  const std::vector<float> l = {1.0f, 0.5f};
  {
    SamplingParams p = params(0.0f);
    p.presence_penalty = 0.6f;  // 1.0 - 0.6 = 0.4 < 0.5
    Sampler s(p, 2);
    EXPECT_EQ(s.sample(l.data(), std::vector<int>{0}), 1);
    EXPECT_EQ(s.sample(l.data(), std::vector<int>{1}), 0);
  }
  {
    SamplingParams p = params(0.0f);
    p.frequency_penalty = 0.2f;  // count 1: 0.8 > 0.5; count 3: 0.4 < 0.5
    Sampler s(p, 2);
    EXPECT_EQ(s.sample(l.data(), std::vector<int>{0}), 0);
    EXPECT_EQ(s.sample(l.data(), std::vector<int>{0, 0, 0}), 1);
    // Negative penalties encourage repetition.
    SamplingParams q = params(0.0f);
    q.presence_penalty = -1.0f;
    Sampler enc(q, 2);
    EXPECT_EQ(enc.sample(l.data(), std::vector<int>{1}), 1);
  }
}

TEST(Sampler, PenaltyWindow) {
  const std::vector<float> l = {1.0f, 0.5f};
  const std::vector<int> hist = {0, 0, 0, 0, 1};
  SamplingParams p = params(0.0f);
  p.frequency_penalty = 0.2f;
  p.penalty_last_n = 1;  // only the last token counts: 1.0 vs 0.5 - 0.2
  EXPECT_EQ(Sampler(p, 2).sample(l.data(), hist), 0);
  p.penalty_last_n = -1;  // whole history: 1.0 - 0.8 = 0.2 vs 0.3
  EXPECT_EQ(Sampler(p, 2).sample(l.data(), hist), 1);
  p.penalty_last_n = 2;  // window {0, 1}: 0.8 vs 0.3
  EXPECT_EQ(Sampler(p, 2).sample(l.data(), hist), 0);
  p.penalty_last_n = 0;  // off
  EXPECT_EQ(Sampler(p, 2).sample(l.data(), std::vector<int>{0, 0, 0, 0, 0}), 0);
  // Out-of-vocabulary history ids are rejected, and the sampler still works afterwards.
  p.penalty_last_n = 64;
  Sampler s(p, 2);
  EXPECT_THROW(s.sample(l.data(), std::vector<int>{0, 7}), zaya::Error);
  EXPECT_EQ(s.sample(l.data(), {}), 0);
}

TEST(Sampler, LogitBiasForcesAndBans) {
  auto l = random_logits(500, 9);
  const int best = static_cast<int>(std::max_element(l.begin(), l.end()) - l.begin());
  {
    SamplingParams p = params(1.0f, 2);
    p.logit_bias[17] = 100.0f;  // OpenAI-style forcing
    Sampler s(p, l.size());
    for (int i = 0; i < 50; ++i) EXPECT_EQ(s.sample(l.data(), {}), 17);
  }
  {
    SamplingParams p = params(1.0f, 2);
    p.logit_bias[23] = kInf;
    p.logit_bias[42] = kInf;
    Sampler s(p, l.size());
    auto h = histogram(s, l, 400);
    EXPECT_EQ(h[23] + h[42], 400);
    EXPECT_GT(h[23], 100);
    EXPECT_GT(h[42], 100);
  }
  {
    SamplingParams p = params(0.0f);
    p.logit_bias[best] = -kInf;
    Sampler s(p, l.size());
    EXPECT_NE(s.sample(l.data(), {}), best);
  }
  {
    // Ban everything but one token with -100s: temperature sampling lands on it.
    SamplingParams p = params(1.0f, 4);
    for (int i = 0; i < 10; ++i) p.logit_bias[i] = i == 6 ? 0.0f : -100.0f;
    Sampler s(p, 10);
    std::vector<float> flat(10, 0.0f);
    for (int i = 0; i < 50; ++i) EXPECT_EQ(s.sample(flat.data(), {}), 6);
  }
}

TEST(Sampler, SameSeedSameSequenceDifferentSeedsDiffer) {
  auto l = random_logits(1000, 21, 0.5f);
  auto run = [&](uint64_t seed) {
    SamplingParams p = params(1.0f, seed);
    p.top_k = 200;
    p.top_p = 0.95f;
    Sampler s(p, l.size());
    std::vector<int> out;
    for (int i = 0; i < 64; ++i) out.push_back(s.sample(l.data(), out));
    return out;
  };
  EXPECT_EQ(run(42), run(42));
  EXPECT_NE(run(42), run(43));
  // reseed restarts the stream.
  SamplingParams p = params(1.0f, 42);
  Sampler s(p, l.size());
  const int a = s.sample(l.data(), {});
  s.reseed(42);
  EXPECT_EQ(s.sample(l.data(), {}), a);
}

TEST(Sampler, LargeVocabTopKTopPWithoutFullSort) {
  const size_t vocab = 262272;
  auto l = random_logits(vocab, 77, 2.0f);
  std::vector<int> order(vocab);
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](int a, int b) { return l[a] > l[b] || (l[a] == l[b] && a < b); });

  struct Case {
    int top_k;
    float top_p, min_p, temperature;
  };
  for (const Case c : {Case{40, 1.0f, 0.0f, 1.0f}, Case{0, 0.9f, 0.0f, 0.7f}, Case{50, 0.9f, 0.0f, 1.0f},
                       Case{0, 1.0f, 0.05f, 1.0f}, Case{0, 1.0f, 0.0f, 1.0f}}) {
    SamplingParams p = params(c.temperature, 99);
    p.top_k = c.top_k, p.top_p = c.top_p, p.min_p = c.min_p;
    // Reference survivor set from a full sort.
    std::vector<double> prob(vocab);
    const size_t k = c.top_k > 0 ? static_cast<size_t>(c.top_k) : vocab;
    double z = 0;
    for (size_t j = 0; j < k; ++j) z += prob[j] = std::exp((l[order[j]] - l[order[0]]) / c.temperature);
    size_t keep = k;
    if (c.top_p < 1.0f) {
      double cum = 0;
      for (keep = 0; keep < k && cum < c.top_p * z;) cum += prob[keep++];
    }
    if (c.min_p > 0.0f) {
      size_t j = 1;
      while (j < keep && prob[j] >= c.min_p) ++j;  // prob[0] == 1
      keep = j;
    }
    std::vector<char> allowed(vocab, 0);
    for (size_t j = 0; j < keep; ++j) allowed[order[j]] = 1;

    Sampler s(p, vocab);
    const int n = 30;
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < n; ++i) {
      const int tok = s.sample(l.data(), {});
      ASSERT_TRUE(allowed[tok]) << "token " << tok << " outside the reference set (keep " << keep << ")";
    }
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count() / n;
    EXPECT_LT(s.last_sorted_count(), vocab / 8) << "top_k " << c.top_k << " top_p " << c.top_p;
    EXPECT_LT(ms, 50.0) << "per-token sampling too slow";
    std::printf("[ info ] vocab %zu top_k %d top_p %.2f min_p %.2f: %.3f ms/token, sorted %zu, survivors %zu\n",
                vocab, c.top_k, c.top_p, c.min_p, ms, s.last_sorted_count(), keep);
  }
}

TEST(Sampler, NanAndInfLogitsDoNotCrash) {
  std::vector<float> l = {std::nanf(""), 1.0f, std::nanf(""), 0.5f};
  for (float t : {0.0f, 1.0f}) {
    SamplingParams p = params(t, 3);
    p.top_p = 0.9f;
    Sampler s(p, l.size());
    for (int i = 0; i < 50; ++i) {
      const int tok = s.sample(l.data(), {});
      EXPECT_TRUE(tok == 1 || tok == 3);
    }
  }
  std::vector<float> inf = {0.0f, kInf, 2.0f, -kInf};
  Sampler s(params(1.0f), inf.size());
  EXPECT_EQ(s.sample(inf.data(), {}), 1);
  std::vector<float> dead = {std::nanf(""), -kInf, std::nanf("")};
  Sampler d(params(1.0f), dead.size());
  EXPECT_THROW(d.sample(dead.data(), {}), zaya::Error);
  SamplingParams rp = params(0.0f);
  rp.repetition_penalty = 1.5f;
  Sampler r(rp, inf.size());
  EXPECT_EQ(r.sample(inf.data(), std::vector<int>{1, 3}), 1);  // inf / 1.5 stays inf
}

TEST(Sampler, LogprobsAreRawLogSoftmax) {
  const std::vector<float> l = {1.0f, 2.0f, 3.0f, 0.5f, -1.0f};
  SamplingParams p = params(0.3f, 8);
  p.repetition_penalty = 3.0f;
  p.logit_bias[4] = 2.0f;
  Sampler s(p, l.size());
  const auto ref = softmax(l);
  for (int i = 0; i < 20; ++i) {
    auto r = s.sample_with_logprobs(l.data(), std::vector<int>{2}, 3);
    EXPECT_NEAR(r.logprob, std::log(ref[r.token]), 1e-5);
    ASSERT_EQ(r.top.size(), 3u);
    EXPECT_EQ(r.top[0].token, 2);
    EXPECT_EQ(r.top[1].token, 1);
    EXPECT_EQ(r.top[2].token, 0);
    for (const auto& t : r.top) EXPECT_NEAR(t.logprob, std::log(ref[t.token]), 1e-5);
  }
  auto all = s.sample_with_logprobs(l.data(), {}, 100);
  EXPECT_EQ(all.top.size(), l.size());
  double sum = 0;
  for (const auto& t : all.top) sum += std::exp(t.logprob);
  EXPECT_NEAR(sum, 1.0, 1e-5);
  EXPECT_THROW(s.sample_with_logprobs(l.data(), {}, -1), zaya::Error);
}

TEST(Sampler, RejectsInvalidParams) {
  auto bad = [](auto mutate, size_t vocab = 10) {
    SamplingParams p;
    mutate(p);
    EXPECT_THROW(Sampler(p, vocab), zaya::Error);
  };
  bad([](SamplingParams& p) { p.temperature = -0.1f; });
  bad([](SamplingParams& p) { p.temperature = std::nanf(""); });
  bad([](SamplingParams& p) { p.top_k = -1; });
  bad([](SamplingParams& p) { p.top_p = 0.0f; });
  bad([](SamplingParams& p) { p.top_p = 1.5f; });
  bad([](SamplingParams& p) { p.min_p = -0.1f; });
  bad([](SamplingParams& p) { p.min_p = 1.1f; });
  bad([](SamplingParams& p) { p.repetition_penalty = 0.0f; });
  bad([](SamplingParams& p) { p.frequency_penalty = kInf; });
  bad([](SamplingParams& p) { p.penalty_last_n = -2; });
  bad([](SamplingParams& p) { p.logit_bias[10] = 1.0f; });
  bad([](SamplingParams& p) { p.logit_bias[-1] = 1.0f; });
  bad([](SamplingParams& p) { p.logit_bias[3] = std::nanf(""); });
  bad([](SamplingParams&) {}, 0);
  try {
    SamplingParams p;
    p.top_p = 2.0f;
    Sampler s(p, 10);
    FAIL() << "no error";
  } catch (const zaya::Error& e) {
    EXPECT_NE(std::string(e.what()).find("top_p"), std::string::npos) << e.what();
  }
  SamplingParams ok;
  ok.top_k = 1000;  // larger than the vocabulary is fine
  EXPECT_NO_THROW(Sampler(ok, 10));
}

}  // namespace
