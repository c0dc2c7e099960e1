// zaya smoke: the runtime smoke test and coherence report (library: zaya/smoke.h; docs/smoke.md).
#include <cstdio>
#include <fstream>
#include <memory>
#include <sstream>

#include "cli/commands.h"
#include "zaya/error.h"
#include "zaya/smoke.h"
#include "zaya/runtime.h"

namespace zaya::cli {

namespace {

std::string slurp(const std::string& path, const char* what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(cat("cannot read the ", what, " '", path, "'"));
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

Runner add_smoke(CLI::App& app) {
  struct Opts {
    ModelOptions model;
    std::string ref, out, prompts, text;
    bool json = false, strict = false;
    uint64_t seed = 1234;
  };
  auto o = std::make_shared<Opts>();
  auto* sub = app.add_subcommand("smoke", "runtime smoke test and coherence report (exit 1 when a check fails)");
  o->model.add_to(sub);
  sub->add_option("--ref", o->ref, "reference model folder (e.g. the float source): KLD, top-1, greedy agreement");
  sub->add_option("-o,--output", o->out, "write the markdown report to this file (default: stdout)");
  sub->add_flag("--json", o->json, "print the report as JSON on stdout");
  sub->add_option("--prompts", o->prompts, "prompt set JSON file (default: the built-in set, src/eval/smoke_data.json)");
  sub->add_option("-f,--file", o->text, "text for the reference comparison (default: the built-in text)");
  sub->add_flag("--strict", o->strict, "behaviour checks (expected answers, stop, reasoning, tool calls) decide too");
  sub->add_option("--seed", o->seed, "seed of the seeded generations");
  return [o]() {
    SmokeOptions so;
    so.ref_dir = o->ref;
    if (!o->prompts.empty()) so.prompts_json = slurp(o->prompts, "prompt file"), so.prompts_source = o->prompts;
    if (!o->text.empty()) {
      so.text = slurp(o->text, "text file");
      so.text_source = o->text;
      if (so.text.empty()) throw Error(cat(o->text, ": the text is empty"));
    }
    so.strict = o->strict;
    so.seed = o->seed;
    so.load.exact = o->model.exact;
    so.load.int8 = o->model.int8;
    if (!o->model.skip_route.empty()) {
      so.load.override_skip_route = true;
      so.load.skip_route = o->model.skip_route == "zero" ? SkipRoute::Zero : SkipRoute::ScaledInput;
    }
    if (o->model.threads > 0) set_num_threads(static_cast<size_t>(o->model.threads));
    if (!o->model.quiet) so.log = [](const std::string& line) { std::fprintf(stderr, "%s\n", line.c_str()); };
    const SmokeReport r = run_smoke(o->model.dir, so);
    const std::string md = r.markdown();
    if (!o->out.empty()) {
      std::ofstream f(o->out, std::ios::binary | std::ios::trunc);
      if (!f || !(f << md)) throw Error(cat("cannot write the report to '", o->out, "'"));
    }
    if (o->json)
      std::printf("%s\n", r.json().dump(2, ' ', false, nlohmann::ordered_json::error_handler_t::replace).c_str());
    else if (o->out.empty())
      std::fputs(md.c_str(), stdout);
    const auto bad = r.failed();
    if (!o->model.quiet || !bad.empty()) {
      std::string names;
      for (const auto& n : bad) names += " " + n;
      std::fprintf(stderr, "zaya smoke: %s%s%s\n", bad.empty() ? "PASS" : "FAIL:", names.c_str(),
                   o->out.empty() ? "" : (" (report: " + o->out + ")").c_str());
    }
    return bad.empty() ? 0 : 1;
  };
}

}  // namespace zaya::cli
