// zaya convert SRC DST --profile P: quantize a float checkpoint into an MLX/JANG bundle (library: zaya/convert.h).
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <memory>

#include "cli/commands.h"
#include "zaya/convert.h"

namespace zaya::cli {

// Progress on stderr: one updating line on a terminal, a line per ~10% otherwise.
std::function<void(const ConvertProgress&)> progress_printer(bool quiet) {
  if (quiet) return {};
  auto last_pct = std::make_shared<int>(-1);
  const bool tty = ::isatty(2);
  return [last_pct, tty](const ConvertProgress& p) {
    const double mb = p.bytes_written / 1e6, tot = p.bytes_total / 1e6;
    const int pct = p.bytes_total ? static_cast<int>(100.0 * p.bytes_written / p.bytes_total) : 100;
    if (tty) {
      std::fprintf(stderr, "\r[%zu/%zu] %5.1f%%  %.1f / %.1f MB  %-60.60s", p.tensor, p.tensors, 100.0 * mb / std::max(tot, 1e-9),
                   mb, tot, p.name.c_str());
      if (p.name == "done") std::fprintf(stderr, "\n");  // the library's final report
    } else if (pct / 10 != *last_pct / 10 || *last_pct < 0) {
      *last_pct = pct;
      std::fprintf(stderr, "[%zu/%zu] %d%%  %.1f / %.1f MB  %s\n", p.tensor, p.tensors, pct, mb, tot, p.name.c_str());
    }
  };
}

void print_result(const ConvertResult& r, const char* what) {
  std::printf("%s %s: %zu tensors in %zu shard(s), %.1f MB (%.2f GiB) in %.1f s\n", what, r.dir.c_str(), r.tensors,
              r.shards.size(), r.file_bytes / 1e6, r.file_bytes / 1073741824.0, r.seconds);
}

Runner add_convert(CLI::App& app) {
  struct Opts {
    std::string src, dst, profile;
    bool force = false, quiet = false, cpu_rules = false, search = false;
    std::string search_weight = "none";
    double shard_gb = 1.0;
    int threads = 0;
  };
  auto o = std::make_shared<Opts>();
  auto* sub = app.add_subcommand("convert", "write an MLX/JANG bundle from a BF16/F16/F32 checkpoint (legacy or native layout)");
  sub->add_option("SRC", o->src, "source checkpoint folder")->required();
  sub->add_option("DST", o->dst, "output bundle folder (must not exist unless --force)")->required();
  sub->add_option("-p,--profile", o->profile, "mxfp4, jangtq4, q8, q4, mxfp4-e2m1, bf16, f16 or f32")->required();
  sub->add_flag("-f,--force", o->force, "replace DST if it exists");
  sub->add_option("--shard-gb", o->shard_gb, "shard size limit in GB of tensor data (0 = one shard)")->check(CLI::NonNegativeNumber);
  sub->add_flag("--cpu-rules", o->cpu_rules, "MLX affine: use the CPU kernel's rules instead of the Apple-GPU ones");
  auto* search = sub->add_flag("--search-scales", o->search,
                "choose each group's scale/bias (and MXTQ norm) to minimise the reconstruction error instead of MLX's "
                "min/max recipe (same format and size; docs/bundles.md)");
  sub->add_option("--search-weight", o->search_weight, "error weighting of --search-scales: none or magnitude")
      ->check(CLI::IsMember({"none", "magnitude"}))
      ->needs(search);
  sub->add_option("-t,--threads", o->threads, "worker threads (0 = all cores)")->check(CLI::NonNegativeNumber);
  sub->add_flag("-q,--quiet", o->quiet, "no progress output");
  return [o]() {
    ConvertOptions c;
    c.profile = parse_profile(o->profile);
    c.force = o->force;
    c.shard_bytes = static_cast<uint64_t>(o->shard_gb * 1e9);
    c.metal_rules = !o->cpu_rules;
    c.search_scales = o->search;
    c.search_weighted = o->search_weight == "magnitude";
    c.threads = o->threads;
    c.progress = progress_printer(o->quiet);
    print_result(convert_checkpoint(o->src, o->dst, c), "wrote");
    return 0;
  };
}

}  // namespace zaya::cli
