#pragma once
// The `zaya` subcommands. Each registers its options on the shared CLI11 app and runs when selected.
#include <CLI/CLI.hpp>
#include <functional>
#include <string>
#include <vector>

#include "zaya/model.h"

namespace zaya::cli {

using Runner = std::function<int()>;

// Each returns the callback that runs the subcommand once parsing selected it.
Runner add_logits(CLI::App& app);
Runner add_generate(CLI::App& app);
Runner add_info(CLI::App& app);
Runner add_run(CLI::App& app);
Runner add_chat(CLI::App& app);
Runner add_tokenize(CLI::App& app);
Runner add_template(CLI::App& app);
Runner add_serve(CLI::App& app);
Runner add_bench(CLI::App& app);
Runner add_convert(CLI::App& app);
Runner add_verify(CLI::App& app);
Runner add_synth(CLI::App& app);
Runner add_perplexity(CLI::App& app);
Runner add_smoke(CLI::App& app);

// Shared helpers.
std::vector<int32_t> parse_ids(const std::string& text);

// --mask NAME (ZAYA1-VL attention mask policy), for commands that load a model.
void add_mask_option(CLI::App* sub, std::string& mask);

struct ModelOptions {
  std::string dir;
  std::string skip_route;  // "", "px" or "zero"
  int threads = 0;
  bool quiet = false;
  // Affine products with fp32 activations (the reference arithmetic) instead of int16 activations. `zaya logits`,
  // the comparison tool, defaults to exact (--fast turns it off); everything else defaults to fast (--exact).
  bool exact = false;
  bool int8 = false;  // --int8: int8 activations in the affine products (opt-in, LoadOptions::int8)
  std::string mask = "zyphra-fa2-prefix";  // ZAYA1-VL attention mask policy (--mask)
  WeightMemory memory = WeightMemory::Auto;  // --mmap / --no-mmap
  void add_to(CLI::App* sub, bool exact_by_default = false);
};

// --mmap / --no-mmap (where the weights live while the model runs).
void add_memory_options(CLI::App* sub, WeightMemory& memory);

}  // namespace zaya::cli
