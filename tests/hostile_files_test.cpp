// Hostile model folders (issue 13, findings 2, 3, 4, 6): corrupt or absurd tokenizer.json, generation_config.json,
// safetensors headers, config.json and quantization blocks give a clean zaya::Error (or a failing `zaya verify`
// check) that names the file, key and limit: never a signal, a huge allocation or weights silently shifted.
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>

#include "test_util.h"
#include "zaya/chat.h"
#include "zaya/config.h"
#include "zaya/error.h"
#include "zaya/limits.h"
#include "zaya/model_info.h"
#include "zaya/tokenizer.h"
#include "zaya/verify.h"

using nlohmann::json;
using namespace zaya;
namespace fs = std::filesystem;

namespace {

std::string tiny_a() { return test::require_path(test::data_dir() + "/golden/zaya1-text/tiny-a"); }

// The message of the zaya::Error `fn` throws ("" when it throws none; any other exception fails the test).
std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "not a zaya::Error: " << e.what();
    return e.what();
  }
  return "";
}

#define EXPECT_HAS(haystack, needle) EXPECT_NE(std::string(haystack).find(needle), std::string::npos) << (haystack)

// A folder with a small valid BPE tokenizer.json (a, b, ab and one merge) that tests then break.
struct TokenizerDir {
  test::TempDir tmp{"hostile_tok"};
  json tok = {{"model", {{"type", "BPE"}, {"vocab", {{"a", 0}, {"b", 1}, {"ab", 2}}}, {"merges", {"a b"}}}},
              {"added_tokens", json::array({{{"id", 3}, {"content", "<eos>"}, {"special", true}}})}};
  std::string raw;  // when set, written instead of tok
  std::string write() {
    std::ofstream(tmp / "tokenizer.json") << (raw.empty() ? tok.dump() : raw);
    return tmp.str();
  }
  std::string load_error() {
    const std::string dir = write();
    return error_of([&] { Tokenizer::load(dir); });
  }
};

std::string deep_array(size_t n) { return std::string(n, '[') + std::string(n, ']'); }

}  // namespace

