// The `zaya` command line: outputs checked against the golden data, and errors reported with a non-zero exit.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "test_util.h"
#include "zaya/npy.h"
#include "io/safetensors.h"

using namespace zaya;

namespace {
std::string tiny_a() { return test::require_path(test::data_dir() + "/golden/zaya1-text/tiny-a"); }
std::string zaya_cli() { return test::require_path(test::cli_path()); }
const char* kPrompt = "2,114,56,4,211,79,316,14,283,141,45,161,112,336,228,262,296,381,268,277";

double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  double w = 0;
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) w = std::max(w, std::fabs(double(a[i]) - b[i]));
  return w;
}
}  // namespace

TEST(Cli, LogitsFullAndPrefillDecodeMatchGolden) {
  auto cases = TensorStore::open(tiny_a() + "/cases.safetensors");
  const std::string out = (std::filesystem::temp_directory_path() / "zaya_cli_logits.npy").string();
  for (auto [flag, tensor] : {std::pair{"", "full.logits"}, {"--prefill 12", "decode_k12.logits"},
                              {"--prefill 1", "decode_k1.logits"}}) {
    std::string err;
    ASSERT_EQ(test::run_command(zaya_cli() + " logits -q -m " + tiny_a() + " --ids " + kPrompt + " " + flag + " -o " + out,
                                nullptr, &err), 0) << err;
    NpyArray a = read_npy(out);
    ASSERT_EQ(a.shape, (std::vector<int64_t>{20, 384}));
    EXPECT_LE(max_abs_diff(a.data, to_f32(cases.require(tensor))), 1e-4) << tensor;
  }
  std::filesystem::remove(out);
}

TEST(Cli, GenerateGreedyIds) {
  std::string out, err;
  ASSERT_EQ(test::run_command(zaya_cli() + " generate -m " + tiny_a() + " --ids " + kPrompt +
                                  " -n 8 --temp 0 --print-ids --ignore-eos", &out, &err), 0) << err;
  EXPECT_EQ(out, "88,88,382,2,121,88,88,2\n");
  EXPECT_NE(err.find("skip route semantics: p*x"), std::string::npos) << "the skip route in use is logged";
  EXPECT_NE(err.find("skip route reachable"), std::string::npos);
}

TEST(Cli, InfoOnRealConfigsReportsSpecCounts) {
  for (const char* layout : {"legacy", "native"}) {
    std::string out, err;
    const std::string dir = test::require_path(test::data_dir() + "/golden/zaya1-text/real-configs/" + layout);
    ASSERT_EQ(test::run_command(zaya_cli() + " info --json -m " + dir, &out, &err), 0) << err;
    auto j = nlohmann::json::parse(out);
    EXPECT_EQ(j["layout"], layout);
    EXPECT_NEAR(j["params_total"].get<double>() / 1e9, 8.84, 0.005);
    EXPECT_NEAR(j["params_total_no_embed"].get<double>() / 1e9, 8.30, 0.005);
    EXPECT_NEAR(j["params_active_no_embed"].get<double>() / 1e9, 0.754, 0.0005);
    // fp32 K and V of 40 attention layers × 2 KV heads × 128 dims.
    EXPECT_EQ(j["state_bytes_per_token"].get<int64_t>(), 40 * 2 * 2 * 128 * 4);
  }
}

TEST(Cli, ErrorsGoToStderrWithNonZeroExit) {
  struct Case {
    std::string args, expect;
  };
  const std::string m = tiny_a();
  std::vector<Case> cases = {
      {"logits -m " + m + " --ids 2,999 -o /tmp/zaya_never.npy", "outside the vocabulary"},
      {"logits -m " + m + " --ids 2,abc -o /tmp/zaya_never.npy", "not a non-negative token id"},
      {"logits -m " + m + " --ids 2,5 --prefill 3 -o /tmp/zaya_never.npy", "larger than"},
      {"generate -m /nonexistent/model --ids 2", "cannot read config"},
      {"info -m /nonexistent/model", "cannot read config"},
      {"frobnicate", ""},
  };
  for (const auto& c : cases) {
    std::string out, err;
    EXPECT_NE(test::run_command(zaya_cli() + " " + c.args, &out, &err), 0) << c.args;
    EXPECT_FALSE(err.empty()) << c.args;
    EXPECT_NE(err.find(c.expect), std::string::npos) << c.args << " -> " << err;
  }
}

