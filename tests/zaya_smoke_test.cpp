// zaya smoke (zaya/smoke.h): trained-small and its converted bundles pass against the float source; a bundle whose
// numbers were damaged while the file stays valid fails with named reference checks; --strict makes the behaviour
// checks decide; broken bundles are reported, never thrown; bad input gives clear errors.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "test_util.h"
#include "zaya/convert.h"
#include "zaya/error.h"
#include "zaya/smoke.h"
#include "zaya/verify.h"

using namespace zaya;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

std::string trained_small() { return test::require_path(test::data_dir() + "/golden/zaya1-text/trained-small"); }
std::string zaya_cli() { return test::require_path(test::cli_path()); }

std::string convert(const test::TempDir& dir, Profile p) {
  const std::string out = dir / profile_name(p);
  ConvertOptions o;
  o.profile = p;
  convert_checkpoint(trained_small(), out, o);
  return out;
}

const SmokeCheck* find(const SmokeReport& r, const std::string& name) {
  for (const auto& c : r.checks)
    if (c.name == name) return &c;
  return nullptr;
}

// Flips the sign of every F16 value of the named tensors in a bundle's (single) shard: the file stays valid.
void negate_f16(const std::string& bundle, const std::vector<std::string>& names) {
  std::string shard;
  for (const auto& f : fs::directory_iterator(bundle))
    if (f.path().filename().string().starts_with("model-")) shard = f.path().string();
  ASSERT_FALSE(shard.empty());
  std::string bytes = test::read_file(shard);
  uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  const json header = json::parse(bytes.substr(8, n));
  for (const auto& name : names) {
    ASSERT_TRUE(header.contains(name)) << name;
    ASSERT_EQ(header[name]["dtype"], "F16");
    const size_t b = header[name]["data_offsets"][0], e = header[name]["data_offsets"][1];
    for (size_t i = 8 + n + b; i < 8 + n + e; i += 2) bytes[i + 1] = static_cast<char>(bytes[i + 1] ^ 0x80);
  }
  std::ofstream(shard, std::ios::binary | std::ios::trunc) << bytes;
}

}  // namespace

TEST(ZayaSmoke, TrainedSmallAgainstItselfPassesEverySection) {
  SmokeOptions o;
  o.ref_dir = trained_small();
  const SmokeReport r = run_smoke(trained_small(), o);
  EXPECT_TRUE(r.ok()) << r.markdown();
  for (const char* name : {"structure.headers", "structure.coverage", "structure.load", "structure.tokenizer",
                           "state.prefill_decode", "state.batch", "state.snapshot_restore", "reference.kld_mean",
                           "reference.top1_agree", "reference.ppl_ratio", "reference.greedy_agreement", "speed.prompt",
                           "speed.generation", "generation.arithmetic.greedy.utf8", "generation.capital.seeded.utf8"}) {
    const SmokeCheck* c = find(r, name);
    ASSERT_NE(c, nullptr) << name;
    EXPECT_EQ(c->status, SmokeCheck::Pass) << name << ": " << c->figure;
    EXPECT_FALSE(c->threshold.empty()) << name;
  }
  EXPECT_EQ(find(r, "reference.kld_mean")->figure, "KLD mean 0.00000");
  EXPECT_EQ(find(r, "state.snapshot_restore")->figure, "max |Δlogit| 0.00e+00");
  // Behaviour checks are present for every sample and marked; the image prompt is skipped on a text model.
  EXPECT_TRUE(find(r, "generation.arithmetic.greedy.expected_answer")->behaviour);
  EXPECT_TRUE(find(r, "generation.tool-call.seeded.tool_call")->behaviour);
  EXPECT_TRUE(find(r, "generation.think.greedy.reasoning")->behaviour);
  EXPECT_EQ(find(r, "generation.image")->status, SmokeCheck::Skip);
  EXPECT_EQ(r.samples.size(), 10u);  // 5 text prompts × greedy and seeded
  const std::string md = r.markdown();
  for (const char* part : {"# zaya smoke report", "**PASS**", "## Structure", "## State contract", "## Generation",
                           "### Samples", "#### capital: greedy", "## Reference comparison", "## Speed", "≤ 1e-03"})
    EXPECT_NE(md.find(part), std::string::npos) << part;
  const auto j = r.json();
  EXPECT_TRUE(j["ok"].get<bool>());
  EXPECT_GT(j["speed"]["gen_tok_s"].get<double>(), 0.0);
}

TEST(ZayaSmoke, StrictMakesBehaviourDecide) {
  // A 1 M-parameter licence-text model cannot answer "2+2" through a chat template: reported always, deciding only
  // with strict.
  SmokeOptions o;
  o.strict = true;
  const SmokeReport r = run_smoke(trained_small(), o);
  EXPECT_FALSE(r.ok());
  const auto bad = r.failed();
  EXPECT_NE(std::find(bad.begin(), bad.end(), "generation.arithmetic.greedy.expected_answer"), bad.end());
  for (const auto& name : bad) EXPECT_TRUE(find(r, name)->behaviour) << name << " is not a behaviour check";
  EXPECT_EQ(find(r, "reference.kld_mean"), nullptr) << "no reference section without a reference";
}