TEST(HostileJson, DepthCountsBracketsOutsideStrings) {
  EXPECT_EQ(limits::json_nesting_depth(R"({"a": [1, {"b": []}]})"), 4);
  EXPECT_EQ(limits::json_nesting_depth(R"({"a": "[[[[{{{{", "b": "\"[[["})"), 1);
  EXPECT_EQ(limits::json_nesting_depth("[]]]][[]"), 2);  // stray closers do not hide later depth
  EXPECT_EQ(limits::json_nesting_depth(deep_array(100000)), limits::kMaxJsonDepth + 1);  // stops counting early
}

TEST(HostileTokenizer, TheBaseFolderLoads) {
  TokenizerDir t;
  const std::string dir = t.write();
  const Tokenizer tok = Tokenizer::load(dir);
  EXPECT_EQ(tok.encode("ab", false), std::vector<int32_t>{2});
}

TEST(HostileTokenizer, AddedTokenIdsOutsideInt32OrTheLimit) {
  // 2^31 was cast to a negative int32 (heap corruption), 2^32 + 5 silently became 5, 2^31 - 1 asked for 64 GB.
  for (const json& id : {json(int64_t{1} << 31), json((int64_t{1} << 32) + 5), json((int64_t{1} << 31) - 1),
                         json(uint64_t{1} << 63), json(limits::kMaxVocab)}) {
    TokenizerDir t;
    t.tok["added_tokens"][0]["id"] = id;
    const auto t0 = std::chrono::steady_clock::now();
    const std::string e = t.load_error();
    EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(2)) << "allocated before checking";
    EXPECT_HAS(e, "tokenizer.json");
    EXPECT_HAS(e, "added token '<eos>' has id " + id.dump());
    EXPECT_HAS(e, "kMaxVocab");
  }
}

TEST(HostileTokenizer, VocabIdBeyondTheLimit) {
  TokenizerDir t;
  t.tok["model"]["vocab"]["b"] = int64_t{1} << 30;  // asked for 32 GB
  const std::string e = t.load_error();
  EXPECT_HAS(e, "model.vocab id 1073741824 for 'b'");
  EXPECT_HAS(e, "kMaxVocab");
}

TEST(HostileTokenizer, PostProcessorIdsMustBeInTheVocabulary) {
  for (const json& id : {json(4), json(int64_t{1} << 32), json(-1), json("3")}) {
    TokenizerDir t;
    t.tok["post_processor"] = {
        {"type", "TemplateProcessing"},
        {"single", json::array({{{"SpecialToken", {{"id", "<eos>"}}}}, {{"Sequence", {{"id", "A"}}}}})},
        {"special_tokens", {{"<eos>", {{"ids", json::array({id})}}}}}};
    const std::string e = t.load_error();
    EXPECT_HAS(e, "special token '<eos>' id " + id.dump() + " is not in the vocabulary [0, 4)");
  }
}

TEST(HostileTokenizer, MergesThatAreNotAListAreRejected) {
  for (const json& merges : {json::object({{"a", "b"}}), json("a b"), json(1)}) {
    TokenizerDir t;
    t.tok["model"]["merges"] = merges;  // was ignored: no merges at all, wrong tokens
    EXPECT_HAS(t.load_error(), "model.merges must be a list of merges");
  }
  TokenizerDir t;
  t.tok["model"]["vocab"] = json::array({"a", "b"});
  EXPECT_HAS(t.load_error(), "model.vocab must be an object");
}

TEST(HostileTokenizer, GenerationConfigIdsOutsideTheVocabulary) {
  for (const json& eos : {json(int64_t{1} << 32), json(4), json::array({3, int64_t{1} << 40}), json(-2)}) {
    TokenizerDir t;
    std::ofstream(t.tmp / "generation_config.json") << json{{"eos_token_id", eos}}.dump();
    const std::string e = t.load_error();  // 2^32 became 0
    EXPECT_HAS(e, "generation_config.json: eos_token_id");
    EXPECT_HAS(e, "is not in the vocabulary [0, 4)");
  }
  TokenizerDir ok;
  std::ofstream(ok.tmp / "generation_config.json") << json{{"eos_token_id", json::array({3, 1})}}.dump();
  const std::string dir = ok.write();
  EXPECT_EQ(Tokenizer::load(dir).eos_ids(), (std::vector<int32_t>{3, 1}));
}

TEST(HostileTokenizer, DeeplyNestedSequencesDoNotOverflowTheStack) {
  // Sequence inside Sequence 200k deep: valid JSON that overflowed the stack of the recursive component parsers.
  const std::pair<const char*, const char*> parts[] = {
      {"normalizer", "normalizers"}, {"pre_tokenizer", "pretokenizers"}, {"decoder", "decoders"},
      {"post_processor", "processors"}};
  for (const auto& [key, list] : parts) {
    // 200k levels of {"type":"Sequence","<list>":[ ... ]}.
    std::string open, close;
    for (int i = 0; i < 200000; ++i) {
      open += std::string(R"({"type":"Sequence",")") + list + R"(":[)";
      close += "]}";
    }
    TokenizerDir t;
    std::string base = t.tok.dump();
    base.pop_back();
    t.raw = base + ",\"" + key + "\":" + open + close + "}";
    const std::string e = t.load_error();
    EXPECT_HAS(e, "tokenizer.json: JSON nested deeper than 64 levels");
  }
  // A side file too.
  TokenizerDir t;
  std::ofstream(t.tmp / "tokenizer_config.json") << "{\"x\":" << deep_array(100000) << "}";
  EXPECT_HAS(t.load_error(), "tokenizer_config.json: JSON nested deeper than 64 levels");
}

TEST(HostileTokenizer, GenerationConfigSamplingOutOfRange) {
  for (const json& gen : {json{{"temperature", 1e300}}, json{{"top_p", -1}}, json{{"top_k", int64_t{1} << 40}},
                          json{{"repetition_penalty", 1e300}}}) {
    test::TempDir tmp("hostile_gen");
    std::ofstream(tmp / "generation_config.json") << gen.dump();
    const std::string e = error_of([&] { sampling_defaults(tmp.str(), SamplingParams{}); });
    EXPECT_HAS(e, "generation_config.json: ");
  }
  test::TempDir ok("hostile_gen_ok");
  std::ofstream(ok / "generation_config.json") << json{{"temperature", 0.6}, {"top_k", 20}}.dump();
  EXPECT_EQ(sampling_defaults(ok.str(), SamplingParams{}).top_k, 20);
}

// ---- safetensors --------------------------------------------------------------------------------------------------

namespace {

// A copy of tiny-a (config, weights, tokenizer) whose files tests edit.
struct ModelCopy {
  test::TempDir tmp{"hostile_model"};
  ModelCopy() {
    for (const char* f : {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
                          "special_tokens_map.json", "generation_config.json"})
      fs::copy_file(fs::path(tiny_a()) / f, tmp.path / f);
  }
  std::string weights() const { return tmp / "model.safetensors"; }
  std::string bytes() const { return test::read_file(weights()); }
  void write(const std::string& b) const {
    std::ofstream(weights(), std::ios::binary | std::ios::trunc) << b;
  }
  uint64_t header_len() const {
    uint64_t n;
    std::memcpy(&n, bytes().data(), 8);
    return n;
  }
  void set_header_len(uint64_t n) const {
    std::string b = bytes();
    std::memcpy(b.data(), &n, 8);
    write(b);
  }
  void edit_config(const std::function<void(json&)>& fn) const {
    json j = json::parse(test::read_file(tmp / "config.json"));
    fn(j);
    std::ofstream(tmp / "config.json") << j.dump(1);
  }
};

int run_cli(const std::string& args, std::string* err) {
  std::string out;
  return test::run_command(test::cli_path() + " " + args, &out, err);
}

}  // namespace

TEST(HostileSafetensors, HeaderLengthCutIntoThePaddingIsRejected) {
  for (uint64_t cut : {1, 2}) {
    ModelCopy m;
    const uint64_t n = m.header_len();
    ASSERT_EQ(m.bytes().substr(8 + n - 2, 2), "  ") << "tiny-a's header is expected to end in padding";
    m.set_header_len(n - cut);  // still parses: every tensor shifts by `cut` bytes
    std::string err;
    EXPECT_EQ(run_cli("logits -m " + m.tmp.str() + " --ids 2,3 -o " + (m.tmp / "l.npy"), &err), 1) << err;
    EXPECT_HAS(err, "model.safetensors: the tensors cover");
    const VerifyReport r = verify_bundle(m.tmp.str());
    EXPECT_FALSE(r.ok()) << verify_report_table(r);
    EXPECT_HAS(verify_report_table(r), "the tensors cover");
  }
}

TEST(HostileSafetensors, TrailingBytesAfterTheLastTensorAreRejected) {
  ModelCopy m;
  m.write(m.bytes() + std::string(4, '\0'));
  const VerifyReport r = verify_bundle(m.tmp.str());
  EXPECT_FALSE(r.ok()) << verify_report_table(r);
  EXPECT_HAS(verify_report_table(r), "the tensors cover");
}

TEST(HostileSafetensors, BytesNoTensorClaimsAreRejected) {
  // Two tensors with a 4-byte hole between them.
  test::TempDir tmp("hostile_gap");
  const std::string hdr = R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                          R"("b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})";
  std::string h = hdr;
  while (h.size() % 8) h += ' ';
  const uint64_t n = h.size();
  std::string file(8, '\0');
  std::memcpy(file.data(), &n, 8);
  file += h + std::string(12, '\0');
  std::ofstream(tmp / "model.safetensors", std::ios::binary) << file;
  const VerifyReport r = verify_bundle(tmp.str());
  EXPECT_HAS(verify_report_table(r), "bytes [4, 8) of the data section before tensor 'b' belong to no tensor");
}

// ---- config.json --------------------------------------------------------------------------------------------------

TEST(HostileConfig, DeepJsonUnderAnUnusedKey) {
  ModelCopy m;
  std::string cfg = test::read_file(m.tmp / "config.json");
  cfg.insert(cfg.find('{') + 1, "\"unused\": " + deep_array(100000) + ",");
  std::ofstream(m.tmp / "config.json") << cfg;
  EXPECT_HAS(error_of([&] { ModelConfig::load(m.tmp.str()); }), "config.json: JSON nested deeper than 64 levels");
  std::string out, err;  // this overflowed the stack of `zaya verify`
  EXPECT_EQ(test::run_command(test::cli_path() + " verify " + m.tmp.str(), &out, &err), 1) << out << err;
  EXPECT_HAS(out + err, "nested deeper than 64 levels");
}

TEST(HostileConfig, HugeGeometryIsRejectedBeforeAnythingIsSized) {
  const std::pair<const char*, json> cases[] = {
      {"num_experts", int64_t{1} << 40},          {"num_hidden_layers", int64_t{1} << 40},
      {"hidden_size", int64_t{1} << 40},          {"num_attention_heads", int64_t{1} << 40},
      {"head_dim", int64_t{1} << 40},             {"vocab_size", int64_t{1} << 40},
      {"ffn_hidden_size", int64_t{1} << 40},      {"zaya_mlp_expansion", int64_t{1} << 40},
      {"max_position_embeddings", int64_t{1} << 62}, {"num_query_groups", int64_t{1} << 40}};
  for (const auto& kv : cases) {
    const char* key = kv.first;  // (no structured bindings: clang 14 cannot capture them in lambdas)
    const json& value = kv.second;
    ModelCopy m;
    m.edit_config([&](json& j) {
      j[key] = value;
      if (std::string(key) == "num_query_groups") j["num_key_value_heads"] = value;
    });
    const auto t0 = std::chrono::steady_clock::now();
    const std::string e = error_of([&] { ModelConfig::load(m.tmp.str()); });
    EXPECT_HAS(e, "config.json: '");
    EXPECT_HAS(e, "exceeds the limit");
    std::string err;
    EXPECT_EQ(run_cli("info -m " + m.tmp.str(), &err), 1) << key;
    EXPECT_HAS(err, "exceeds the limit");
    const VerifyReport r = verify_bundle(m.tmp.str());
    EXPECT_FALSE(r.ok());
    EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(10)) << key;
  }
}

TEST(HostileConfig, HugeFloatIsNotANegativeInteger) {
  for (const json& v : {json(1e300), json(-1e300), json(9.3e18), json(uint64_t{1} << 63)}) {
    ModelCopy m;
    m.edit_config([&](json& j) { j["hidden_size"] = v; });
    const std::string e = error_of([&] { ModelConfig::load(m.tmp.str()); });
    EXPECT_HAS(e, "'hidden_size' = " + v.dump() + " is out of range");
  }
}

TEST(HostileConfig, InfoOnTheLimitsDoesNotOverflow) {
  ModelCopy m;  // every dimension at its limit at once: counts and estimates stay in range
  m.edit_config([](json& j) {
    j["hidden_size"] = limits::kMaxHiddenSize;
    j["num_hidden_layers"] = limits::kMaxLayers;
    j["num_attention_heads"] = limits::kMaxHeads;
    j["num_query_groups"] = j["num_key_value_heads"] = limits::kMaxHeads;
    j["head_dim"] = j["kv_channels"] = limits::kMaxHeadDim;
    j["num_experts"] = 16;
    j["vocab_size"] = limits::kMaxVocab;
    j["ffn_hidden_size"] = limits::kMaxFfnSize * 2;
    j["max_position_embeddings"] = limits::kMaxPositions;
  });
  fs::remove(m.weights());
  const ModelConfig c = ModelConfig::load(m.tmp.str());
  const ParamCounts p = count_parameters(c);
  EXPECT_GT(p.total, 0);
  EXPECT_GT(p.total, p.experts);
  std::string out, err;
  EXPECT_EQ(test::run_command(test::cli_path() + " info --json -m " + m.tmp.str(), &out, &err), 0) << err;
  const json j = json::parse(out);
  EXPECT_GT(j["memory_estimate"]["total_bytes"].get<double>(), 0);
  EXPECT_GT(j["params_active"].get<double>(), 0);
}

// ---- verify agrees with the loader --------------------------------------------------------------------------------

TEST(HostileVerify, QuantizationOverridesTheLoaderRejects) {
  const std::string mx = test::require_path(test::data_dir() + "/golden/zaya1-bundles/tiny-a-mxfp4");
  const json bad[] = {json(true), json(3), json{{"mode", 5}}, json{{"mode", "int3"}}, json{{"group_size", "64"}},
                      json{{"group_size", 48}}, json{{"bits", 99}}};
  for (const json& ov : bad) {
    test::TempDir tmp("hostile_verify");
    for (const auto& e : fs::directory_iterator(mx)) fs::copy_file(e.path(), tmp.path / e.path().filename());
    json cfg = json::parse(test::read_file(tmp / "config.json"));
    cfg["quantization"]["model.layers.0.self_attn.qkv.linear_q"] = ov;
    std::ofstream(tmp / "config.json") << cfg.dump(1);
    const VerifyReport r = verify_bundle(tmp.str());
    EXPECT_FALSE(r.ok()) << ov.dump() << "\n" << verify_report_table(r);
    EXPECT_HAS(verify_report_table(r), "quantization override 'model.layers.0.self_attn.qkv.linear_q'");
    std::string err;
    EXPECT_EQ(run_cli("verify " + tmp.str(), &err), 1) << ov.dump();
  }
}

TEST(HostileVerify, UnquantizedOverrideOnAQuantizedMatrix) {
  const std::string mx = test::require_path(test::data_dir() + "/golden/zaya1-bundles/tiny-a-mxfp4");
  test::TempDir tmp("hostile_verify_false");
  for (const auto& e : fs::directory_iterator(mx)) fs::copy_file(e.path(), tmp.path / e.path().filename());
  json cfg = json::parse(test::read_file(tmp / "config.json"));
  cfg["quantization"]["model.layers.0.self_attn.qkv.linear_q"] = false;  // the loader refuses: it has .scales
  std::ofstream(tmp / "config.json") << cfg.dump(1);
  const VerifyReport r = verify_bundle(tmp.str());
  EXPECT_FALSE(r.ok()) << verify_report_table(r);
  EXPECT_HAS(verify_report_table(r), "marked unquantized in config.json");
}
