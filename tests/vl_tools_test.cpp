// The model tools on ZAYA1-VL folders: `zaya info` (both parts of the model), `zaya verify` (the language model,
// the vision tower and the LoRA of a VL checkpoint or bundle), `zaya convert` / `zaya synth` into the VL bundle
// layout, and `zaya bench --image`.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "io/safetensors.h"
#include "test_util.h"
#include "zaya/convert.h"
#include "zaya/npy.h"
#include "zaya/runtime.h"
#include "zaya/verify.h"

namespace fs = std::filesystem;
using nlohmann::json;
using namespace zaya;

namespace {

std::string cli() { return test::require_path(test::cli_path()); }
std::string tiny_a() { return test::require_path(test::data_dir() + "/golden/zaya1-vl/tiny-a"); }
std::string real_config() { return test::require_path(test::data_dir() + "/golden/zaya1-vl/real-config"); }

json run_json(const std::string& args) {
  std::string out, err;
  EXPECT_EQ(test::run_command(cli() + " " + args, &out, &err), 0) << args << "\n" << err;
  return json::parse(out);
}

// Element counts of a safetensors file's tensors, split by whether the name starts with `prefix` (header only).
std::pair<int64_t, int64_t> count_elements(const std::string& file, const std::string& prefix) {
  std::ifstream in(file, std::ios::binary);
  uint64_t n = 0;
  in.read(reinterpret_cast<char*>(&n), 8);
  std::string header(n, ' ');
  in.read(header.data(), static_cast<std::streamsize>(n));
  int64_t with = 0, without = 0;
  const json h = json::parse(header);
  for (auto it = h.begin(); it != h.end(); ++it) {
    const std::string& name = it.key();
    const json& t = it.value();
    if (name == "__metadata__") continue;
    int64_t k = 1;
    for (const auto& d : t["shape"]) k *= d.get<int64_t>();
    (name.rfind(prefix, 0) == 0 ? with : without) += k;
  }
  return {with, without};
}

// The golden prompt of tiny-a (30 ids, 20 image tokens), comma-separated.
std::string golden_prompt() {
  const TensorStore in = TensorStore::open(tiny_a() + "/inputs.safetensors");
  std::string ids;
  for (int64_t v : to_i64(in.require("input_ids"))) {
    if (!ids.empty()) ids += ',';
    ids += std::to_string(v);
  }
  return ids;
}

std::vector<float> image_logits(const std::string& model, const std::string& out) {
  std::string err;
  EXPECT_EQ(test::run_command(cli() + " logits -q -m " + model + " --image " + tiny_a() + "/image.png --ids " +
                                  golden_prompt() + " -o " + out, nullptr, &err), 0) << model << "\n" << err;
  return read_npy(out).data;
}

ConvertResult convert(const std::string& dst, Profile p) {
  ConvertOptions o;
  o.profile = p;
  o.threads = 1;
  return convert_checkpoint(tiny_a(), dst, o);
}

json read_json(const std::string& path) { return json::parse(test::read_file(path)); }

}  // namespace

