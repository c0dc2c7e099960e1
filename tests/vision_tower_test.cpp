// The ZAYA1-VL vision tower (src/models/qwen_vit/) against the reference's golden intermediates
// (tests/data/golden/zaya1-vl/tiny-a), plus its invariances and its config / weight / input errors.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>
#include <random>

#include "io/safetensors.h"
#include "io/safetensors_writer.h"
#include "models/qwen_vit/vision_tower.h"
#include "test_util.h"
#include "util/thread_pool.h"
#include "zaya/error.h"

using nlohmann::json;
using namespace zaya;
using namespace zaya::vit;

namespace {

std::string tiny_a() { return test::require_path(test::data_dir() + "/golden/zaya1-vl/tiny-a"); }

json tiny_vision_config() { return json::parse(test::read_file(tiny_a() + "/config.json")).at("vision_config"); }

struct Tiny {
  VisionConfig cfg = VisionConfig::load(tiny_a());
  TensorStore store = TensorStore::open(tiny_a() + "/model.safetensors");
  VisionWeights weights = VisionWeights::load(store, cfg);
  TensorStore inputs = TensorStore::open(tiny_a() + "/inputs.safetensors");
  TensorStore expected = TensorStore::open(tiny_a() + "/expected.safetensors");

  ImagePatches patches() const {
    ImagePatches in;
    const TensorView& pv = inputs.require("pixel_values");
    in.pixel_values = to_f32(pv);
    in.rows = pv.shape.at(0);
    in.cols = pv.shape.at(1);
    const std::vector<int64_t> thw = to_i64(inputs.require("image_grid_thw"));
    for (size_t i = 0; i + 2 < thw.size(); i += 3) in.grids.push_back({thw[i], thw[i + 1], thw[i + 2]});
    return in;
  }
  std::vector<float> f32(const std::string& name) const { return to_f32(expected.require(name)); }
};

const Tiny& tiny() {
  static const Tiny t;
  return t;
}

// The README's vision tolerance: max abs ≤ 1e-4 and ‖a−b‖/‖b‖ ≤ 1e-5. Prints what it saw for the report.
void expect_close(const std::vector<float>& got, const std::vector<float>& ref, const std::string& what) {
  ASSERT_EQ(got.size(), ref.size()) << what;
  double max_abs = 0, num = 0, den = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    const double d = static_cast<double>(got[i]) - ref[i];
    max_abs = std::max(max_abs, std::isnan(d) ? INFINITY : std::fabs(d));
    num += d * d;
    den += static_cast<double>(ref[i]) * ref[i];
  }
  const double rel = std::sqrt(num / std::max(den, 1e-300));
  std::printf("  %-28s max abs %.3g  rel %.3g\n", what.c_str(), max_abs, rel);
  EXPECT_LE(max_abs, 1e-4) << what;
  EXPECT_LE(rel, 1e-5) << what;
}

std::vector<float> encode_with(const ImagePatches& in, ThreadPool* pool, VisionTrace* trace = nullptr) {
  VisionActivations act;
  std::vector<float> features;
  encode(tiny().cfg, tiny().weights, in, act, features, Compute(pool, Precision::Exact), trace);
  return features;
}

ImagePatches random_patches(const std::vector<PatchGrid>& grids, uint32_t seed) {
  ImagePatches in;
  in.grids = grids;
  in.cols = tiny().cfg.patch_dim();
  for (const PatchGrid& g : grids) in.rows += g.patches();
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  in.pixel_values.resize(static_cast<size_t>(in.rows * in.cols));
  for (float& v : in.pixel_values) v = nd(rng);
  return in;
}

}  // namespace

TEST(VisionGolden, EveryIntermediateOfTinyA) {
  const Tiny& t = tiny();
  VisionTrace tr;
  const std::vector<float> features = encode_with(t.patches(), nullptr, &tr);

  expect_close(tr.patch_embed, t.f32("vision.patch_embed_out"), "patch_embed_out");
  EXPECT_EQ(tr.layout.pos_hw, to_i64(t.expected.require("vision.rot_pos_ids_hw")));
  expect_close(tr.layout.angles, t.f32("vision.rotary_pos_emb"), "rotary_pos_emb");
  EXPECT_EQ(tr.layout.window_index, to_i64(t.expected.require("vision.window_index")));
  const std::vector<int64_t> cu = to_i64(t.expected.require("vision.cu_window_seqlens"));
  EXPECT_EQ(std::vector<int64_t>(tr.layout.cu_window_seqlens.begin(), tr.layout.cu_window_seqlens.end()), cu);
  ASSERT_EQ(tr.block_out.size(), static_cast<size_t>(t.cfg.depth));
  for (int64_t j = 0; j < t.cfg.depth; ++j) {
    const std::string name = "vision.block" + std::to_string(j) + "_out_windowed";
    expect_close(tr.block_out[j], t.f32(name), name.substr(7));
  }
  expect_close(tr.merger_out, t.f32("vision.merger_out_windowed"), "merger_out_windowed");
  expect_close(features, t.f32("vision.features"), "features");
}

