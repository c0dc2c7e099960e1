// .npy I/O: headers byte-identical to numpy.save, round trips of every supported dtype, and malformed files
// rejected with an error naming the file.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "zaya/error.h"
#include "zaya/npy.h"

namespace fs = std::filesystem;

namespace {

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

template <typename E>
std::string bytes_of(const std::vector<E>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(E));
}

uint32_t f32_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

// A preamble (magic, version, little-endian header length) followed by `dict`, padded the numpy way.
std::string npy_bytes(const std::string& dict, int major = 1, int len_bytes = 2) {
  std::string h = dict;
  const size_t pre = 8 + len_bytes;
  while ((pre + h.size() + 1) % 64) h += ' ';
  h += '\n';
  std::string out = "\x93NUMPY";
  out += static_cast<char>(major);
  out += '\0';
  for (int i = 0; i < len_bytes; ++i) out += static_cast<char>((h.size() >> (8 * i)) & 0xff);
  return out + h;
}

class NpyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/zaya-npy-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  std::string path(const std::string& name) const { return (fs::path(dir_) / name).string(); }
  std::string put(const std::string& name, const std::string& contents) {
    const std::string p = path(name);
    std::ofstream out(p, std::ios::binary | std::ios::trunc);
    out.write(contents.data(), static_cast<std::streamsize>(contents.size()));
    return p;
  }
  // The file must be rejected with a zaya::Error naming it and containing `part`.
  void expect_bad(const std::string& contents, const std::string& part) {
    const std::string p = put("bad.npy", contents);
    SCOPED_TRACE(contents.substr(0, 200));
    try {
      zaya::read_npy(p);
      ADD_FAILURE() << "did not throw";
    } catch (const zaya::Error& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find(p), std::string::npos) << msg;
      EXPECT_NE(msg.find(part), std::string::npos) << "lacks '" << part << "': " << msg;
    } catch (const std::exception& e) {
      ADD_FAILURE() << "non-zaya exception: " << e.what();
    }
  }
  std::string dir_;
};

// ---- header format ---------------------------------------------------------------------------------------------

TEST_F(NpyTest, HeaderBytesMatchNumpy2x3) {
  // numpy.save(np.zeros((2, 3), np.float32)) writes exactly this 128-byte prefix: the dict, 21 - len("2") spare
  // spaces for the growth axis, padding spaces, and '\n'; header length 118 = 'v'.
  const std::string dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }";
  std::string want = std::string("\x93NUMPY\x01\x00\x76\x00", 10) + dict;
  want += std::string(127 - want.size(), ' ') + "\n";
  ASSERT_EQ(want.size(), 128u);
  EXPECT_EQ(zaya::npy_header("<f4", {2, 3}), want);

  const std::vector<float> v = {1, 2, 3, 4, 5, 6};
  const std::string p = path("a.npy");
  zaya::write_npy_f32(p, v.data(), {2, 3});
  const std::string file = slurp(p);
  ASSERT_EQ(file.size(), 128u + 24u);
  EXPECT_EQ(file.substr(0, 128), want);
  EXPECT_EQ(file.substr(128), bytes_of(v));
}

