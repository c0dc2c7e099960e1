// safetensors reader: round trips of every dtype, unaligned (MLX-style) data, empty tensors, sharded sets, and every
// malformed-input path (each must throw zaya::Error naming the file, never crash or read out of bounds). Also the
// scalar float conversions, exhaustively where the domain is 16 bits.
#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "zaya/error.h"
#include "io/safetensors.h"

namespace fs = std::filesystem;
using zaya::DType;

namespace {

// ---- test-side writer ------------------------------------------------------------------------------------------

struct T {
  std::string name;
  std::string dtype;
  std::vector<int64_t> shape;
  std::string bytes;
};

template <typename E>
std::string bytes_of(const std::vector<E>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(E));
}

void write_file(const std::string& path, const std::string& contents) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(contents.data(), static_cast<std::streamsize>(contents.size()));
  ASSERT_TRUE(out.good()) << path;
}

std::string le64(uint64_t v) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[i] = static_cast<char>((v >> (8 * i)) & 0xff);
  return s;
}

// A file made of an explicit header text and data section; hlen defaults to the header's real length.
std::string raw_file(const std::string& header, const std::string& data = "", std::optional<uint64_t> hlen = {}) {
  return le64(hlen ? *hlen : header.size()) + header + data;
}

// Lays tensors out back to back in the given order (no alignment of their own, as MLX does) and pads the header
// with spaces to `align` bytes (1: no padding, so the data section itself may start at an odd address).
std::string st_file(const std::vector<T>& ts, const std::map<std::string, std::string>& meta = {}, size_t align = 8) {
  nlohmann::ordered_json h = nlohmann::ordered_json::object();
  if (!meta.empty()) h["__metadata__"] = meta;
  std::string data;
  for (const auto& t : ts) {
    h[t.name] = {{"dtype", t.dtype}, {"shape", t.shape}, {"data_offsets", {data.size(), data.size() + t.bytes.size()}}};
    data += t.bytes;
  }
  std::string header = h.dump();
  while (header.size() % align) header += ' ';
  return raw_file(header, data);
}