TEST(ZayaSmoke, ConvertedBundlesPassAndADamagedOneFailsByName) {
  test::TempDir dir("smoke_bundles");
  for (Profile p : {Profile::Mxfp4, Profile::Jangtq4, Profile::Q8}) {
    const std::string b = convert(dir, p);
    std::string out, err;
    EXPECT_EQ(test::run_command(zaya_cli() + " smoke -q -m " + b + " --ref " + trained_small() + " -o " + (dir / "r.md"),
                                &out, &err), 0) << profile_name(p) << "\n" << err << test::read_file(dir / "r.md");
  }
  // Damage: one attention output projection negated (scales and biases), the file still valid.
  const std::string bad = dir / "damaged";
  fs::copy(dir / "mxfp4", bad);
  negate_f16(bad, {"model.layers.2.self_attn.o_proj.scales", "model.layers.2.self_attn.o_proj.biases"});
  EXPECT_TRUE(verify_bundle(bad).ok()) << "the damaged bundle is still a valid file";
  std::string out, err;
  EXPECT_EQ(test::run_command(zaya_cli() + " smoke -q --json -m " + bad + " --ref " + trained_small(), &out, &err), 1) << err;
  const json j = json::parse(out);
  EXPECT_FALSE(j["ok"].get<bool>());
  const auto failed = j["failed"].get<std::vector<std::string>>();
  EXPECT_NE(std::find(failed.begin(), failed.end(), "reference.kld_mean"), failed.end()) << out;
  EXPECT_NE(std::find(failed.begin(), failed.end(), "reference.top1_agree"), failed.end()) << out;
  EXPECT_NE(err.find("FAIL: reference.kld_mean"), std::string::npos) << err;
  for (const auto& c : j["checks"])
    if (c["section"] == "structure" || c["section"] == "state") {
      EXPECT_NE(c["status"], "FAIL") << c.dump();
    }
}

TEST(ZayaSmoke, BrokenBundleIsReportedNotThrown) {
  test::TempDir dir("smoke_broken");
  const std::string b = convert(dir, Profile::Q8);
  const std::string shard = b + "/model.safetensors";
  ASSERT_TRUE(fs::exists(shard));
  fs::resize_file(shard, fs::file_size(shard) / 2);  // truncated
  SmokeReport r;
  ASSERT_NO_THROW(r = run_smoke(b, SmokeOptions{}));
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(find(r, "structure.headers")->status, SmokeCheck::Fail);
  EXPECT_EQ(find(r, "structure.load")->status, SmokeCheck::Fail);
  EXPECT_EQ(find(r, "state.prefill_decode"), nullptr) << "nothing runs on a model that does not load";
}

TEST(ZayaSmoke, CliOutputsAndBadInput) {
  test::TempDir dir("smoke_cli");
  std::ofstream(dir / "one.json") << R"({"prompts": [{"id": "lic", "messages": [{"role": "user", "content": "Licence?"}],
                                       "max_tokens": 8, "expect": "zzzz"}]})";
  std::ofstream(dir / "bad.json") << "{not json";
  std::ofstream(dir / "none.json") << R"({"prompts": []})";
  std::ofstream(dir / "empty.txt") << "";
  const std::string m = " smoke -q -m " + trained_small();
  std::string out, err;
  // Markdown on stdout by default; a custom prompt set replaces the built-in one.
  ASSERT_EQ(test::run_command(zaya_cli() + m + " --prompts " + (dir / "one.json"), &out, &err), 0) << err;
  EXPECT_NE(out.find("#### lic: greedy"), std::string::npos) << out;
  EXPECT_EQ(out.find("#### capital"), std::string::npos);
  EXPECT_NE(out.find("`generation.lic.greedy.expected_answer` | **FAIL** (behaviour, not deciding)"), std::string::npos) << out;
  EXPECT_EQ(test::run_command(zaya_cli() + m + " --strict --prompts " + (dir / "one.json"), &out, &err), 1);
  EXPECT_NE(err.find("generation.lic.greedy.expected_answer"), std::string::npos) << err;
  // A reference that does not load is a failed check, not an error.
  EXPECT_EQ(test::run_command(zaya_cli() + m + " --prompts " + (dir / "one.json") + " --ref /nonexistent/ref --json", &out, &err), 1);
  EXPECT_NE(out.find("\"reference.load\""), std::string::npos) << out;
  struct Case {
    std::string args, expect;
  };
  const std::vector<Case> cases = {
      {" smoke -m /nonexistent/model", "cannot read config.json"},
      {m + " --prompts " + (dir / "bad.json"), "not valid JSON"},
      {m + " --prompts " + (dir / "none.json"), "non-empty \"prompts\" list"},
      {m + " --prompts " + (dir / "missing.json"), "cannot read the prompt file"},
      {m + " --ref " + trained_small() + " -f " + (dir / "empty.txt"), "the text is empty"},
  };
  for (const auto& c : cases) {
    EXPECT_EQ(test::run_command(zaya_cli() + c.args, &out, &err), 1) << c.args;
    EXPECT_NE(err.find("zaya: error: " ), std::string::npos) << c.args << " -> " << err;
    EXPECT_NE(err.find(c.expect), std::string::npos) << c.args << " -> " << err;
  }
}
