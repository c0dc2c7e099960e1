// zaya perplexity (zaya/perplexity.h): the float64 statistics against closed forms, the window cut, KL divergence
// against an independent per-row computation, the reference PPL through the CLI, and every bad-input error.
// (The library's PPL on the golden valid.ids, window by window, is ModelGolden.TrainedSmallPerplexity.)
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include "test_util.h"
#include "zaya/convert.h"
#include "zaya/error.h"
#include "zaya/model.h"
#include "zaya/perplexity.h"
#include "io/safetensors.h"
#include "zaya/tokenizer.h"

using namespace zaya;
using nlohmann::json;

namespace {

std::string trained_small() { return test::require_path(test::data_dir() + "/golden/zaya1-text/trained-small"); }
std::string valid_txt() { return test::require_path(trained_small() + "/valid.txt"); }
std::string zaya_cli() { return test::require_path(test::cli_path()); }

std::unique_ptr<Model> load_quiet(const std::string& dir) {
  LoadOptions o;
  o.verbose = false;
  return Model::load(dir, o);
}

const std::vector<int32_t>& valid_ids() {
  static const std::vector<int32_t> ids =
      perplexity_tokens(Tokenizer::load(trained_small()), test::read_file(valid_txt()), "valid.txt");
  return ids;
}

// trained-small converted to q8 once per test process (a model that is close to, but not, the reference).
const std::string& q8_bundle() {
  static test::TempDir dir("ppl_q8");
  static const std::string path = [] {
    ConvertOptions o;
    o.profile = Profile::Q8;
    o.shard_bytes = 0;
    convert_checkpoint(trained_small(), dir / "q8", o);
    return dir / "q8";
  }();
  return path;
}

void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
}

template <typename F>
void expect_error(F&& f, const std::string& fragment) {
  try {
    f();
    ADD_FAILURE() << "no error; expected one containing '" << fragment << "'";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
  }
}

}  // namespace

TEST(Perplexity, RowStatisticsMatchClosedForms) {
  // softmax([0, log 2, log 5]) = [1/8, 2/8, 5/8].
  const std::vector<float> row = {0.0f, std::log(2.0f), std::log(5.0f)};
  EXPECT_NEAR(token_nll(row, 0), std::log(8.0), 1e-6);
  EXPECT_NEAR(token_nll(row, 2), std::log(8.0 / 5.0), 1e-6);
  // A shift of every logit changes nothing (the max is subtracted in float64).
  std::vector<float> shifted = row;
  for (float& v : shifted) v += 1000.0f;
  EXPECT_NEAR(token_nll(shifted, 1), std::log(4.0), 1e-4);
  // KL(p || q) with p = [1/8, 2/8, 5/8], q uniform: Σ p log(3p).
  const std::vector<float> uniform = {0.5f, 0.5f, 0.5f};
  const double want = (1.0 / 8) * std::log(3.0 / 8) + (2.0 / 8) * std::log(6.0 / 8) + (5.0 / 8) * std::log(15.0 / 8);
  EXPECT_NEAR(kl_divergence(row, uniform), want, 1e-6);
  EXPECT_EQ(kl_divergence(row, row), 0.0);
  EXPECT_GT(kl_divergence(uniform, row), 0.0);
  expect_error([&] { token_nll(row, 3); }, "outside");
  expect_error([&] { kl_divergence(row, std::vector<float>{1.0f}); }, "rows of");
}

TEST(Perplexity, NearestRankPercentile) {
  std::vector<float> v;
  for (int i = 100; i >= 1; --i) v.push_back(static_cast<float>(i));  // 1..100, reversed
  EXPECT_EQ(percentile(v, 0.99), 99.0);
  EXPECT_EQ(percentile(v, 1.0), 100.0);
  EXPECT_EQ(percentile(v, 0.5), 50.0);
  std::vector<float> three = {3, 1, 2};
  EXPECT_EQ(percentile(three, 0.99), 3.0);  // ⌈2.97⌉ = 3rd smallest
  std::vector<float> none;
  EXPECT_EQ(percentile(none, 0.99), 0.0);
}

