#pragma once
// `zaya serve`: an OpenAI-compatible HTTP server over one loaded model (see docs/server.md).
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "zaya/limits.h"

#include "zaya/model.h"

namespace zaya::server {

struct ServerOptions {
  std::string model_dir;
  std::string model_name;          // the id /v1/models lists; default: the model folder's name
  std::string host = "127.0.0.1";
  int port = 8080;                 // 0: any free port
  int parallel = 1;                // slots (concurrent generations)
  int64_t ctx = 0;                 // per-slot context; 0: the model's max_position_embeddings
  std::string api_key;             // non-empty: every endpoint but /health needs "Authorization: Bearer KEY"
  size_t queue = 64;               // requests allowed to wait for a slot; beyond that: 429
  double timeout_s = 600;          // per request: queue wait + generation
  int read_timeout_s = 30;         // to receive a request's headers and body
  size_t max_body_bytes = 8u << 20;
  size_t batch_tokens = 512;       // tokens per batched model pass
  size_t cache_snapshots = 0;      // decode-state snapshots kept for prompt reuse (0: 4 per slot)
  size_t snapshot_interval = 512;  // snapshot every this many prompt tokens of a long prefill (0: off)
  size_t max_connections = limits::kMaxConnections;  // HTTP threads, one per open connection, made on demand
  int request_read_s = limits::kMaxRequestReadSeconds;  // to deliver a whole request, else the connection closes
  // Browser origins allowed to call the API (CORS): loopback origins (http://localhost:*, http://127.0.0.1:*,
  // http://[::1]:*, https too) always are; add others ("https://app.example") or "*" for any.
  std::vector<std::string> cors_origins;
  std::string chat_template;       // a Jinja file overriding the model's template
  bool log_requests = true;        // one line per request on stderr
  bool verbose_load = false;
  bool exact = false;  // affine products with fp32 activations (LoadOptions::exact)
  bool int8 = false;   // affine products with int8 activations (LoadOptions::int8)
  AttentionMask mask = AttentionMask::ZyphraPrefix;  // ZAYA1-VL: how a prompt with images attends (LoadOptions::mask)
  WeightMemory memory = WeightMemory::Auto;  // LoadOptions::memory
  bool allow_local_files = false;  // ZAYA1-VL: accept file:// image URLs (paths on the server's machine)
};

class Server {
 public:
  // Loads the model, tokenizer and chat template; throws zaya::Error.
  explicit Server(ServerOptions opts);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds and starts serving on a background thread. Returns the bound port.
  int start();
  // Blocks until stop() (from another thread or a signal handler thread).
  void wait();
  // Stops accepting, ends open connections and running generations. Idempotent.
  void stop();
  int port() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace zaya::server