TEST(VisionGolden, ThreadCountDoesNotChangeABit) {
  ThreadPool one(1), three(3);
  // The golden image, and several larger images and frames (more row chunks, windows and attention items).
  for (const ImagePatches& in : {tiny().patches(), random_patches({{1, 36, 20}, {2, 8, 12}}, 5)}) {
    const std::vector<float> a = encode_with(in, &one), b = encode_with(in, &three);
    ASSERT_EQ(a.size(), b.size());
    EXPECT_EQ(0, std::memcmp(a.data(), b.data(), a.size() * sizeof(float)));
  }
}

TEST(VisionLayout, SeveralImagesOffsetWindowsAndFrames) {
  // tiny-a: windows of 2×2 merge units. A (4×4 patches → 2×2 units: one window, plus the empty padding windows of
  // spec P14) then B (4×6 → 2×3 units: a full window and a 1-column one), B's units offset by A's 4.
  const VisionLayout L = VisionLayout::plan(tiny().cfg, {{1, 4, 4}, {1, 4, 6}});
  EXPECT_EQ(L.patches, 40);
  EXPECT_EQ(L.units, 10);
  EXPECT_EQ(L.window_index, (std::vector<int64_t>{0, 1, 2, 3, 4, 5, 7, 8, 6, 9}));
  EXPECT_EQ(L.cu_window_seqlens, (std::vector<int32_t>{0, 16, 32, 40}));
  ASSERT_EQ(L.frames.size(), 2u);
  EXPECT_EQ(L.frames[1].begin, 16);
  EXPECT_EQ(L.frames[1].end, 40);
  // Rotary positions restart per image: B's first patch is at (0, 0), its unit (0, 1) starts at column 2.
  EXPECT_EQ(L.pos_hw[2 * 16], 0);
  EXPECT_EQ(L.pos_hw[2 * 20 + 1], 2);
}

TEST(VisionLayout, GridsMustFitTheConfig) {
  EXPECT_THROW(VisionLayout::plan(tiny().cfg, {}), Error);
  EXPECT_THROW(VisionLayout::plan(tiny().cfg, {{1, 5, 4}}), Error);         // not divisible by the merge size
  EXPECT_THROW(VisionLayout::plan(tiny().cfg, {{0, 4, 4}}), Error);         // no frames
  EXPECT_THROW(VisionLayout::plan(tiny().cfg, {{1, 1 << 20, 4}}), Error);   // absurd grid
}

TEST(VisionTower, ImagesEncodeAloneOrTogether) {
  // Several images (and frames) in one call must give each image exactly its own features: windows and rotary
  // positions are per image, full attention never crosses images or frames.
  const ImagePatches a = random_patches({{1, 4, 6}}, 1), b = random_patches({{1, 8, 4}}, 2);
  ImagePatches both = a;
  both.grids.push_back(b.grids[0]);
  both.rows += b.rows;
  both.pixel_values.insert(both.pixel_values.end(), b.pixel_values.begin(), b.pixel_values.end());
  std::vector<float> fa = encode_with(a, nullptr), fb = encode_with(b, nullptr), fab = encode_with(both, nullptr);
  fa.insert(fa.end(), fb.begin(), fb.end());
  ASSERT_EQ(fa.size(), fab.size());
  EXPECT_EQ(0, std::memcmp(fa.data(), fab.data(), fa.size() * sizeof(float)));

  ImagePatches twice = a;  // two frames of one grid attend like two images
  twice.grids = {{2, 4, 6}};
  twice.rows *= 2;
  twice.pixel_values.insert(twice.pixel_values.end(), a.pixel_values.begin(), a.pixel_values.end());
  const std::vector<float> ft = encode_with(twice, nullptr), f1 = encode_with(a, nullptr);
  ASSERT_EQ(ft.size(), 2 * f1.size());
  EXPECT_EQ(0, std::memcmp(ft.data() + f1.size(), f1.data(), f1.size() * sizeof(float)));
}

TEST(VisionTower, BadInputIsAnError) {
  ImagePatches in = tiny().patches();
  ImagePatches wrong_rows = in;
  wrong_rows.grids[0].w = 8;
  EXPECT_THROW(encode_with(wrong_rows, nullptr), Error);
  ImagePatches wrong_cols = in;
  wrong_cols.cols -= 1;
  EXPECT_THROW(encode_with(wrong_cols, nullptr), Error);
  ImagePatches short_data = in;
  short_data.pixel_values.pop_back();
  EXPECT_THROW(encode_with(short_data, nullptr), Error);
}

