// The ZAYA1-VL decoder against the reference (tests/data/golden/zaya1-vl, README tolerances): the vision features
// enter as precomputed embedding rows at the image tokens, whose flags gate the vision-LoRA, under both attention
// mask policies the golden data covers (eager = causal, fa2 = zyphra-fa2-prefix); then cached decode steps and the
// text-only prompt.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <vector>

#include "io/safetensors.h"
#include "test_util.h"
#include "zaya/error.h"
#include "zaya/model.h"
#include "zaya/npy.h"

namespace zaya {
namespace {

std::string tiny_a() { return test::require_path(test::data_dir() + "/golden/zaya1-vl/tiny-a"); }

struct Golden {
  TensorStore inputs = TensorStore::open(tiny_a() + "/inputs.safetensors");
  TensorStore expected = TensorStore::open(tiny_a() + "/expected.safetensors");
  std::vector<float> f32(const std::string& n) const { return to_f32(expected.require(n)); }
  std::vector<int32_t> ids(const std::string& n) const {
    std::vector<int32_t> out;
    for (int64_t v : to_i64(inputs.require(n))) out.push_back(static_cast<int32_t>(v));
    return out;
  }
};

std::unique_ptr<Model> load(AttentionMask mask) {
  LoadOptions o;
  o.verbose = false;
  o.exact = true;
  o.mask = mask;
  return Model::load(tiny_a(), o);
}

double max_abs(const std::vector<float>& a, const float* b, size_t n) {
  double m = 0;
  for (size_t i = 0; i < n; ++i) m = std::max(m, static_cast<double>(std::fabs(a[i] - b[i])));
  return m;
}

int32_t argmax(const float* v, size_t n) { return static_cast<int32_t>(std::max_element(v, v + n) - v); }

class VlDecoder : public testing::TestWithParam<const char*> {};

TEST_P(VlDecoder, PromptDecodeAndStateMatchTheReference) {
  const std::string mode = GetParam();
  const Golden g;
  auto m = load(mode == std::string("eager") ? AttentionMask::Causal : AttentionMask::ZyphraPrefix);
  const ModelConfig& cfg = m->config();
  const size_t V = cfg.vocab, H = cfg.hidden;
  ASSERT_EQ(cfg.layout, Layout::Fused);
  ASSERT_TRUE(cfg.vl.enabled);
  const std::vector<int32_t> ids = g.ids("input_ids");
  const std::vector<float> embeds = g.f32("decoder.inputs_embeds");
  std::vector<uint8_t> flags;
  for (int64_t f : to_i64(g.expected.require("decoder.image_mask"))) flags.push_back(static_cast<uint8_t>(f));
  for (size_t t = 0; t < ids.size(); ++t) ASSERT_EQ(flags[t], ids[t] == cfg.vl.image_token_id);

  DecodeState st = m->new_state();
  Model::BatchItem it(ids, &st, LogitsMode::All);
  it.embeddings = embeds;
  it.flags = flags;
  ForwardTrace trace;
  m->forward_batch(std::span(&it, 1), &trace);
  const auto want = g.f32(mode + ".prompt_logits");
  ASSERT_EQ(it.logits.size(), want.size());
  EXPECT_LE(max_abs(it.logits, want.data(), want.size()), 1e-3) << mode << " prompt logits";
  // Routing of every block, exact.
  const std::vector<int64_t> experts = to_i64(g.expected.require(mode + ".router_expert"));
  for (int64_t b = 0; b < cfg.n_blocks; ++b) {
    const auto& choice = trace.tensors.at(cat("router.", 2 * b + 1, ".choice"));
    for (size_t t = 0; t < ids.size(); ++t)
      ASSERT_EQ(static_cast<int64_t>(choice[t]), experts[b * ids.size() + t]) << mode << " block " << b << " t " << t;
  }
  // Hidden states after every block: the MoE output before the next merge (spec §6.1).
  for (int64_t b = 0; b < cfg.n_blocks; ++b) {
    const auto hidden = g.f32(cat(mode, ".block", b, "_out_hidden"));
    EXPECT_LE(max_abs(trace.tensors.at(cat("mixer_out.", 2 * b + 1)), hidden.data(), hidden.size()), 1e-4)
        << mode << " block " << b;
  }
  // Greedy decode with the caches.
  const auto decode = g.f32(mode + ".decode_logits");
  std::vector<int64_t> gen;
  std::vector<float> last(it.logits.end() - static_cast<std::ptrdiff_t>(V), it.logits.end());
  for (int step = 0; step < 6; ++step) {
    EXPECT_LE(max_abs(last, &decode[step * V], V), 1e-3) << mode << " decode row " << step;
    int32_t next = argmax(last.data(), V);
    gen.push_back(next);
    if (step < 5) last = m->forward(std::span(&next, 1), st, LogitsMode::Last);
  }
  // "After prefill + 6 steps" = the six generation steps: the prefill and five fed tokens (the sixth is never fed).
  EXPECT_EQ(gen, to_i64(g.expected.require(mode + ".generated_ids"))) << mode;
  const auto conv = g.f32(mode + ".final_conv_states");  // [blocks, C, 2], oldest frame first
  const auto prev = g.f32(mode + ".final_prev_hs");
  const size_t C = cfg.conv_channels();
  for (size_t b = 0; b < static_cast<size_t>(cfg.n_blocks); ++b) {
    const AttentionLayerState& ls = st.layer(b);
    double d = 0;
    for (size_t c = 0; c < C; ++c)
      for (size_t f = 0; f < 2; ++f)
        d = std::max(d, static_cast<double>(std::fabs(ls.conv_state[f * C + c] - conv[(b * C + c) * 2 + f])));
    EXPECT_LE(d, 1e-4) << mode << " conv state block " << b;
    EXPECT_LE(max_abs(ls.prev_x, &prev[b * H], H), 1e-4) << mode << " prev_hs block " << b;
  }
}

INSTANTIATE_TEST_SUITE_P(Modes, VlDecoder, testing::Values("eager", "fa2"));

TEST(VlDecoderText, TextOnlyPromptIsTheTextModel) {
  const Golden g;
  auto m = load(AttentionMask::ZyphraPrefix);
  const size_t V = m->config().vocab;
  const std::vector<int32_t> ids = g.ids("text_only_input_ids");
  DecodeState st = m->new_state();
  auto logits = m->forward(ids, st, LogitsMode::All);
  const auto want = g.f32("text_only.prompt_logits");
  EXPECT_LE(max_abs(logits, want.data(), want.size()), 1e-3);
  const auto decode = g.f32("text_only.decode_logits");
  std::vector<float> last(logits.end() - static_cast<std::ptrdiff_t>(V), logits.end());
  std::vector<int64_t> gen;
  for (int step = 0; step < 4; ++step) {
    EXPECT_LE(max_abs(last, &decode[step * V], V), 1e-3) << "decode row " << step;
    int32_t next = argmax(last.data(), V);
    gen.push_back(next);
    last = m->forward(std::span(&next, 1), st, LogitsMode::Last);
  }
  EXPECT_EQ(gen, to_i64(g.expected.require("text_only.generated_ids")));
}

// Image-pairs (the upstream port's policy) has no golden data: check its defining property instead — with one image
// block it equals the causal mask everywhere but inside the image block, where later image tokens become visible.
TEST(VlDecoderMask, PoliciesDifferOnlyWhereTheyShould) {
  const Golden g;
  const std::vector<int32_t> ids = g.ids("input_ids");
  const std::vector<float> embeds = g.f32("decoder.inputs_embeds");
  std::vector<uint8_t> flags;
  for (int64_t f : to_i64(g.expected.require("decoder.image_mask"))) flags.push_back(static_cast<uint8_t>(f));
  auto run = [&](AttentionMask mask) {
    auto m = load(mask);
    DecodeState st = m->new_state();
    Model::BatchItem it(ids, &st, LogitsMode::All);
    it.embeddings = embeds;
    it.flags = flags;
    m->forward_batch(std::span(&it, 1));
    return it.logits;
  };
  const auto causal = run(AttentionMask::Causal), pairs = run(AttentionMask::ImagePairs);
  const size_t V = causal.size() / ids.size();
  const size_t first_image = std::find(flags.begin(), flags.end(), 1) - flags.begin();
  // Before the first image token nothing can differ (causal, and no image key is visible yet).
  EXPECT_EQ(max_abs(std::vector<float>(causal.begin(), causal.begin() + first_image * V), pairs.data(), first_image * V), 0.0);
  EXPECT_GT(max_abs(causal, pairs.data(), causal.size()), 1e-3);
  EXPECT_EQ(parse_attention_mask("image-pairs"), AttentionMask::ImagePairs);
  EXPECT_THROW(parse_attention_mask("bidirectional"), Error);
}

}  // namespace
}  // namespace zaya

