#include "test_util.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "io/safetensors.h"
#include "zaya/verify.h"

namespace zaya::test {

std::string data_dir() { return ZAYA_TEST_DATA_DIR; }
std::string assets_dir() { return ZAYA_ASSETS_DIR; }
std::string cli_path() { return ZAYA_CLI_PATH; }

std::string require_path(const std::string& path) {
  if (!std::filesystem::exists(path)) {
    ADD_FAILURE() << "required test input is missing: " << path
                  << " (golden data lives in tests/data; fetched assets come from scripts/setup.sh)";
    throw std::runtime_error("missing test input " + path);
  }
  return path;
}

std::string read_file(const std::string& path) {
  std::ifstream in(require_path(path), std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

TempDir::TempDir(const std::string& tag) {
  path = std::filesystem::temp_directory_path() / ("zaya_" + tag + "_" + std::to_string(::getpid()));
  std::filesystem::remove_all(path);
  std::filesystem::create_directories(path);
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path, ec);
}

int run_command(const std::string& cmd, std::string* out, std::string* err) {
  namespace fs = std::filesystem;
  static int counter = 0;
  const fs::path dir = fs::temp_directory_path();
  const std::string tag = std::to_string(::getpid()) + "_" + std::to_string(counter++);
  const fs::path o = dir / ("zaya_test_out_" + tag), e = dir / ("zaya_test_err_" + tag);
  const std::string full = cmd + " >" + o.string() + " 2>" + e.string();
  int status = std::system(full.c_str());
  auto slurp = [](const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
  };
  if (out) *out = slurp(o);
  if (err) *err = slurp(e);
  fs::remove(o);
  fs::remove(e);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

namespace {
using Bytes = std::vector<uint8_t>;

void put32(Bytes& b, uint32_t v) {
  for (int s = 24; s >= 0; s -= 8) b.push_back(static_cast<uint8_t>(v >> s));
}

void chunk(Bytes& png, const char* type, const Bytes& data) {
  put32(png, static_cast<uint32_t>(data.size()));
  const size_t start = png.size();
  png.insert(png.end(), type, type + 4);
  png.insert(png.end(), data.begin(), data.end());
  put32(png, crc32(&png[start], png.size() - start) ^ 0xffffffffu);
}
}  // namespace

uint32_t crc32(const uint8_t* p, size_t n, uint32_t c) {
  for (size_t i = 0; i < n; ++i) {
    c ^= p[i];
    for (int k = 0; k < 8; ++k) c = (c >> 1) ^ (0xedb88320u & (0u - (c & 1u)));
  }
  return c;
}

Bytes make_png(uint32_t w, uint32_t h, int depth, int color_type, const Bytes& rows, const Bytes& plte,
               const Bytes& trns) {
  Bytes png = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  Bytes ihdr;
  put32(ihdr, w);
  put32(ihdr, h);
  ihdr.insert(ihdr.end(), {static_cast<uint8_t>(depth), static_cast<uint8_t>(color_type), 0, 0, 0});
  chunk(png, "IHDR", ihdr);
  if (!plte.empty()) chunk(png, "PLTE", plte);
  if (!trns.empty()) chunk(png, "tRNS", trns);
  Bytes raw;  // filter type 0 before every scanline
  const size_t stride = h ? rows.size() / h : 0;
  for (uint32_t y = 0; y < h; ++y) {
    raw.push_back(0);
    raw.insert(raw.end(), rows.begin() + y * stride, rows.begin() + (y + 1) * stride);
  }
  Bytes z = {0x78, 0x01};
  size_t pos = 0;
  do {
    const size_t n = std::min<size_t>(raw.size() - pos, 65535);
    z.push_back(pos + n == raw.size() ? 1 : 0);
    z.insert(z.end(), {static_cast<uint8_t>(n), static_cast<uint8_t>(n >> 8), static_cast<uint8_t>(~n),
                       static_cast<uint8_t>(~n >> 8)});
    z.insert(z.end(), raw.begin() + pos, raw.begin() + pos + n);
    pos += n;
  } while (pos < raw.size());
  uint32_t a = 1, b = 0;
  for (uint8_t v : raw) a = (a + v) % 65521, b = (b + a) % 65521;
  put32(z, (b << 16) | a);
  chunk(png, "IDAT", z);
  chunk(png, "IEND", {});
  return png;
}

void make_chat_fixture(const std::string& dir) {
  namespace fs = std::filesystem;
  const std::string vl = require_path(data_dir() + "/golden/zaya1-vl/tiny-a");
  const std::string text = require_path(data_dir() + "/golden/zaya1-text/tiny-a");
  for (const char* f : {"config.json", "preprocessor_config.json", "model.safetensors", "image.png"})
    fs::copy_file(vl + "/" + f, dir + "/" + f);
  for (const char* f : {"tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "special_tokens_map.json"})
    fs::copy_file(text + "/" + f, dir + "/" + f);
}

std::string broken_copy(const std::string& src, const std::string& dst, const std::function<void(Tensors&)>& mutate) {
  namespace fs = std::filesystem;
  using nlohmann::json;
  fs::create_directories(dst);
  for (const auto& e : fs::directory_iterator(src))
    if (e.is_regular_file()) fs::copy_file(e.path(), dst + "/" + e.path().filename().string(), fs::copy_options::overwrite_existing);
  const bool indexed = fs::exists(src + "/model.safetensors.index.json");
  json idx = indexed ? json::parse(read_file(src + "/model.safetensors.index.json")) : json::object();
  std::map<std::string, std::string> shard_of;
  Tensors all;
  if (indexed)
    for (auto it = idx["weight_map"].begin(); it != idx["weight_map"].end(); ++it) shard_of[it.key()] = it.value();
  const TensorStore store = TensorStore::open(src);
  for (const auto& n : store.names()) {
    const TensorView& t = *store.find(n);
    all[n] = Tensor{TensorSpec{n, t.dtype, t.shape}, std::string(reinterpret_cast<const char*>(t.data), t.nbytes)};
  }
  mutate(all);
  const std::string first = indexed ? shard_of.begin()->second : "model.safetensors";
  std::map<std::string, std::vector<std::pair<TensorSpec, const void*>>> per_shard;
  json wm = json::object();
  for (const auto& [n, t] : all) {
    const std::string s = shard_of.count(n) ? shard_of[n] : first;
    per_shard[s].push_back({t.spec, t.bytes.data()});
    wm[n] = s;
  }
  uint64_t total = 0;
  for (const auto& [s, ts] : per_shard) {
    write_safetensors_file(dst + "/" + s, ts);
    total += fs::file_size(dst + "/" + s);
  }
  if (!indexed) return dst;
  idx["weight_map"] = wm;
  idx["metadata"]["total_size"] = total;
  std::ofstream(dst + "/model.safetensors.index.json") << idx.dump(2);
  return dst;
}

void expect_failure(const std::string& dir, const std::string& check, const std::string& needle) {
  const VerifyReport r = verify_bundle(dir);
  EXPECT_FALSE(r.ok()) << verify_report_table(r);
  bool found = false;
  for (const auto& c : r.checks)
    if (c.name == check && c.status == VerifyCheck::Fail)
      for (const auto& p : c.problems) found = found || p.find(needle) != std::string::npos;
  EXPECT_TRUE(found) << "expected check '" << check << "' to report '" << needle << "'\n" << verify_report_table(r);
}

}  // namespace zaya::test