TEST(VisionConfig, ParsesTinyAAndTheRealGeometry) {
  const VisionConfig& c = tiny().cfg;
  EXPECT_EQ(c.depth, 4);
  EXPECT_EQ(c.head_dim(), 16);
  EXPECT_EQ(c.patch_dim(), 588);
  EXPECT_EQ(c.window_units(), 2);
  EXPECT_EQ(c.fullatt_blocks, std::vector<int64_t>{2});
  EXPECT_TRUE(c.full_attention(2));
  EXPECT_FALSE(c.full_attention(1));
  // vision_config of shared/golden/zaya1-vl/real-config/config.json (ZAYA1-VL-8B), original spellings only.
  const VisionConfig real = VisionConfig::parse(json::parse(R"({"depth": 32, "fullatt_block_indexes": [7, 15, 23, 31],
      "hidden_act": "silu", "hidden_size": 1280, "in_chans": 3, "intermediate_size": 3420, "num_heads": 16,
      "out_hidden_size": 2048, "spatial_merge_size": 2, "spatial_patch_size": 14, "temporal_patch_size": 1,
      "window_size": 112})"), "real");
  EXPECT_EQ(real.head_dim(), 80);
  EXPECT_EQ(real.window_units(), 4);
  EXPECT_NEAR(static_cast<double>(real.parameter_count()), 0.67e9, 0.01e9);  // the issue's "≈ 0.67 B"
}

TEST(VisionConfig, OneSpellingIsEnough) {
  json vc = tiny_vision_config();
  vc.erase("in_chans");
  vc.erase("patch_size");
  EXPECT_EQ(VisionConfig::parse(vc, "x").patch, 14);
  vc = tiny_vision_config();
  vc.erase("in_channels");
  vc.erase("spatial_patch_size");
  EXPECT_EQ(VisionConfig::parse(vc, "x").in_channels, 3);
}

TEST(VisionConfig, BadValuesNameTheKey) {
  struct Case {
    const char* key;
    json value;  // null: erase the key
    const char* says;
  };
  const std::vector<Case> cases = {
      {"depth", nullptr, "depth is missing"},
      {"hidden_size", 0, "hidden_size = 0 is out of range"},
      {"hidden_size", 66, "not a multiple of num_heads"},
      {"num_heads", 8, "multiple of 4"},                       // head dim 8 is fine…
      {"num_heads", 32, "head dim 2"},                         // …head dim 2 is not
      {"hidden_act", "gelu", "hidden_act"},
      {"window_size", 60, "window_size = 60 is not a multiple"},
      {"fullatt_block_indexes", json::array({4}), "not a block index"},
      {"fullatt_block_indexes", json::array({1, 1}), "twice"},
      {"fullatt_block_indexes", 2, "must be a list"},
      {"in_chans", 4, "disagrees"},
      {"spatial_patch_size", 16, "disagrees"},
      {"intermediate_size", int64_t{1} << 40, "out of range"},
      {"out_hidden_size", 1.5, "must be an integer"},
      {"temporal_patch_size", "1", "must be an integer"},
  };
  for (const Case& k : cases) {
    json vc = tiny_vision_config();
    if (k.value.is_null()) vc.erase(k.key);
    else vc[k.key] = k.value;
    if (std::string(k.says) == "multiple of 4") {  // the valid control case
      EXPECT_NO_THROW(VisionConfig::parse(vc, "cfg.json")) << k.key;
      continue;
    }
    try {
      VisionConfig::parse(vc, "cfg.json");
      ADD_FAILURE() << k.key << " = " << k.value.dump() << " was accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(k.says), std::string::npos) << e.what();
    }
  }
  // Sizes that are each in range but together would be an absurd model.
  json vc = tiny_vision_config();
  vc["hidden_size"] = 16384;
  vc["num_heads"] = 128;
  vc["spatial_merge_size"] = 8;
  vc["window_size"] = 14 * 8;
  EXPECT_THROW(VisionConfig::parse(vc, "cfg.json"), Error);
}

