// zaya serve: the OpenAI-compatible HTTP server (src/server). SIGINT / SIGTERM stop it cleanly.
#include <pthread.h>
#include <signal.h>

#include <cstdio>
#include <memory>
#include <thread>

#include "cli/commands.h"
#include "zaya/server.h"
#include "zaya/runtime.h"

namespace zaya::cli {

Runner add_serve(CLI::App& app) {
  struct Opts {
    server::ServerOptions s;
    int threads = 0;
    bool quiet = false;
    std::string mask = "zyphra-fa2-prefix";
  };
  auto o = std::make_shared<Opts>();
  auto* sub = app.add_subcommand("serve", "OpenAI-compatible HTTP server (chat, completions, tools, streaming)");
  sub->add_option("-m,--model", o->s.model_dir, "model folder (config.json, safetensors, tokenizer)")->required();
  sub->add_option("--host", o->s.host, "address to bind (default: loopback only)")->capture_default_str();
  sub->add_option("--port", o->s.port, "TCP port (0: any free one)")->capture_default_str()->check(CLI::Range(0, 65535));
  sub->add_option("--parallel", o->s.parallel, "slots: requests generated at the same time")
      ->capture_default_str()->check(CLI::Range(1, 1024));
  sub->add_option("--ctx,-c", o->s.ctx, "context per slot in tokens (0: the model's maximum)")
      ->capture_default_str()->check(CLI::NonNegativeNumber);
  sub->add_option("--api-key", o->s.api_key, "require 'Authorization: Bearer KEY' (all endpoints but /health)");
  sub->add_option("--queue", o->s.queue, "requests allowed to wait for a slot (beyond: HTTP 429)")->capture_default_str();
  sub->add_option("--timeout", o->s.timeout_s, "seconds a request may take, queue wait included")
      ->capture_default_str()->check(CLI::PositiveNumber);
  sub->add_option("--read-timeout", o->s.read_timeout_s, "seconds to receive a request")
      ->capture_default_str()->check(CLI::PositiveNumber);
  sub->add_option("--max-body", o->s.max_body_bytes, "largest request body in bytes (beyond: HTTP 413)")
      ->capture_default_str();
  sub->add_option("--batch", o->s.batch_tokens, "tokens per batched model pass (decode steps + prefill chunks)")
      ->capture_default_str()->check(CLI::PositiveNumber);
  sub->add_option("--cache-snapshots", o->s.cache_snapshots, "decode-state snapshots kept for prompt reuse (0: 4 per slot)");
  sub->add_option("--snapshot-interval", o->s.snapshot_interval, "snapshot every N prompt tokens of a long prefill (0: off)")
      ->capture_default_str();
  sub->add_option("--alias", o->s.model_name, "model id to list in /v1/models (default: the folder name)");
  sub->add_option("--chat-template", o->s.chat_template, "Jinja chat template file (overrides the model's)");
  sub->add_option("--cors-origin", o->s.cors_origins,
                  "browser origin allowed to call the API besides loopback ones (repeatable; '*' for any)");
  sub->add_option("--max-connections", o->s.max_connections, "open HTTP connections served at once")
      ->capture_default_str()->check(CLI::PositiveNumber);
  sub->add_option("-t,--threads", o->threads, "worker threads (0 = all cores)")->check(CLI::NonNegativeNumber);
  sub->add_flag("-q,--quiet", o->quiet, "no per-request log lines");
  sub->add_flag("--exact", o->s.exact, "quantized products with fp32 activations, the reference arithmetic (slower prefill)");
  sub->add_flag("--int8", o->s.int8, "affine 4/8-bit products with int8 activations (faster prefill, less accurate)");
  add_mask_option(sub, o->mask);
  add_memory_options(sub, o->s.memory);
  sub->add_flag("--allow-local-files", o->s.allow_local_files,
                "ZAYA1-VL: accept file:// image URLs, read from this machine's disk (trusted clients only)");
  return [o]() {
    o->s.mask = parse_attention_mask(o->mask);
    if (o->threads > 0) set_num_threads(static_cast<size_t>(o->threads));
    o->s.log_requests = !o->quiet;
    o->s.verbose_load = !o->quiet;
    // Signals go to one waiting thread, which stops the server; the others never see them.
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, nullptr);
    server::Server srv(o->s);
    const int port = srv.start();
    std::fprintf(stderr, "zaya serve: listening on http://%s:%d (parallel %d)\n", o->s.host.c_str(), port,
                 o->s.parallel);
    std::thread waiter([&] {
      int sig = 0;
      sigwait(&set, &sig);
      std::fprintf(stderr, "zaya serve: signal %d, stopping\n", sig);
      srv.stop();
    });
    srv.wait();
    // Wake the signal thread if the server stopped some other way.
    pthread_kill(waiter.native_handle(), SIGTERM);
    waiter.join();
    return 0;
  };
}

}  // namespace zaya::cli
