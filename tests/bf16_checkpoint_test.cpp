// BF16 checkpoints: the golden F32 models converted to BF16 (`zaya convert --profile bf16`) and run in BF16
// arithmetic (Precision::Fast: bf16 activations, AVX-512 BF16 dot products where the CPU has them) against the fp32
// path on the same BF16 weights (Precision::Exact) and against the reference logits of the F32 model. The measured
// errors are printed and documented in docs/bundles.md; the bounds below are a few times what was measured.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "io/safetensors.h"
#include "test_util.h"
#include "zaya/convert.h"
#include "zaya/model.h"

namespace zaya {
namespace {

struct Errors {
  double max_abs = 0;      // max |a − b| over every logit
  double rel = 0;          // max_abs / max |b|
  size_t argmax_same = 0;  // rows with the same argmax
  size_t rows = 0;
};

Errors compare(const std::vector<float>& a, const std::vector<float>& b, size_t V) {
  Errors e;
  EXPECT_EQ(a.size(), b.size());
  double mag = 0;
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) {
    const double d = std::fabs(static_cast<double>(a[i]) - b[i]);
    e.max_abs = std::isnan(d) ? INFINITY : std::max(e.max_abs, d);
    mag = std::max(mag, std::fabs(static_cast<double>(b[i])));
  }
  e.rel = e.max_abs / std::max(mag, 1e-30);
  e.rows = b.size() / V;
  for (size_t t = 0; t < e.rows; ++t)
    e.argmax_same += std::max_element(a.begin() + t * V, a.begin() + (t + 1) * V) - (a.begin() + t * V) ==
                     std::max_element(b.begin() + t * V, b.begin() + (t + 1) * V) - (b.begin() + t * V);
  return e;
}

struct Run {
  std::vector<float> logits, choices;  // choices: every MoE layer's expert per position
};

Run run(const std::string& dir, bool exact, const std::vector<int32_t>& ids) {
  LoadOptions o;
  o.verbose = false;
  o.exact = exact;
  auto m = Model::load(dir, o);
  DecodeState st = m->new_state();
  ForwardTrace trace;
  Run r;
  r.logits = m->forward(ids, st, LogitsMode::All, &trace);
  for (const auto& [name, v] : trace.tensors)
    if (name.ends_with(".choice")) r.choices.insert(r.choices.end(), v.begin(), v.end());
  return r;
}

size_t differing(const std::vector<float>& a, const std::vector<float>& b) {
  size_t n = 0;
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) n += a[i] != b[i];
  return n;
}

struct Case {
  const char* model;
  const char* golden_logits;
};

// bf16 arithmetic vs fp32 arithmetic on the same BF16 weights, and both vs the F32 model's reference logits.
void check(const Case& c, const std::vector<int32_t>& ids, double max_rel_fast_vs_exact) {
  const std::string src = test::require_path(test::data_dir() + "/golden/zaya1-text/" + c.model);
  test::TempDir tmp(std::string("bf16-") + c.model);
  ConvertOptions co;
  co.profile = parse_profile("bf16");
  convert_checkpoint(src, tmp / "bf16", co);
  const auto golden = to_f32(TensorStore::open(src + "/cases.safetensors").require(c.golden_logits));
  const Run fast = run(tmp / "bf16", false, ids), exact = run(tmp / "bf16", true, ids);
  const Run f32 = run(src, true, ids);
  const size_t V = golden.size() / ids.size();
  const Errors fe = compare(fast.logits, exact.logits, V), eg = compare(exact.logits, golden, V),
               fg = compare(fast.logits, golden, V);
  const size_t flips_fe = differing(fast.choices, exact.choices), flips_eg = differing(exact.choices, f32.choices);
  std::printf("[ bf16 ] %s, %zu positions: bf16 vs fp32 arithmetic (same BF16 weights): max |dlogit| %.3g (%.3g of "
              "max |logit|), argmax %zu/%zu, expert choices differing %zu/%zu; BF16 weights (fp32 arithmetic) vs F32 "
              "reference: %.3g, argmax %zu/%zu, choices differing %zu; bf16 arithmetic vs F32 reference: %.3g, "
              "argmax %zu/%zu\n",
              c.model, fe.rows, fe.max_abs, fe.rel, fe.argmax_same, fe.rows, flips_fe, fast.choices.size(),
              eg.max_abs, eg.argmax_same, eg.rows, flips_eg, fg.max_abs, fg.argmax_same, fg.rows);
  EXPECT_LE(fe.rel, max_rel_fast_vs_exact) << c.model;
  EXPECT_EQ(fe.argmax_same, fe.rows) << c.model << ": the bf16 activations flipped a greedy choice";
  // The bf16 activations add no more than the order of the error the bf16 weights already bring.
  EXPECT_LE(fe.max_abs, 1.5 * eg.max_abs + 0.05) << c.model;
  EXPECT_LE(fg.max_abs, 1.5 * eg.max_abs + 0.05) << c.model;
}

TEST(Bf16Checkpoint, TinyALogitErrorOfBf16Arithmetic) {
  const auto meta = nlohmann::json::parse(
      test::read_file(test::data_dir() + "/golden/zaya1-text/tiny-a/cases.json"));
  check({"tiny-a", "full.logits"}, meta["full"]["ids"].get<std::vector<int32_t>>(), 0.2);
}

TEST(Bf16Checkpoint, TrainedSmallLogitErrorOfBf16Arithmetic) {
  const std::string dir = test::data_dir() + "/golden/zaya1-text/trained-small";
  const auto ids64 = to_i64(TensorStore::open(dir + "/cases.safetensors").require("valid256.ids"));
  check({"trained-small", "valid256.logits"}, std::vector<int32_t>(ids64.begin(), ids64.end()), 0.01);
}

}  // namespace
}  // namespace zaya