TEST(VlTools, InfoOnTinyACountsBothPartsExactly) {
  const json j = run_json("info --json -m " + tiny_a());
  EXPECT_EQ(j["layout"], "fused (ZAYA1-VL)");
  EXPECT_EQ(j["attention_layers"], 3);
  ASSERT_TRUE(j.contains("vision")) << j.dump(2);
  const json& v = j["vision"];
  EXPECT_EQ(v["depth"], 4);
  EXPECT_EQ(v["hidden_size"], 64);
  EXPECT_EQ(v["heads"], 4);
  EXPECT_EQ(v["window_size"], 56);
  EXPECT_EQ(v["fullatt_block_indexes"], json::array({2}));
  // The counts from the architecture equal the tensors the reference wrote (balancing biases are buffers).
  const auto [vision, decoder] = count_elements(tiny_a() + "/model.safetensors", "vision_tower.");
  EXPECT_EQ(v["params"].get<int64_t>(), vision);
  EXPECT_EQ(v["params"].get<int64_t>(), 261760);
  EXPECT_EQ(j["params_total"].get<int64_t>() + j["buffers"].get<int64_t>(), decoder);
  EXPECT_EQ(j["params_with_vision"].get<int64_t>(), j["params_total"].get<int64_t>() + vision);
  // LoRA: per block 5 attention pairs (rank 4) + per expert fc1/fc2 pairs (rank 8), 3 blocks, 4 experts.
  const int64_t attn = 4 * ((64 + 64) + (64 + 32) + 2 * (64 + 16) + (64 + 64));
  const int64_t mlp = 8 * ((64 + 64) + (32 + 64));
  EXPECT_EQ(j["params_lora"].get<int64_t>(), 3 * (attn + 4 * mlp));
  EXPECT_EQ(j["image_token_id"], 380);
  EXPECT_EQ(j["vision_start_token_id"], 378);
  EXPECT_EQ(j["vision_end_token_id"], 379);
  EXPECT_EQ(j["attention_mask_default"], "zyphra-fa2-prefix");
  EXPECT_TRUE(j["weights_on_disk"].get<bool>());

  std::string out, err;
  ASSERT_EQ(test::run_command(cli() + " info -m " + tiny_a(), &out, &err), 0) << err;
  for (const char* want : {"vision tower", "vision-LoRA", "image 380, start 378, end 379", "zyphra-fa2-prefix",
                           "261760", "window 56 px"})
    EXPECT_NE(out.find(want), std::string::npos) << want << "\n" << out;
}

TEST(VlTools, InfoOnTheRealConfigWithoutWeights) {
  const json j = run_json("info --json -m " + real_config());
  EXPECT_FALSE(j["weights_on_disk"].get<bool>());
  const json& v = j["vision"];
  EXPECT_EQ(v["depth"], 32);
  EXPECT_EQ(v["hidden_size"], 1280);
  EXPECT_EQ(v["heads"], 16);
  EXPECT_EQ(v["head_dim"], 80);
  EXPECT_EQ(v["patch_size"], 14);
  EXPECT_EQ(v["spatial_merge_size"], 2);
  EXPECT_EQ(v["window_size"], 112);
  EXPECT_EQ(v["out_hidden_size"], 2048);
  EXPECT_EQ(v["max_pixels"], 12845056);
  EXPECT_NEAR(v["params"].get<double>() / 1e9, 0.668, 0.0005);
  // The decoder is the text ZAYA1-8B (8.84 B) plus the vision-LoRA: 40 × (attention 102 400 + 16 experts × 327 680).
  EXPECT_EQ(j["params_lora"].get<int64_t>(), 40 * (102400 + 16 * 327680));
  EXPECT_NEAR((j["params_total"].get<double>() - j["params_lora"].get<double>()) / 1e9, 8.84, 0.005);
  EXPECT_EQ(j["image_token_id"], 262147);
  EXPECT_EQ(j["lora_rank_attn"], 8);
  EXPECT_EQ(j["lora_rank_mlp"], 32);
  // bf16 estimate covers decoder, buffers and vision tower.
  EXPECT_EQ(j["weight_bytes"].get<int64_t>(),
            2 * (j["params_total"].get<int64_t>() + j["buffers"].get<int64_t>() + v["params"].get<int64_t>()));
}

TEST(VlTools, InfoOnATextModelHasNoVisionPart) {
  const json j = run_json("info --json -m " + test::require_path(test::data_dir() + "/golden/zaya1-text/tiny-a"));
  EXPECT_FALSE(j.contains("vision"));
  EXPECT_FALSE(j.contains("params_lora"));
}

// ---- zaya verify on VL folders -------------------------------------------------------------------------------

TEST(VlTools, VerifyChecksTheWholeVlCheckpoint) {
  const VerifyReport r = verify_bundle(tiny_a());
  ASSERT_TRUE(r.ok()) << verify_report_table(r);
  for (const auto& c : r.checks) {
    if (c.name == "config") {
      EXPECT_NE(c.detail.find("fused (ZAYA1-VL) config"), std::string::npos) << c.detail;
    } else if (c.name == "coverage") {  // every tensor of the file is an architecture tensor: decoder, LoRA, tower
      EXPECT_NE(c.detail.find("249/249"), std::string::npos) << c.detail;
    } else if (c.name == "vision (VL)") {
      EXPECT_NE(c.detail.find("78 LoRA"), std::string::npos) << c.detail;
    }
  }
}

