// Golden tests of the forward pass against data made by the reference PyTorch code (tests/data/golden/zaya1-text).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "test_util.h"
#include "zaya/error.h"
#include "zaya/model.h"
#include "io/safetensors.h"
#include "util/thread_pool.h"
#include "zaya/perplexity.h"

using nlohmann::json;
using namespace zaya;

namespace {

std::string tiny_a() { return test::require_path(test::data_dir() + "/golden/zaya1-text/tiny-a"); }
std::string trained_small() { return test::require_path(test::data_dir() + "/golden/zaya1-text/trained-small"); }

struct Golden {
  TensorStore cases;
  json meta;
  explicit Golden(const std::string& dir)
      : cases(TensorStore::open(test::require_path(dir + "/cases.safetensors"))),
        meta(json::parse(test::read_file(dir + "/cases.json"))) {}
  std::vector<float> f32(const std::string& name) const { return to_f32(cases.require(name)); }
  std::vector<int64_t> i64(const std::string& name) const { return to_i64(cases.require(name)); }
};

std::unique_ptr<Model> load_quiet(const std::string& dir, std::optional<SkipRoute> skip = std::nullopt) {
  LoadOptions o;
  o.verbose = false;
  if (skip) o.override_skip_route = true, o.skip_route = *skip;
  return Model::load(dir, o);
}

std::vector<int32_t> ids_of(const json& j) { return j.get<std::vector<int32_t>>(); }

// max |a-b| / max(1, |ref|) style check; returns the worst scaled difference.
double max_scaled_diff(const std::vector<float>& got, const std::vector<float>& ref, bool relative) {
  EXPECT_EQ(got.size(), ref.size());
  double worst = 0;
  for (size_t i = 0; i < std::min(got.size(), ref.size()); ++i) {
    double d = std::fabs(static_cast<double>(got[i]) - ref[i]);
    if (relative) d /= std::max(1.0, std::fabs(static_cast<double>(ref[i])));
    if (!(d <= worst)) worst = std::isnan(d) ? INFINITY : d;
  }
  return worst;
}

void expect_logits(const std::vector<float>& got, const std::vector<float>& ref, size_t V, const std::string& what,
                   double tol = 1e-4) {
  ASSERT_EQ(got.size(), ref.size()) << what;
  EXPECT_LE(max_scaled_diff(got, ref, false), tol) << what;
  for (size_t t = 0; t < ref.size() / V; ++t) {
    auto a = std::max_element(got.begin() + t * V, got.begin() + (t + 1) * V) - (got.begin() + t * V);
    auto b = std::max_element(ref.begin() + t * V, ref.begin() + (t + 1) * V) - (ref.begin() + t * V);
    EXPECT_EQ(a, b) << what << ": argmax differs at row " << t;
  }
}

size_t argmax(const float* v, size_t n) { return std::max_element(v, v + n) - v; }

}  // namespace

TEST(ModelGolden, FullPrefillLogitsLegacy) {
  Golden g(tiny_a());
  auto m = load_quiet(tiny_a());
  DecodeState st = m->new_state();
  auto logits = m->forward(ids_of(g.meta["full"]["ids"]), st);
  expect_logits(logits, g.f32("full.logits"), m->config().vocab, "full.logits");
}

TEST(ModelGolden, PerLayerInternals) {
  Golden g(tiny_a());
  auto m = load_quiet(tiny_a());
  DecodeState st = m->new_state();
  ForwardTrace tr;
  m->forward(ids_of(g.meta["full"]["ids"]), st, LogitsMode::All, &tr);
  int compared = 0;
  for (const auto& name : g.cases.names()) {
    if (name.rfind("full.", 0) != 0 || name == "full.logits") continue;
    const std::string key = name.substr(5);
    ASSERT_TRUE(tr.tensors.count(key)) << "trace lacks " << key;
    const auto& got = tr.tensors.at(key);
    if (key.find(".choice") != std::string::npos) {
      auto ref = g.i64(name);
      ASSERT_EQ(got.size(), ref.size());
      for (size_t i = 0; i < ref.size(); ++i) EXPECT_EQ(static_cast<int64_t>(got[i]), ref[i]) << key << " token " << i;
    } else {
      EXPECT_LE(max_scaled_diff(got, g.f32(name), true), 1e-4) << key;
    }
    ++compared;
  }
  // residual_in/mixer_out per layer, q/k/v per attention layer, 4 router tensors per MoE layer, finals.
  const int L = static_cast<int>(m->config().legacy_layers());
  EXPECT_EQ(compared, 2 * L + 3 * (L / 2) + 4 * (L / 2) + 2);
}