TEST(Perplexity, WindowsCoverEveryTokenOnce) {
  auto w = perplexity_windows(10, 4);  // chunks of 3
  ASSERT_EQ(w.size(), 4u);
  const size_t want[][2] = {{0, 3}, {3, 3}, {6, 3}, {9, 1}};
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_EQ(w[i].begin, want[i][0]);
    EXPECT_EQ(w[i].len, want[i][1]);
  }
  EXPECT_EQ(perplexity_windows(9, 4).size(), 3u);  // exact multiple: no empty tail window
  EXPECT_EQ(perplexity_windows(68891, 256).size(), 271u);
  EXPECT_EQ(perplexity_windows(68891, 256).back().len, 41u);
  expect_error([] { perplexity_windows(10, 1); }, "ctx >= 2");
  expect_error([] { perplexity_windows(0, 8); }, "no tokens");
  expect_error([] { perplexity_windows(5, 8); }, "fewer than one chunk");
}

TEST(Perplexity, TextTokenizesAsTheGoldenIds) {
  // The reference scored valid.txt encoded in one piece without special tokens: exactly its valid.ids.
  auto cases = TensorStore::open(trained_small() + "/cases.safetensors");
  const std::vector<int64_t> want = to_i64(cases.require("valid.ids"));
  ASSERT_EQ(valid_ids().size(), want.size());
  EXPECT_TRUE(std::equal(want.begin(), want.end(), valid_ids().begin()));
  auto tok = Tokenizer::load(trained_small());
  expect_error([&] { perplexity_tokens(tok, "", "empty.txt"); }, "empty.txt: the text is empty");
  expect_error([&] { perplexity_tokens(tok, "abc\xff\xfe def", "bad.txt"); }, "bad.txt: tokenizer: input text is not valid UTF-8");
}

TEST(Perplexity, KldOfAModelAgainstItselfIsZero) {
  auto m = load_quiet(trained_small());
  const std::vector<int32_t> ids(valid_ids().begin(), valid_ids().begin() + 1000);
  PerplexityOptions po;
  po.ctx = 128;
  const PerplexityResult alone = evaluate_perplexity(*m, ids, po);
  const PerplexityResult self = evaluate_perplexity(*m, ids, po, m.get());
  ASSERT_TRUE(self.kld.has_value());
  EXPECT_FALSE(alone.kld.has_value());
  EXPECT_EQ(self.kld->mean, 0.0);
  EXPECT_EQ(self.kld->max, 0.0);
  EXPECT_EQ(self.kld->p99, 0.0);
  EXPECT_EQ(self.kld->top1_agree, 1.0);
  EXPECT_EQ(self.kld->ppl_ratio, 1.0);
  EXPECT_EQ(self.ppl, alone.ppl);
  EXPECT_EQ(self.kld->ppl_ref, alone.ppl);
  EXPECT_EQ(self.windows, 8u);  // ⌈1000 / 127⌉
}

TEST(Perplexity, KldOfAQuantizedBundleMatchesPerRowComputation) {
  auto ref = load_quiet(trained_small());
  auto q8 = load_quiet(q8_bundle());
  const std::vector<int32_t> ids(valid_ids().begin() + 5000, valid_ids().begin() + 5300);
  PerplexityOptions po;
  po.ctx = 101;  // 3 windows of 100 tokens
  size_t progress_calls = 0;
  po.progress = [&](const PerplexityProgress& p) {
    ++progress_calls;
    EXPECT_EQ(p.windows, 3u);
    EXPECT_EQ(p.tokens_done, 100 * p.windows_done);
    EXPECT_GT(p.running_ppl, 1.0);
  };
  const PerplexityResult r = evaluate_perplexity(*q8, ids, po, ref.get());
  EXPECT_EQ(progress_calls, 3u);
  ASSERT_TRUE(r.kld.has_value());
  // Independent computation: every window through forward(), statistics row by row.
  const size_t V = static_cast<size_t>(ref->config().vocab);
  double nll = 0, nll_ref = 0, kl = 0, kl_max = 0;
  size_t agree = 0;
  for (size_t at = 0; at < ids.size(); at += 100) {
    std::vector<int32_t> seq = {static_cast<int32_t>(ref->config().bos_token_id)};
    seq.insert(seq.end(), ids.begin() + at, ids.begin() + at + 99);
    DecodeState s1 = q8->new_state(), s2 = ref->new_state();
    auto lq = q8->forward(seq, s1), lr = ref->forward(seq, s2);
    for (size_t i = 0; i < 100; ++i) {
      std::span<const float> rq(&lq[i * V], V), rr(&lr[i * V], V);
      nll += token_nll(rq, ids[at + i]);
      nll_ref += token_nll(rr, ids[at + i]);
      const double k = kl_divergence(rr, rq);
      kl += k, kl_max = std::max(kl_max, k);
      agree += std::max_element(rq.begin(), rq.end()) - rq.begin() == std::max_element(rr.begin(), rr.end()) - rr.begin();
    }
  }
  EXPECT_NEAR(r.ppl, std::exp(nll / 300), 1e-9 * r.ppl);
  EXPECT_NEAR(r.kld->ppl_ref, std::exp(nll_ref / 300), 1e-9 * r.kld->ppl_ref);
  EXPECT_NEAR(r.kld->mean, kl / 300, 1e-9);
  EXPECT_EQ(r.kld->max, kl_max);
  EXPECT_EQ(r.kld->top1_agree, agree / 300.0);
  // An 8-bit model is close but not identical.
  EXPECT_GT(r.kld->mean, 0.0);
  EXPECT_LT(r.kld->mean, 0.05);
  EXPECT_GE(r.kld->p99, r.kld->mean);
  EXPECT_LE(r.kld->p99, r.kld->max);
  EXPECT_GT(r.kld->top1_agree, 0.8);
  EXPECT_NEAR(r.kld->ppl_ratio, 1.0, 0.05);
}

