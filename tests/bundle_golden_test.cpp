// Quantized MLX/JANG bundles of the tiny golden model: dequantization against dequantized.safetensors and the forward
// pass against the reference outputs on the dequantized weights (tests/data/golden/zaya1-bundles/README.md).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>

#include "kernels/format_table.h"
#include "models/zaya/model_weights.h"
#include "test_util.h"
#include "zaya/model.h"
#include "io/safetensors.h"

using nlohmann::json;
using namespace zaya;

namespace {

std::string bundle(const std::string& name) {
  return test::require_path(test::data_dir() + "/golden/zaya1-bundles/" + name);
}

double max_diff(const std::vector<float>& a, const std::vector<float>& b, bool relative = false) {
  EXPECT_EQ(a.size(), b.size());
  double w = 0;
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) {
    double d = std::fabs(double(a[i]) - b[i]);
    if (relative) d /= std::max(1.0, std::fabs(double(b[i])));
    if (!(d <= w)) w = std::isnan(d) ? INFINITY : d;
  }
  return w;
}

std::vector<float> dequantize(const WeightMatrix& w) {
  std::vector<float> out(w.rows * w.cols);
  for (int64_t r = 0; r < w.rows; ++r) decode_row(w, r, &out[r * w.cols]);
  return out;
}

void check_argmax(const std::vector<float>& got, const std::vector<float>& ref, size_t V, const std::string& what) {
  for (size_t t = 0; t < ref.size() / V; ++t) {
    auto a = std::max_element(got.begin() + t * V, got.begin() + (t + 1) * V) - (got.begin() + t * V);
    auto b = std::max_element(ref.begin() + t * V, ref.begin() + (t + 1) * V) - (ref.begin() + t * V);
    EXPECT_EQ(a, b) << what << " row " << t;
  }
}

class BundleGolden : public ::testing::TestWithParam<std::string> {};

}  // namespace

TEST_P(BundleGolden, DequantizedWeightsMatch) {
  const std::string dir = bundle(GetParam());
  LoadOptions o;
  o.verbose = false;
  auto m = Model::load(dir, o);
  auto deq = TensorStore::open(dir + "/dequantized.safetensors");
  const ModelWeights& w = m->weights();
  const auto& c = m->config();
  const int64_t E = c.n_experts, I = c.expert_ffn, H = c.hidden;
  int checked = 0;
  auto check = [&](const WeightMatrix& wm, const std::string& name, double tol) {
    auto ref = to_f32(deq.require(name));
    EXPECT_LE(max_diff(dequantize(wm), ref), tol) << name << " (" << weight_format_name(wm.format) << ")";
    ++checked;
  };
  const double mxtq_tol = 1e-6;
  check(w.embedding, "model.embed_tokens.weight", 0);
  for (size_t n = 0; n < 2 * w.blocks.size(); ++n) {
    const std::string p = "model.layers." + std::to_string(n) + ".";
    const auto& l = w.blocks[n / 2];
    if (n % 2 == 0) {
      check(l.attn.q, p + "self_attn.qkv.linear_q.weight", 0);
      check(l.attn.k, p + "self_attn.qkv.linear_k.weight", 0);
      check(l.attn.v_current, p + "self_attn.qkv.val_proj1.weight", 0);
      check(l.attn.v_delayed, p + "self_attn.qkv.val_proj2.weight", 0);
      check(l.attn.o, p + "self_attn.o_proj.weight", 0);
    } else {
      // Stacked experts: compare expert by expert against the [E, out, in] reference.
      for (const char* proj : {"gate_proj", "up_proj", "down_proj"}) {
        auto ref = to_f32(deq.require(p + "zaya_block.experts.switch_mlp." + proj + ".weight"));
        const bool down = std::string(proj) == "down_proj";
        const int64_t rows = down ? H : I, cols = down ? I : H;
        for (int64_t e = 0; e < E; ++e) {
          const WeightMatrix& wm = down ? l.moe.experts[e].down : std::string(proj) == "gate_proj" ? l.moe.experts[e].gate : l.moe.experts[e].up;
          std::vector<float> r(ref.begin() + e * rows * cols, ref.begin() + (e + 1) * rows * cols);
          EXPECT_LE(max_diff(dequantize(wm), r), wm.format == WeightFormat::Mxtq ? mxtq_tol : 0.0)
              << p << proj << " expert " << e;
        }
        ++checked;
      }
      check(l.moe.router_down, p + "zaya_block.router.down_proj.weight", 0);
    }
  }
  EXPECT_GT(checked, 10);
}

