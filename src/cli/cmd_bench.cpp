// zaya bench: prompt-processing and generation speed of a model, with the bytes of weights each generated token
// reads and the achieved bandwidth against this machine's measured read bandwidth (decode is memory-bound); the
// start-up (load time and first-token latency, cold or warm page cache) and, with --profile, where a decode step's
// time goes.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <optional>
#include <nlohmann/json.hpp>
#include <random>
#include <vector>

#include "cli/bench_image.h"
#include "cli/commands.h"
#include "cli/load.h"
#include "zaya/error.h"
#include "zaya/runtime.h"

namespace zaya::cli {

namespace {

using clock_type = std::chrono::steady_clock;
double seconds_since(clock_type::time_point t) { return std::chrono::duration<double>(clock_type::now() - t).count(); }

// The weight files of a model folder (its *.safetensors).
std::vector<std::string> weight_files(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& e : std::filesystem::directory_iterator(dir))
    if (e.is_regular_file() && e.path().extension() == ".safetensors") out.push_back(e.path().string());
  std::sort(out.begin(), out.end());
  return out;
}

// Fraction of the files' pages in the page cache (mincore over a fresh mapping); -1 when it cannot be told.
double resident_fraction(const std::vector<std::string>& files) {
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  size_t total = 0, resident = 0;
  for (const auto& f : files) {
    const int fd = open(f.c_str(), O_RDONLY);
    if (fd < 0) return -1;
    struct stat st{};
    if (fstat(fd, &st) != 0 || st.st_size == 0) {
      close(fd);
      continue;
    }
    const size_t len = static_cast<size_t>(st.st_size), pages = (len + page - 1) / page;
    void* p = mmap(nullptr, len, PROT_READ, MAP_SHARED, fd, 0);
    close(fd);
    if (p == MAP_FAILED) return -1;
    std::vector<unsigned char> v(pages);
    const bool ok = mincore(p, len, v.data()) == 0;
    munmap(p, len);
    if (!ok) return -1;
    total += pages;
    for (unsigned char b : v) resident += b & 1;
  }
  return total ? static_cast<double>(resident) / static_cast<double>(total) : -1;
}

// Asks the kernel to drop the files' clean pages from the page cache (posix_fadvise DONTNEED: needs no privileges,
// touches no other file; pages another process has mapped stay).
void evict_from_page_cache(const std::vector<std::string>& files) {
  for (const auto& f : files) {
    const int fd = open(f.c_str(), O_RDONLY);
    if (fd < 0) continue;
    posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    close(fd);
  }
}

int32_t argmax(const std::vector<float>& v) {
  return static_cast<int32_t>(std::max_element(v.begin(), v.end()) - v.begin());
}

// One start-up: the page cache as it is, the load, then the first token (prefill of the prompt + its greedy pick).
struct Startup {
  std::string cache;  // "cold" (evicted first), "warm" (loaded before in this run) or "as found"
  double resident = -1, load_s = 0, first_token_s = 0;
};

// `tokens` decode steps; `what` names a step ("a decode step", "a batched step of 4 sequences"). JSON keys say
// per_token: one step is one token of each sequence.
void print_profile(const ProfileReport& r, int tokens, const std::string& what, nlohmann::ordered_json& j, bool print) {
  const double step = r.seconds / tokens;
  auto row_json = [&](const ProfileRow& p) {
    return nlohmann::ordered_json{{"name", p.name},
                                  {"ms_per_token", 1e3 * p.seconds / tokens},
                                  {"share", p.seconds / r.seconds},
                                  {"weight_mb_per_token", p.weight_bytes / 1e6 / tokens},
                                  {"gbs", p.seconds > 0 ? p.weight_bytes / p.seconds / 1e9 : 0.0},
                                  {"calls_per_token", static_cast<double>(p.calls) / tokens}};
  };
  j["step_ms"] = 1e3 * step;
  j["tokens"] = tokens;
  j["threads"] = r.threads;
  j["parallel_regions_per_step"] = static_cast<double>(r.parallel_regions) / tokens;
  j["thread_busy_share"] = r.busy_seconds / (static_cast<double>(r.threads) * r.seconds);
  j["caller_wait_ms_per_step"] = 1e3 * r.wait_seconds / tokens;
  for (const auto& p : r.parts) j["parts"].push_back(row_json(p));
  for (const auto& k : r.kernels) j["kernels"].push_back(row_json(k));
  if (!print) return;
  std::printf("\nwhere %s's time goes (%d steps, %.2f ms per step; GB/s = weight bytes the products "
              "read / time):\n\n| part | ms/step | %% of step | weights MB/step | GB/s |\n|---|---|---|---|---|\n",
              what.c_str(), tokens, 1e3 * step);
  for (const auto& p : r.parts)
    std::printf("| %s | %.3f | %.1f %% | %.1f | %.1f |\n", p.name.c_str(), 1e3 * p.seconds / tokens,
                100 * p.seconds / r.seconds, p.weight_bytes / 1e6 / tokens,
                p.seconds > 0 ? p.weight_bytes / p.seconds / 1e9 : 0.0);
  std::printf("\n| product kernel | products/step | ms/step | %% of step | weights MB/step | GB/s |\n"
              "|---|---|---|---|---|---|\n");
  double products = 0;
  for (const auto& k : r.kernels) {
    products += k.seconds;
    std::printf("| %s | %.1f | %.3f | %.1f %% | %.1f | %.1f |\n", k.name.c_str(),
                static_cast<double>(k.calls) / tokens, 1e3 * k.seconds / tokens, 100 * k.seconds / r.seconds,
                k.weight_bytes / 1e6 / tokens, k.seconds > 0 ? k.weight_bytes / k.seconds / 1e9 : 0.0);
  }
  std::printf("| (outside the products) | | %.3f | %.1f %% | | |\n", 1e3 * (r.seconds - products) / tokens,
              100 * (r.seconds - products) / r.seconds);
  // Thread time: what the pool's threads did with threads × the step.
  const double thread_s = static_cast<double>(r.threads) * r.seconds;
  std::printf("\n| threads | parallel loops/step | thread time in parallel work | idle (serial work elsewhere, waits) | "
              "caller waiting at loop ends, ms/step |\n|---|---|---|---|---|\n| %zu | %.1f | %.1f %% | %.1f %% | %.3f |\n",
              r.threads, static_cast<double>(r.parallel_regions) / tokens, 100 * r.busy_seconds / thread_s,
              100 * (1 - r.busy_seconds / thread_s), 1e3 * r.wait_seconds / tokens);
}

}  // namespace