TEST(VlTools, VerifyFailsOnABrokenTextConfig) {
  test::TempDir tmp("vl_verify_cfg");
  const std::string d = test::broken_copy(tiny_a(), tmp / "a", [](test::Tensors&) {});
  json cfg = read_json(d + "/config.json");
  cfg["num_attention_heads"] = 3;  // not a multiple of the 2 KV heads
  std::ofstream(d + "/config.json") << cfg.dump(2);
  test::expect_failure(d, "config", "language model:");
  test::expect_failure(d, "config", "num_attention_heads = 3");
  cfg.erase("num_attention_heads");
  std::ofstream(d + "/config.json") << cfg.dump(2);
  test::expect_failure(d, "config", "'num_attention_heads' is missing");
  // The vision tower's config is checked too.
  cfg = read_json(tiny_a() + "/config.json");
  cfg["vision_config"]["num_heads"] = 5;
  std::ofstream(d + "/config.json") << cfg.dump(2);
  test::expect_failure(d, "config", "vision tower:");
}

TEST(VlTools, VerifyFailsOnAMissingOrMisshapenTensor) {
  test::TempDir tmp("vl_verify_tensors");
  test::expect_failure(test::broken_copy(tiny_a(), tmp / "a", [](test::Tensors& t) {
                         t.erase("model.layers.1.attn.self_attn.qkv.linear_q.weight");
                       }),
                       "coverage", "missing tensor 'model.layers.1.attn.self_attn.qkv.linear_q.weight'");
  test::expect_failure(test::broken_copy(tiny_a(), tmp / "b", [](test::Tensors& t) {
                         t.erase("vision_tower.blocks.3.mlp.down_proj.bias");
                       }),
                       "coverage", "missing tensor 'vision_tower.blocks.3.mlp.down_proj.bias'");
  test::expect_failure(test::broken_copy(tiny_a(), tmp / "c", [](test::Tensors& t) {
                         t.erase("model.layers.2.mlp.zaya_block.experts.local_experts.3.lora_fc2.1.weight");
                       }),
                       "coverage", "lora_fc2.1.weight");
  // A LoRA A matrix of the wrong rank.
  test::expect_failure(test::broken_copy(tiny_a(), tmp / "d", [](test::Tensors& t) {
                         test::Tensor& a = t.at("model.layers.0.attn.self_attn.qkv.lora_linear_q.0.weight");
                         a.spec.shape = {2, 128};
                       }),
                       "coverage", "'model.layers.0.attn.self_attn.qkv.lora_linear_q.0.weight' has shape [2, 128]");
  // A vision tensor that is not float.
  test::expect_failure(test::broken_copy(tiny_a(), tmp / "e", [](test::Tensors& t) {
                         t.at("vision_tower.merger.ln_q.weight").spec.dtype = DType::I32;
                       }),
                       "vision (VL)", "'vision_tower.merger.ln_q.weight' is I32, not float");
  // No preprocessor config: the vision encoder cannot run.
  const std::string f = test::broken_copy(tiny_a(), tmp / "f", [](test::Tensors&) {});
  fs::remove(f + "/preprocessor_config.json");
  test::expect_failure(f, "vision (VL)", "preprocessor_config.json is missing");
}

// ---- zaya convert of a VL checkpoint ---------------------------------------------------------------------------