TEST(ModelGolden, PrefillThenDecodeEveryK) {
  Golden g(tiny_a());
  auto m = load_quiet(tiny_a());
  const size_t V = m->config().vocab;
  ASSERT_FALSE(g.meta["decode"].empty());
  for (const auto& d : g.meta["decode"]) {
    const size_t K = d["prefill_len"].get<size_t>();
    const auto ids = ids_of(d["ids"]);
    DecodeState st = m->new_state();
    std::vector<float> logits = m->forward(std::span(ids).first(K), st);
    // The state right after the prefill, against the reference cache.
    const std::string sp = "decode_k" + std::to_string(K) + ".state_after_prefill.";
    const auto& c = m->config();
    for (int64_t l = 0; l < c.n_blocks; ++l) {
      const auto& ls = st.layer(l);
      const std::string n = std::to_string(2 * l);
      auto conv = g.f32(sp + "conv_state." + n);  // [C, 2]
      std::vector<float> conv_t(conv.size());
      for (int64_t ch = 0; ch < c.conv_channels(); ++ch)
        for (int j = 0; j < 2; ++j) conv_t[ch * 2 + j] = ls.conv_state[j * c.conv_channels() + ch];
      EXPECT_LE(max_scaled_diff(conv_t, conv, true), 1e-4) << sp << "conv_state." << n;
      EXPECT_LE(max_scaled_diff(ls.prev_x, g.f32(sp + "prev_hs." + n), true), 1e-4) << "prev_hs." << n;
      for (const char* kv : {"k_cache", "v_cache"}) {
        auto ref = g.f32(sp + kv + "." + n);  // [nk, K, dh]
        const auto& cache = std::string(kv) == "k_cache" ? ls.k_cache : ls.v_cache;
        std::vector<float> got(ref.size());
        for (int64_t j = 0; j < c.n_kv_heads; ++j)
          for (size_t t = 0; t < K; ++t)
            for (int64_t i = 0; i < c.head_dim; ++i)
              got[(j * K + t) * c.head_dim + i] = cache[(j * ls.kv_capacity + t) * c.head_dim + i];
        EXPECT_LE(max_scaled_diff(got, ref, true), 1e-4) << kv << "." << n;
      }
    }
    for (size_t t = K; t < ids.size(); ++t) {
      auto row = m->forward(std::span(ids).subspan(t, 1), st);
      logits.insert(logits.end(), row.begin(), row.end());
    }
    EXPECT_EQ(st.position(), static_cast<int64_t>(ids.size()));
    expect_logits(logits, g.f32(d["logits_tensor"].get<std::string>()), V, "decode K=" + std::to_string(K));
  }
}

TEST(ModelGolden, ChunkedPrefillEqualsFull) {
  Golden g(tiny_a());
  auto m = load_quiet(tiny_a());
  const auto ids = ids_of(g.meta["full"]["ids"]);
  DecodeState st = m->new_state();
  std::vector<float> logits;
  size_t at = 0;
  for (size_t chunk : {3, 5, 12}) {
    auto part = m->forward(std::span(ids).subspan(at, chunk), st);
    logits.insert(logits.end(), part.begin(), part.end());
    at += chunk;
  }
  ASSERT_EQ(at, ids.size());
  expect_logits(logits, g.f32("full.logits"), m->config().vocab, "3+5+12 chunks");
}