TEST_F(NpyTest, HeaderBytesMatchNumpyOtherShapes) {
  auto expect_header = [](const std::string& descr, const std::vector<int64_t>& shape, const std::string& dict,
                          size_t total) {
    const std::string h = zaya::npy_header(descr, shape);
    ASSERT_EQ(h.size(), total) << dict;
    EXPECT_EQ(h.substr(0, 8), std::string("\x93NUMPY\x01\x00", 8));
    EXPECT_EQ(static_cast<size_t>(static_cast<uint8_t>(h[8]) | (static_cast<uint8_t>(h[9]) << 8)), total - 10);
    EXPECT_EQ(h.substr(10, dict.size()), dict);
    EXPECT_EQ(h.substr(10 + dict.size(), total - 11 - dict.size()), std::string(total - 11 - dict.size(), ' '));
    EXPECT_EQ(h.back(), '\n');
  };
  expect_header("<f4", {5}, "{'descr': '<f4', 'fortran_order': False, 'shape': (5,), }", 128);
  expect_header("<f4", {}, "{'descr': '<f4', 'fortran_order': False, 'shape': (), }", 128);
  expect_header("<i8", {0}, "{'descr': '<i8', 'fortran_order': False, 'shape': (0,), }", 128);
  expect_header("<i4", {3, 0, 2}, "{'descr': '<i4', 'fortran_order': False, 'shape': (3, 0, 2), }", 128);
  expect_header("<f4", {1234567, 8}, "{'descr': '<f4', 'fortran_order': False, 'shape': (1234567, 8), }", 128);
  // When the text already ends on a 64-byte boundary numpy still pads a full 64 (padlen is never 0).
  expect_header("<f4", {7, 1, 1, 1, 1, 1, 1, 1, 1, 1, 100000000000},
                "{'descr': '<f4', 'fortran_order': False, 'shape': (7, 1, 1, 1, 1, 1, 1, 1, 1, 1, 100000000000), }",
                192);
  // 0-d arrays get no growth-axis spaces, only alignment padding: 10 + 55 + 62 + 1 = 128.
  const std::string d0 = "{'descr': '<f4', 'fortran_order': False, 'shape': (), }";
  ASSERT_EQ(d0.size(), 55u);
  EXPECT_EQ(zaya::npy_header("<f4", {}), std::string("\x93NUMPY\x01\x00\x76\x00", 10) + d0 + std::string(62, ' ') + "\n");
}

// ---- round trips -----------------------------------------------------------------------------------------------

TEST_F(NpyTest, RoundTripF32) {
  const std::vector<std::vector<int64_t>> shapes = {{2, 3}, {5}, {}, {0}, {3, 0, 2}, {1, 1, 1, 1}, {2, 2, 2}};
  for (const auto& shape : shapes) {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    std::vector<float> v(static_cast<size_t>(n));
    for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<float>(i) * 0.37f - 1.0f;
    if (n >= 4) {
      v[0] = std::numeric_limits<float>::quiet_NaN();
      v[1] = -std::numeric_limits<float>::infinity();
      v[2] = -0.0f;
      v[3] = std::numeric_limits<float>::denorm_min();
    }
    const std::string p = path("f.npy");
    zaya::write_npy_f32(p, v.data(), shape);
    EXPECT_EQ(fs::file_size(p) % 4, 0u);
    EXPECT_EQ(fs::file_size(p), zaya::npy_header("<f4", shape).size() + 4 * v.size());
    auto a = zaya::read_npy(p);
    EXPECT_EQ(a.descr, "<f4");
    EXPECT_EQ(a.shape, shape);
    EXPECT_EQ(a.numel(), n);
    EXPECT_FALSE(a.is_int());
    EXPECT_TRUE(a.i64.empty());
    ASSERT_EQ(a.data.size(), v.size());
    for (size_t i = 0; i < v.size(); ++i) EXPECT_EQ(f32_bits(a.data[i]), f32_bits(v[i])) << i;
  }
}