TEST(VlTools, ConvertWritesTheVlMxfp4Layout) {
  test::TempDir tmp("vl_convert_layout");
  const std::string d = tmp / "mxfp4";
  const ConvertResult res = convert(d, Profile::Mxfp4);
  EXPECT_EQ(res.shards.size(), 1u);
  const VerifyReport r = verify_bundle(d);
  EXPECT_TRUE(r.ok()) << verify_report_table(r);
  EXPECT_NE(r.kind.find("JANG MXFP4 bundle, fused (ZAYA1-VL) layout, VL"), std::string::npos) << r.kind;

  const json cfg = read_json(d + "/config.json");
  EXPECT_EQ(cfg["model_type"], "zaya1_vl");
  ASSERT_TRUE(cfg.contains("text_config"));  // §7.2: nested language config
  EXPECT_EQ(cfg["text_config"]["hidden_size"], 64);
  EXPECT_FALSE(cfg.contains("hidden_size"));
  EXPECT_EQ(cfg["image_token_id"], 380);
  EXPECT_TRUE(cfg.contains("vision_config"));
  EXPECT_EQ(cfg["quantization"]["mode"], "affine");
  EXPECT_FALSE(cfg["quantization"].contains("embed_bits"));  // "The VL variant has no embed_bits"
  const json jang = read_json(d + "/jang_config.json");
  EXPECT_EQ(jang["has_vision"], true);
  EXPECT_EQ(jang["architecture"], "zaya1_vl");
  EXPECT_EQ(jang["profile"], "MXFP4");
  EXPECT_TRUE(fs::exists(d + "/preprocessor_config.json"));
  EXPECT_EQ(test::read_file(d + "/preprocessor_config.json"), test::read_file(tiny_a() + "/preprocessor_config.json"));

  const TensorStore s = TensorStore::open(d);
  auto dtype = [&](const std::string& n) {
    const TensorView* t = s.find(n);
    return t ? std::string(dtype_name(t->dtype)) : std::string("absent");
  };
  // Language model: as the text bundles (4-bit linears, 8-bit embedding, F16 passthrough), experts stacked with
  // `.mlp.` dropped.
  EXPECT_EQ(dtype("model.layers.0.attn.self_attn.qkv.linear_q.weight"), "U32");
  EXPECT_EQ(s.find("model.layers.0.attn.self_attn.qkv.linear_q.weight")->shape, (std::vector<int64_t>{64, 8}));
  EXPECT_EQ(s.find("model.embed_tokens.weight")->shape, (std::vector<int64_t>{384, 16}));
  EXPECT_EQ(dtype("model.layers.0.attn.input_norm.weight"), "F16");
  EXPECT_EQ(dtype("model.layers.2.mlp.zaya_block.router.router_mlp.0.weight"), "F16");
  EXPECT_EQ(s.find("model.layers.1.zaya_block.experts.switch_mlp.gate_proj.weight")->shape,
            (std::vector<int64_t>{4, 32, 8}));
  EXPECT_EQ(dtype("model.layers.1.mlp.zaya_block.experts.local_experts.0.linear_fc1.weight"), "absent");
  // Vision tower and LoRA: F16 under their source names, shapes unchanged.
  EXPECT_EQ(dtype("vision_tower.blocks.0.attn.qkv.weight"), "F16");
  EXPECT_EQ(dtype("vision_tower.blocks.0.attn.qkv.scales"), "absent");
  EXPECT_EQ(s.find("vision_tower.patch_embed.proj.weight")->shape, (std::vector<int64_t>{64, 3, 1, 14, 14}));
  EXPECT_EQ(dtype("model.layers.0.attn.self_attn.qkv.lora_linear_q.1.weight"), "F16");
  EXPECT_EQ(dtype("model.layers.2.mlp.zaya_block.experts.local_experts.3.lora_fc1.0.weight"), "F16");
  size_t vision = 0, lora = 0;
  for (const auto& n : s.names()) {
    vision += n.rfind("vision_tower.", 0) == 0;
    lora += n.find(".lora_") != std::string::npos;
  }
  EXPECT_EQ(vision, 54u);
  EXPECT_EQ(lora, 78u);

  // Deterministic: a second conversion is byte-for-byte the same.
  const std::string d2 = tmp / "again";
  convert(d2, Profile::Mxfp4);
  for (const char* f : {"config.json", "jang_config.json", "model.safetensors.index.json", "model-00001-of-00001.safetensors"})
    EXPECT_EQ(test::read_file(d + "/" + f), test::read_file(d2 + "/" + f)) << f;
}

