// zaya synth --config CONFIG.json --profile P DST: a random-weight model of any config, written straight into a
// bundle profile without materializing the float model (library: zaya/convert.h).
#include <cstdio>
#include <memory>

#include "cli/commands.h"
#include "zaya/convert.h"

namespace zaya::cli {

std::function<void(const ConvertProgress&)> progress_printer(bool quiet);
void print_result(const ConvertResult& r, const char* what);

Runner add_synth(CLI::App& app) {
  struct Opts {
    std::string config, dst, profile, tokenizer;
    uint64_t seed = 0;
    bool force = false, quiet = false;
    double shard_gb = 1.0;
    int threads = 0;
  };
  auto o = std::make_shared<Opts>();
  auto* sub = app.add_subcommand("synth", "write a random-weight model of any config in any bundle profile");
  sub->add_option("-c,--config", o->config, "config.json (legacy, native or ZAYA1-VL) or a folder holding one")->required();
  sub->add_option("-p,--profile", o->profile, "mxfp4, jangtq4, q8, q4, mxfp4-e2m1, bf16, f16 or f32")->required();
  sub->add_option("DST", o->dst, "output folder (must not exist unless --force)")->required();
  sub->add_option("-s,--seed", o->seed, "weight seed");
  sub->add_option("--tokenizer", o->tokenizer, "folder whose tokenizer/template files are copied");
  sub->add_flag("-f,--force", o->force, "replace DST if it exists");
  sub->add_option("--shard-gb", o->shard_gb, "shard size limit in GB of tensor data (0 = one shard)")->check(CLI::NonNegativeNumber);
  sub->add_option("-t,--threads", o->threads, "worker threads (0 = all cores)")->check(CLI::NonNegativeNumber);
  sub->add_flag("-q,--quiet", o->quiet, "no progress output");
  return [o]() {
    SynthOptions s;
    s.profile = parse_profile(o->profile);
    s.force = o->force;
    s.shard_bytes = static_cast<uint64_t>(o->shard_gb * 1e9);
    s.threads = o->threads;
    s.seed = o->seed;
    s.tokenizer_dir = o->tokenizer;
    s.progress = progress_printer(o->quiet);
    print_result(synth_bundle(o->config, o->dst, s), "synthesized");
    return 0;
  };
}

}  // namespace zaya::cli