TEST(Perplexity, LibraryErrors) {
  auto m = load_quiet(trained_small());
  const std::vector<int32_t> ids(valid_ids().begin(), valid_ids().begin() + 300);
  PerplexityOptions po;
  po.ctx = 4097;
  expect_error([&] { evaluate_perplexity(*m, ids, po); }, "exceeds the model's limit of 4096");
  po.ctx = 1;
  expect_error([&] { evaluate_perplexity(*m, ids, po); }, "too small");
  po.ctx = 302;
  expect_error([&] { evaluate_perplexity(*m, ids, po); }, "fewer than one chunk");
  const std::vector<int32_t> bad = {5, 6, 384, 7};
  po.ctx = 3;
  expect_error([&] { evaluate_perplexity(*m, bad, po); }, "outside the vocabulary");
  // A reference with another vocabulary cannot be compared token by token.
  test::TempDir dir("ppl_vocab");
  json cfg = json::parse(test::read_file(trained_small() + "/config.json"));
  cfg["vocab_size"] = 400;
  write_file(dir / "config.json", cfg.dump());
  SynthOptions so;
  so.profile = Profile::F32;
  so.shard_bytes = 0;
  synth_bundle(dir / "config.json", dir / "other", so);
  auto other = load_quiet(dir / "other");
  po.ctx = 64;
  expect_error([&] { evaluate_perplexity(*m, ids, po, other.get()); }, "vocabulary (400) differs");
}

TEST(Perplexity, CliReproducesTheReferencePerplexity) {
  std::string out, err;
  ASSERT_EQ(test::run_command(zaya_cli() + " perplexity -m " + trained_small() + " -f " + valid_txt() +
                                  " --ctx 256 --json -t 2", &out, &err), 0) << err;
  const json j = json::parse(out);
  const double ref = json::parse(test::read_file(trained_small() + "/cases.json"))["perplexity"]["value"].get<double>();
  EXPECT_NEAR(j["ppl"].get<double>(), ref, 1e-4 * ref);
  EXPECT_NEAR(j["nll_mean"].get<double>(), std::log(j["ppl"].get<double>()), 1e-12);
  EXPECT_EQ(j["tokens"], 68891);
  EXPECT_EQ(j["windows"], 271);
  EXPECT_EQ(j["ctx"], 256);
  EXPECT_GT(j["seconds"].get<double>(), 0.0);
  EXPECT_FALSE(j.contains("kld_mean"));
  EXPECT_NE(err.find("[window 271/271] 68891/68891 tokens"), std::string::npos) << err;  // progress on stderr
}