TEST(ModelGolden, GreedyContinuation) {
  Golden g(tiny_a());
  auto m = load_quiet(tiny_a());
  const size_t V = m->config().vocab;
  auto ids = ids_of(g.meta["greedy"]["prompt_ids"]);
  const auto want = g.meta["greedy"]["generated_ids"].get<std::vector<int32_t>>();
  DecodeState st = m->new_state();
  std::vector<float> step_logits, last = m->forward(ids, st, LogitsMode::Last);
  std::vector<int32_t> got;
  for (size_t i = 0; i < want.size(); ++i) {
    step_logits.insert(step_logits.end(), last.begin(), last.end());
    int32_t next = static_cast<int32_t>(argmax(last.data(), V));
    got.push_back(next);
    if (i + 1 < want.size()) last = m->forward(std::span(&next, 1), st, LogitsMode::Last);
  }
  EXPECT_EQ(got, want);
  expect_logits(step_logits, g.f32("greedy.step_logits"), V, "greedy.step_logits");
}

TEST(ModelGolden, TwoSequencesWithSeparateStates) {
  Golden g(tiny_a());
  auto m = load_quiet(tiny_a());
  const size_t V = m->config().vocab;
  const auto& seqs = g.meta["batch"]["sequences"];
  ASSERT_EQ(seqs.size(), 2u);
  // Interleave the two sequences token by token after a short prefill, so any state leaking between them shows.
  std::vector<std::vector<int32_t>> ids = {ids_of(seqs[0]), ids_of(seqs[1])};
  std::vector<DecodeState> st = {m->new_state(), m->new_state()};
  std::vector<std::vector<float>> logits(2);
  for (int b = 0; b < 2; ++b) logits[b] = m->forward(std::span(ids[b]).first(4), st[b]);
  for (size_t t = 4; t < std::max(ids[0].size(), ids[1].size()); ++t)
    for (int b = 0; b < 2; ++b)
      if (t < ids[b].size()) {
        auto row = m->forward(std::span(ids[b]).subspan(t, 1), st[b]);
        logits[b].insert(logits[b].end(), row.begin(), row.end());
      }
  for (int b = 0; b < 2; ++b)
    expect_logits(logits[b], g.f32(g.meta["batch"]["logits_tensors"][b].get<std::string>()), V,
                  "batch seq" + std::to_string(b));
}

TEST(ModelGolden, SkipRouteZeroAlternative) {
  Golden g(tiny_a());
  auto m = load_quiet(tiny_a(), SkipRoute::Zero);
  DecodeState st = m->new_state();
  expect_logits(m->forward(ids_of(g.meta["full"]["ids"]), st), g.f32("full_native_skip_zero.logits"),
                m->config().vocab, "skip -> 0");
}

TEST(ModelGolden, NativeLayoutSameNumbers) {
  Golden g(tiny_a());
  const std::string native = test::require_path(tiny_a() + "/native");
  const auto ids = ids_of(g.meta["full"]["ids"]);
  {
    auto m = load_quiet(native);
    EXPECT_EQ(m->config().layout, Layout::Native);
    EXPECT_EQ(m->skip_route(), SkipRoute::Zero);  // the native layout's default
    DecodeState st = m->new_state();
    expect_logits(m->forward(ids, st), g.f32("full_native_skip_zero.logits"), m->config().vocab, "native default");
  }
  {
    auto m = load_quiet(native, SkipRoute::ScaledInput);
    DecodeState st = m->new_state();
    expect_logits(m->forward(ids, st), g.f32("full.logits"), m->config().vocab, "native with p*x");
    // prefill 12 + decode on the native layout too.
    DecodeState st2 = m->new_state();
    auto logits = m->forward(std::span(ids).first(12), st2);
    for (size_t t = 12; t < ids.size(); ++t) {
      auto row = m->forward(std::span(ids).subspan(t, 1), st2);
      logits.insert(logits.end(), row.begin(), row.end());
    }
    expect_logits(logits, g.f32("decode_k12.logits"), m->config().vocab, "native decode k12");
  }
}

