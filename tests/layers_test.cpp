// The layer rule of docs/architecture.md, checked on the source tree: every #include "…" of a file names a header of
// its own layer or of a layer below it; public headers (include/zaya/) include only public headers; the CLI uses
// only the public API and its own headers; cpp-httplib is included only by the server's transport.
#include <gtest/gtest.h>

#include <cstdio>

#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <string>

namespace {

namespace fs = std::filesystem;

const fs::path kRoot = fs::path(ZAYA_TEST_DATA_DIR).parent_path().parent_path();

// Each layer and the layers it may use (itself included). Lower layers never name higher ones.
const std::map<std::string, std::set<std::string>>& allowed() {
  static const std::map<std::string, std::set<std::string>> m = [] {
    std::map<std::string, std::set<std::string>> a;
    a["util"] = {"util"};
    a["io"] = {"util", "io"};
    a["tensor"] = {"util", "io", "tensor"};
    a["kernels"] = {"util", "io", "tensor", "kernels"};
    a["models"] = {"util", "io", "tensor", "kernels", "models"};
    a["quant"] = {"util", "io", "tensor", "kernels", "models", "quant"};
    a["tokenizer"] = {"util", "io", "tokenizer"};
    a["generate"] = {"util", "io", "tensor", "kernels", "models", "tokenizer", "generate"};
    a["eval"] = {"util", "io", "tensor", "kernels", "models", "tokenizer", "generate", "chat", "quant", "eval"};
    a["chat"] = {"util", "io", "tensor", "kernels", "models", "tokenizer", "generate", "chat"};
    a["server"] = {"util", "io", "tensor", "kernels", "models", "tokenizer", "generate", "chat", "server"};
    return a;
  }();
  return m;
}

// The layer that implements each public header.
const std::map<std::string, std::string> kPublic = {
    {"error.h", "util"},         {"limits.h", "util"},      {"npy.h", "io"},           {"runtime.h", "kernels"},
    {"config.h", "models"},      {"decode_state.h", "models"}, {"model.h", "models"},
    {"model_info.h", "models"},  {"convert.h", "quant"},    {"verify.h", "quant"},
    {"tokenizer.h", "tokenizer"}, {"sampler.h", "generate"},
    {"session.h", "generate"},   {"snapshot_pool.h", "generate"}, {"output_parser.h", "generate"},
    {"generate.h", "generate"},  {"jinja.h", "chat"},       {"chat.h", "chat"},
    {"server.h", "server"},      {"vision.h", "models"},      {"perplexity.h", "eval"},  {"smoke.h", "eval"},
};

std::vector<std::string> quoted_includes(const fs::path& file) {
  static const std::regex re(R"(^\s*#\s*include\s*\"([^\"]+)\")");
  std::vector<std::string> out;
  std::ifstream in(file);
  std::string line;
  std::smatch m;
  while (std::getline(in, line))
    if (std::regex_search(line, m, re)) out.push_back(m[1]);
  return out;
}

bool angle_includes(const fs::path& file, const std::string& header) {
  std::ifstream in(file);
  std::string line;
  while (std::getline(in, line))
    if (line.find("#include <" + header + ">") != std::string::npos) return true;
  return false;
}

std::vector<fs::path> sources(const fs::path& dir) {
  std::vector<fs::path> out;
  for (const auto& e : fs::recursive_directory_iterator(dir))
    if (e.is_regular_file() && (e.path().extension() == ".h" || e.path().extension() == ".cpp")) out.push_back(e.path());
  return out;
}

// "models/zaya/moe.h" → "models"; "zaya/model.h" → the implementing layer.
std::string layer_of_include(const std::string& inc) {
  if (inc.rfind("zaya/", 0) == 0) {
    auto it = kPublic.find(inc.substr(5));
    return it == kPublic.end() ? "?public:" + inc : it->second;
  }
  return inc.substr(0, inc.find('/'));
}

TEST(Layers, IncludesPointDown) {
  ASSERT_TRUE(fs::is_directory(kRoot / "src")) << kRoot;
  size_t checked = 0;
  for (const fs::path& f : sources(kRoot / "src")) {
    const std::string layer = fs::relative(f, kRoot / "src").begin()->string();
    if (layer == "cli") continue;  // checked below
    auto rule = allowed().find(layer);
    ASSERT_NE(rule, allowed().end()) << "folder src/" << layer << " has no layer rule (tests/layers_test.cpp)";
    for (const std::string& inc : quoted_includes(f)) {
      const std::string to = layer_of_include(inc);
      EXPECT_TRUE(rule->second.count(to)) << fs::relative(f, kRoot) << " (layer " << layer << ") includes \"" << inc
                                          << "\" of layer " << to;
      ++checked;
    }
  }
  EXPECT_GT(checked, 100u);
}

TEST(Layers, PublicHeadersArePublic) {
  for (const fs::path& f : sources(kRoot / "include" / "zaya")) {
    EXPECT_TRUE(kPublic.count(f.filename().string())) << f.filename() << " is not assigned a layer";
    for (const std::string& inc : quoted_includes(f))
      EXPECT_EQ(inc.rfind("zaya/", 0), 0u) << f.filename() << " includes internal header \"" << inc << "\"";
  }
}

TEST(Layers, CliUsesThePublicApiOnly) {
  for (const fs::path& f : sources(kRoot / "src" / "cli"))
    for (const std::string& inc : quoted_includes(f))
      EXPECT_TRUE(inc.rfind("zaya/", 0) == 0 || inc.rfind("cli/", 0) == 0)
          << fs::relative(f, kRoot) << " includes \"" << inc << "\"";
}

// An embedding program needs nothing beyond include/zaya/.
TEST(Layers, ExamplesUseThePublicApiOnly) {
  size_t n = 0;
  for (const fs::path& f : sources(kRoot / "examples"))
    for (const std::string& inc : quoted_includes(f)) {
      EXPECT_EQ(inc.rfind("zaya/", 0), 0u) << fs::relative(f, kRoot) << " includes \"" << inc << "\"";
      ++n;
    }
  EXPECT_GT(n, 0u);
}

// The example, built against the libraries, answers through the model's chat template.
TEST(Layers, EmbeddingExampleRuns) {
  const std::string model = kRoot.string() + "/tests/data/golden/zaya1-text/trained-small";
  std::string cmd = std::string(ZAYA_EXAMPLE_PATH) + " " + model + " 'What is the GPL?' 12 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  ASSERT_NE(p, nullptr);
  std::string out;
  char buf[256];
  while (size_t k = fread(buf, 1, sizeof buf, p)) out.append(buf, k);
  EXPECT_EQ(pclose(p), 0) << out;
  EXPECT_NE(out.find("prompt tokens, "), std::string::npos) << out;
}

TEST(Layers, HttpLibraryOnlyInTheServer) {
  for (const fs::path& f : sources(kRoot / "src")) {
    const std::string layer = fs::relative(f, kRoot / "src").begin()->string();
    if (angle_includes(f, "httplib.h")) {
      EXPECT_EQ(layer, "server") << fs::relative(f, kRoot);
    }
  }
}

TEST(Layers, SourceFilesStayUnder800Lines) {
  for (const fs::path& f : sources(kRoot / "src")) {
    std::ifstream in(f);
    size_t lines = 0;
    std::string line;
    while (std::getline(in, line)) ++lines;
    EXPECT_LE(lines, 800u) << fs::relative(f, kRoot);
  }
}

}  // namespace