// Every profile's bundle loads and runs with an image, close to the float source (quantization noise only), and
// passes verify.
TEST(VlTools, ConvertedBundlesRunWithAnImage) {
  test::TempDir tmp("vl_convert_run");
  const std::vector<float> ref = image_logits(tiny_a(), tmp / "ref.npy");
  const size_t V = 384, L = ref.size() / V;
  ASSERT_EQ(L, 30u);
  // Loose bounds over the measured noise (|logits| ≤ ~5; the random tiny routers have small margins, so 4-bit
  // profiles flip a route somewhere, as for the text bundles); the 4-bit g64 and E2M1 profiles flip the next token.
  struct Bound {
    Profile p;
    double max_abs, mean_abs;
    bool greedy_kept;
  };
  for (const Bound b : {Bound{Profile::Mxfp4, 2.0, 0.3, true}, Bound{Profile::Jangtq4, 0.6, 0.08, true},
                        Bound{Profile::Q8, 0.5, 0.03, true}, Bound{Profile::Q4, 2.0, 0.3, false},
                        Bound{Profile::Mxfp4E2m1, 2.5, 0.4, false}, Bound{Profile::Bf16, 0.1, 0.02, true}}) {
    const std::string d = tmp / profile_name(b.p);
    convert(d, b.p);
    const VerifyReport r = verify_bundle(d);
    EXPECT_TRUE(r.ok()) << verify_report_table(r);
    const std::vector<float> got = image_logits(d, tmp / (std::string(profile_name(b.p)) + ".npy"));
    ASSERT_EQ(got.size(), ref.size()) << profile_name(b.p);
    double mx = 0, sum = 0;
    size_t agree = 0;
    for (size_t i = 0; i < got.size(); ++i) {
      mx = std::max(mx, static_cast<double>(std::fabs(got[i] - ref[i])));
      sum += std::fabs(got[i] - ref[i]);
    }
    for (size_t t = 0; t < L; ++t) {
      const float* g = &got[t * V];
      const float* w = &ref[t * V];
      agree += std::max_element(g, g + V) - g == std::max_element(w, w + V) - w;
    }
    std::printf("%-10s max|dlogit| %.3f mean %.4f argmax agreement %zu/%zu\n", profile_name(b.p), mx, sum / got.size(),
                agree, L);
    EXPECT_LE(mx, b.max_abs) << profile_name(b.p);
    EXPECT_LE(sum / got.size(), b.mean_abs) << profile_name(b.p);
    // The greedy next token after the golden prompt (fa2 mask: 193) is kept.
    const float* last = &got[(L - 1) * V];
    if (b.greedy_kept) {
      EXPECT_EQ(std::max_element(last, last + V) - last, 193) << profile_name(b.p);
    }
  }
}

// Damaged copies of a converted VL bundle: the language model's nested config, a stacked expert, a LoRA tensor that
// was quantized.
TEST(VlTools, VerifyFailsOnDamagedVlBundles) {
  test::TempDir tmp("vl_verify_bundle");
  const std::string b = tmp / "mxfp4";
  convert(b, Profile::Mxfp4);
  const std::string a = test::broken_copy(b, tmp / "a", [](test::Tensors&) {});
  ASSERT_TRUE(verify_bundle(a).ok());
  json cfg = read_json(a + "/config.json");
  cfg["text_config"].erase("ffn_hidden_size");
  std::ofstream(a + "/config.json") << cfg.dump(2);
  test::expect_failure(a, "config", "'ffn_hidden_size' is missing");

  const std::string up = "model.layers.1.zaya_block.experts.switch_mlp.up_proj";
  const std::string c = test::broken_copy(b, tmp / "c", [&](test::Tensors& t) {
    for (const char* s : {".weight", ".scales", ".biases"}) t.erase(up + s);
  });
  test::expect_failure(c, "switch_mlp experts", "'" + up + "' is missing");
  test::expect_failure(c, "coverage", "missing tensor '" + up + ".weight'");

  // A LoRA B matrix stored as 8-bit affine instead of float.
  const std::string lb = "model.layers.0.attn.self_attn.lora_linear_o.1";
  const std::string d = test::broken_copy(b, tmp / "d", [&](test::Tensors& t) {
    t.erase(lb + ".weight");  // [64, 4]: rank 4 is narrower than a group; pretend a group of 4
    t[lb + ".weight"] = test::Tensor{TensorSpec{lb + ".weight", DType::U32, {64, 1}}, std::string(64 * 4, '\0')};
    t[lb + ".scales"] = test::Tensor{TensorSpec{lb + ".scales", DType::F16, {64, 1}}, std::string(64 * 2, '\0')};
    t[lb + ".biases"] = test::Tensor{TensorSpec{lb + ".biases", DType::F16, {64, 1}}, std::string(64 * 2, '\0')};
  });
  test::expect_failure(d, "vision (VL)", "'" + lb + ".scales' is quantized");

  // The jang_config must say the bundle has vision.
  const std::string e = test::broken_copy(b, tmp / "e", [](test::Tensors&) {});
  json jang = read_json(e + "/jang_config.json");
  jang["has_vision"] = false;
  std::ofstream(e + "/jang_config.json") << jang.dump(2);
  test::expect_failure(e, "config", "has_vision = false");
}