// Weights read into memory (the default when they fit) and weights mapped from the files give the same numbers.
TEST(ModelGolden, CopiedAndMappedWeightsSameLogits) {
  Golden g(tiny_a());
  const auto ids = ids_of(g.meta["full"]["ids"]);
  std::vector<std::vector<float>> runs;
  size_t V = 0;
  for (WeightMemory mem : {WeightMemory::Mapped, WeightMemory::Copied, WeightMemory::Auto}) {
    LoadOptions lo;
    lo.verbose = false;
    lo.memory = mem;
    auto m = Model::load(tiny_a(), lo);
    EXPECT_EQ(m->weights_copied(), mem != WeightMemory::Mapped);
    DecodeState st = m->new_state();
    runs.push_back(m->forward(ids, st));
    V = static_cast<size_t>(m->config().vocab);
  }
  expect_logits(runs[1], g.f32("full.logits"), V, "full.logits (copied)");
  EXPECT_EQ(runs[1], runs[0]);
  EXPECT_EQ(runs[2], runs[0]);
}

TEST(ModelGolden, ThreadCountInvariance) {
  Golden g(tiny_a());
  auto m = load_quiet(tiny_a());
  const auto ids = ids_of(g.meta["full"]["ids"]);
  std::vector<std::vector<float>> runs;
  for (size_t threads : {1, 2, 3}) {
    set_num_threads(threads);
    DecodeState st = m->new_state();
    runs.push_back(m->forward(std::span(ids).first(ids.size() - 1), st));
    // A one-token step too: with few tokens the work is split differently (e.g. attention per head, not per group).
    auto last = m->forward(std::span(ids).last(1), st);
    runs.back().insert(runs.back().end(), last.begin(), last.end());
  }
  set_num_threads(0);
  for (size_t i = 1; i < runs.size(); ++i) {
    EXPECT_LE(max_scaled_diff(runs[i], runs[0], false), 1e-5);
    EXPECT_EQ(runs[i], runs[0]) << "kernels are meant to be bitwise thread-invariant";
  }
}

TEST(ModelGolden, SnapshotAndResetOfState) {
  Golden g(tiny_a());
  auto m = load_quiet(tiny_a());
  const auto ids = ids_of(g.meta["full"]["ids"]);
  const size_t V = m->config().vocab;
  DecodeState st = m->new_state();
  m->forward(std::span(ids).first(10), st, LogitsMode::None);
  DecodeState snap = st;  // copy = snapshot
  auto a = m->forward(std::span(ids).subspan(10), st);
  auto b = m->forward(std::span(ids).subspan(10), snap);
  EXPECT_EQ(a, b);
  auto full = g.f32("full.logits");
  expect_logits(a, std::vector<float>(full.begin() + 10 * V, full.end()), V, "after snapshot");
  st.reset();
  EXPECT_EQ(st.position(), 0);
  auto again = m->forward(ids, st);
  expect_logits(again, full, V, "after reset");
}

TEST(ModelGolden, TrainedSmallValid256AndGreedy) {
  Golden g(trained_small());
  auto m = load_quiet(trained_small());
  const size_t V = m->config().vocab;
  auto ids64 = g.i64("valid256.ids");
  std::vector<int32_t> ids(ids64.begin(), ids64.end());
  DecodeState st = m->new_state();
  auto logits = m->forward(ids, st);
  EXPECT_LE(max_scaled_diff(logits, g.f32("valid256.logits"), false), 1e-4);

  auto prompt = g.meta["greedy"]["prompt_ids"].get<std::vector<int32_t>>();
  auto want = g.meta["greedy"]["generated_ids"].get<std::vector<int32_t>>();
  DecodeState s2 = m->new_state();
  auto last = m->forward(prompt, s2, LogitsMode::Last);
  std::vector<int32_t> got;
  for (size_t i = 0; i < want.size(); ++i) {
    int32_t next = static_cast<int32_t>(argmax(last.data(), V));
    got.push_back(next);
    last = m->forward(std::span(&next, 1), s2, LogitsMode::Last);
  }
  EXPECT_EQ(got, want);
}