void check_bundle_logits(const std::string& dir, bool exact);

// Both arithmetics of the affine products (int16 activations by default, fp32 with `exact`) meet the same tolerance.
TEST_P(BundleGolden, LogitsMatchReference) {
  for (bool exact : {false, true}) {
    SCOPED_TRACE(exact ? "exact (fp32 activations)" : "default (int16 activations)");
    check_bundle_logits(bundle(GetParam()), exact);
  }
}

void check_bundle_logits(const std::string& dir, bool exact) {
  auto meta = json::parse(test::read_file(dir + "/cases.json"));
  auto cases = TensorStore::open(dir + "/cases.safetensors");
  LoadOptions o;
  o.verbose = false;
  o.exact = exact;
  auto m = Model::load(dir, o);
  const size_t V = m->config().vocab;
  const auto ids = meta["full"]["ids"].get<std::vector<int32_t>>();

  DecodeState st = m->new_state();
  ForwardTrace tr;
  auto logits = m->forward(ids, st, LogitsMode::All, &tr);
  auto ref = to_f32(cases.require("full.logits"));
  EXPECT_LE(max_diff(logits, ref), 1e-3);
  check_argmax(logits, ref, V, "full");
  for (const auto& name : cases.names()) {
    if (name.rfind("full.router.", 0) == 0 && name.find(".choice") != std::string::npos) {
      auto want = to_i64(cases.require(name));
      const auto& got = tr.tensors.at(name.substr(5));
      for (size_t i = 0; i < want.size(); ++i) EXPECT_EQ(int64_t(got[i]), want[i]) << name << " token " << i;
    } else if (name.rfind("full.", 0) == 0 && name != "full.logits") {
      EXPECT_LE(max_diff(tr.tensors.at(name.substr(5)), to_f32(cases.require(name)), true), 1e-3) << name;
    }
  }

  for (const auto& d : meta["decode"]) {
    const size_t K = d["prefill_len"].get<size_t>();
    DecodeState s = m->new_state();
    auto lg = m->forward(std::span(ids).first(K), s);
    for (size_t t = K; t < ids.size(); ++t) {
      auto row = m->forward(std::span(ids).subspan(t, 1), s);
      lg.insert(lg.end(), row.begin(), row.end());
    }
    auto r = to_f32(cases.require(d["logits_tensor"].get<std::string>()));
    EXPECT_LE(max_diff(lg, r), 1e-3) << "decode K=" << K;
    check_argmax(lg, r, V, "decode");
  }

  // Greedy continuation.
  auto prompt = meta["greedy"]["prompt_ids"].get<std::vector<int32_t>>();
  auto want = meta["greedy"]["generated_ids"].get<std::vector<int32_t>>();
  DecodeState g = m->new_state();
  auto last = m->forward(prompt, g, LogitsMode::Last);
  std::vector<int32_t> got;
  for (size_t i = 0; i < want.size(); ++i) {
    int32_t next = int32_t(std::max_element(last.begin(), last.end()) - last.begin());
    got.push_back(next);
    last = m->forward(std::span(&next, 1), g, LogitsMode::Last);
  }
  EXPECT_EQ(got, want);

  // Skip -> 0 alternative.
  m->set_skip_route(SkipRoute::Zero);
  DecodeState z = m->new_state();
  EXPECT_LE(max_diff(m->forward(ids, z), to_f32(cases.require("full_native_skip_zero.logits"))), 1e-3);
}

INSTANTIATE_TEST_SUITE_P(Tiny, BundleGolden, ::testing::Values("tiny-a-mxfp4", "tiny-a-jangtq4"),
                         [](const auto& info) { return info.param == "tiny-a-mxfp4" ? std::string("mxfp4") : std::string("jangtq4"); });