TEST_F(NpyTest, RoundTripIntegers) {
  const std::vector<int32_t> i32 = {std::numeric_limits<int32_t>::min(), -1, 0, 1, 16777217,
                                    std::numeric_limits<int32_t>::max()};
  zaya::write_npy_i32(path("i.npy"), i32.data(), {2, 3});
  auto a = zaya::read_npy(path("i.npy"));
  EXPECT_EQ(a.descr, "<i4");
  EXPECT_TRUE(a.is_int());
  EXPECT_EQ(a.shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(a.i64, (std::vector<int64_t>(i32.begin(), i32.end())));
  EXPECT_EQ(a.data[1], -1.0f);
  EXPECT_EQ(a.data[4], 16777216.0f);  // the fp32 view rounds; the int64 view is exact
  EXPECT_EQ(slurp(path("i.npy")).substr(10, 16), "{'descr': '<i4',");

  const std::vector<int64_t> i64 = {std::numeric_limits<int64_t>::min(), -7, 0, (1ll << 53) + 1,
                                    std::numeric_limits<int64_t>::max()};
  zaya::write_npy_i64(path("l.npy"), i64.data(), {5});
  auto b = zaya::read_npy(path("l.npy"));
  EXPECT_EQ(b.descr, "<i8");
  EXPECT_EQ(b.shape, (std::vector<int64_t>{5}));
  EXPECT_EQ(b.i64, i64);
  EXPECT_EQ(b.data[1], -7.0f);

  zaya::write_npy_i64(path("e.npy"), nullptr, {0, 4});
  auto c = zaya::read_npy(path("e.npy"));
  EXPECT_EQ(c.shape, (std::vector<int64_t>{0, 4}));
  EXPECT_TRUE(c.i64.empty());
  EXPECT_TRUE(c.data.empty());
}

TEST_F(NpyTest, ReadsF64) {
  const std::vector<double> d = {0.5, -1e300, 1e-50, 3.141592653589793};
  const std::string p = put("d.npy", zaya::npy_header("<f8", {2, 2}) + bytes_of(d));
  auto a = zaya::read_npy(p);
  EXPECT_EQ(a.descr, "<f8");
  EXPECT_EQ(a.shape, (std::vector<int64_t>{2, 2}));
  ASSERT_EQ(a.data.size(), 4u);
  EXPECT_EQ(a.data[0], 0.5f);
  EXPECT_EQ(a.data[1], -std::numeric_limits<float>::infinity());
  EXPECT_EQ(a.data[2], 0.0f);
  EXPECT_EQ(a.data[3], 3.14159265f);
}

TEST_F(NpyTest, ReadsOtherHeaderSpellings) {
  const std::vector<float> v = {1, 2, 3};
  // Key order, quotes, spacing and a missing trailing comma are all free in a Python dict literal.
  auto a = zaya::read_npy(put("a.npy", npy_bytes("{\"shape\": (3,), \"fortran_order\": False, \"descr\": \"<f4\"}") +
                                           bytes_of(v)));
  EXPECT_EQ(a.shape, (std::vector<int64_t>{3}));
  EXPECT_EQ(a.data, v);
  auto b = zaya::read_npy(put("b.npy", npy_bytes("{'descr':'<f4','fortran_order':False,'shape':(1,3)}") + bytes_of(v)));
  EXPECT_EQ(b.shape, (std::vector<int64_t>{1, 3}));
  // Python 2 long suffix.
  auto c = zaya::read_npy(put("c.npy", npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (3L,), }") +
                                           bytes_of(v)));
  EXPECT_EQ(c.shape, (std::vector<int64_t>{3}));
  // Format 2.0 and 3.0: a four-byte header length.
  for (int major : {2, 3}) {
    auto d = zaya::read_npy(put("d.npy", npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }",
                                                   major, 4) + bytes_of(v)));
    EXPECT_EQ(d.data, v) << major;
  }
  // Header with no padding at all.
  const std::string dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (3,)}";
  std::string raw = std::string("\x93NUMPY\x01\x00", 8);
  raw += static_cast<char>(dict.size());
  raw += '\0';
  auto e = zaya::read_npy(put("e.npy", raw + dict + bytes_of(v)));
  EXPECT_EQ(e.data, v);
}

// ---- malformed files -------------------------------------------------------------------------------------------

