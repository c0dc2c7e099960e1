#pragma once
// What every route of `zaya serve` shares: the loaded model, tokenizer and chat template, the request defaults,
// the generation engine and the counters.
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>

#include "server/engine.h"
#include "server/metrics.h"
#include "zaya/server.h"
#include "zaya/chat.h"
#include "zaya/model.h"
#include "zaya/sampler.h"
#include "zaya/tokenizer.h"
#include "zaya/vision.h"

namespace zaya::server {

struct ServerContext {
  // Loads the tokenizer, the model and the chat template and starts the engine; throws zaya::Error.
  explicit ServerContext(ServerOptions options);

  const ServerOptions opt;
  Tokenizer tok;
  std::unique_ptr<Model> model;
  std::unique_ptr<ChatFormatter> fmt;
  std::unique_ptr<VisionEncoder> vision;  // ZAYA1-VL models only; one encode at a time (vision_mu)
  std::mutex vision_mu;
  SamplingParams defaults;   // OpenAI's, then the model's generation_config.json
  std::string model_name;    // the id /v1/models lists
  int64_t created = 0;       // when the server started (the model object's "created")
  size_t vocab = 0;
  int32_t tool_call_token = -1;  // <zyphra_tool_call>, banned when tool_choice is "none"
  Metrics metrics;
  std::unique_ptr<Engine> engine;
};

}  // namespace zaya::server