TEST(Perplexity, CliKldAgainstReference) {
  test::TempDir dir("ppl_cli");
  std::string text = test::read_file(valid_txt()).substr(0, 4000);
  write_file(dir / "t.txt", text);
  std::string out, err;
  ASSERT_EQ(test::run_command(zaya_cli() + " perplexity -q -m " + trained_small() + " --kld-ref " + trained_small() +
                                  " -f " + (dir / "t.txt") + " --ctx 200 --json", &out, &err), 0) << err;
  json j = json::parse(out);
  EXPECT_EQ(j["kld_mean"].get<double>(), 0.0);
  EXPECT_EQ(j["kld_p99"].get<double>(), 0.0);
  EXPECT_EQ(j["kld_max"].get<double>(), 0.0);
  EXPECT_EQ(j["top1_agree"].get<double>(), 1.0);
  EXPECT_EQ(j["ppl_ratio"].get<double>(), 1.0);
  EXPECT_EQ(j["ppl_ref"].get<double>(), j["ppl"].get<double>());
  EXPECT_TRUE(err.empty()) << "-q prints nothing: " << err;
  // The quantized bundle against its source, text output.
  ASSERT_EQ(test::run_command(zaya_cli() + " perplexity -q -m " + q8_bundle() + " --kld-ref " + trained_small() +
                                  " -f " + (dir / "t.txt") + " --ctx 200", &out, &err), 0) << err;
  EXPECT_NE(out.find("PPL "), std::string::npos) << out;
  EXPECT_NE(out.find("KL(ref||model) mean "), std::string::npos) << out;
}

// --int8 (int8 activations in the affine products) against the same bundle with fp32 activations (--ref-exact): a
// small but non-zero divergence; without --ref-exact the reference runs the same arithmetic, so none at all.
TEST(Perplexity, CliInt8AgainstExactOnOneBundle) {
  test::TempDir dir("ppl_int8");
  write_file(dir / "t.txt", test::read_file(valid_txt()).substr(0, 4000));
  auto kld = [&](const std::string& flags) {
    std::string out, err;
    EXPECT_EQ(test::run_command(zaya_cli() + " perplexity -q -m " + q8_bundle() + " --kld-ref " + q8_bundle() + " -f " +
                                    (dir / "t.txt") + " --ctx 200 --json " + flags, &out, &err), 0) << err;
    return json::parse(out);
  };
  const json int8 = kld("--int8 --ref-exact"), same = kld("--int8"), fast = kld("--fast --ref-exact");
  EXPECT_GT(int8["kld_mean"].get<double>(), 1e-5);
  EXPECT_LT(int8["kld_mean"].get<double>(), 5e-3);
  EXPECT_GT(int8["top1_agree"].get<double>(), 0.95);
  EXPECT_EQ(same["kld_mean"].get<double>(), 0.0);
  EXPECT_LT(fast["kld_mean"].get<double>(), int8["kld_mean"].get<double>() / 20);
}

TEST(Perplexity, CliBadInputs) {
  test::TempDir dir("ppl_bad");
  write_file(dir / "empty.txt", "");
  write_file(dir / "latin1.txt", "caf\xe9 au lait, na\xefve text in Latin-1");
  write_file(dir / "short.txt", "Only a few words here.");
  write_file(dir / "ok.txt", test::read_file(valid_txt()).substr(0, 3000));
  const std::string m = " perplexity -q -m " + trained_small();
  struct Case {
    std::string args, expect;
  };
  const std::vector<Case> cases = {
      {m + " -f " + (dir / "missing.txt"), "cannot read the text file"},
      {m + " -f " + (dir / "empty.txt"), "the text is empty"},
      {m + " -f " + (dir / "latin1.txt"), "not valid UTF-8"},
      {m + " -f " + (dir / "short.txt"), "fewer than one chunk"},
      {m + " -f " + (dir / "ok.txt") + " --ctx 1", "too small"},
      {m + " -f " + (dir / "ok.txt") + " --ctx 5000", "exceeds the model's limit of 4096"},
      {m + " -f " + (dir / "ok.txt") + " --kld-ref /nonexistent/ref", "cannot read config"},
      {" perplexity -q -m /nonexistent/model -f " + (dir / "ok.txt"), "/nonexistent/model"},
  };
  for (const auto& c : cases) {
    std::string out, err;
    EXPECT_EQ(test::run_command(zaya_cli() + c.args, &out, &err), 1) << c.args << "\n" << err;
    EXPECT_NE(err.find("zaya: error: "), std::string::npos) << c.args << " -> " << err;
    EXPECT_NE(err.find(c.expect), std::string::npos) << c.args << " -> " << err;
  }
}
