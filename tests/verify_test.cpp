// zaya verify: passes on the golden bundles and fails, naming the problem, on deliberately broken copies.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <unistd.h>

#include "test_util.h"
#include "zaya/error.h"
#include "io/safetensors.h"
#include "io/safetensors_writer.h"
#include "zaya/verify.h"

namespace fs = std::filesystem;
using nlohmann::json;
using namespace zaya;

namespace {

std::string bundle(const std::string& name) { return test::require_path(test::data_dir() + "/golden/zaya1-bundles/" + name); }

using test::TempDir;

using test::broken_copy;
using test::expect_failure;
using test::Tensor;
using test::Tensors;

}  // namespace

TEST(Verify, GoldenBundlesPass) {
  for (const char* name : {"tiny-a-mxfp4", "tiny-a-jangtq4"}) {
    const VerifyReport r = verify_bundle(bundle(name));
    EXPECT_TRUE(r.ok()) << verify_report_table(r);
    EXPECT_EQ(r.keys, std::string(name) == "tiny-a-mxfp4" ? 146u : 152u);
    for (const auto& c : r.checks)
      if (c.name == "coverage") {
        EXPECT_NE(c.detail.find("102/102"), std::string::npos) << c.detail;
      }
  }
  // A float checkpoint in either layout is fine too.
  EXPECT_TRUE(verify_bundle(test::data_dir() + "/golden/zaya1-text/tiny-a").ok());
  EXPECT_TRUE(verify_bundle(test::data_dir() + "/golden/zaya1-text/tiny-a/native").ok());
}

TEST(Verify, MissingTensor) {
  TempDir tmp("verify_missing");
  const std::string d = broken_copy(bundle("tiny-a-mxfp4"), tmp / "b",
                                    [](Tensors& t) { t.erase("model.layers.2.self_attn.qkv.linear_k.scales"); });
  expect_failure(d, "coverage", "model.layers.2.self_attn.qkv.linear_k");
  const std::string d2 = broken_copy(bundle("tiny-a-jangtq4"), tmp / "c",
                                     [](Tensors& t) { t.erase("model.layers.3.zaya_block.router.router_mlp.0.bias"); });
  expect_failure(d2, "coverage", "missing tensor 'model.layers.3.zaya_block.router.router_mlp.0.bias'");
}

TEST(Verify, WrongBits) {
  TempDir tmp("verify_bits");
  // linear_q is 4-bit g32 over 64 inputs (8 words per row); 14 words per row would mean 7 bits.
  const std::string d = broken_copy(bundle("tiny-a-mxfp4"), tmp / "b", [](Tensors& t) {
    Tensor& w = t.at("model.layers.0.self_attn.qkv.linear_q.weight");
    w.spec.shape = {128, 14};
    w.bytes.assign(w.spec.nbytes(), '\x11');
  });
  expect_failure(d, "coverage", "implies 7-bit affine (wrong bits");
  // An MXTQ tensor whose tq_bits says 3 while its packing is 4-bit.
  const std::string d2 = broken_copy(bundle("tiny-a-jangtq4"), tmp / "c", [](Tensors& t) {
    t.at("model.layers.1.zaya_block.experts.switch_mlp.gate_proj.tq_bits").bytes = std::string(1, '\x03');
  });
  expect_failure(d2, "coverage", "for 3-bit MXTQ of in_features 64 (wrong bits");
}

TEST(Verify, TruncatedShard) {
  TempDir tmp("verify_trunc");
  const std::string d = tmp / "b";
  broken_copy(bundle("tiny-a-mxfp4"), d, [](Tensors&) {});
  ASSERT_TRUE(verify_bundle(d).ok());
  fs::resize_file(d + "/model-00002-of-00002.safetensors", fs::file_size(d + "/model-00002-of-00002.safetensors") - 100);
  expect_failure(d, "headers", "shard 'model-00002-of-00002.safetensors' does not open (truncated");
}

TEST(Verify, MissingOrBadSidecar) {
  TempDir tmp("verify_sidecar");
  const std::string d = broken_copy(bundle("tiny-a-jangtq4"), tmp / "b", [](Tensors&) {});
  fs::remove(d + "/jangtq_runtime.safetensors");
  expect_failure(d, "jangtq sidecar", "jangtq_runtime.safetensors is missing");
  // A sidecar without the 48-wide tables and with a codebook out of order.
  const std::vector<float> signs(64, 1.0f), cb = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 14, 13, 15};
  write_safetensors_file(d + "/jangtq_runtime.safetensors",
                         {{TensorSpec{"signs.64.42", DType::F32, {64}}, signs.data()},
                          {TensorSpec{"codebook.64.4", DType::F32, {16}}, cb.data()}});
  expect_failure(d, "jangtq sidecar", "sidecar lacks 'signs.48.42'");
  expect_failure(d, "jangtq sidecar", "sidecar 'signs.64.42' is not the sign vector of seed 42");
  expect_failure(d, "jangtq sidecar", "'codebook.64.4' is not a finite ascending codebook");
}

