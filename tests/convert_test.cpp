// zaya convert: bit-exact reproduction of the golden bundles, every profile from both source layouts, logits within
// the quantization noise recorded in tests/data/golden/zaya1-bundles/README.md, and clear errors on bad input.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <unistd.h>

#include "test_util.h"
#include "zaya/convert.h"
#include "zaya/error.h"
#include "zaya/model.h"
#include "io/safetensors.h"
#include "io/safetensors_writer.h"
#include "zaya/verify.h"

namespace fs = std::filesystem;
using nlohmann::json;
using namespace zaya;

namespace {

std::string golden(const std::string& rel) { return test::require_path(test::data_dir() + "/golden/" + rel); }
std::string tiny_a() { return golden("zaya1-text/tiny-a"); }
std::string tiny_a_native() { return golden("zaya1-text/tiny-a/native"); }

using test::TempDir;

ConvertOptions opts(Profile p, uint64_t shard_bytes = 0) {
  ConvertOptions o;
  o.profile = p;
  o.shard_bytes = shard_bytes;
  return o;
}

std::string bytes_of(const TensorView& t) { return std::string(reinterpret_cast<const char*>(t.data), t.nbytes); }

uint64_t tensor_bytes(const TensorStore& s) {
  uint64_t n = 0;
  for (const auto& name : s.names()) n += s.find(name)->nbytes;
  return n;
}

// The reference: the fp32 tiny-a model on the golden prompt.
struct Fp32Ref {
  std::vector<int32_t> prompt;
  std::vector<float> logits;
  int64_t V = 0;
};
const Fp32Ref& fp32_ref() {
  static const Fp32Ref r = [] {
    Fp32Ref x;
    json meta = json::parse(test::read_file(tiny_a() + "/cases.json"));
    x.prompt = meta["prompt_ids"].get<std::vector<int32_t>>();
    LoadOptions lo;
    lo.verbose = false;
    auto m = Model::load(tiny_a(), lo);
    auto st = m->new_state();
    x.logits = m->forward(x.prompt, st);
    x.V = m->config().vocab;
    return x;
  }();
  return r;
}

struct Noise {
  double max_abs = 0, mean_abs = 0, argmax_agree = 0;
};
Noise noise_vs_fp32(const std::string& dir) {
  const Fp32Ref& ref = fp32_ref();
  LoadOptions lo;
  lo.verbose = false;
  auto m = Model::load(dir, lo);
  auto st = m->new_state();
  const std::vector<float> got = m->forward(ref.prompt, st);
  EXPECT_EQ(got.size(), ref.logits.size());
  Noise n;
  size_t agree = 0;
  const size_t T = ref.prompt.size(), V = static_cast<size_t>(ref.V);
  for (size_t t = 0; t < T; ++t) {
    const float* a = &got[t * V];
    const float* b = &ref.logits[t * V];
    for (size_t v = 0; v < V; ++v) {
      const double d = std::fabs(double(a[v]) - b[v]);
      n.max_abs = std::max(n.max_abs, std::isfinite(d) ? d : INFINITY);
      n.mean_abs += d;
    }
    agree += (std::max_element(a, a + V) - a) == (std::max_element(b, b + V) - b);
  }
  n.mean_abs /= double(T * V);
  n.argmax_agree = double(agree) / double(T);
  return n;
}

}  // namespace