// ---- zaya synth of a VL config ----------------------------------------------------------------------------------

namespace {

// The real ZAYA1-VL-8B config shrunk to a few hundred thousand parameters (every other key as in the real one).
json shrunken_real_config() {
  json c = read_json(real_config() + "/config.json");
  c["hidden_size"] = 64;
  c["num_hidden_layers"] = 2;
  c["num_experts"] = 4;
  c["vocab_size"] = 512;
  c["head_dim"] = 16;
  c["num_attention_heads"] = 4;
  c["ffn_hidden_size"] = 64;
  c["zaya_mlp_expansion"] = 16;
  c["vision_lora_rank_attn"] = 4;
  c["vision_lora_rank_mlp"] = 8;
  c["image_token_id"] = 500;
  c["vision_start_token_id"] = 498;
  c["vision_end_token_id"] = 499;
  c["eos_token_id"] = 1;
  json& v = c["vision_config"];
  v["depth"] = 2;
  v["hidden_size"] = 64;
  v["num_heads"] = 4;
  v["intermediate_size"] = 96;
  v["out_hidden_size"] = 64;
  v["window_size"] = 56;
  v["fullatt_block_indexes"] = {1};
  return c;
}

}  // namespace

TEST(VlTools, SynthMakesARunnableVlModel) {
  test::TempDir tmp("vl_synth");
  fs::create_directories(tmp / "cfg");
  std::ofstream(tmp / "cfg/config.json") << shrunken_real_config().dump(2);
  std::string out, err;
  ASSERT_EQ(test::run_command(cli() + " synth -q -c " + (tmp / "cfg/config.json") + " -p mxfp4 " + (tmp / "a"), &out, &err), 0)
      << err;
  const VerifyReport r = verify_bundle(tmp / "a");
  EXPECT_TRUE(r.ok()) << verify_report_table(r);
  // Decoder (quantized), LoRA and vision tower (F16), and ZAYA1-VL-8B's preprocessor settings (none beside the config).
  const TensorStore s = TensorStore::open(tmp / "a");
  size_t vision = 0, lora = 0;
  for (const auto& n : s.names()) {
    vision += n.rfind("vision_tower.", 0) == 0;
    lora += n.find(".lora_") != std::string::npos;
  }
  EXPECT_EQ(vision, 1u + 12u * 2u + 5u);  // patch embedding, 2 blocks, merger
  EXPECT_EQ(lora, 2u * (10u + 4u * 4u));
  EXPECT_EQ(s.find("model.layers.1.zaya_block.experts.switch_mlp.down_proj.weight")->dtype, DType::U32);
  EXPECT_EQ(s.find("vision_tower.blocks.1.mlp.down_proj.weight")->dtype, DType::F16);
  const json pre = read_json(tmp / "a/preprocessor_config.json");
  EXPECT_EQ(pre["max_pixels"], 12845056);
  EXPECT_EQ(pre["temporal_patch_size"], 1);
  // Norm-like vectors start at 1 (the merger's ln_q included), biases at 0.
  EXPECT_EQ(to_f32(*s.find("vision_tower.merger.ln_q.weight")), std::vector<float>(64, 1.0f));
  EXPECT_EQ(to_f32(*s.find("vision_tower.blocks.0.attn.qkv.bias")), std::vector<float>(192, 0.0f));

  // It runs with an image: 20 image tokens for tiny-a's 100×130 picture, finite logits.
  std::string ids = "2,498";
  for (int i = 0; i < 20; ++i) ids += ",500";
  ids += ",499,7";
  ASSERT_EQ(test::run_command(cli() + " logits -q -m " + (tmp / "a") + " --image " + tiny_a() + "/image.png --ids " + ids +
                                  " -o " + (tmp / "l.npy"), &out, &err), 0) << err;
  const std::vector<float> logits = read_npy(tmp / "l.npy").data;
  ASSERT_EQ(logits.size(), 24u * 512u);
  for (float x : logits) ASSERT_TRUE(std::isfinite(x));

  // A preprocessor_config.json beside the config is copied; the weights depend on the seed only (not the threads).
  fs::copy_file(tiny_a() + "/preprocessor_config.json", tmp / "cfg/preprocessor_config.json");
  ASSERT_EQ(test::run_command(cli() + " synth -q -t 2 -c " + (tmp / "cfg") + " -p mxfp4 " + (tmp / "b"), &out, &err), 0) << err;
  EXPECT_EQ(test::read_file(tmp / "b/preprocessor_config.json"), test::read_file(tiny_a() + "/preprocessor_config.json"));
  EXPECT_EQ(test::read_file(tmp / "a/model-00001-of-00001.safetensors"), test::read_file(tmp / "b/model-00001-of-00001.safetensors"));
  // The float profile keeps the source layout (per-expert tensors) and verifies too.
  ASSERT_EQ(test::run_command(cli() + " synth -q -c " + (tmp / "cfg") + " -p bf16 " + (tmp / "f"), &out, &err), 0) << err;
  EXPECT_TRUE(verify_bundle(tmp / "f").ok()) << verify_report_table(verify_bundle(tmp / "f"));
  EXPECT_NE(TensorStore::open(tmp / "f").find("model.layers.1.mlp.zaya_block.experts.local_experts.3.linear_fc1.weight"), nullptr);
}

