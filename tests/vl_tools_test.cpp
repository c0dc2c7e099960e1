// The model tools on ZAYA1-VL folders: `zaya info` (both parts of the model), `zaya verify` (the language model,
// the vision tower and the LoRA of a VL checkpoint or bundle), `zaya convert` / `zaya synth` into the VL bundle
// layout, and `zaya bench --image`.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "test_util.h"

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
