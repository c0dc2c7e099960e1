// zaya perplexity: PPL of a model over a text, and with --kld-ref the KL divergence from a reference model over the
// same windows (library: zaya/perplexity.h).
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>

#include "cli/commands.h"
#include "cli/load.h"
#include "zaya/error.h"
#include "zaya/perplexity.h"
#include "zaya/tokenizer.h"

namespace zaya::cli {

namespace {

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(cat("cannot read the text file '", path, "'"));
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Progress on stderr: one updating line on a terminal, a line per ~10 % of the windows otherwise.
std::function<void(const PerplexityProgress&)> ppl_progress(bool quiet) {
  if (quiet) return {};
  const bool tty = ::isatty(2);
  return [tty](const PerplexityProgress& p) {
    const double tps = p.seconds > 0 ? p.tokens_done / p.seconds : 0;
    const bool last = p.windows_done == p.windows;
    const size_t step = std::max<size_t>(1, p.windows / 10);
    if (!tty && !last && p.windows_done % step != 0) return;
    std::fprintf(stderr, "%s[window %zu/%zu] %zu/%zu tokens  %.0f tok/s  PPL %.4f%s", tty ? "\r" : "", p.windows_done,
                 p.windows, p.tokens_done, p.tokens, tps, p.running_ppl, tty && !last ? "" : "\n");
  };
}

}  // namespace

Runner add_perplexity(CLI::App& app) {
  struct Opts {
    ModelOptions model;
    std::string text, ref;
    int64_t ctx = 512;
    bool json = false;
    bool ref_exact = false;
  };
  auto o = std::make_shared<Opts>();
  auto* sub = app.add_subcommand("perplexity", "perplexity over a text; with --kld-ref, KL divergence from a reference model");
  // A measuring tool: fp32 activations by default, like `zaya logits`, so its numbers equal the reference arithmetic.
  o->model.add_to(sub, /*exact_by_default=*/true);
  sub->add_flag_callback("--exact", [o] { o->model.exact = true; }, "fp32 activations in quantized products (the default)");
  sub->add_option("-f,--file", o->text, "UTF-8 text file to score")->required();
  sub->add_option("-c,--ctx", o->ctx, "positions per window, <bos> included (chunks of ctx-1 tokens)");
  sub->add_option("--kld-ref", o->ref, "reference model folder: adds KL(ref||model), top-1 agreement and the PPL ratio");
  sub->add_flag("--ref-exact", o->ref_exact,
                "load the --kld-ref model with fp32 activations whatever this model's arithmetic (--int8 vs exact on one model)");
  sub->add_flag("--json", o->json, "print the result as one JSON object on stdout");
  return [o]() {
    const std::string text = read_text(o->text);
    const Tokenizer tok = Tokenizer::load(o->model.dir);
    const std::vector<int32_t> ids = perplexity_tokens(tok, text, o->text);
    auto model = load_model(o->model);
    std::unique_ptr<Model> ref;
    if (!o->ref.empty()) {
      ModelOptions r = o->model;
      r.dir = o->ref;
      if (o->ref_exact) r.exact = true, r.int8 = false;
      ref = load_model(r);
    }
    PerplexityOptions po;
    po.ctx = o->ctx;
    if (tok.bos_id() >= 0) po.bos_id = tok.bos_id();
    po.progress = ppl_progress(o->model.quiet);
    const PerplexityResult r = evaluate_perplexity(*model, ids, po, ref.get());
    if (o->json) {
      nlohmann::json j = {{"ppl", r.ppl},         {"nll_mean", r.nll_mean}, {"tokens", r.tokens},
                          {"windows", r.windows}, {"ctx", r.ctx},           {"seconds", r.seconds}};
      if (r.kld) {
        j["kld_mean"] = r.kld->mean;
        j["kld_p99"] = r.kld->p99;
        j["kld_max"] = r.kld->max;
        j["top1_agree"] = r.kld->top1_agree;
        j["ppl_ref"] = r.kld->ppl_ref;
        j["ppl_ratio"] = r.kld->ppl_ratio;
      }
      std::printf("%s\n", j.dump().c_str());
      return 0;
    }
    std::printf("PPL %.4f  (mean NLL %.5f nats/token) over %zu tokens in %zu windows of ctx %lld, %.1f s\n", r.ppl,
                r.nll_mean, r.tokens, r.windows, static_cast<long long>(r.ctx), r.seconds);
    if (r.kld)
      std::printf("KL(ref||model) mean %.6f  p99 %.6f  max %.6f   top-1 agreement %.2f %%   PPL ref %.4f  ratio %.5f\n",
                  r.kld->mean, r.kld->p99, r.kld->max, 100.0 * r.kld->top1_agree, r.kld->ppl_ref, r.kld->ppl_ratio);
    return 0;
  };
}

}  // namespace zaya::cli
