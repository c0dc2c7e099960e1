// The streaming safetensors writer: HF layout (padded header, dtype-then-name order), pieces in any order, sharding
// with an index, and errors for incomplete or overrunning writes.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <numeric>
#include <unistd.h>

#include "test_util.h"
#include "zaya/error.h"
#include "io/safetensors.h"
#include "io/safetensors_writer.h"

namespace fs = std::filesystem;
using nlohmann::json;
using namespace zaya;

namespace {

using test::TempDir;

// Deterministic bytes for a tensor.
std::vector<uint8_t> content(const TensorSpec& s) {
  std::vector<uint8_t> v(s.nbytes());
  for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<uint8_t>((i * 131 + s.name.size() * 7) & 0xFF);
  return v;
}

std::vector<TensorSpec> sample_plan() {
  return {{"b.weight", DType::F16, {3, 5}},  {"a.scales", DType::F16, {3, 1}}, {"a.weight", DType::U32, {3, 2}},
          {"z.bits", DType::U8, {1}},        {"m.f32", DType::F32, {7}},      {"scalar", DType::F32, {}},
          {"empty", DType::BF16, {0, 4}},    {"c.i64", DType::I64, {2}}};
}

}  // namespace

TEST(SafetensorsWriter, RoundTripInPiecesAnyOrder) {
  TempDir tmp("stw_roundtrip");
  const auto plan = sample_plan();
  SafetensorsWriterOptions o;
  o.always_index = false;
  o.header_metadata = {{"format", "mlx"}};
  {
    SafetensorsWriter w(tmp.str(), plan, o);
    // Reverse order, each tensor in two pieces (second piece first).
    for (size_t k = plan.size(); k-- > 0;) {
      const auto bytes = content(plan[k]);
      const size_t half = bytes.size() / 2;
      w.write(plan[k].name, bytes.data() + half, bytes.size() - half, half);
      w.write(k, bytes.data(), half, 0);
    }
    EXPECT_EQ(w.bytes_written(), w.total_tensor_bytes());
    const auto sum = w.finish();
    ASSERT_EQ(sum.files.size(), 1u);
    EXPECT_EQ(sum.files[0], "model.safetensors");
  }
  EXPECT_FALSE(fs::exists(tmp.path / "model.safetensors.index.json"));
  const std::string path = (tmp.path / "model.safetensors").string();
  auto f = SafetensorsFile::open(path);
  EXPECT_EQ(f->metadata().at("format"), "mlx");
  EXPECT_EQ(f->header_size() % 8, 0u);
  ASSERT_EQ(f->tensors().size(), plan.size());
  for (const auto& s : plan) {
    const TensorView* t = f->find(s.name);
    ASSERT_NE(t, nullptr) << s.name;
    EXPECT_EQ(t->dtype, s.dtype);
    EXPECT_EQ(t->shape, s.shape);
    const auto want = content(s);
    if (!want.empty()) {  // (memcmp(nullptr) is UB)
      EXPECT_EQ(std::memcmp(t->data, want.data(), want.size()), 0) << s.name;
    }
    // Every tensor naturally aligned.
    if (t->nbytes) {
      EXPECT_EQ(reinterpret_cast<uintptr_t>(t->data) % dtype_size(t->dtype), 0u) << s.name;
    }
  }
  // File order: dtype rank descending (I64, F32, U32, F16, BF16, U8), then name.
  std::vector<std::string> order;
  std::vector<const TensorView*> by_off;
  for (const auto& t : f->tensors()) by_off.push_back(&t);
  std::stable_sort(by_off.begin(), by_off.end(), [](auto* a, auto* b) { return a->data < b->data; });
  for (auto* t : by_off)
    if (t->nbytes) order.push_back(t->name);
  EXPECT_EQ(order, (std::vector<std::string>{"c.i64", "m.f32", "scalar", "a.weight", "a.scales", "b.weight", "z.bits"}));
  // The header text: sorted keys, no spaces, space padding.
  std::ifstream in(path, std::ios::binary);
  uint64_t n = 0;
  in.read(reinterpret_cast<char*>(&n), 8);
  std::string h(n, '\0');
  in.read(h.data(), static_cast<std::streamsize>(n));
  EXPECT_EQ(h.rfind("{\"__metadata__\":{\"format\":\"mlx\"},\"c.i64\":{\"dtype\":\"I64\",\"shape\":[2],\"data_offsets\":[0,16]}", 0), 0u) << h;
}