// Runs `f`, which must throw zaya::Error whose message holds every one of `parts`.
void expect_error_has(const std::function<void()>& f, const std::vector<std::string>& parts) {
  try {
    f();
  } catch (const zaya::Error& e) {
    const std::string msg = e.what();
    for (const auto& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << "message lacks '" << p << "': " << msg;
    return;
  } catch (const std::exception& e) {
    ADD_FAILURE() << "threw a non-zaya exception: " << e.what();
    return;
  }
  ADD_FAILURE() << "did not throw";
}
#define EXPECT_ERROR_HAS(stmt, ...)                        \
  do {                                                     \
    SCOPED_TRACE(#stmt);                                   \
    expect_error_has([&] { (void)(stmt); }, {__VA_ARGS__}); \
  } while (0)

class SafetensorsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/zaya-st-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  // Writes `contents` to dir_/name and returns the path.
  std::string put(const std::string& name, const std::string& contents) {
    const std::string p = (fs::path(dir_) / name).string();
    fs::create_directories(fs::path(p).parent_path());
    write_file(p, contents);
    return p;
  }
  std::string sub(const std::string& name) {
    const std::string p = (fs::path(dir_) / name).string();
    fs::create_directories(p);
    return p;
  }
  // Opens a file whose header is `header` (and data `data`) and expects an error naming the file and `parts`.
  void expect_bad(const std::string& header, const std::string& data, const std::vector<std::string>& parts) {
    const std::string p = put("bad.safetensors", raw_file(header, data));
    std::vector<std::string> all = parts;
    all.push_back(p);
    SCOPED_TRACE(header);
    expect_error_has([&] { zaya::SafetensorsFile::open(p); }, all);
    expect_error_has([&] { zaya::TensorStore::open(p); }, all);
  }
  std::string dir_;
};

uint32_t f32_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
float bits_f32(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// ---- round trips -----------------------------------------------------------------------------------------------

TEST_F(SafetensorsTest, RoundTripEveryDType) {
  const std::vector<float> f32 = {0.0f, -1.5f, 3.25f, 1e-30f, -65504.0f, std::numeric_limits<float>::infinity()};
  const std::vector<double> f64 = {1.0, -2.5, 1e300, 0.1};
  const std::vector<float> f16_vals = {1.0f, -2.0f, 0.5f, 65504.0f, std::ldexp(1.0f, -24), -0.0f};
  std::vector<uint16_t> f16, bf16;
  for (float v : f16_vals) f16.push_back(zaya::f32_to_f16(v));
  const std::vector<float> bf16_vals = {1.0f, -3.0f, 1e30f, -1e-30f, 0.15625f, 256.0f};
  for (float v : bf16_vals) bf16.push_back(zaya::f32_to_bf16(v));
  const std::vector<uint8_t> u8 = {0, 1, 127, 128, 255};
  const std::vector<uint16_t> u16 = {0, 65535, 1234};
  const std::vector<uint32_t> u32 = {0, 1, 0xFFFFFFFFu, 0x80000000u};
  const std::vector<uint64_t> u64 = {0, 1ull << 40};
  const std::vector<int8_t> i8 = {-128, 127, 0, -1};
  const std::vector<int16_t> i16 = {-32768, 32767};
  const std::vector<int32_t> i32 = {-2147483647 - 1, 2147483647, -7, 0, 42, 5};
  const std::vector<int64_t> i64 = {std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max(), -1};
  const std::vector<uint8_t> boolean = {0, 1, 1};
  // E4M3FN: 1.0, -2.0, 448 (max), 2^-9 (smallest subnormal), -0.
  const std::vector<uint8_t> e4m3 = {0x38, 0xC0, 0x7E, 0x01, 0x80};
  // E5M2: 1.0, -inf, 57344 (max), 2^-16 (smallest subnormal).
  const std::vector<uint8_t> e5m2 = {0x3C, 0xFC, 0x7B, 0x01};

  const std::string p = put("all.safetensors",
                            st_file({{"f32", "F32", {2, 3}, bytes_of(f32)},
                                     {"f64", "F64", {4}, bytes_of(f64)},
                                     {"f16", "F16", {3, 2}, bytes_of(f16)},
                                     {"bf16", "BF16", {1, 6}, bytes_of(bf16)},
                                     {"u8", "U8", {5}, bytes_of(u8)},
                                     {"u16", "U16", {3}, bytes_of(u16)},
                                     {"u32", "U32", {2, 2}, bytes_of(u32)},
                                     {"u64", "U64", {2}, bytes_of(u64)},
                                     {"i8", "I8", {4}, bytes_of(i8)},
                                     {"i16", "I16", {2}, bytes_of(i16)},
                                     {"i32", "I32", {3, 2}, bytes_of(i32)},
                                     {"i64", "I64", {3}, bytes_of(i64)},
                                     {"bool", "BOOL", {3}, bytes_of(boolean)},
                                     {"e4m3", "F8_E4M3", {5}, bytes_of(e4m3)},
                                     {"e5m2", "F8_E5M2", {4}, bytes_of(e5m2)}},
                                    {{"format", "pt"}, {"note", "hello"}}));
  auto f = zaya::SafetensorsFile::open(p);
  EXPECT_EQ(f->path(), p);
  EXPECT_EQ(f->tensors().size(), 15u);
  EXPECT_EQ(f->metadata().at("format"), "pt");
  EXPECT_EQ(f->metadata().at("note"), "hello");
  EXPECT_EQ(f->file_size(), fs::file_size(p));
  EXPECT_EQ(f->header_size() % 8, 0u);
  EXPECT_EQ(f->find("nope"), nullptr);

  auto get = [&](const std::string& n, DType dt, std::vector<int64_t> shape) -> const zaya::TensorView& {
    const zaya::TensorView* t = f->find(n);
    EXPECT_NE(t, nullptr) << n;
    if (!t) throw std::runtime_error("missing " + n);
    EXPECT_EQ(t->dtype, dt) << n;
    EXPECT_EQ(t->shape, shape) << n;
    EXPECT_EQ(t->name, n);
    EXPECT_EQ(t->file, p);
    EXPECT_EQ(t->nbytes, static_cast<size_t>(t->numel()) * zaya::dtype_size(dt)) << n;
    return *t;
  };
  auto expect_floats = [](const std::vector<float>& got, const std::vector<float>& want, const std::string& n) {
    ASSERT_EQ(got.size(), want.size()) << n;
    for (size_t i = 0; i < want.size(); ++i)
      EXPECT_EQ(f32_bits(got[i]), f32_bits(want[i])) << n << "[" << i << "] " << got[i] << " vs " << want[i];
  };

  expect_floats(zaya::to_f32(get("f32", DType::F32, {2, 3})), f32, "f32");
  {
    std::vector<float> want;
    for (double d : f64) want.push_back(static_cast<float>(d));
    expect_floats(zaya::to_f32(get("f64", DType::F64, {4})), want, "f64");
  }
  expect_floats(zaya::to_f32(get("f16", DType::F16, {3, 2})), f16_vals, "f16");
  {
    std::vector<float> want;
    for (uint16_t b : bf16) want.push_back(zaya::bf16_to_f32(b));
    expect_floats(zaya::to_f32(get("bf16", DType::BF16, {1, 6})), want, "bf16");
    EXPECT_EQ(want[0], 1.0f);
    EXPECT_EQ(want[1], -3.0f);
    EXPECT_EQ(want[4], 0.15625f);
  }
  expect_floats(zaya::to_f32(get("e4m3", DType::F8_E4M3, {5})), {1.0f, -2.0f, 448.0f, std::ldexp(1.0f, -9), -0.0f},
                "e4m3");
  expect_floats(zaya::to_f32(get("e5m2", DType::F8_E5M2, {4})),
                {1.0f, -std::numeric_limits<float>::infinity(), 57344.0f, std::ldexp(1.0f, -16)}, "e5m2");

  EXPECT_EQ(zaya::to_i64(get("u8", DType::U8, {5})), (std::vector<int64_t>{0, 1, 127, 128, 255}));
  EXPECT_EQ(zaya::to_i64(get("u16", DType::U16, {3})), (std::vector<int64_t>{0, 65535, 1234}));
  EXPECT_EQ(zaya::to_i64(get("u32", DType::U32, {2, 2})), (std::vector<int64_t>{0, 1, 4294967295ll, 2147483648ll}));
  EXPECT_EQ(zaya::to_i64(get("u64", DType::U64, {2})), (std::vector<int64_t>{0, 1ll << 40}));
  EXPECT_EQ(zaya::to_i64(get("i8", DType::I8, {4})), (std::vector<int64_t>{-128, 127, 0, -1}));
  EXPECT_EQ(zaya::to_i64(get("i16", DType::I16, {2})), (std::vector<int64_t>{-32768, 32767}));
  EXPECT_EQ(zaya::to_i64(get("i32", DType::I32, {3, 2})),
            (std::vector<int64_t>{-2147483648ll, 2147483647, -7, 0, 42, 5}));
  EXPECT_EQ(zaya::to_i64(get("i64", DType::I64, {3})), i64);
  EXPECT_EQ(zaya::to_i64(get("bool", DType::BOOL, {3})), (std::vector<int64_t>{0, 1, 1}));
  // Integer tensors also convert to fp32.
  expect_floats(zaya::to_f32(get("i32", DType::I32, {3, 2})), {-2147483648.0f, 2147483648.0f, -7, 0, 42, 5}, "i32");
  expect_floats(zaya::to_f32(get("u8", DType::U8, {5})), {0, 1, 127, 128, 255}, "u8");
  // Float tensors are not integers.
  EXPECT_ERROR_HAS(zaya::to_i64(*f->find("f32")), p, "'f32'", "F32");
  EXPECT_ERROR_HAS(zaya::to_i64(*f->find("e4m3")), p, "'e4m3'");

  // The same file through a TensorStore.
  auto s = zaya::TensorStore::open(p);
  EXPECT_EQ(s.size(), 15u);
  EXPECT_EQ(s.names().front(), "bf16");  // sorted
  EXPECT_EQ(zaya::to_i64(s.require("i64", {3})), i64);
}

TEST_F(SafetensorsTest, DTypeTable) {
  const std::vector<std::pair<std::string, size_t>> all = {
      {"F64", 8}, {"F32", 4}, {"F16", 2}, {"BF16", 2}, {"I64", 8}, {"I32", 4}, {"I16", 2}, {"I8", 1},
      {"U64", 8}, {"U32", 4}, {"U16", 2}, {"U8", 1}, {"BOOL", 1}, {"F8_E4M3", 1}, {"F8_E5M2", 1}};
  for (const auto& [name, size] : all) {
    auto dt = zaya::parse_dtype(name);
    ASSERT_TRUE(dt.has_value()) << name;
    EXPECT_EQ(zaya::dtype_name(*dt), name);
    EXPECT_EQ(zaya::dtype_size(*dt), size) << name;
  }
  EXPECT_FALSE(zaya::parse_dtype("f32").has_value());  // case matters
  EXPECT_FALSE(zaya::parse_dtype("").has_value());
  EXPECT_FALSE(zaya::parse_dtype("F8_E4M3FN").has_value());
}

TEST_F(SafetensorsTest, UnalignedTensorsReadCorrectly) {
  // MLX packs tensors back to back: a 3-byte U8 tensor puts the F32 after it at an odd offset. With no header
  // padding the data section may itself start at an odd address.
  const std::vector<uint8_t> u8 = {7, 8, 9};
  const std::vector<float> f32 = {1.5f, -2.25f, 1e-3f, 4e20f, -0.0f};
  const std::vector<uint16_t> bf16 = {0x3f80, 0xc040, 0x0001};
  const std::vector<uint16_t> f16 = {0x3c00, 0x0001, 0x7bff};
  const std::vector<int64_t> i64 = {-5, 1ll << 50};
  const std::vector<double> f64 = {0.5, -1e10};
  const std::vector<int32_t> i32 = {-9, 123456789};
  for (size_t align : {1, 8}) {
    SCOPED_TRACE(align);
    const std::string p = put("unaligned.safetensors",
                              st_file({{"a_u8", "U8", {3}, bytes_of(u8)},
                                       {"b_f32", "F32", {5}, bytes_of(f32)},
                                       {"c_u8", "U8", {1}, std::string(1, '\x05')},
                                       {"d_bf16", "BF16", {3}, bytes_of(bf16)},
                                       {"e_f16", "F16", {3}, bytes_of(f16)},
                                       {"f_u8", "U8", {1}, std::string(1, '\x06')},
                                       {"g_i64", "I64", {2}, bytes_of(i64)},
                                       {"h_f64", "F64", {2}, bytes_of(f64)},
                                       {"i_i32", "I32", {2}, bytes_of(i32)}},
                                      {}, align));
    auto f = zaya::SafetensorsFile::open(p);
    const auto* t = f->find("b_f32");
    ASSERT_NE(t, nullptr);
    // The test must really exercise a misaligned pointer (with 8-byte header padding the offset decides it).
    if (align == 8) {
      EXPECT_NE(reinterpret_cast<uintptr_t>(t->data) % 4, 0u);
    }
    auto v = zaya::to_f32(*t);
    ASSERT_EQ(v.size(), f32.size());
    for (size_t i = 0; i < v.size(); ++i) EXPECT_EQ(f32_bits(v[i]), f32_bits(f32[i])) << i;
    EXPECT_EQ(zaya::to_f32(*f->find("d_bf16")), (std::vector<float>{1.0f, -3.0f, bits_f32(0x00010000)}));
    EXPECT_EQ(zaya::to_f32(*f->find("e_f16")), (std::vector<float>{1.0f, std::ldexp(1.0f, -24), 65504.0f}));
    EXPECT_EQ(zaya::to_i64(*f->find("g_i64")), i64);
    EXPECT_EQ(zaya::to_f32(*f->find("h_f64")), (std::vector<float>{0.5f, -1e10f}));
    EXPECT_EQ(zaya::to_i64(*f->find("i_i32")), (std::vector<int64_t>{-9, 123456789}));
    EXPECT_EQ(zaya::to_i64(*f->find("a_u8")), (std::vector<int64_t>{7, 8, 9}));
    EXPECT_EQ(zaya::to_i64(*f->find("f_u8")), (std::vector<int64_t>{6}));
  }
}

TEST_F(SafetensorsTest, EmptyAndScalarTensors) {
  const std::vector<float> one = {2.5f};
  const std::vector<float> four = {1, 2, 3, 4};
  nlohmann::ordered_json h = {
      {"empty0", {{"dtype", "F32"}, {"shape", {0}}, {"data_offsets", {0, 0}}}},
      {"a", {{"dtype", "F32"}, {"shape", {4}}, {"data_offsets", {0, 16}}}},
      // Empty tensors may share offsets with, or sit inside, others: they hold no bytes.
      {"empty_inside", {{"dtype", "BF16"}, {"shape", {2, 0, 3}}, {"data_offsets", {8, 8}}}},
      {"scalar", {{"dtype", "F32"}, {"shape", nlohmann::ordered_json::array()}, {"data_offsets", {16, 20}}}},
      {"empty_end", {{"dtype", "I64"}, {"shape", {0, 5}}, {"data_offsets", {20, 20}}}},
  };
  const std::string p = put("empty.safetensors", raw_file(h.dump(), bytes_of(four) + bytes_of(one)));
  auto f = zaya::SafetensorsFile::open(p);
  ASSERT_EQ(f->tensors().size(), 5u);
  EXPECT_EQ(f->find("empty0")->numel(), 0);
  EXPECT_EQ(f->find("empty0")->nbytes, 0u);
  EXPECT_TRUE(zaya::to_f32(*f->find("empty0")).empty());
  EXPECT_TRUE(zaya::to_f32(*f->find("empty_inside")).empty());
  EXPECT_EQ(f->find("empty_inside")->shape_str(), "[2, 0, 3]");
  EXPECT_TRUE(zaya::to_i64(*f->find("empty_end")).empty());
  EXPECT_EQ(f->find("scalar")->numel(), 1);
  EXPECT_EQ(f->find("scalar")->shape_str(), "[]");
  EXPECT_EQ(zaya::to_f32(*f->find("scalar")), one);
  EXPECT_EQ(zaya::to_f32(*f->find("a")), four);

  // A file holding nothing but empty tensors, and one holding no tensors at all.
  const std::string q = put("only_empty.safetensors",
                            raw_file(R"({"e":{"dtype":"U8","shape":[0],"data_offsets":[0,0]}})"));
  EXPECT_EQ(zaya::SafetensorsFile::open(q)->tensors().size(), 1u);
  const std::string r = put("none.safetensors", raw_file("{}"));
  EXPECT_EQ(zaya::SafetensorsFile::open(r)->tensors().size(), 0u);
  const std::string m = put("meta_only.safetensors", raw_file(R"({"__metadata__":{"k":"v"}})"));
  EXPECT_EQ(zaya::SafetensorsFile::open(m)->metadata().at("k"), "v");
}

TEST_F(SafetensorsTest, HeaderWhitespacePaddingAccepted) {
  // The format pads the header with spaces; the JSON must still parse.
  const std::string hdr = std::string(R"({"x":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}})") + std::string(13, ' ');
  const std::string p = put("pad.safetensors", raw_file(hdr, "\x01\x02"));
  auto f = zaya::SafetensorsFile::open(p);
  EXPECT_EQ(f->header_size(), hdr.size());
  EXPECT_EQ(zaya::to_i64(*f->find("x")), (std::vector<int64_t>{1, 2}));
}

// ---- malformed single files ------------------------------------------------------------------------------------

TEST_F(SafetensorsTest, TooShortFiles) {
  for (size_t n : {0, 1, 7}) {
    const std::string p = put("short.safetensors", std::string(n, '\x01'));
    EXPECT_ERROR_HAS(zaya::SafetensorsFile::open(p), p, "8-byte");
    EXPECT_ERROR_HAS(zaya::TensorStore::open(p), p);
  }
}

TEST_F(SafetensorsTest, BadHeaderLengths) {
  const std::string hdr = R"({"x":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}})";
  // Header length larger than the file.
  std::string p = put("big.safetensors", raw_file(hdr, "\x01", hdr.size() + 2));
  EXPECT_ERROR_HAS(zaya::SafetensorsFile::open(p), p, "exceeds the file size");
  // Exactly one byte too many.
  p = put("big1.safetensors", raw_file(hdr, "", hdr.size() + 1));
  EXPECT_ERROR_HAS(zaya::SafetensorsFile::open(p), p, "exceeds the file size");
  // Absurd lengths: over the 100 MB cap, and one that would overflow 8 + hlen.
  for (uint64_t h : std::initializer_list<uint64_t>{(100ull << 20) + 1, 1ull << 40, std::numeric_limits<uint64_t>::max(),
                                                   std::numeric_limits<uint64_t>::max() - 7}) {
    p = put("absurd.safetensors", raw_file(hdr, "\x01", h));
    EXPECT_ERROR_HAS(zaya::SafetensorsFile::open(p), p, "header length");
  }
  // Too small to hold even "{}".
  for (uint64_t h : {0ull, 1ull}) {
    p = put("tiny.safetensors", le64(h) + "{}");
    EXPECT_ERROR_HAS(zaya::SafetensorsFile::open(p), p, "header length");
  }
  // Exactly 8 bytes: a length and nothing else.
  p = put("eight.safetensors", le64(2));
  EXPECT_ERROR_HAS(zaya::SafetensorsFile::open(p), p);
}

TEST_F(SafetensorsTest, HeaderNotJsonObject) {
  expect_bad("{\"x\": ", "", {"not valid JSON"});
  expect_bad("not json at all", "", {"not valid JSON"});
  expect_bad(std::string("{\"a\"\0:1}", 8), "", {"not valid JSON"});
  expect_bad("\xff\xfe{}", "", {"not valid JSON"});
  expect_bad("[]", "", {"not a JSON object"});
  expect_bad("\"str\"", "", {"not a JSON object"});
  expect_bad("42", "", {"not a JSON object"});
  expect_bad("null", "", {"not a JSON object"});
  // Trailing garbage after a valid object.
  expect_bad("{} x", "", {"not valid JSON"});
  // Deep nesting must not blow the stack, closed or not.
  expect_bad(std::string(200000, '['), "", {"nested deeper than 64 levels"});
  expect_bad("{\"x\":" + std::string(100000, '[') + std::string(100000, ']') + "}", "", {"nested deeper than 64 levels"});
}

TEST_F(SafetensorsTest, BadEntries) {
  const std::string data(16, '\0');
  auto entry = [](const std::string& body) { return "{\"w\":" + body + "}"; };
  expect_bad(entry("3"), data, {"'w'", "not an object"});
  expect_bad(entry("[]"), data, {"'w'", "not an object"});
  expect_bad(entry(R"({"shape":[4],"data_offsets":[0,16]})"), data, {"'w'", "dtype"});
  expect_bad(entry(R"({"dtype":7,"shape":[4],"data_offsets":[0,16]})"), data, {"'w'", "dtype"});
  expect_bad(entry(R"({"dtype":"F32","data_offsets":[0,16]})"), data, {"'w'", "shape"});
  expect_bad(entry(R"({"dtype":"F32","shape":4,"data_offsets":[0,16]})"), data, {"'w'", "shape"});
  expect_bad(entry(R"({"dtype":"F32","shape":[4]})"), data, {"'w'", "data_offsets"});
  expect_bad(entry(R"({"dtype":"F32","shape":[4],"data_offsets":[0]})"), data, {"'w'", "data_offsets"});
  expect_bad(entry(R"({"dtype":"F32","shape":[4],"data_offsets":[0,16,16]})"), data, {"'w'", "data_offsets"});
  expect_bad(entry(R"({"dtype":"F32","shape":[4],"data_offsets":{"a":0,"b":16}})"), data, {"'w'", "data_offsets"});
  expect_bad(entry(R"({"dtype":"F33","shape":[4],"data_offsets":[0,16]})"), data, {"'w'", "unknown dtype 'F33'"});
  expect_bad(entry(R"({"dtype":"float32","shape":[4],"data_offsets":[0,16]})"), data, {"'w'", "unknown dtype"});
  // Shapes: negative, non-integer, strings, booleans, null, nested, overflowing.
  for (const char* shape : {"[-4]", "[2,-2]", "[4.0]", "[1.5]", "[\"4\"]", "[true]", "[null]", "[[4]]", "[1e3]"})
    expect_bad(entry(std::string(R"({"dtype":"F32","shape":)") + shape + R"(,"data_offsets":[0,16]})"), data,
               {"'w'", "shape"});
  for (const char* shape : {"[18446744073709551615]", "[9223372036854775808]", "[4294967296,4294967296]",
                            "[4294967296,2147483649,0]", "[3037000500,3037000500]"})
    expect_bad(entry(std::string(R"({"dtype":"F32","shape":)") + shape + R"(,"data_offsets":[0,16]})"), data,
               {"'w'", "overflows"});
  // Zero-sized, so the byte size matches, yet shape[] or numel() would not fit int64.
  for (const char* shape : {"[9223372036854775808,0]", "[4294967296,2147483649,0]", "[0,18446744073709551615]"})
    expect_bad(entry(std::string(R"({"dtype":"F32","shape":)") + shape + R"(,"data_offsets":[0,0]})"), data,
               {"'w'", "overflows"});
  // Offsets: end < begin, negative, non-integer, huge.
  expect_bad(entry(R"({"dtype":"F32","shape":[0],"data_offsets":[16,0]})"), data, {"'w'", "end 0 < begin 16"});
  for (const char* off : {"[-16,0]", "[0,-16]", "[0,16.0]", "[\"0\",16]", "[0,null]", "[0,1e2]"})
    expect_bad(entry(std::string(R"({"dtype":"F32","shape":[4],"data_offsets":)") + off + "}"), data,
               {"'w'", "data_offsets"});
  expect_bad(entry(R"({"dtype":"F32","shape":[4],"data_offsets":[0,18446744073709551615]})"), data,
             {"'w'", "past the end"});
  expect_bad(entry(R"({"dtype":"F32","shape":[4],"data_offsets":[18446744073709551600,18446744073709551615]})"),
             data, {"'w'", "past the end"});
  // Offsets past the data section.
  expect_bad(entry(R"({"dtype":"F32","shape":[5],"data_offsets":[0,20]})"), data, {"'w'", "past the end"});
  expect_bad(entry(R"({"dtype":"F32","shape":[1],"data_offsets":[16,20]})"), data, {"'w'", "past the end"});
  expect_bad(entry(R"({"dtype":"U8","shape":[0],"data_offsets":[17,17]})"), data, {"'w'", "past the end"});
  // Byte size does not match numel x dtype size.
  expect_bad(entry(R"({"dtype":"F32","shape":[3],"data_offsets":[0,16]})"), data, {"'w'", "byte size 16"});
  expect_bad(entry(R"({"dtype":"F16","shape":[4],"data_offsets":[0,16]})"), data, {"'w'", "[4]", "F16"});
  expect_bad(entry(R"({"dtype":"F32","shape":[0],"data_offsets":[0,4]})"), data, {"'w'", "byte size 4"});
  expect_bad(entry(R"({"dtype":"F32","shape":[],"data_offsets":[0,0]})"), data, {"'w'", "byte size 0"});
  // Large shape whose byte size overflows uint64 when multiplied by the dtype size.
  expect_bad(entry(R"({"dtype":"F64","shape":[4611686018427387904],"data_offsets":[0,16]})"), data,
             {"'w'", "byte size"});
}

TEST_F(SafetensorsTest, TruncatedFile) {
  const std::vector<float> v(64, 1.0f);
  const std::string full = st_file({{"a", "F32", {32}, bytes_of(std::vector<float>(32, 2.0f))},
                                    {"b", "F32", {64}, bytes_of(v)}});
  const std::string p = put("trunc.safetensors", full);
  ASSERT_NO_THROW(zaya::SafetensorsFile::open(p));
  // Cut off the last byte, then most of "b", then everything after the header, then part of the header.
  for (size_t cut : {size_t{1}, size_t{200}, size_t{384}, full.size() - 20}) {
    fs::resize_file(p, full.size() - cut);
    SCOPED_TRACE(cut);
    expect_error_has([&] { zaya::SafetensorsFile::open(p); }, {p});
    if (cut <= 200) expect_error_has([&] { zaya::SafetensorsFile::open(p); }, {"'b'", "truncated"});
    if (cut == 384) expect_error_has([&] { zaya::SafetensorsFile::open(p); }, {"'a'", "truncated"});
  }
}

TEST_F(SafetensorsTest, OverlappingTensors) {
  const std::string data(32, '\0');
  auto two = [](const std::string& a, const std::string& b) {
    return "{\"a\":{\"dtype\":\"U8\",\"shape\":" + a + "},\"b\":{\"dtype\":\"U8\",\"shape\":" + b + "}}";
  };
  expect_bad(two(R"([8],"data_offsets":[0,8])", R"([8],"data_offsets":[0,8])"), data, {"'a'", "'b'", "overlap"});
  expect_bad(two(R"([8],"data_offsets":[0,8])", R"([8],"data_offsets":[7,15])"), data, {"'a'", "'b'", "overlap"});
  expect_bad(two(R"([16],"data_offsets":[0,16])", R"([2],"data_offsets":[4,6])"), data, {"'a'", "'b'", "overlap"});
  expect_bad(two(R"([2],"data_offsets":[14,16])", R"([16],"data_offsets":[0,16])"), data, {"'a'", "'b'", "overlap"});
  // An empty tensor sorted between two overlapping ones must not hide the overlap (the old neighbour-only check
  // skipped any pair involving an empty tensor).
  expect_bad(R"({"a":{"dtype":"U8","shape":[16],"data_offsets":[0,16]},)"
             R"("e":{"dtype":"U8","shape":[0],"data_offsets":[8,8]},)"
             R"("c":{"dtype":"U8","shape":[4],"data_offsets":[12,16]}})",
             data, {"'a'", "'c'", "overlap"});
  expect_bad(R"({"a":{"dtype":"U8","shape":[16],"data_offsets":[0,16]},)"
             R"("e":{"dtype":"U8","shape":[0],"data_offsets":[0,0]},)"
             R"("c":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}})",
             data, {"'a'", "'c'", "overlap"});
  // Touching is fine; gaps and trailing bytes are not: the tensors must tile the data section exactly (as the
  // reference reader demands), or a header length off by a byte would shift every tensor unnoticed.
  const std::string ok = put("touch.safetensors",
                             raw_file(two(R"([8],"data_offsets":[0,8])", R"([8],"data_offsets":[8,16])"), data.substr(0, 16)));
  EXPECT_NO_THROW(zaya::SafetensorsFile::open(ok));
  expect_bad(two(R"([8],"data_offsets":[0,8])", R"([8],"data_offsets":[8,16])"), data, {"the tensors cover 16 bytes", "holds 32"});
  expect_bad(two(R"([4],"data_offsets":[0,4])", R"([8],"data_offsets":[20,28])"), data,
             {"bytes [4, 20) of the data section before tensor 'b' belong to no tensor"});
}

TEST_F(SafetensorsTest, BadMetadata) {
  expect_bad(R"({"__metadata__":{"a":"x","b":3}})", "", {"__metadata__", "'b'", "not a string"});
  expect_bad(R"({"__metadata__":{"a":null}})", "", {"__metadata__", "'a'"});
  expect_bad(R"({"__metadata__":{"a":{"nested":"x"}}})", "", {"__metadata__", "'a'"});
  expect_bad(R"({"__metadata__":{"a":["x"]}})", "", {"__metadata__", "'a'"});
  expect_bad(R"({"__metadata__":{"a":true}})", "", {"__metadata__", "'a'"});
  expect_bad(R"({"__metadata__":"x"})", "", {"__metadata__", "not an object"});
  expect_bad(R"({"__metadata__":["x"]})", "", {"__metadata__", "not an object"});
}

TEST_F(SafetensorsTest, HandBuiltViewsAreBoundsChecked) {
  // to_f32/to_i64 trust nothing a caller builds by hand: a view claiming more elements than bytes throws.
  const std::vector<float> v = {1, 2};
  zaya::TensorView t;
  t.name = "hand";
  t.file = "mem";
  t.dtype = DType::F32;
  t.shape = {3};
  t.data = reinterpret_cast<const uint8_t*>(v.data());
  t.nbytes = 8;
  EXPECT_ERROR_HAS(zaya::to_f32(t), "mem", "'hand'");
  t.shape = {2};
  EXPECT_EQ(zaya::to_f32(t), v);
  t.dtype = DType::I32;
  t.shape = {4};
  EXPECT_ERROR_HAS(zaya::to_i64(t), "'hand'");
  t.shape = {1};
  t.data = nullptr;
  EXPECT_ERROR_HAS(zaya::to_i64(t), "'hand'");
}

// ---- folders and sharded sets ----------------------------------------------------------------------------------

std::string index_json(const std::map<std::string, std::string>& weight_map) {
  nlohmann::json j = {{"metadata", {{"total_size", 0}}}, {"weight_map", weight_map}};
  return j.dump(2);
}

TEST_F(SafetensorsTest, ShardedSetWithIndex) {
  const std::string d = sub("model");
  put("model/model-00001-of-00002.safetensors",
      st_file({{"a", "F32", {2}, bytes_of(std::vector<float>{1, 2})},
               {"b", "I32", {1}, bytes_of(std::vector<int32_t>{7})}}));
  put("model/model-00002-of-00002.safetensors",
      st_file({{"c", "BF16", {2, 1}, bytes_of(std::vector<uint16_t>{0x3f80, 0x4000})}}));
  put("model/model.safetensors.index.json",
      index_json({{"a", "model-00001-of-00002.safetensors"},
                  {"b", "model-00001-of-00002.safetensors"},
                  {"c", "model-00002-of-00002.safetensors"}}));
  put("model/stray.safetensors", "garbage that must not be opened");
  auto s = zaya::TensorStore::open(d);
  EXPECT_EQ(s.root(), d);
  EXPECT_EQ(s.size(), 3u);
  EXPECT_EQ(s.files().size(), 2u);
  EXPECT_EQ(s.names(), (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_EQ(zaya::to_f32(s.require("a", {2})), (std::vector<float>{1, 2}));
  EXPECT_EQ(zaya::to_i64(s.require("b")), (std::vector<int64_t>{7}));
  EXPECT_EQ(zaya::to_f32(s.require("c", {2, 1})), (std::vector<float>{1, 2}));
  EXPECT_NE(s.find("c")->file.find("model-00002-of-00002.safetensors"), std::string::npos);
  EXPECT_EQ(s.find("zzz"), nullptr);
  EXPECT_ERROR_HAS(s.require("zzz"), d, "'zzz'");
  EXPECT_ERROR_HAS(s.require("c", {2}), "model-00002-of-00002.safetensors", "'c'", "[2, 1]", "expected [2]");
}

// Reading the files into anonymous memory (FileAccess::Copy, and Auto for a small set) gives the same tensors as
// mapping them, and says so.
TEST_F(SafetensorsTest, CopiedAndMappedStoresHoldTheSameBytes) {
  const std::string d = sub("copied");
  std::vector<float> big(3u << 20);  // 12 MiB: several read chunks, a partial last one, a file not a 2 MiB multiple
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<float>(i % 9973) * 0.5f;
  put("copied/model-00001-of-00002.safetensors",
      st_file({{"a", "F32", {static_cast<int64_t>(big.size())}, bytes_of(big)},
               {"b", "I32", {1}, bytes_of(std::vector<int32_t>{7})}}));
  put("copied/model-00002-of-00002.safetensors", st_file({{"c", "F32", {2}, bytes_of(std::vector<float>{1, 2})}}));
  put("copied/model.safetensors.index.json", index_json({{"a", "model-00001-of-00002.safetensors"},
                                                          {"b", "model-00001-of-00002.safetensors"},
                                                          {"c", "model-00002-of-00002.safetensors"}}));
  const auto mapped = zaya::TensorStore::open(d, zaya::FileAccess::Populate);
  EXPECT_FALSE(mapped.copied());
  for (auto access : {zaya::FileAccess::Copy, zaya::FileAccess::Auto}) {
    const auto s = zaya::TensorStore::open(d, access);
    EXPECT_TRUE(s.copied()) << "a 12 MiB set fits in half of any test machine's memory";
    EXPECT_EQ(s.file_bytes(), mapped.file_bytes());
    for (const char* name : {"a", "b", "c"}) {
      const auto& x = s.require(name);
      const auto& y = mapped.require(name);
      ASSERT_EQ(x.nbytes, y.nbytes) << name;
      EXPECT_NE(x.data, y.data);
      EXPECT_EQ(std::memcmp(x.data, y.data, x.nbytes), 0) << name;
    }
  }
  EXPECT_GT(zaya::available_memory_bytes(), 0u) << "/proc/meminfo has MemAvailable on Linux";
}

TEST_F(SafetensorsTest, IndexProblems) {
  const std::string d = sub("m");
  const std::string idx = (fs::path(d) / "model.safetensors.index.json").string();
  put("m/s1.safetensors", st_file({{"a", "U8", {1}, "\x01"}, {"b", "U8", {1}, "\x02"}}));

  // A shard the index names but that is not there.
  put("m/model.safetensors.index.json", index_json({{"a", "s1.safetensors"}, {"z", "s9.safetensors"}}));
  EXPECT_ERROR_HAS(zaya::TensorStore::open(d), idx, "'s9.safetensors'", "does not exist");

  // A tensor the index lists in a shard that lacks it.
  put("m/model.safetensors.index.json", index_json({{"a", "s1.safetensors"}, {"q", "s1.safetensors"}}));
  EXPECT_ERROR_HAS(zaya::TensorStore::open(d), "s1.safetensors", "'q'", "does not contain");

  // Shard names must be plain file names in the folder.
  put("other/s1.safetensors", st_file({{"a", "U8", {1}, "\x01"}}));
  for (const char* bad : {"../other/s1.safetensors", "sub/s1.safetensors", "/etc/passwd", "..", ".", "",
                          "..\\other\\s1.safetensors"}) {
    put("m/model.safetensors.index.json", index_json({{"a", bad}}));
    EXPECT_ERROR_HAS(zaya::TensorStore::open(d), idx, "plain file name", "'a'");
  }

  // Not JSON / no weight_map / wrong types.
  for (const char* text : {"{", "[]", "{}", "{\"weight_map\": []}", "{\"weight_map\": {\"a\": 3}}",
                           "{\"weight_map\": {}}", "null"}) {
    put("m/model.safetensors.index.json", text);
    EXPECT_ERROR_HAS(zaya::TensorStore::open(d), idx);
  }

  // A shard the index names that is a directory, or is itself malformed.
  sub("m/dir.safetensors");
  put("m/model.safetensors.index.json", index_json({{"a", "dir.safetensors"}}));
  EXPECT_ERROR_HAS(zaya::TensorStore::open(d), "dir.safetensors");
  put("m/broken.safetensors", "1234");
  put("m/model.safetensors.index.json", index_json({{"a", "broken.safetensors"}}));
  EXPECT_ERROR_HAS(zaya::TensorStore::open(d), "broken.safetensors");
}

TEST_F(SafetensorsTest, DuplicatedTensorsAcrossShards) {
  // With an index, the index decides: the copy in the listed shard wins, whatever the order shards are read in,
  // and tensors it does not list are ignored.
  const std::string d = sub("dup");
  put("dup/a.safetensors", st_file({{"w", "F32", {1}, bytes_of(std::vector<float>{1})},
                                    {"extra", "F32", {1}, bytes_of(std::vector<float>{9})}}));
  put("dup/b.safetensors", st_file({{"w", "F32", {1}, bytes_of(std::vector<float>{2})},
                                    {"v", "F32", {1}, bytes_of(std::vector<float>{3})}}));
  for (const char* owner : {"a.safetensors", "b.safetensors"}) {
    put("dup/model.safetensors.index.json", index_json({{"w", owner}, {"v", "b.safetensors"}}));
    auto s = zaya::TensorStore::open(d);
    EXPECT_EQ(zaya::to_f32(s.require("w"))[0], std::string(owner) == "a.safetensors" ? 1.0f : 2.0f) << owner;
    EXPECT_EQ(s.find("extra"), nullptr);
    EXPECT_EQ(s.size(), 2u);
  }
  // Without an index every *.safetensors is read, and a name in two of them is an error naming both files.
  fs::remove(fs::path(d) / "model.safetensors.index.json");
  EXPECT_ERROR_HAS(zaya::TensorStore::open(d), "'w'", "a.safetensors", "b.safetensors");
}

TEST_F(SafetensorsTest, FolderWithoutIndex) {
  // model.safetensors wins over other files when there is no index.
  const std::string d = sub("single");
  put("single/model.safetensors", st_file({{"x", "U8", {1}, "\x05"}}));
  put("single/other.safetensors", "not even a safetensors file");
  auto s = zaya::TensorStore::open(d);
  EXPECT_EQ(s.size(), 1u);
  EXPECT_EQ(zaya::to_i64(s.require("x"))[0], 5);

  // Otherwise every *.safetensors, in name order; other files are ignored.
  const std::string g = sub("glob");
  put("glob/z.safetensors", st_file({{"z", "U8", {1}, "\x01"}}));
  put("glob/a.safetensors", st_file({{"a", "U8", {1}, "\x02"}}));
  put("glob/readme.txt", "hi");
  put("glob/config.json", "{}");
  sub("glob/sub.safetensors");  // a directory with the extension is not a file
  auto t = zaya::TensorStore::open(g);
  EXPECT_EQ(t.names(), (std::vector<std::string>{"a", "z"}));
  ASSERT_EQ(t.files().size(), 2u);
  EXPECT_NE(t.files()[0]->path().find("a.safetensors"), std::string::npos);

  // A single file path: root is its folder.
  auto u = zaya::TensorStore::open((fs::path(g) / "z.safetensors").string());
  EXPECT_EQ(u.root(), g);
  EXPECT_EQ(u.size(), 1u);
}

TEST_F(SafetensorsTest, MissingPaths) {
  const std::string empty = sub("empty");
  put("empty/config.json", "{}");
  EXPECT_ERROR_HAS(zaya::TensorStore::open(empty), empty, "no model.safetensors");
  const std::string nowhere = (fs::path(dir_) / "does-not-exist").string();
  EXPECT_ERROR_HAS(zaya::TensorStore::open(nowhere), nowhere);
  EXPECT_ERROR_HAS(zaya::SafetensorsFile::open(nowhere), nowhere, "cannot open");
  EXPECT_ERROR_HAS(zaya::SafetensorsFile::open(empty), empty);  // a directory is not a file
  EXPECT_ERROR_HAS(zaya::TensorStore::open(""), "no such file");
}

// ---- scalar conversions ----------------------------------------------------------------------------------------

// Independent reference decoders built from bit fields, not from the library's ldexp formulas.
float ref_f16(uint16_t h) {
  const uint32_t s = (h >> 15) & 1, e = (h >> 10) & 0x1f, m = h & 0x3ff;
  if (e == 0x1f) return bits_f32((s << 31) | 0x7f800000u | (m << 13));
  if (e == 0) return (s ? -1.0f : 1.0f) * static_cast<float>(m) / 16777216.0f;
  return bits_f32((s << 31) | ((e - 15 + 127) << 23) | (m << 13));
}

TEST(ConvertF16, SpecialValues) {
  EXPECT_EQ(f32_bits(zaya::f16_to_f32(0x0000)), 0u);
  EXPECT_EQ(f32_bits(zaya::f16_to_f32(0x8000)), 0x80000000u);
  EXPECT_EQ(zaya::f16_to_f32(0x3c00), 1.0f);
  EXPECT_EQ(zaya::f16_to_f32(0xc000), -2.0f);
  EXPECT_EQ(zaya::f16_to_f32(0x0001), std::ldexp(1.0f, -24));   // smallest subnormal
  EXPECT_EQ(zaya::f16_to_f32(0x03ff), 1023 * std::ldexp(1.0f, -24));  // largest subnormal
  EXPECT_EQ(zaya::f16_to_f32(0x0400), std::ldexp(1.0f, -14));   // smallest normal
  EXPECT_EQ(zaya::f16_to_f32(0x7bff), 65504.0f);                // max
  EXPECT_EQ(zaya::f16_to_f32(0xfbff), -65504.0f);
  EXPECT_EQ(zaya::f16_to_f32(0x7c00), std::numeric_limits<float>::infinity());
  EXPECT_EQ(zaya::f16_to_f32(0xfc00), -std::numeric_limits<float>::infinity());
  EXPECT_TRUE(std::isnan(zaya::f16_to_f32(0x7e00)));
  EXPECT_TRUE(std::isnan(zaya::f16_to_f32(0x7c01)));
  EXPECT_TRUE(std::isnan(zaya::f16_to_f32(0xffff)));
  EXPECT_EQ(zaya::f16_to_f32(0x3555), 0.333251953125f);
}

TEST(ConvertF16, ExhaustiveRoundTrip) {
  // Every half decodes exactly and encodes back to itself; NaNs stay NaNs of the same sign (payloads may change).
  for (uint32_t h = 0; h < 65536; ++h) {
    const float f = zaya::f16_to_f32(static_cast<uint16_t>(h));
    const uint16_t back = zaya::f32_to_f16(f);
    const bool is_nan = (h & 0x7c00) == 0x7c00 && (h & 0x3ff);
    if (is_nan) {
      ASSERT_TRUE(std::isnan(f)) << std::hex << h;
      ASSERT_TRUE((back & 0x7c00) == 0x7c00 && (back & 0x3ff)) << std::hex << h << " -> " << back;
      ASSERT_EQ(back & 0x8000u, h & 0x8000u) << std::hex << h;
    } else {
      ASSERT_EQ(f32_bits(f), f32_bits(ref_f16(static_cast<uint16_t>(h)))) << std::hex << h;
      ASSERT_EQ(static_cast<uint32_t>(back), h) << std::hex << h;
    }
  }
}

TEST(ConvertF16, RoundToNearestEvenAtEveryMidpoint) {
  // Between each pair of neighbouring finite halves (both signs, subnormals included): the exact midpoint goes to
  // the even one, and one float ulp either side goes to the nearer one.
  for (uint32_t sign : {0u, 0x8000u}) {
    for (uint32_t h = 0; h < 0x7bff; ++h) {
      const uint16_t lo = static_cast<uint16_t>(sign | h), hi = static_cast<uint16_t>(sign | (h + 1));
      const double mid_d = (static_cast<double>(zaya::f16_to_f32(lo)) + zaya::f16_to_f32(hi)) / 2;
      const float mid = static_cast<float>(mid_d);
      ASSERT_EQ(static_cast<double>(mid), mid_d) << "midpoint must be exact in fp32";
      const uint16_t even = (h & 1) ? hi : lo;
      ASSERT_EQ(zaya::f32_to_f16(mid), even) << std::hex << lo;
      const float toward_hi = std::nextafter(mid, sign ? -INFINITY : INFINITY);
      const float toward_lo = std::nextafter(mid, 0.0f);
      ASSERT_EQ(zaya::f32_to_f16(toward_hi), hi) << std::hex << lo;
      ASSERT_EQ(zaya::f32_to_f16(toward_lo), lo) << std::hex << lo;
    }
  }
}

TEST(ConvertF16, OverflowUnderflowAndSpecials) {
  EXPECT_EQ(zaya::f32_to_f16(65504.0f), 0x7bff);
  EXPECT_EQ(zaya::f32_to_f16(std::nextafter(65520.0f, 0.0f)), 0x7bff);  // just under the midpoint to 65536
  EXPECT_EQ(zaya::f32_to_f16(65520.0f), 0x7c00);                        // midpoint: even is "65536" = inf
  EXPECT_EQ(zaya::f32_to_f16(-65520.0f), 0xfc00);
  EXPECT_EQ(zaya::f32_to_f16(1e10f), 0x7c00);
  EXPECT_EQ(zaya::f32_to_f16(std::numeric_limits<float>::max()), 0x7c00);
  EXPECT_EQ(zaya::f32_to_f16(std::numeric_limits<float>::infinity()), 0x7c00);
  EXPECT_EQ(zaya::f32_to_f16(-std::numeric_limits<float>::infinity()), 0xfc00);
  const uint16_t qn = zaya::f32_to_f16(std::numeric_limits<float>::quiet_NaN());
  EXPECT_TRUE((qn & 0x7c00) == 0x7c00 && (qn & 0x3ff));
  const uint16_t sn = zaya::f32_to_f16(bits_f32(0x7f800001u));  // signalling NaN with a payload below half's bits
  EXPECT_TRUE((sn & 0x7c00) == 0x7c00 && (sn & 0x3ff)) << std::hex << sn;
  EXPECT_EQ(zaya::f32_to_f16(bits_f32(0xffc00000u)) & 0x8000, 0x8000);
  // Underflow: half the smallest subnormal rounds to even (zero); just above it rounds up.
  EXPECT_EQ(zaya::f32_to_f16(std::ldexp(1.0f, -25)), 0x0000);
  EXPECT_EQ(zaya::f32_to_f16(std::nextafter(std::ldexp(1.0f, -25), 1.0f)), 0x0001);
  EXPECT_EQ(zaya::f32_to_f16(3 * std::ldexp(1.0f, -25)), 0x0002);
  EXPECT_EQ(zaya::f32_to_f16(-std::ldexp(1.0f, -25)), 0x8000);
  EXPECT_EQ(zaya::f32_to_f16(1e-30f), 0x0000);
  EXPECT_EQ(zaya::f32_to_f16(std::numeric_limits<float>::denorm_min()), 0x0000);
  EXPECT_EQ(zaya::f32_to_f16(-0.0f), 0x8000);
  // Largest subnormal rounding up into the smallest normal.
  EXPECT_EQ(zaya::f32_to_f16(1023.75f * std::ldexp(1.0f, -24)), 0x0400);
  EXPECT_EQ(zaya::f32_to_f16(1.0f + std::ldexp(1.0f, -11)), 0x3c00);      // midpoint, 0x3c00 even
  EXPECT_EQ(zaya::f32_to_f16(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3c02);  // midpoint, 0x3c02 even
  EXPECT_EQ(zaya::f32_to_f16(2047.0f / 1024.0f + std::ldexp(1.0f, -11)), 0x4000);  // carry into the exponent
}

TEST(ConvertBF16, SpecialValues) {
  EXPECT_EQ(f32_bits(zaya::bf16_to_f32(0x0000)), 0u);
  EXPECT_EQ(f32_bits(zaya::bf16_to_f32(0x8000)), 0x80000000u);
  EXPECT_EQ(zaya::bf16_to_f32(0x3f80), 1.0f);
  EXPECT_EQ(zaya::bf16_to_f32(0xc0a0), -5.0f);
  EXPECT_EQ(f32_bits(zaya::bf16_to_f32(0x0001)), 0x00010000u);  // subnormal
  EXPECT_EQ(zaya::bf16_to_f32(0x0080), std::numeric_limits<float>::min());
  EXPECT_EQ(zaya::bf16_to_f32(0x7f7f), bits_f32(0x7f7f0000u));  // max, about 3.39e38
  EXPECT_EQ(zaya::bf16_to_f32(0x7f80), std::numeric_limits<float>::infinity());
  EXPECT_EQ(zaya::bf16_to_f32(0xff80), -std::numeric_limits<float>::infinity());
  EXPECT_TRUE(std::isnan(zaya::bf16_to_f32(0x7fc0)));
  EXPECT_TRUE(std::isnan(zaya::bf16_to_f32(0x7f81)));
}

TEST(ConvertBF16, ExhaustiveRoundTripAndMidpoints) {
  for (uint32_t b = 0; b < 65536; ++b) {
    const float f = zaya::bf16_to_f32(static_cast<uint16_t>(b));
    ASSERT_EQ(f32_bits(f), b << 16);
    const bool special = (b & 0x7f80) == 0x7f80;  // inf or NaN
    const uint16_t back = zaya::f32_to_bf16(f);
    if (special && (b & 0x7f)) {
      ASSERT_TRUE(std::isnan(zaya::bf16_to_f32(back))) << std::hex << b;  // NaN stays NaN, never inf
      ASSERT_EQ(back & 0x8000u, b & 0x8000u);
      continue;
    }
    ASSERT_EQ(static_cast<uint32_t>(back), b) << std::hex << b;
    if (special) continue;
    // fp32 values between b and the next bf16 up in magnitude (b + 1 in bits, also for negatives).
    const uint32_t even = (b & 1) ? b + 1 : b;
    ASSERT_EQ(static_cast<uint32_t>(zaya::f32_to_bf16(bits_f32((b << 16) | 0x8000))), even) << std::hex << b;
    ASSERT_EQ(static_cast<uint32_t>(zaya::f32_to_bf16(bits_f32((b << 16) | 0x8001))), b + 1) << std::hex << b;
    ASSERT_EQ(static_cast<uint32_t>(zaya::f32_to_bf16(bits_f32((b << 16) | 0x7fff))), b) << std::hex << b;
  }
  // NaN inputs whose payload lives only in the low 16 bits must not truncate to infinity.
  EXPECT_TRUE(std::isnan(zaya::bf16_to_f32(zaya::f32_to_bf16(bits_f32(0x7f800001u)))));
  EXPECT_TRUE(std::isnan(zaya::bf16_to_f32(zaya::f32_to_bf16(bits_f32(0xff800001u)))));
  EXPECT_EQ(zaya::f32_to_bf16(std::numeric_limits<float>::max()), 0x7f80);  // rounds past the max to inf
}

float ref_e4m3(uint8_t b) {
  const int s = b >> 7, e = (b >> 3) & 0xf, m = b & 7;
  if (e == 15 && m == 7) return std::numeric_limits<float>::quiet_NaN();
  const double v = e == 0 ? (m / 8.0) * std::pow(2.0, -6) : (1 + m / 8.0) * std::pow(2.0, e - 7);
  return static_cast<float>(s ? -v : v);
}

TEST(ConvertF8, E4M3AllValues) {
  EXPECT_EQ(zaya::e4m3_to_f32(0x00), 0.0f);
  EXPECT_TRUE(std::signbit(zaya::e4m3_to_f32(0x80)));
  EXPECT_EQ(zaya::e4m3_to_f32(0x38), 1.0f);
  EXPECT_EQ(zaya::e4m3_to_f32(0x01), 0.001953125f);  // smallest subnormal, 2^-9
  EXPECT_EQ(zaya::e4m3_to_f32(0x07), 0.013671875f);  // largest subnormal, 7 * 2^-9
  EXPECT_EQ(zaya::e4m3_to_f32(0x08), 0.015625f);     // smallest normal, 2^-6
  EXPECT_EQ(zaya::e4m3_to_f32(0x7e), 448.0f);        // max; E4M3FN has no infinity
  EXPECT_EQ(zaya::e4m3_to_f32(0xfe), -448.0f);
  EXPECT_EQ(zaya::e4m3_to_f32(0x78), 256.0f);        // exponent 15 is finite here
  EXPECT_TRUE(std::isnan(zaya::e4m3_to_f32(0x7f)));
  EXPECT_TRUE(std::isnan(zaya::e4m3_to_f32(0xff)));
  for (int b = 0; b < 256; ++b) {
    const float got = zaya::e4m3_to_f32(static_cast<uint8_t>(b)), want = ref_e4m3(static_cast<uint8_t>(b));
    if (std::isnan(want)) {
      EXPECT_TRUE(std::isnan(got)) << b;
    } else {
      EXPECT_EQ(f32_bits(got), f32_bits(want)) << b;
      EXPECT_FALSE(std::isinf(got)) << b;
    }
  }
}

}  // namespace