// zaya bench --json: start-up (load, first token; cold then warm with --cold) and the --profile breakdown, whose
// parts add up to the step and whose products read the weights a decode step needs.
TEST(Cli, BenchReportsStartupAndProfile) {
  std::string out, err;
  ASSERT_EQ(test::run_command(zaya_cli() + " bench --json --cold --profile --batch 3 -p 8 -n 4 -r 1 --bw-gib 0.01 -m " + tiny_a(),
                              &out, &err), 0) << err;
  auto j = nlohmann::json::parse(out);
  ASSERT_EQ(j["startup"].size(), 2u);
  EXPECT_EQ(j["startup"][0]["page_cache"], "cold");
  EXPECT_EQ(j["startup"][1]["page_cache"], "warm");
  for (const auto& s : j["startup"]) {
    EXPECT_GT(s["load_s"].get<double>(), 0);
    EXPECT_GT(s["first_token_s"].get<double>(), 0);
    EXPECT_LE(s["resident_before_load"].get<double>(), 1.0);
  }
  EXPECT_GE(j["startup"][1]["resident_before_load"].get<double>(), j["startup"][0]["resident_before_load"].get<double>())
      << "the warm load follows a load";
  EXPECT_GT(j["startup"][1]["resident_before_load"].get<double>(), 0.5);
  const auto& p = j["profile"];
  ASSERT_EQ(p["parts"].size(), 5u);
  EXPECT_EQ(p["parts"][0]["name"], "attention (CCA)");
  double share = 0, kernel_mb = 0;
  for (const auto& part : p["parts"]) share += part["share"].get<double>();
  EXPECT_NEAR(share, 1.0, 1e-6);
  ASSERT_FALSE(p["kernels"].empty());
  for (const auto& k : p["kernels"]) kernel_mb += k["weight_mb_per_token"].get<double>();
  EXPECT_EQ(p["kernels"][0]["name"], "f32-tiles");  // tiny-a is an F32 checkpoint
  // One expert per MoE layer at most (the skip route reads none), the whole lm_head: at most what bench counts.
  const double bpt_mb = j["bytes_per_token"].get<double>() / 1e6;
  EXPECT_LE(kernel_mb, bpt_mb);
  EXPECT_GT(kernel_mb, 0.5 * bpt_mb);
  // Thread time: a share of threads × step, and the loops that used the workers.
  EXPECT_GE(p["thread_busy_share"].get<double>(), 0.0);
  EXPECT_LE(p["thread_busy_share"].get<double>(), 1.0 + 1e-9);
  EXPECT_GE(p["caller_wait_ms_per_step"].get<double>(), 0.0);
  EXPECT_EQ(p["threads"].get<size_t>(), j["threads"].get<size_t>());
  // One prefill broken down the same way, and --batch: 3 sequences decoded together, with their own breakdown.
  ASSERT_EQ(j["prefill_profile"]["parts"].size(), 5u);
  EXPECT_EQ(j["prefill_profile"]["tokens"], 1);
  ASSERT_TRUE(j.contains("batch"));
  EXPECT_EQ(j["batch"]["sequences"], 3);
  EXPECT_GT(j["batch"]["aggregate_gen_tok_s"].get<double>(), 0.0);
  EXPECT_NEAR(j["batch"]["vs_one_stream"].get<double>(),
              j["batch"]["aggregate_gen_tok_s"].get<double>() / j["gen_tok_s"].get<double>(), 1e-9);
  ASSERT_EQ(j["batch"]["profile"]["parts"].size(), 5u);
}
