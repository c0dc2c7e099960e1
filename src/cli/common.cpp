#include <cerrno>
#include <cstdlib>

#include "cli/commands.h"
#include "zaya/error.h"

namespace zaya::cli {

std::vector<int32_t> parse_ids(const std::string& text) {
  std::vector<int32_t> ids;
  size_t at = 0;
  while (at <= text.size()) {
    size_t comma = text.find(',', at);
    if (comma == std::string::npos) comma = text.size();
    std::string item = text.substr(at, comma - at);
    while (!item.empty() && item.front() == ' ') item.erase(item.begin());
    while (!item.empty() && item.back() == ' ') item.pop_back();
    if (item.empty()) throw Error(cat("--ids: empty entry in '", text, "'"));
    char* end = nullptr;
    errno = 0;
    long long v = std::strtoll(item.c_str(), &end, 10);
    if (*end != '\0' || errno == ERANGE || v < 0 || v > INT32_MAX)
      throw Error(cat("--ids: '", item, "' is not a non-negative token id"));
    ids.push_back(static_cast<int32_t>(v));
    at = comma + 1;
  }
  return ids;
}

void add_mask_option(CLI::App* sub, std::string& mask) {
  sub->add_option("--mask", mask,
                  "ZAYA1-VL: how a prompt with images attends: zyphra-fa2-prefix (default, Zyphra's own inference), "
                  "causal (HF default path) or image-pairs (upstream port); see docs/vision.md")
      ->check(CLI::IsMember({"causal", "zyphra-fa2-prefix", "image-pairs"}));
}

void add_memory_options(CLI::App* sub, WeightMemory& memory) {
  auto* on = sub->add_flag_callback("--mmap", [&memory] { memory = WeightMemory::Mapped; },
                                    "keep the weights mapped from the files (fastest start, slower generation) instead "
                                    "of reading them into memory when they fit in half of it");
  auto* off = sub->add_flag_callback("--no-mmap", [&memory] { memory = WeightMemory::Copied; },
                                     "always read the weights into memory (the default when they fit in half of it)");
  on->excludes(off);
}

void ModelOptions::add_to(CLI::App* sub, bool exact_by_default) {
  sub->add_option("-m,--model", dir, "model folder (config.json + safetensors)")->required();
  sub->add_option("--skip-route", skip_route,
                  "MOD skip-route semantics: px (p*x, legacy reference) or zero (v5 port); default per layout")
      ->check(CLI::IsMember({"px", "zero"}));
  sub->add_option("-t,--threads", threads, "worker threads (0 = all cores)")->check(CLI::NonNegativeNumber);
  sub->add_flag("-q,--quiet", quiet, "do not log model details to stderr");
  add_mask_option(sub, mask);
  add_memory_options(sub, memory);
  exact = exact_by_default;
  CLI::Option* other = nullptr;
  if (exact_by_default)
    other = sub->add_flag_callback("--fast", [this] { exact = false; },
                                   "quantized products with int16 activations (the default of generate/run/serve)");
  else
    other = sub->add_flag("--exact", exact, "quantized products with fp32 activations, the reference arithmetic (slower prefill)");
  sub->add_flag_callback("--int8", [this] { int8 = true, exact = false; },
                         "affine 4/8-bit products with int8 activations (faster prefill, less accurate; docs/bundles.md)")
      ->excludes(other);
}

}  // namespace zaya::cli
