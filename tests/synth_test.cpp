// zaya synth: random-weight models of any config written straight into every profile; they verify, load and run.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <unistd.h>

#include "quant/convert_plan.h"
#include "test_util.h"
#include "zaya/convert.h"
#include "zaya/error.h"
#include "zaya/model.h"
#include "zaya/verify.h"

namespace fs = std::filesystem;
using nlohmann::json;
using namespace zaya;

namespace {

using test::TempDir;

// A small legacy config whose widths the group sizes divide (so every profile really quantizes every linear).
std::string small_config(const TempDir& tmp) {
  json c = json::parse(test::read_file(test::data_dir() + "/golden/zaya1-text/tiny-a/config.json"));
  c["hidden_size"] = 128;
  c["ffn_hidden_size"] = 256;  // I = 128
  c["num_hidden_layers"] = 4;
  c["vocab_size"] = 320;
  c["zaya_mlp_expansion"] = 64;
  const std::string p = tmp / "config.json";
  std::ofstream(p) << c.dump(2);
  return p;
}

SynthOptions synth_opts(Profile p, uint64_t seed = 1) {
  SynthOptions o;
  o.profile = p;
  o.seed = seed;
  o.shard_bytes = 0;
  return o;
}

std::vector<float> run(const std::string& dir, const std::vector<int32_t>& ids) {
  LoadOptions lo;
  lo.verbose = false;
  auto m = Model::load(dir, lo);
  auto st = m->new_state();
  return m->forward(ids, st);
}

}  // namespace

TEST(Synth, EveryProfileVerifiesLoadsAndRuns) {
  TempDir tmp("synth_profiles");
  const std::string cfg = small_config(tmp);
  const std::vector<int32_t> ids = {2, 17, 99, 5, 250, 31};
  for (const auto& name : profile_names()) {
    const Profile p = parse_profile(name);
    const std::string out = tmp / ("m-" + name);
    synth_bundle(cfg, out, synth_opts(p));
    const VerifyReport r = verify_bundle(out);
    EXPECT_TRUE(r.ok()) << name << "\n" << verify_report_table(r);
    const std::vector<float> logits = run(out, ids);
    ASSERT_EQ(logits.size(), ids.size() * 320u) << name;
    float lo = INFINITY, hi = -INFINITY;
    for (float v : logits) {
      ASSERT_TRUE(std::isfinite(v)) << name;
      lo = std::min(lo, v), hi = std::max(hi, v);
    }
    EXPECT_GT(hi - lo, 0.1f) << name << ": logits should not be constant";
    EXPECT_LT(hi - lo, 100.0f) << name << ": random weights should give moderate logits";
  }
}

TEST(Synth, DeterministicPerSeedAndNativeConfig) {
  TempDir tmp("synth_seed");
  const std::string cfg = small_config(tmp);
  synth_bundle(cfg, tmp / "a", synth_opts(Profile::Mxfp4, 7));
  synth_bundle(cfg, tmp / "b", synth_opts(Profile::Mxfp4, 7));
  synth_bundle(cfg, tmp / "c", synth_opts(Profile::Mxfp4, 8));
  const std::string a = test::read_file(tmp / "a/model-00001-of-00001.safetensors");
  EXPECT_TRUE(a == test::read_file(tmp / "b/model-00001-of-00001.safetensors"));
  EXPECT_FALSE(a == test::read_file(tmp / "c/model-00001-of-00001.safetensors"));
  // The output does not depend on the thread count.
  SynthOptions one = synth_opts(Profile::Mxfp4, 7);
  one.threads = 1;
  synth_bundle(cfg, tmp / "d", one);
  EXPECT_TRUE(a == test::read_file(tmp / "d/model-00001-of-00001.safetensors"));

  // A native config gives a legacy-named bundle with a legacy config.json, plus the tokenizer when asked.
  SynthOptions n = synth_opts(Profile::Jangtq4);
  n.tokenizer_dir = test::data_dir() + "/golden/zaya1-text/tiny-a";
  synth_bundle(test::data_dir() + "/golden/zaya1-text/tiny-a/native/config.json", tmp / "n", n);
  EXPECT_TRUE(verify_bundle(tmp / "n").ok()) << verify_report_table(verify_bundle(tmp / "n"));
  EXPECT_TRUE(fs::exists(tmp / "n/tokenizer.json"));
  EXPECT_TRUE(fs::exists(tmp / "n/jangtq_runtime.safetensors"));
  const ModelConfig c = ModelConfig::load(tmp / "n");
  EXPECT_EQ(c.layout, Layout::Legacy);
  EXPECT_EQ(c.legacy_layers(), 6);
  EXPECT_EQ(c.expert_ffn, 48);
  EXPECT_EQ(run(tmp / "n", {2, 5, 9}).size(), 3u * 384u);
  EXPECT_THROW(synth_bundle(cfg, tmp / "a", synth_opts(Profile::Q8)), Error);  // exists, no force
}

// The full-size ZAYA1-8B plans (not written here: that takes minutes) have the sizes bundle-formats §9 derives.
TEST(Synth, FullSizePlansMatchPublishedSizes) {
  const ModelConfig cfg = ModelConfig::load(test::data_dir() + "/golden/zaya1-text/real-configs/legacy/config.json");
  auto bytes = [&](Profile p, size_t* keys) {
    uint64_t n = 0;
    *keys = 0;
    for (const auto& it : bundle::build_plan(cfg, p, Layout::Legacy))
      for (const auto& s : it.outputs()) n += s.nbytes(), ++*keys;
    return n / 1073741824.0;
  };
  size_t k_mx = 0, k_tq = 0;
  const double mx = bytes(Profile::Mxfp4, &k_mx), tq = bytes(Profile::Jangtq4, &k_tq);
  std::printf("  ZAYA1-8B plans: mxfp4 %.3f GiB (%zu keys), jangtq4 %.3f GiB (%zu keys)\n", mx, k_mx, tq, k_tq);
  EXPECT_NEAR(mx, 5.45, 0.05);  // card: 5.48 GiB with the tokenizer
  EXPECT_NEAR(tq, 4.61, 0.05);  // card: 4.65 GiB
  EXPECT_EQ(k_mx, k_tq);        // both bundles have 9 expert keys per MoE layer (§7.2)
}

TEST(Synth, Cli) {
  TempDir tmp("synth_cli");
  std::string out, err;
  const std::string cfg = small_config(tmp);
  int rc = test::run_command(test::cli_path() + " synth --config " + cfg + " --profile q4 --seed 3 " + (tmp / "m"), &out, &err);
  ASSERT_EQ(rc, 0) << err;
  EXPECT_NE(out.find("synthesized"), std::string::npos) << out;
  rc = test::run_command(test::cli_path() + " verify --json " + (tmp / "m"), &out, &err);
  EXPECT_EQ(rc, 0) << out << err;
  EXPECT_TRUE(json::parse(out)["ok"].get<bool>());
}