namespace {

// Writes the tiny tower's tensors to dir/model.safetensors, each through `edit` (which may rename, reshape,
// convert or drop it: return false to drop).
template <class Edit>
void write_variant(const std::string& dir, Edit edit) {
  std::vector<TensorSpec> specs;
  std::vector<std::vector<uint8_t>> data;
  for (const VisionTensor& vt : expected_vision_tensors(tiny().cfg)) {
    const std::vector<float> v = to_f32(tiny().store.require(vt.name));
    TensorSpec s{vt.name, DType::F32, vt.shape};
    std::vector<uint8_t> bytes(v.size() * 4);
    std::memcpy(bytes.data(), v.data(), bytes.size());
    if (!edit(s, bytes)) continue;
    specs.push_back(s);
    data.push_back(std::move(bytes));
  }
  std::vector<std::pair<TensorSpec, const void*>> items;
  for (size_t i = 0; i < specs.size(); ++i) items.push_back({specs[i], data[i].data()});
  write_safetensors_file(dir + "/model.safetensors", items);
}

std::string load_error(const std::string& dir) {
  try {
    const TensorStore s = TensorStore::open(dir);
    VisionWeights::load(s, tiny().cfg);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST(VisionWeights, ExpectedTensorsMatchTheCheckpoint) {
  size_t n = 0;
  for (const VisionTensor& vt : expected_vision_tensors(tiny().cfg)) {
    EXPECT_EQ(tiny().store.require(vt.name).shape, vt.shape) << vt.name;
    ++n;
  }
  size_t in_file = 0;
  for (const std::string& name : tiny().store.names()) in_file += name.rfind("vision_tower.", 0) == 0;
  EXPECT_EQ(n, in_file);
}

TEST(VisionWeights, MissingOrMisshapenTensorsAreNamed) {
  test::TempDir tmp("vit_weights");
  write_variant(tmp.str(), [](TensorSpec& s, std::vector<uint8_t>&) { return s.name != "vision_tower.blocks.1.attn.proj.bias"; });
  EXPECT_NE(load_error(tmp.str()).find("vision_tower.blocks.1.attn.proj.bias"), std::string::npos);

  write_variant(tmp.str(), [](TensorSpec& s, std::vector<uint8_t>&) {
    if (s.name == "vision_tower.blocks.3.mlp.up_proj.weight") s.shape = {64, 96};  // transposed
    return true;
  });
  EXPECT_NE(load_error(tmp.str()).find("vision_tower.blocks.3.mlp.up_proj.weight"), std::string::npos);

  write_variant(tmp.str(), [](TensorSpec& s, std::vector<uint8_t>&) {
    if (s.name == "vision_tower.patch_embed.proj.weight") s.shape = {64, 3, 1, 7, 28};
    return true;
  });
  EXPECT_NE(load_error(tmp.str()).find("patch_embed"), std::string::npos);

  write_variant(tmp.str(), [](TensorSpec& s, std::vector<uint8_t>&) {
    if (s.name == "vision_tower.merger.ln_q.weight") s.dtype = DType::I32;  // same bytes, not a float type
    return true;
  });
  EXPECT_NE(load_error(tmp.str()).find("merger.ln_q.weight"), std::string::npos);
}

TEST(VisionWeights, Bf16StorageAndAFlatPatchEmbedLoad) {
  // BF16 checkpoints (the real bundle's dtype) go through the same loader and products; the patch embedding may
  // also be stored flattened to [hv, C·tps·p²].
  test::TempDir tmp("vit_bf16");
  write_variant(tmp.str(), [](TensorSpec& s, std::vector<uint8_t>& bytes) {
    if (s.name == "vision_tower.patch_embed.proj.weight") s.shape = {64, 588};
    const size_t n = bytes.size() / 4;
    std::vector<uint8_t> out(n * 2);
    for (size_t i = 0; i < n; ++i) {
      float f;
      std::memcpy(&f, bytes.data() + 4 * i, 4);
      const uint16_t h = f32_to_bf16(f);
      std::memcpy(out.data() + 2 * i, &h, 2);
    }
    bytes = std::move(out);
    s.dtype = DType::BF16;
    return true;
  });
  const TensorStore s = TensorStore::open(tmp.str());
  const VisionWeights w = VisionWeights::load(s, tiny().cfg);
  EXPECT_EQ(w.patch_embed.format, WeightFormat::BF16);
  EXPECT_EQ(w.blocks[0].qkv.format, WeightFormat::BF16);
  VisionActivations act;
  std::vector<float> got;
  encode(tiny().cfg, w, tiny().patches(), act, got);
  const std::vector<float> ref = tiny().f32("vision.features");
  ASSERT_EQ(got.size(), ref.size());
  double dot = 0, ng = 0, nr = 0;
  for (size_t i = 0; i < ref.size(); ++i) dot += double(got[i]) * ref[i], ng += double(got[i]) * got[i], nr += double(ref[i]) * ref[i];
  EXPECT_GT(dot / std::sqrt(ng * nr), 0.999);  // bf16 weights: the README's cosine criterion
}