namespace zaya {
namespace {

// End to end through the CLI, as the acceptance check runs it: image file → preprocessing → vision tower → decoder,
// the expanded prompt's image tokens checked against the image, both mask policies, and --prefill K with decode.
TEST(VlCli, LogitsWithAnImageMatchTheReference) {
  const Golden g;
  const std::string dir = tiny_a();
  std::string ids;
  for (int32_t id : g.ids("input_ids")) ids += (ids.empty() ? "" : ",") + std::to_string(id);
  test::TempDir tmp("vl_cli");
  for (const char* mode : {"eager", "fa2"}) {
    const std::string mask = std::string(mode) == "eager" ? "causal" : "zyphra-fa2-prefix";
    const std::string out = tmp / (std::string(mode) + ".npy");
    std::string err;
    ASSERT_EQ(test::run_command(test::cli_path() + " logits -q -m " + dir + " --image " + dir + "/image.png --ids " +
                                    ids + " --mask " + mask + " -o " + out, nullptr, &err), 0) << err;
    const NpyArray got = read_npy(out);
    const auto want = g.f32(std::string(mode) + ".prompt_logits");
    ASSERT_EQ(got.data.size(), want.size());
    EXPECT_LE(max_abs(got.data, want.data(), want.size()), 1e-3) << mode;
  }
  // A prompt whose image-token count does not match the image is refused.
  std::string err;
  EXPECT_NE(test::run_command(test::cli_path() + " logits -q -m " + dir + " --image " + dir + "/image.png --ids 2,380,380 -o " +
                                  (tmp / "bad.npy"), nullptr, &err), 0);
  EXPECT_NE(err.find("image tokens"), std::string::npos) << err;
}

}  // namespace
}  // namespace zaya