TEST(ModelGolden, TrainedSmallPerplexity) {
  Golden g(trained_small());
  auto m = load_quiet(trained_small());
  auto valid64 = g.i64("valid.ids");
  const std::vector<int32_t> valid(valid64.begin(), valid64.end());
  const double ref_ppl = g.meta["perplexity"]["value"].get<double>();
  PerplexityOptions po;
  po.ctx = 256;
  const PerplexityResult r = evaluate_perplexity(*m, valid, po);
  EXPECT_EQ(r.tokens, g.meta["perplexity"]["num_tokens_scored"].get<size_t>());
  EXPECT_EQ(r.windows, g.meta["perplexity"]["num_windows"].get<size_t>());
  EXPECT_NEAR(r.ppl, ref_ppl, 1e-4 * ref_ppl) << "perplexity " << r.ppl;
  // Window by window against the reference's summed NLLs: a wrong window cut shows here even when the total is close.
  const TensorView& wn = g.cases.require("ppl.window_nll");
  ASSERT_EQ(wn.dtype, DType::F64);
  ASSERT_EQ(static_cast<size_t>(wn.numel()), r.window_nll.size());
  std::vector<double> want(r.window_nll.size());
  std::memcpy(want.data(), wn.data, wn.nbytes);
  for (size_t w = 0; w < r.window_nll.size(); ++w)
    EXPECT_NEAR(r.window_nll[w], want[w], 2e-3 * std::max(1.0, std::fabs(want[w]))) << "window " << w;
}

TEST(ModelGolden, BatchedForwardIsBitwiseTheSameAsAlone) {
  Golden g(tiny_a());
  auto m = load_quiet(tiny_a());
  const size_t V = m->config().vocab;
  std::vector<std::vector<int32_t>> ids = {ids_of(g.meta["batch"]["sequences"][0]), ids_of(g.meta["batch"]["sequences"][1])};
  // Prefill both in one batch (different lengths), then decode one token each per batch.
  std::vector<DecodeState> st = {m->new_state(), m->new_state()};
  std::vector<Model::BatchItem> items = {{std::span(ids[0]).first(7), &st[0], LogitsMode::All, {}},
                                         {std::span(ids[1]).first(4), &st[1], LogitsMode::All, {}}};
  m->forward_batch(items);
  std::vector<std::vector<float>> logits = {items[0].logits, items[1].logits};
  for (size_t step = 0;; ++step) {
    std::vector<Model::BatchItem> dec;
    std::vector<size_t> which;
    for (size_t b = 0; b < 2; ++b) {
      const size_t at = (b == 0 ? 7 : 4) + step;
      if (at < ids[b].size()) dec.push_back({std::span(ids[b]).subspan(at, 1), &st[b], LogitsMode::Last, {}}), which.push_back(b);
    }
    if (dec.empty()) break;
    m->forward_batch(dec);
    for (size_t i = 0; i < dec.size(); ++i) logits[which[i]].insert(logits[which[i]].end(), dec[i].logits.begin(), dec[i].logits.end());
  }
  for (size_t b = 0; b < 2; ++b) {
    expect_logits(logits[b], g.f32(g.meta["batch"]["logits_tensors"][b].get<std::string>()), V, "batched seq");
    // Bitwise equal to the same schedule run alone.
    DecodeState alone = m->new_state();
    const size_t k = b == 0 ? 7 : 4;
    auto want = m->forward(std::span(ids[b]).first(k), alone);
    for (size_t t = k; t < ids[b].size(); ++t) {
      auto row = m->forward(std::span(ids[b]).subspan(t, 1), alone, LogitsMode::Last);
      want.insert(want.end(), row.begin(), row.end());
    }
    EXPECT_EQ(logits[b], want) << "sequence " << b;
  }
}
