// zaya generate: continue a sequence of token ids (greedy with --temp 0, else sampled), printing the new ids.
#include <chrono>
#include <cstdio>
#include <memory>

#include "cli/commands.h"
#include "cli/load.h"
#include "zaya/error.h"
#include "zaya/sampler.h"

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
    const auto& cfg = model->config();
    Sampler sampler(o->sampling, static_cast<size_t>(cfg.vocab));
    DecodeState st = model->new_state();
    std::vector<int> history(prompt.begin(), prompt.end());
    std::vector<int32_t> out;
    using clock = std::chrono::steady_clock;
    auto t0 = clock::now();
    std::vector<float> logits = model->forward(prompt, st, LogitsMode::Last);
    auto t1 = clock::now();
    for (int i = 0; i < o->n; ++i) {
      const int next = sampler.sample(logits.data(), history);
      out.push_back(next);
      history.push_back(next);
      if (o->print_ids) {
        std::printf("%s%d", out.size() > 1 ? "," : "", next);
        std::fflush(stdout);
      }
      bool eos = false;
      for (int64_t e : cfg.eos_token_ids) eos |= (e == next);
      if (eos && !o->ignore_eos) break;
      if (i + 1 < o->n) logits = model->forward(std::span(&out.back(), 1), st, LogitsMode::Last);
    }
    auto t2 = clock::now();
    if (o->print_ids) std::printf("\n");
    const double pp = std::chrono::duration<double>(t1 - t0).count(), tg = std::chrono::duration<double>(t2 - t1).count();
    if (!o->model.quiet)
      std::fprintf(stderr, "zaya: prompt %zu tokens in %.3f s (%.1f tok/s), generated %zu tokens in %.3f s (%.1f tok/s)\n",
                   prompt.size(), pp, prompt.size() / std::max(pp, 1e-9), out.size(), tg,
                   out.size() / std::max(tg, 1e-9));
    return 0;
  };
}

}  // namespace zaya::cli
