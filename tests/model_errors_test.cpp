// Bad model folders and bad inputs give clear errors (never a crash or a silently wrong answer).
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>

#include "test_util.h"
#include "zaya/config.h"
#include "zaya/error.h"
#include "zaya/model.h"

using nlohmann::json;
using namespace zaya;
namespace fs = std::filesystem;

namespace {

std::string tiny_a() { return test::require_path(test::data_dir() + "/golden/zaya1-text/tiny-a"); }

// A private copy of tiny-a whose config and safetensors header can be edited.
struct ModelCopy {
  fs::path dir;
  ModelCopy() {
    dir = fs::temp_directory_path() / ("zaya_model_copy_" + std::to_string(::getpid()) + "_" +
                                       ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir);
    fs::create_directories(dir);
    for (const char* f : {"config.json", "model.safetensors"}) fs::copy_file(fs::path(tiny_a()) / f, dir / f);
  }
  ~ModelCopy() { fs::remove_all(dir); }
  void edit_config(const std::function<void(json&)>& fn) {
    json j = json::parse(test::read_file((dir / "config.json").string()));
    fn(j);
    std::ofstream(dir / "config.json") << j.dump(1);
  }
  // Rewrites the safetensors header (offsets are relative to the data section, so the data stays valid).
  void edit_header(const std::function<void(json&)>& fn) {
    std::string bytes = test::read_file((dir / "model.safetensors").string());
    uint64_t n;
    std::memcpy(&n, bytes.data(), 8);
    json h = json::parse(bytes.substr(8, n));
    std::string data = bytes.substr(8 + n);
    fn(h);
    std::string hs = h.dump();
    while (hs.size() % 8) hs += ' ';
    uint64_t m = hs.size();
    std::ofstream out(dir / "model.safetensors", std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(&m), 8);
    out << hs << data;
  }
  std::string path() const { return dir.string(); }
};

std::string load_error(const std::string& dir) {
  try {
    LoadOptions o;
    o.verbose = false;
    Model::load(dir, o);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST(ModelErrors, MissingTensorIsNamed) {
  ModelCopy m;
  m.edit_header([](json& h) {  // renamed, so that its bytes still belong to a tensor
    h["unused.temp"] = h["model.layers.2.self_attn.qkv.temp"];
    h.erase("model.layers.2.self_attn.qkv.temp");
  });
  EXPECT_NE(load_error(m.path()).find("missing tensor 'model.layers.2.self_attn.qkv.temp'"), std::string::npos)
      << load_error(m.path());
}

TEST(ModelErrors, WrongShapeIsNamed) {
  ModelCopy m;
  // Same byte size, different shape: passes the file checks, must fail the architecture check.
  m.edit_header([](json& h) { h["model.layers.0.self_attn.qkv.linear_q.weight"]["shape"] = {64, 128}; });
  const std::string e = load_error(m.path());
  EXPECT_NE(e.find("linear_q.weight"), std::string::npos) << e;
  EXPECT_NE(e.find("expected [128, 64]"), std::string::npos) << e;
}

TEST(ModelErrors, UnsupportedWeightDtype) {
  ModelCopy m;
  m.edit_header([](json& h) {
    auto& t = h["model.layers.0.self_attn.o_proj.weight"];
    t["dtype"] = "I32";  // same element size, wrong kind
  });
  EXPECT_NE(load_error(m.path()).find("dtype I32"), std::string::npos) << load_error(m.path());
}

TEST(ModelErrors, LayoutMismatchBetweenConfigAndTensors) {
  ModelCopy m;
  fs::copy_file(fs::path(tiny_a()) / "native/config.json", m.dir / "config.json", fs::copy_options::overwrite_existing);
  EXPECT_NE(load_error(m.path()).find("native layout but the tensors are in the legacy layout"), std::string::npos)
      << load_error(m.path());
}

TEST(ModelErrors, ConfigProblemsAreExplained) {
  struct Case {
    std::function<void(json&)> edit;
    std::string expect;
  };
  std::vector<Case> cases = {
      {[](json& j) { j["model_type"] = "llama"; }, "expected 'zaya'"},
      {[](json& j) { j.erase("hidden_size"); }, "'hidden_size' is missing"},
      {[](json& j) { j["hidden_size"] = "64"; }, "'hidden_size' must be an integer"},
      {[](json& j) { j["num_attention_heads"] = 3; }, "not a multiple"},
      {[](json& j) { j["num_hidden_layers"] = 5; }, "must be even"},
      {[](json& j) { j["moe_router_topk"] = 2; }, "moe_router_topk"},
      {[](json& j) { j["num_key_value_heads"] = 1; }, "differs from num_query_groups"},
      {[](json& j) { j["cca_time0"] = 3; }, "cca_time0"},
      {[](json& j) { j["partial_rotary_factor"] = 1.5; }, "partial_rotary_factor"},
      {[](json& j) { j["rope_scaling"] = json{{"type", "yarn"}}; }, "rope_scaling"},
      {[](json& j) { j["sliding_window"] = 128; }, "sliding_window"},
      {[](json& j) { j["eos_token_id"] = 100000; }, "eos_token_id"},
      {[](json& j) { j["clamp_temp"] = true; }, "clamp_temp"},
  };
  for (const auto& c : cases) {
    ModelCopy m;
    m.edit_config(c.edit);
    const std::string e = load_error(m.path());
    EXPECT_NE(e.find(c.expect), std::string::npos) << "expected '" << c.expect << "' in: " << e;
  }
  ModelCopy m;
  std::ofstream(m.dir / "config.json") << "{ not json";
  EXPECT_NE(load_error(m.path()).find("not valid JSON"), std::string::npos);
}

TEST(ModelErrors, DefaultsForAbsentKeysFollowTheSpec) {
  // The real legacy config omits cca_time0/1, clamp_temp, tie_word_embeddings and zaya_high_prec.
  auto c = ModelConfig::load(test::require_path(test::data_dir() + "/golden/zaya1-text/real-configs/legacy"));
  EXPECT_EQ(c.conv_kernel0, 2);
  EXPECT_EQ(c.conv_kernel1, 2);
  EXPECT_TRUE(c.tie_embeddings);
  EXPECT_TRUE(c.high_precision);
  EXPECT_EQ(c.layout, Layout::Legacy);
  EXPECT_EQ(c.n_blocks, 40);
  EXPECT_EQ(c.expert_ffn, 2048);
  EXPECT_EQ(c.rotary_dims(), 64);
  auto n = ModelConfig::load(test::require_path(test::data_dir() + "/golden/zaya1-text/real-configs/native"));
  EXPECT_EQ(n.layout, Layout::Native);
  EXPECT_EQ(n.n_blocks, 40);
  EXPECT_EQ(n.rope_theta, 5000000);
  EXPECT_EQ(n.default_skip_route(), SkipRoute::Zero);
  EXPECT_EQ(c.default_skip_route(), SkipRoute::ScaledInput);
}

TEST(ModelErrors, TokenIdOutsideVocabulary) {
  LoadOptions o;
  o.verbose = false;
  auto m = Model::load(tiny_a(), o);
  DecodeState st = m->new_state();
  std::vector<int32_t> ids = {2, 5, 384};
  EXPECT_THROW(m->forward(ids, st), Error);
  std::vector<int32_t> neg = {-1};
  EXPECT_THROW(m->forward(neg, st), Error);
  EXPECT_EQ(st.position(), 0) << "a rejected call must not change the state";
}

TEST(ModelErrors, ContextOverflow) {
  ModelCopy copy;
  copy.edit_config([](json& j) { j["max_position_embeddings"] = 8; });
  LoadOptions o;
  o.verbose = false;
  auto m = Model::load(copy.path(), o);
  DecodeState st = m->new_state();
  std::vector<int32_t> nine(9, 5), six(6, 5), one(1, 5);
  try {
    m->forward(nine, st);
    ADD_FAILURE() << "9 tokens into a context of 8 must fail";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("context overflow"), std::string::npos);
  }
  m->forward(six, st);
  m->forward(one, st);
  m->forward(one, st);
  EXPECT_EQ(st.position(), 8);
  EXPECT_THROW(m->forward(one, st), Error);
  EXPECT_EQ(st.position(), 8);
}

TEST(ModelErrors, KvCacheGrowsWithUse) {
  LoadOptions o;
  o.verbose = false;
  auto m = Model::load(tiny_a(), o);
  DecodeState st = m->new_state();
  const size_t empty = st.bytes();
  EXPECT_EQ(empty, DecodeState::fixed_bytes(m->config()));
  std::vector<int32_t> ids(10, 7);
  m->forward(ids, st, LogitsMode::None);
  st.shrink_to_fit();
  EXPECT_EQ(st.bytes(), empty + 10 * DecodeState::bytes_per_token(m->config()));
}