TEST(Verify, LeftoverLocalExpertsAndPassthroughFloor) {
  TempDir tmp("verify_local");
  const std::string d = broken_copy(bundle("tiny-a-mxfp4"), tmp / "b", [](Tensors& t) {
    TensorSpec s{"model.layers.1.zaya_block.experts.local_experts.0.linear_fc1.weight", DType::F16, {96, 64}};
    t[s.name] = Tensor{s, std::string(s.nbytes(), '\0')};
  });
  expect_failure(d, "no local_experts", "local_experts key left over: 'model.layers.1.zaya_block.experts.local_experts.0.linear_fc1.weight'");
  expect_failure(d, "coverage", "unexpected tensor 'model.layers.1.zaya_block.experts.local_experts.0.linear_fc1.weight'");
  // A router linear quantized below the passthrough floor (§7.2 keeps `.router.` F16).
  const std::string d2 = broken_copy(bundle("tiny-a-mxfp4"), tmp / "c", [](Tensors& t) {
    const std::string b = "model.layers.1.zaya_block.router.down_proj";
    Tensor& w = t.at(b + ".weight");
    const int64_t rows = w.spec.shape[0];
    w.spec = TensorSpec{w.spec.name, DType::U32, {rows, 8}};
    w.bytes.assign(w.spec.nbytes(), '\0');
    for (const char* part : {".scales", ".biases"}) {
      TensorSpec s{b + part, DType::F16, {rows, 2}};
      t[s.name] = Tensor{s, std::string(s.nbytes(), '\0')};
    }
  });
  expect_failure(d2, "passthrough floor", "'model.layers.1.zaya_block.router.down_proj' is quantized but the passthrough floor");
}

TEST(Verify, IndexDisagreesWithShards) {
  TempDir tmp("verify_index");
  const std::string d = broken_copy(bundle("tiny-a-mxfp4"), tmp / "b", [](Tensors&) {});
  json idx = json::parse(test::read_file(d + "/model.safetensors.index.json"));
  idx["metadata"]["total_size"] = 12345;
  idx["weight_map"]["model.extra.weight"] = "model-00001-of-00002.safetensors";
  std::ofstream(d + "/model.safetensors.index.json") << idx.dump(2);
  expect_failure(d, "index", "metadata.total_size 12345 matches neither");
  expect_failure(d, "headers", "index lists 'model.extra.weight' in model-00001-of-00002.safetensors but no shard holds it");
  // Missing shard and garbage config: still a report, never a crash.
  fs::remove(d + "/model-00001-of-00002.safetensors");
  std::ofstream(d + "/config.json") << "{ not json";
  expect_failure(d, "headers", "shard 'model-00001-of-00002.safetensors' is missing");
  expect_failure(d, "config", "not valid JSON");
  EXPECT_FALSE(verify_bundle(tmp / "nowhere").ok());
}

TEST(Verify, JsonAndCliExitCodes) {
  TempDir tmp("verify_cli");
  std::string out, err;
  int rc = test::run_command(test::cli_path() + " verify " + bundle("tiny-a-jangtq4"), &out, &err);
  EXPECT_EQ(rc, 0) << out << err;
  EXPECT_NE(out.find("result: PASS"), std::string::npos) << out;
  const std::string d = broken_copy(bundle("tiny-a-jangtq4"), tmp / "b", [](Tensors&) {});
  fs::remove(d + "/jangtq_runtime.safetensors");
  rc = test::run_command(test::cli_path() + " verify --json " + d, &out, &err);
  EXPECT_EQ(rc, 1) << out << err;
  const json j = json::parse(out);
  EXPECT_FALSE(j["ok"].get<bool>());
  bool named = false;
  for (const auto& c : j["checks"])
    if (c["name"] == "jangtq sidecar") named = c["status"] == "fail";
  EXPECT_TRUE(named) << out;
}

// VL checkpoints are recognised; their vision/LoRA tensors must stay float.
TEST(Verify, VisionTensorsStayFloat) {
  const std::string vl = test::require_path(test::data_dir() + "/golden/zaya1-vl/tiny-a");
  const VerifyReport ok = verify_bundle(vl);
  EXPECT_TRUE(ok.ok()) << verify_report_table(ok);
  EXPECT_NE(ok.kind.find("VL"), std::string::npos) << ok.kind;
  TempDir tmp("verify_vl");
  const std::string d = tmp / "b";
  fs::create_directories(d);
  fs::copy_file(vl + "/config.json", d + "/config.json");
  const TensorStore s = TensorStore::open(vl + "/model.safetensors");
  std::vector<std::pair<TensorSpec, const void*>> ts;
  for (const auto& n : s.names()) {
    const TensorView& t = *s.find(n);
    ts.push_back({TensorSpec{n, t.dtype, t.shape}, t.data});
  }
  const std::vector<uint16_t> sc(64 * 2, 0);
  ts.push_back({TensorSpec{"vision_tower.blocks.0.attn.qkv.scales", DType::F16, {64, 2}}, sc.data()});
  write_safetensors_file(d + "/model.safetensors", ts);
  expect_failure(d, "vision (VL)", "vision/LoRA tensor 'vision_tower.blocks.0.attn.qkv.scales' is quantized");
}
