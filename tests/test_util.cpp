#include "test_util.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>

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

}  // namespace zaya::test