TEST(SafetensorsWriter, ShardsWithIndex) {
  TempDir tmp("stw_shards");
  std::vector<TensorSpec> plan;
  for (int i = 0; i < 10; ++i) plan.push_back({"t" + std::to_string(9 - i), DType::F32, {100}});  // 400 bytes each
  SafetensorsWriterOptions o;
  o.shard_bytes = 1000;  // closes after the 3rd tensor (1200 ≥ 1000): shards of 3, 3, 3, 1
  o.index_metadata = {{"format", "mxfp4"}};
  SafetensorsWriter w(tmp.str(), plan, o);
  for (const auto& s : plan) {
    std::vector<float> v(100);
    std::iota(v.begin(), v.end(), static_cast<float>(s.name[1] - '0') * 1000);
    w.write(s.name, v.data(), 400);
  }
  const auto sum = w.finish();
  ASSERT_EQ(sum.files.size(), 4u);
  EXPECT_EQ(sum.files[0], "model-00001-of-00004.safetensors");
  const auto idx = nlohmann::ordered_json::parse(test::read_file((tmp.path / "model.safetensors.index.json").string()));
  EXPECT_EQ(idx["metadata"]["format"], "mxfp4");
  uint64_t files = 0;
  for (const auto& f : sum.files) files += fs::file_size(tmp.path / f);
  EXPECT_EQ(idx["metadata"]["total_size"].get<uint64_t>(), files);  // JANG: sum of the shard file sizes
  // weight_map in declaration order.
  std::vector<std::string> keys;
  for (auto it = idx["weight_map"].begin(); it != idx["weight_map"].end(); ++it) keys.push_back(it.key());
  std::vector<std::string> want;
  for (const auto& s : plan) want.push_back(s.name);
  EXPECT_EQ(keys, want);
  EXPECT_EQ(idx["weight_map"]["t9"], "model-00001-of-00004.safetensors");
  EXPECT_EQ(idx["weight_map"]["t0"], "model-00004-of-00004.safetensors");
  const TensorStore st = TensorStore::open(tmp.str());
  ASSERT_EQ(st.size(), 10u);
  EXPECT_EQ(to_f32(st.require("t4"))[7], 4007.0f);
}

TEST(SafetensorsWriter, Errors) {
  TempDir tmp("stw_errors");
  EXPECT_THROW(SafetensorsWriter(tmp.str(), {{"a", DType::F32, {1}}, {"a", DType::F32, {2}}}), Error);
  EXPECT_THROW(SafetensorsWriter((tmp.path / "missing").string(), {{"a", DType::F32, {1}}}), Error);
  SafetensorsWriter w(tmp.str(), {{"a", DType::F32, {4}}, {"b", DType::U8, {3}}});
  float v[4] = {1, 2, 3, 4};
  EXPECT_THROW(w.write("a", v, 16, 4), Error);  // overrun
  EXPECT_THROW(w.write("nope", v, 4), Error);
  w.write("a", v, 16);
  try {
    w.finish();
    ADD_FAILURE() << "finish with an unwritten tensor must fail";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'b' got 0 of its 3 bytes"), std::string::npos) << e.what();
  }
}

TEST(SafetensorsWriter, SmallFileHelper) {
  TempDir tmp("stw_small");
  const float s[3] = {1, -1, 1};
  const uint32_t u[2] = {7, 9};
  const std::string p = (tmp.path / "x.safetensors").string();
  write_safetensors_file(p, {{TensorSpec{"signs", DType::F32, {3}}, s}, {TensorSpec{"codes", DType::U32, {2}}, u}});
  auto f = SafetensorsFile::open(p);
  EXPECT_TRUE(f->metadata().empty());
  EXPECT_EQ(to_f32(*f->find("signs")), (std::vector<float>{1, -1, 1}));
  EXPECT_EQ(to_i64(*f->find("codes")), (std::vector<int64_t>{7, 9}));
  EXPECT_THROW(write_safetensors_file(p, {{TensorSpec{"a", DType::F32, {1}}, s}, {TensorSpec{"a", DType::F32, {1}}, s}}), Error);
}
