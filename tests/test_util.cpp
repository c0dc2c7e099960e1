#include "test_util.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

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