// Converting tiny-a exactly as the JANG converter did (shards cut at half the tensor bytes, as the README says)
// reproduces the golden bundles file for file: shards, index, config.json, jang_config.json and the sidecar.
TEST(Convert, ReproducesGoldenBundlesBitForBit) {
  TempDir tmp("convert_golden");
  for (const auto& [profile, name] : {std::pair{Profile::Mxfp4, "tiny-a-mxfp4"}, std::pair{Profile::Jangtq4, "tiny-a-jangtq4"}}) {
    const std::string ref_dir = golden(std::string("zaya1-bundles/") + name);
    const TensorStore ref = TensorStore::open(ref_dir);
    for (const std::string& src : {tiny_a(), tiny_a_native()}) {
      const std::string out = tmp / (std::string(name) + (src == tiny_a() ? "-legacy" : "-native"));
      convert_checkpoint(src, out, opts(profile, tensor_bytes(ref) / 2));
      const TensorStore got = TensorStore::open(out);
      ASSERT_EQ(got.size(), ref.size()) << name;
      for (const auto& n : ref.names()) {
        const TensorView* g = got.find(n);
        ASSERT_NE(g, nullptr) << n;
        const TensorView& r = *ref.find(n);
        EXPECT_EQ(g->dtype, r.dtype) << n;
        EXPECT_EQ(g->shape, r.shape) << n;
        EXPECT_TRUE(bytes_of(*g) == bytes_of(r)) << name << ": tensor " << n << " differs";
      }
      std::vector<std::string> files = {"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors",
                                        "model.safetensors.index.json", "jang_config.json"};
      if (profile == Profile::Jangtq4) files.push_back("jangtq_runtime.safetensors");
      if (src == tiny_a()) files.push_back("config.json");  // a native source gets a regenerated legacy config
      for (const auto& f : files)
        EXPECT_TRUE(test::read_file(out + "/" + f) == test::read_file(ref_dir + "/" + f)) << name << " from " << src << ": " << f;
      if (src == tiny_a()) {  // the native folder holds no tokenizer
        for (const auto& f : {"tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "special_tokens_map.json"})
          EXPECT_TRUE(test::read_file(out + "/" + f) == test::read_file(ref_dir + "/" + f)) << f;
      }
      EXPECT_TRUE(verify_bundle(out).ok()) << verify_report_table(verify_bundle(out));
    }
  }
}

// Every profile from both layouts: verify passes, the bundle loads, and its logits stay within the quantization noise
// of the fp32 model. Bounds sit just above what these deterministic conversions give (noted per profile) and well
// below what a broken conversion gives (|logits| ≤ 7.8; a wrong tensor moves logits by several units).
TEST(Convert, EveryProfileLoadsWithinQuantizationNoise) {
  struct Case {
    Profile p;
    double max_abs, mean_abs, min_agree;
  };
  // The README records mxfp4 2.15 (0.32) / 65 % and jangtq4 0.99 (0.089) / 80 % for the dequantized golden bundles.
  const Case cases[] = {
      // observed (both layouts):     2.146 / 0.317 / 65 %         0.989 / 0.089 / 80 %           0.765 / 0.026 / 100 %
      {Profile::Mxfp4, 2.3, 0.35, 0.6},  {Profile::Jangtq4, 1.1, 0.1, 0.75}, {Profile::Q8, 0.9, 0.04, 0.9},
      // observed:                    2.421 / 0.388 / 60 %         3.549 / 0.629 / 25 %           0.729 / 0.023 / 100 %
      {Profile::Q4, 2.7, 0.45, 0.5},     {Profile::Mxfp4E2m1, 4.0, 0.75, 0.2}, {Profile::Bf16, 0.9, 0.04, 0.9},
      {Profile::F32, 1e-5, 1e-6, 1.0},
  };
  // The 8-bit / bf16 maxima come from a route flip (routers have ~1e-3 margins on this random model); the means
  // show the per-weight noise.
  TempDir tmp("convert_profiles");
  for (const auto& c : cases) {
    for (const std::string& src : {tiny_a(), tiny_a_native()}) {
      const std::string out = tmp / cat(profile_name(c.p), src == tiny_a() ? "-legacy" : "-native");
      convert_checkpoint(src, out, opts(c.p));
      const VerifyReport vr = verify_bundle(out);
      EXPECT_TRUE(vr.ok()) << verify_report_table(vr);
      const Noise n = noise_vs_fp32(out);
      std::printf("  %-10s from %-6s max|dlogit| %.4f  mean %.5f  argmax agreement %.0f%%\n", profile_name(c.p),
                  src == tiny_a() ? "legacy" : "native", n.max_abs, n.mean_abs, 100 * n.argmax_agree);
      EXPECT_LE(n.max_abs, c.max_abs) << profile_name(c.p);
      EXPECT_LE(n.mean_abs, c.mean_abs) << profile_name(c.p);
      EXPECT_GE(n.argmax_agree, c.min_agree) << profile_name(c.p);
      if (c.p != Profile::F32) {
        EXPECT_GT(n.max_abs, 0.0) << "a quantized bundle should not equal the fp32 model";
      }
    }
  }
}

TEST(Convert, QuantizedConfigFields) {
  TempDir tmp("convert_cfg");
  convert_checkpoint(tiny_a(), tmp / "q8", opts(Profile::Q8));
  convert_checkpoint(tiny_a(), tmp / "e2m1", opts(Profile::Mxfp4E2m1));
  const json q8 = json::parse(test::read_file(tmp / "q8/config.json"));
  EXPECT_EQ(q8["quantization"], json::parse(R"({"group_size":64,"bits":8,"mode":"affine"})"));
  EXPECT_EQ(q8["quantization_config"], q8["quantization"]);
  const json e = json::parse(test::read_file(tmp / "e2m1/config.json"));
  EXPECT_EQ(e["quantization"]["mode"], "mxfp4");
  // True mxfp4: U8 E8M0 scales and no biases.
  const TensorStore s = TensorStore::open(tmp / "e2m1");
  const TensorView& sc = s.require("model.layers.0.self_attn.qkv.linear_q.scales");
  EXPECT_EQ(sc.dtype, DType::U8);
  EXPECT_EQ(s.find("model.layers.0.self_attn.qkv.linear_q.biases"), nullptr);
  EXPECT_FALSE(fs::exists(tmp / "e2m1/jang_config.json"));
}

TEST(Convert, BadInputsGiveClearErrors) {
  TempDir tmp("convert_errors");
  auto expect_error = [](auto fn, const std::string& needle) {
    try {
      fn();
      ADD_FAILURE() << "expected an error containing '" << needle << "'";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  expect_error([] { parse_profile("mxfp5"); }, "unknown profile 'mxfp5'");
  // Existing DST: refused without force, replaced with it; never the source itself.
  fs::create_directories(tmp / "exists");
  expect_error([&] { convert_checkpoint(tiny_a(), tmp / "exists", opts(Profile::Q8)); }, "already exists");
  ConvertOptions f = opts(Profile::Q8);
  f.force = true;
  EXPECT_NO_THROW(convert_checkpoint(tiny_a(), tmp / "exists", f));
  EXPECT_TRUE(fs::exists(tmp / "exists/config.json"));
  // A source missing a tensor.
  const std::string src = tmp / "src";
  fs::create_directories(src);
  fs::copy_file(tiny_a() + "/config.json", src + "/config.json");
  {
    const TensorStore s = TensorStore::open(tiny_a());
    std::vector<std::pair<TensorSpec, const void*>> keep;
    for (const auto& n : s.names()) {
      if (n == "model.layers.2.self_attn.qkv.linear_k.weight") continue;
      const TensorView& t = *s.find(n);
      keep.push_back({TensorSpec{n, t.dtype, t.shape}, t.data});
    }
    write_safetensors_file(src + "/model.safetensors", keep);
  }
  expect_error([&] { convert_checkpoint(src, tmp / "out", opts(Profile::Mxfp4)); },
               "missing 1 source tensor(s) the architecture needs: model.layers.2.self_attn.qkv.linear_k.weight");
  EXPECT_FALSE(fs::exists(tmp / "out"));
  expect_error([&] { convert_checkpoint(tmp / "nowhere", tmp / "out", opts(Profile::Mxfp4)); }, "not a folder");
  // DST = SRC (on a copy, so a regression cannot touch the golden data).
  fs::create_directories(tmp / "self");
  for (const char* f : {"config.json", "model.safetensors"}) fs::copy_file(tiny_a() + "/" + f, tmp / "self" + "/" + f);
  expect_error([&] { convert_checkpoint(tmp / "self", tmp / "self", f); }, "is the source folder");
  EXPECT_TRUE(fs::exists(tmp / "self/model.safetensors"));
  // A bundle is no source.
  expect_error([&] { convert_checkpoint(golden("zaya1-bundles/tiny-a-mxfp4"), tmp / "out", opts(Profile::Q8)); },
               "already a quantized bundle");
}

TEST(Convert, CliConvertsWithProgress) {
  TempDir tmp("convert_cli");
  std::string out, err;
  const std::string dst = tmp / "b";
  int rc = test::run_command(test::cli_path() + " convert " + tiny_a() + " " + dst + " --profile mxfp4", &out, &err);
  ASSERT_EQ(rc, 0) << err;
  EXPECT_NE(err.find("MB"), std::string::npos) << err;  // progress
  EXPECT_NE(out.find("tensors"), std::string::npos) << out;
  rc = test::run_command(test::cli_path() + " convert " + tiny_a() + " " + dst + " --profile mxfp4", &out, &err);
  EXPECT_NE(rc, 0);
  EXPECT_NE(err.find("already exists"), std::string::npos) << err;
  rc = test::run_command(test::cli_path() + " convert " + tiny_a() + " " + dst + " -f --profile nope", &out, &err);
  EXPECT_NE(rc, 0);
  EXPECT_NE(err.find("unknown profile"), std::string::npos) << err;
  rc = test::run_command(test::cli_path() + " verify " + dst, &out, &err);
  EXPECT_EQ(rc, 0) << out << err;
}