// ---- zaya bench --image ----------------------------------------------------------------------------------------

TEST(VlTools, FmaPeakProbeMeasuresSomething) {
  const double g = measure_fma_gflops();
  EXPECT_TRUE(std::isfinite(g));
  // Any CPU this runs on does more than 1 GFLOP/s of fp32 FMAs per thread, and none does 100 TFLOP/s.
  EXPECT_GT(g, 1.0 * static_cast<double>(num_threads()));
  EXPECT_LT(g, 1e5);
}

TEST(VlTools, BenchImageReportsTheVisionTower) {
  const json j = run_json("bench -q --json -r 1 -m " + tiny_a() + " --image 448x448");
  EXPECT_EQ(j["image"]["width"], 448);
  EXPECT_EQ(j["patches"], 32 * 32);       // 448 is a multiple of 28: no resize, 32×32 patches of 14
  EXPECT_EQ(j["image_tokens"], 16 * 16);  // 2×2 merge
  EXPECT_EQ(j["vision_params"], 261760);
  EXPECT_GT(j["encode_s"].get<double>(), 0);
  EXPECT_NEAR(j["patches_per_s"].get<double>(), 1024 / j["encode_s"].get<double>(), 1e-6 * j["patches_per_s"].get<double>());
  EXPECT_NEAR(j["gflop_s"].get<double>(), j["gflop_per_image"].get<double>() / j["encode_s"].get<double>(), 1e-9 + 1e-6 * j["gflop_s"].get<double>());
  EXPECT_GT(j["fma_peak_gflop_s"].get<double>(), 0);
  EXPECT_NEAR(j["peak_frac"].get<double>(), j["gflop_s"].get<double>() / j["fma_peak_gflop_s"].get<double>(), 1e-9);
  EXPECT_EQ(j["runs"].size(), 1u);
  // A non-square size goes through smart_resize like a real image.
  const json k = run_json("bench -q --json -r 1 -m " + tiny_a() + " --image 130x100");
  EXPECT_EQ(k["patches"], 80);  // the golden image's size: 112×140 → 8×10 patches
  std::string out, err;
  for (const char* bad : {"448", "0x10", "axb", "10x10x10"}) {
    EXPECT_NE(test::run_command(cli() + " bench -q -m " + tiny_a() + " --image " + bad, &out, &err), 0) << bad;
    EXPECT_NE(err.find("WIDTHxHEIGHT"), std::string::npos) << err;
  }
  // A text model has no vision tower.
  EXPECT_NE(test::run_command(cli() + " bench -q -m " + test::data_dir() + "/golden/zaya1-text/tiny-a --image 64x64", &out, &err), 0);
}
