// zaya generate: continue a sequence of token ids (greedy with --temp 0, else sampled), printing the new ids.
#include <chrono>
#include <cstdio>
#include <memory>

#include "cli/commands.h"
#include "cli/load.h"
#include "zaya/error.h"
#include "zaya/sampler.h"
#include "zaya/session.h"

namespace zaya::cli {

Runner add_generate(CLI::App& app) {
  struct Opts {
    ModelOptions model;
    std::string ids;
    int n = 32;
    SamplingParams sampling;
    bool print_ids = false, ignore_eos = false;
    bool seed_set = false;
  };
  auto o = std::make_shared<Opts>();
  o->sampling.temperature = 0.0f;
  auto* sub = app.add_subcommand("generate", "continue a token sequence");
  o->model.add_to(sub);
  sub->add_option("--ids", o->ids, "comma-separated prompt token ids")->required();
  sub->add_option("-n,--max-tokens", o->n, "tokens to generate")->check(CLI::NonNegativeNumber);
  sub->add_option("--temp,--temperature", o->sampling.temperature, "sampling temperature (0 = greedy)");
  sub->add_option("--top-k", o->sampling.top_k, "top-k (0 = off)");
  sub->add_option("--top-p", o->sampling.top_p, "top-p (1 = off)");
  sub->add_option("--min-p", o->sampling.min_p, "min-p (0 = off)");
  sub->add_option("--repeat-penalty", o->sampling.repetition_penalty, "repetition penalty (1 = off)");
  auto* seed = sub->add_option("--seed", o->sampling.seed, "random seed");
  sub->add_flag("--print-ids", o->print_ids, "print the generated ids (comma-separated) on stdout");
  sub->add_flag("--ignore-eos", o->ignore_eos, "do not stop at the end-of-sequence token");
  return [o, seed]() {
    if (!*seed) o->sampling.seed = random_seed();
    const auto prompt = parse_ids(o->ids);
    auto model = load_model(o->model);
    Session session(*model, nullptr);
    GenerateOptions g;
    g.sampling = o->sampling;
    g.max_tokens = o->n;
    g.ignore_eos = o->ignore_eos;
    size_t printed = 0;
    const auto r = session.complete(prompt, g, [&](const std::string&, int32_t id) {
      if (o->print_ids) std::printf("%s%d", printed++ ? "," : "", id), std::fflush(stdout);
      return true;
    });
    if (o->print_ids) std::printf("\n");
    if (!o->model.quiet)
      std::fprintf(stderr, "zaya: prompt %zu tokens in %.3f s (%.1f tok/s), generated %zu tokens in %.3f s (%.1f tok/s)\n",
                   r.prompt_tokens, r.prompt_seconds, r.prompt_tokens / std::max(r.prompt_seconds, 1e-9),
                   r.tokens.size(), r.generation_seconds, r.tokens.size() / std::max(r.generation_seconds, 1e-9));
    return 0;
  };
}

}  // namespace zaya::cli