TEST_F(NpyTest, MalformedFilesRejected) {
  const std::string good = "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }";
  const std::string data = bytes_of(std::vector<float>{1, 2});
  ASSERT_NO_THROW(zaya::read_npy(put("ok.npy", npy_bytes(good) + data)));

  expect_bad("", "magic");
  expect_bad("\x93NUMPY", "magic");
  expect_bad("\x93NUMP", "magic");
  expect_bad("PK\x03\x04 this is an npz", "magic");
  expect_bad(std::string("\x93NUMPY\x01\x00\x05", 9), "truncated");
  expect_bad(std::string("\x93NUMPY\x04\x00\x10\x00", 10) + good, "version 4.0");
  expect_bad(std::string("\x93NUMPY\x01\x01\x10\x00", 10) + good, "version 1.1");
  // Header length past the end of the file.
  expect_bad(std::string("\x93NUMPY\x01\x00\xff\xff", 10) + good, "truncated");
  expect_bad(std::string("\x93NUMPY\x02\x00\xff\xff\xff\xff", 12) + good, "truncated");
  // Not a dict, or a broken one.
  expect_bad(npy_bytes("['descr', '<f4']") + data, "malformed");
  expect_bad(npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (2,)") + data, "malformed");
  expect_bad(npy_bytes("{'descr: '<f4', 'fortran_order': False, 'shape': (2,)}") + data, "malformed");
  expect_bad(npy_bytes("{'descr': '<f4' 'fortran_order': False, 'shape': (2,)}") + data, "malformed");
  expect_bad(npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (2,)} extra") + data, "malformed");
  expect_bad(npy_bytes("{'descr': '<f4', 'fortran_order': false, 'shape': (2,)}") + data, "malformed");
  expect_bad(npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': [2]}") + data, "malformed");
  expect_bad(npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (-2,)}") + data, "malformed");
  expect_bad(npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (2.0,)}") + data, "malformed");
  expect_bad(npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (2 3)}") + data, "malformed");
  expect_bad(npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999,)}") + data,
             "malformed");
  expect_bad(npy_bytes("{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (2,)}") + data,
             "duplicate");
  expect_bad(npy_bytes(std::string("{'descr': '<f4', 'fortran_order': False, 'shape': (2,)") + '\0' + "}") + data,
             "malformed");
  // Missing, extra or mistyped keys.
  expect_bad(npy_bytes("{'descr': '<f4', 'shape': (2,)}") + data, "lacks");
  expect_bad(npy_bytes("{'fortran_order': False, 'shape': (2,)}") + data, "lacks");
  expect_bad(npy_bytes("{'descr': '<f4', 'fortran_order': False}") + data, "lacks");
  expect_bad(npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'x': 'y'}") + data, "'x'");
  expect_bad(npy_bytes("{'descr': (4,), 'fortran_order': False, 'shape': (2,)}") + data, "'descr'");
  expect_bad(npy_bytes("{'descr': '<f4', 'fortran_order': 'no', 'shape': (2,)}") + data, "'fortran_order'");
  expect_bad(npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': '2'}") + data, "'shape'");
  // Unsupported layouts and dtypes.
  expect_bad(npy_bytes("{'descr': '<f4', 'fortran_order': True, 'shape': (2,)}") + data, "Fortran");
  for (const char* descr : {">f4", "<f2", "|u1", "<u4", "<c8", "float32", "|b1", "<U4", "|O"})
    expect_bad(npy_bytes(std::string("{'descr': '") + descr + "', 'fortran_order': False, 'shape': (2,)}") + data,
               std::string("unsupported .npy dtype '") + descr + "'");
  // Data sizes that do not match the shape, including shapes whose byte size would overflow.
  expect_bad(npy_bytes(good) + data.substr(0, 7), "7 bytes");
  expect_bad(npy_bytes(good) + data + "x", "9 bytes");
  expect_bad(npy_bytes(good), "0 bytes");
  expect_bad(npy_bytes("{'descr': '<f8', 'fortran_order': False, 'shape': (2305843009213693952,)}") + data,
             "does not match");
  expect_bad(npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296)}") + data,
             "overflows");
}

TEST_F(NpyTest, IoErrorsNameThePath) {
  const std::string missing = path("nope/x.npy");
  try {
    zaya::read_npy(missing);
    ADD_FAILURE() << "did not throw";
  } catch (const zaya::Error& e) {
    EXPECT_NE(std::string(e.what()).find(missing), std::string::npos) << e.what();
  }
  const float v = 1.0f;
  try {
    zaya::write_npy_f32(missing, &v, {1});
    ADD_FAILURE() << "did not throw";
  } catch (const zaya::Error& e) {
    EXPECT_NE(std::string(e.what()).find(missing), std::string::npos) << e.what();
  }
  EXPECT_THROW(zaya::write_npy_f32(path("neg.npy"), &v, {-1}), zaya::Error);
  EXPECT_THROW(zaya::read_npy(dir_), zaya::Error);  // a directory
}

}  // namespace
