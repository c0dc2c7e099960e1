// Tokenizer throughput: encode ~1 MB of English prose (bytes/s) and load time of the Gemma 3 tokenizer.json.
// Uses <build>/assets/gemma3/tokenizer.json when scripts/setup.sh fetched it, else the tiny-a tokenizer.
// Paths can be overridden with ZAYA_BENCH_TOKENIZER (folder or tokenizer.json) and ZAYA_BENCH_TEXT.
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>

#include "zaya/tokenizer.h"

namespace {

namespace fs = std::filesystem;

// bench/ sits next to tests/ in the source tree; the binary runs from <build>/ or <build>/bench.
fs::path source_root() { return fs::path(__FILE__).parent_path().parent_path(); }

std::string tokenizer_path() {
  if (const char* p = std::getenv("ZAYA_BENCH_TOKENIZER")) return p;
  for (const fs::path& cand : {fs::path("assets/gemma3/tokenizer.json"), fs::path("../assets/gemma3/tokenizer.json"),
                               source_root() / "build/assets/gemma3/tokenizer.json"})
    if (fs::exists(cand)) return cand.string();
  return (source_root() / "tests/data/golden/zaya1-text/tiny-a").string();
}

std::string gemma3_path() {
  const std::string p = tokenizer_path();
  return p.find("gemma3") != std::string::npos ? p : std::string();
}

const std::string& text_1mb() {
  static std::string text;
  if (text.empty()) {
    const char* env = std::getenv("ZAYA_BENCH_TEXT");
    const fs::path path = env ? fs::path(env) : source_root() / "tests/data/golden/zaya1-text/trained-small/valid.txt";
    std::ifstream in(path, std::ios::binary);
    std::ostringstream ss;
    ss << in.rdbuf();
    const std::string base = ss.str();
    if (base.empty()) return text;
    while (text.size() < (1u << 20)) text += base;
  }
  return text;
}

const zaya::Tokenizer& tokenizer() {
  static std::unique_ptr<zaya::Tokenizer> tok;
  if (!tok) tok = std::make_unique<zaya::Tokenizer>(zaya::Tokenizer::load(tokenizer_path()));
  return *tok;
}

void BM_TokenizerEncode1MB(benchmark::State& state) {
  const std::string& text = text_1mb();
  if (text.empty()) {
    state.SkipWithError("benchmark text not found");
    return;
  }
  const zaya::Tokenizer& tok = tokenizer();
  std::size_t n = 0;
  for (auto _ : state) {
    auto ids = tok.encode(text);
    n = ids.size();
    benchmark::DoNotOptimize(ids.data());
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(text.size()));
  state.counters["tokens"] = double(n);
  state.SetLabel(tokenizer_path());
}
BENCHMARK(BM_TokenizerEncode1MB)->Unit(benchmark::kMillisecond);

void BM_TokenizerDecode1MB(benchmark::State& state) {
  const std::string& text = text_1mb();
  if (text.empty()) {
    state.SkipWithError("benchmark text not found");
    return;
  }
  const zaya::Tokenizer& tok = tokenizer();
  const auto ids = tok.encode(text);
  for (auto _ : state) {
    std::string s = tok.decode(ids);
    benchmark::DoNotOptimize(s.data());
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(text.size()));
}
BENCHMARK(BM_TokenizerDecode1MB)->Unit(benchmark::kMillisecond);

void BM_TokenizerLoadGemma3(benchmark::State& state) {
  const std::string path = gemma3_path();
  if (path.empty()) {
    state.SkipWithError("gemma3 tokenizer.json not found (run scripts/setup.sh)");
    return;
  }
  for (auto _ : state) {
    zaya::Tokenizer t = zaya::Tokenizer::load(path);
    benchmark::DoNotOptimize(t.vocab_size());
  }
}
BENCHMARK(BM_TokenizerLoadGemma3)->Unit(benchmark::kMillisecond)->Iterations(3);

}  // namespace

// zaya_bench is one binary built from every bench/*.cpp and another file defines main(); this weak fallback
// only takes effect when none does.
__attribute__((weak)) int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
