#include "server/context.h"

#include <ctime>
#include <filesystem>

namespace zaya::server {

ServerContext::ServerContext(ServerOptions options)
    : opt(std::move(options)), tok(Tokenizer::load(opt.model_dir)), created(static_cast<int64_t>(std::time(nullptr))) {
  LoadOptions lo;
  lo.verbose = opt.verbose_load;
  lo.exact = opt.exact;
  lo.int8 = opt.int8;
  lo.mask = opt.mask;
  lo.memory = opt.memory;
  model = Model::load(opt.model_dir, lo);
  if (model->config().vl.enabled) vision = VisionEncoder::load(opt.model_dir, lo);
  fmt = std::make_unique<ChatFormatter>(tok, opt.chat_template);
  // OpenAI's defaults (temperature 1, no truncation), then the model's generation_config.json.
  SamplingParams base;
  base.temperature = 1.0f;
  base.top_k = 0;
  base.top_p = 1.0f;
  base.min_p = 0.0f;
  defaults = sampling_defaults(opt.model_dir, base);
  vocab = static_cast<size_t>(model->config().vocab);
  if (auto id = tok.token_to_id("<zyphra_tool_call>")) tool_call_token = *id;
  model_name = opt.model_name;
  if (model_name.empty()) {
    std::filesystem::path p(opt.model_dir);
    model_name = p.filename().empty() ? p.parent_path().filename().string() : p.filename().string();
  }
  EngineOptions eo;
  eo.parallel = opt.parallel;
  eo.ctx = opt.ctx;
  eo.queue = opt.queue;
  eo.batch_tokens = opt.batch_tokens;
  eo.max_snapshots = opt.cache_snapshots;
  eo.snapshot_interval = opt.snapshot_interval;
  engine = std::make_unique<Engine>(*model, tok, eo, metrics);
}

}  // namespace zaya::server