Runner add_bench(CLI::App& app) {
  struct Opts {
    ModelOptions model;
    int prompt = 512, gen = 128, reps = 3, batch = 1;
    bool json = false, profile = false, cold = false;
    double bw_gib = 1.0;
    std::string image;
  };
  auto o = std::make_shared<Opts>();
  auto* sub = app.add_subcommand("bench", "measure prompt processing and generation speed against memory bandwidth");
  o->model.add_to(sub);
  sub->add_option("-p,--prompt-tokens", o->prompt, "prompt length")->check(CLI::PositiveNumber);
  sub->add_option("-n,--gen-tokens", o->gen, "generated tokens")->check(CLI::PositiveNumber);
  sub->add_option("-r,--repetitions", o->reps, "repetitions (best is reported)")->check(CLI::PositiveNumber);
  sub->add_option("--bw-gib", o->bw_gib, "buffer size for the bandwidth measurement (GiB)");
  sub->add_flag("--json", o->json, "machine-readable output");
  sub->add_flag("--profile", o->profile,
                "after the timed runs, profile -n decode steps: time per layer part and per product kernel");
  sub->add_option("--batch", o->batch,
                  "also decode this many sequences together (one batched step per token for all, as `zaya serve "
                  "--parallel` does): aggregate tok/s against the one stream")
      ->check(CLI::Range(1, 64));
  sub->add_flag("--cold", o->cold,
                "start with the model's files evicted from the page cache (posix_fadvise), then load again warm");

  sub->add_option("--image", o->image,
                  "WIDTHxHEIGHT: benchmark the vision tower of a ZAYA1-VL model instead (encode time, patches/s, "
                  "GFLOP/s against the measured FMA peak)");
  return [o]() {
    if (!o->image.empty()) return bench_image(o->model, o->image, o->reps, o->json);
    o->model.quiet = o->model.quiet || o->json;
    if (!o->json) std::fprintf(stderr, "zaya bench: loading %s ...\n", o->model.dir.c_str());
    const std::vector<std::string> files = weight_files(o->model.dir);
    std::vector<Startup> startups;
    std::unique_ptr<Model> model;
    std::vector<int32_t> prompt;
    // Load and first token; the first prefill also warms what the timed runs use (allocator arenas, pool threads).
    auto start = [&](const char* cache) {
      Startup su;
      su.cache = cache;
      model.reset();
      su.resident = resident_fraction(files);
      auto t_load = clock_type::now();
      model = load_model(o->model);
      su.load_s = seconds_since(t_load);
      const auto& cfg = model->config();
      if (o->prompt + o->gen > cfg.max_positions)
        throw Error(cat("-p + -n = ", o->prompt + o->gen, " exceeds the context ", cfg.max_positions));
      if (prompt.empty()) {
        std::mt19937 rng(1234);
        std::uniform_int_distribution<int32_t> tok(0, static_cast<int32_t>(cfg.vocab - 1));
        prompt.resize(o->prompt);
        for (auto& t : prompt) t = tok(rng);
      }
      if (!o->json) std::fprintf(stderr, "zaya bench: first token (%s page cache) ...\n", cache);
      auto t0 = clock_type::now();
      DecodeState st = model->new_state();
      volatile int32_t first = argmax(model->forward(prompt, st, LogitsMode::Last));
      (void)first;
      su.first_token_s = seconds_since(t0);
      startups.push_back(su);
    };
    if (o->cold) {
      evict_from_page_cache(files);
      start("cold");
      start("warm");
    } else {
      start("as found");
    }
    const double load_s = startups.back().load_s;
    // The product kernels a decode step runs (format table names, most weight bytes first): what the table's
    // "kernels" column and --json "products" report.
    std::string products;
    {
      DecodeState st = model->new_state();
      profile_begin();
      (void)model->forward(std::span(prompt).first(1), st, LogitsMode::Last);
      ProfileReport r = profile_end();
      std::sort(r.kernels.begin(), r.kernels.end(),
                [](const ProfileRow& a, const ProfileRow& b) { return a.weight_bytes > b.weight_bytes; });
      for (const auto& k : r.kernels) products += (products.empty() ? "" : " ") + k.name;
    }
    ReadBandwidth bandwidth(static_cast<size_t>(o->bw_gib * (1ull << 30)));
    const size_t bpt = model->weight_bytes_per_token();

    // The read bandwidth of a shared machine drifts, so every generation run is bracketed by two measurements and
    // compared with the higher of them (the bandwidth available in that window, counted conservatively). The run
    // with the fastest generation is reported; every run is in --json.
    double best_pp = 0, best_tg = 0, machine_gbs = 0, best_frac = 0;
    nlohmann::ordered_json runs = nlohmann::ordered_json::array();
    for (int rep = 0; rep < o->reps; ++rep) {
      DecodeState st = model->new_state();
      if (!o->json) std::fprintf(stderr, "zaya bench: run %d/%d: prefill %d tokens ...\n", rep + 1, o->reps, o->prompt);
      auto t0 = clock_type::now();
      auto logits = model->forward(prompt, st, LogitsMode::Last);
      const double pp = o->prompt / seconds_since(t0);
      if (!o->json) std::fprintf(stderr, "zaya bench: run %d/%d: read bandwidth, %d generated tokens, read bandwidth ...\n", rep + 1, o->reps, o->gen);
      const double bw_before = bandwidth.measure_gbs();
      auto t1 = clock_type::now();
      for (int i = 0; i < o->gen; ++i) {
        int32_t next = static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
        logits = model->forward(std::span(&next, 1), st, LogitsMode::Last);
      }
      const double tg = o->gen / seconds_since(t1);
      const double bw = std::max(bw_before, bandwidth.measure_gbs());
      const double frac = bpt * tg / 1e9 / bw;
      runs.push_back({{"prompt_tok_s", pp}, {"gen_tok_s", tg}, {"machine_gbs", bw}, {"gen_roofline_frac", frac}});
      best_pp = std::max(best_pp, pp);
      if (tg > best_tg) best_tg = tg, machine_gbs = bw, best_frac = frac;
    }
    // Several sequences decoded together: each has its own prompt (so their experts differ as real users' do),
    // then every step is one forward_batch over one token of each.
    double batch_tg = 0;
    nlohmann::ordered_json batch_json;
    std::optional<ProfileReport> batch_profile;
    if (o->batch > 1) {
      if (!o->json) std::fprintf(stderr, "zaya bench: %d sequences: prefill, then %d batched steps ...\n", o->batch, o->gen);
      std::vector<DecodeState> states;
      std::vector<int32_t> next(o->batch);
      std::mt19937 rng(99);
      std::uniform_int_distribution<int32_t> tok(0, static_cast<int32_t>(model->config().vocab - 1));
      const int plen = std::min(o->prompt, 64);
      for (int b = 0; b < o->batch; ++b) {
        std::vector<int32_t> p(plen);
        for (auto& t : p) t = tok(rng);
        states.push_back(model->new_state());
        next[b] = argmax(model->forward(p, states.back(), LogitsMode::Last));
      }
      std::vector<Model::BatchItem> items(o->batch);
      auto steps = [&] {
        for (int i = 0; i < o->gen; ++i) {
          for (int b = 0; b < o->batch; ++b) items[b] = Model::BatchItem(std::span(&next[b], 1), &states[b]);
          model->forward_batch(items);
          for (int b = 0; b < o->batch; ++b) next[b] = argmax(items[b].logits);
        }
      };
      auto t0 = clock_type::now();
      steps();
      batch_tg = static_cast<double>(o->batch) * o->gen / seconds_since(t0);
      if (o->profile && o->prompt + 2 * o->gen <= model->config().max_positions) {
        if (!o->json) std::fprintf(stderr, "zaya bench: profiling %d batched steps ...\n", o->gen);
        profile_begin();
        steps();
        batch_profile = profile_end();
      }
      batch_json = {{"sequences", o->batch}, {"prompt_tokens", plen}, {"aggregate_gen_tok_s", batch_tg},
                    {"vs_one_stream", batch_tg / best_tg}};
    }
    const double gen_gbs = bpt * best_tg / 1e9;
    nlohmann::ordered_json j;
    j["model"] = o->model.dir;
    j["threads"] = num_threads();
    j["simd"] = simd_target_name();
    j["quant_kernel"] = quant_simd_target_name();
    j["activations"] = o->model.exact ? "fp32" : o->model.int8 ? "int8" : "int16";
    j["products"] = products;
    j["load_s"] = load_s;
    j["first_token_s"] = startups.back().first_token_s;
    for (const auto& su : startups)
      j["startup"].push_back({{"page_cache", su.cache}, {"resident_before_load", su.resident}, {"load_s", su.load_s},
                              {"first_token_s", su.first_token_s}});
    j["prompt_tokens"] = o->prompt;
    j["gen_tokens"] = o->gen;
    j["prompt_tok_s"] = best_pp;
    j["gen_tok_s"] = best_tg;
    j["bytes_per_token"] = bpt;
    j["gen_gbs"] = gen_gbs;
    j["machine_gbs"] = machine_gbs;
    j["gen_roofline_frac"] = best_frac;
    j["roofline_tok_s"] = machine_gbs * 1e9 / static_cast<double>(bpt);
    j["prompt_to_gen_ratio"] = best_pp / best_tg;
    j["runs"] = runs;
    if (o->batch > 1) j["batch"] = batch_json;
    if (batch_profile) print_profile(*batch_profile, o->gen, "batched", j["batch"]["profile"], false);
    std::optional<ProfileReport> profile, prefill_profile;
    if (o->profile) {
      if (!o->json) std::fprintf(stderr, "zaya bench: profiling %d decode steps ...\n", o->gen);
      DecodeState st = model->new_state();
      profile_begin();
      auto logits = model->forward(prompt, st, LogitsMode::Last);
      prefill_profile = profile_end();
      print_profile(*prefill_profile, 1, "prefill", j["prefill_profile"], false);
      profile_begin();
      for (int i = 0; i < o->gen; ++i) {
        int32_t next = argmax(logits);
        logits = model->forward(std::span(&next, 1), st, LogitsMode::Last);
      }
      profile = profile_end();
      print_profile(*profile, o->gen, "a decode step", j["profile"], false);
    }
    if (o->json) {
      std::printf("%s\n", j.dump(2).c_str());
      return 0;
    }
    const std::string kernels = cat(quant_simd_target_name(), ": ", products);
    std::printf("\n| model | threads | kernels | test | tok/s | weight bytes/token | GB/s | %% of %.1f GB/s read |\n",
                machine_gbs);
    std::printf("|---|---|---|---|---|---|---|---|\n");
    std::printf("| %s | %zu | %s | pp%d | %.1f | | | |\n", o->model.dir.c_str(), num_threads(),
                kernels.c_str(), o->prompt, best_pp);
    std::printf("| %s | %zu | %s | tg%d | %.2f | %.1f MB | %.2f | %.0f %% |\n", o->model.dir.c_str(),
                num_threads(), kernels.c_str(), o->gen, best_tg, bpt / 1e6, gen_gbs,
                100.0 * gen_gbs / machine_gbs);
    if (o->batch > 1)
      std::printf("| %s | %zu | %s | tg%d × %d sequences | %.2f aggregate (%.2fx one stream) | | | |\n",
                  o->model.dir.c_str(), num_threads(), kernels.c_str(), o->gen, o->batch, batch_tg, batch_tg / best_tg);
    std::printf("\nroofline for generation at %.1f GB/s: %.2f tok/s; prompt processing is %.1fx generation\n",
                machine_gbs, machine_gbs * 1e9 / bpt, best_pp / best_tg);
    std::printf("\n| start-up | weight files in the page cache before the load | load s | first token s (prefill %d + "
                "greedy pick) |\n|---|---|---|---|\n", o->prompt);
    for (const auto& su : startups)
      std::printf("| %s | %s | %.3f | %.3f |\n", su.cache.c_str(),
                  su.resident < 0 ? "?" : cat(static_cast<int>(100 * su.resident + 0.5), " %").c_str(), su.load_s,
                  su.first_token_s);
    if (runs.size() > 1) {
      std::printf("\n| run | pp tok/s | tg tok/s | read GB/s around tg | %% of it |\n|---|---|---|---|---|\n");
      for (size_t i = 0; i < runs.size(); ++i)
        std::printf("| %zu | %.1f | %.2f | %.1f | %.0f %% |\n", i + 1, runs[i]["prompt_tok_s"].get<double>(),
                    runs[i]["gen_tok_s"].get<double>(), runs[i]["machine_gbs"].get<double>(),
                    100.0 * runs[i]["gen_roofline_frac"].get<double>());
    }
    if (profile) {
      nlohmann::ordered_json unused;
      print_profile(*prefill_profile, 1, cat("a prefill of ", o->prompt, " tokens"), unused, true);
      print_profile(*profile, o->gen, "a decode step", unused, true);
    }
    if (batch_profile) {
      nlohmann::ordered_json unused;
      print_profile(*batch_profile, o->gen, cat("a batched step of ", o->batch, " sequences"), unused, true);
    }
    return 0;
  };
}

}  // namespace zaya::cli