namespace zaya {
namespace {

TEST(VlCli, RunAndChatWithAnImage) {
  test::TempDir tmp("vl_run");
  test::make_chat_fixture(tmp.str());
  const std::string img = tmp / "image.png";
  std::string out1, out2, err;
  const std::string run = test::cli_path() + " run -m " + tmp.str() + " --image " + img + " -p 'describe it' -n 6 --temp 0";
  ASSERT_EQ(test::run_command(run, &out1, &err), 0) << err;
  EXPECT_NE(err.find("20 image tokens"), std::string::npos) << err;
  ASSERT_EQ(test::run_command(run + " -q", &out2, &err), 0) << err;
  EXPECT_EQ(out1, out2);  // greedy: the same answer
  // The image changes the answer's context: the text-only prompt gives a different prompt length.
  std::string text_err;
  ASSERT_EQ(test::run_command(test::cli_path() + " run -m " + tmp.str() + " -p 'describe it' -n 6 --temp 0", nullptr,
                              &text_err), 0) << text_err;
  EXPECT_EQ(text_err.find("image tokens"), std::string::npos);
  // chat: /image queues the image for the next message; the second turn reuses the cached prefix (image included).
  std::string chat_out, chat_err;
  ASSERT_EQ(test::run_command("printf '/image " + img + "\\nwhat is this\\nand now\\n' | " + test::cli_path() +
                                  " chat -m " + tmp.str() + " -n 4 --temp 0", &chat_out, &chat_err), 0) << chat_err;
  EXPECT_NE(chat_err.find("queued"), std::string::npos) << chat_err;
  EXPECT_NE(chat_err.find("20 image tokens"), std::string::npos) << chat_err;
  EXPECT_NE(chat_err.find("cached"), std::string::npos) << chat_err;
  // A bad image is a clear error.
  std::ofstream(tmp / "bad.png") << "not an image";
  ASSERT_NE(test::run_command(test::cli_path() + " run -q -m " + tmp.str() + " --image " + (tmp / "bad.png") + " -p x",
                              nullptr, &err), 0);
  EXPECT_NE(err.find("bad.png"), std::string::npos) << err;
}

}  // namespace
}  // namespace zaya
