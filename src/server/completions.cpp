#include "server/completions.h"

#include <algorithm>
#include <limits>

#include "server/images.h"
#include "server/openai.h"
#include "server/request.h"
#include "zaya/error.h"

namespace zaya::server {

namespace {

// Checks the prompt against the context and settles max_tokens.
void fit_context(const ServerContext& ctx, size_t prompt_tokens, GenerateOptions& gen, bool max_given) {
  const int64_t n_ctx = ctx.engine->ctx();
  if (prompt_tokens == 0) throw ApiError(400, "the prompt encodes to no tokens", "invalid_value", "prompt");
  if (static_cast<int64_t>(prompt_tokens) >= n_ctx)
    throw ApiError(400, cat("this model's maximum context length is ", n_ctx, " tokens, but the prompt has ",
                            prompt_tokens, " tokens"), "context_length_exceeded", "messages");
  const int64_t room = n_ctx - static_cast<int64_t>(prompt_tokens);
  if (!max_given) {
    gen.max_tokens = static_cast<int>(std::min<int64_t>(room, std::numeric_limits<int>::max()));
  } else if (gen.max_tokens > room) {
    throw ApiError(400, cat("this model's maximum context length is ", n_ctx, " tokens; you requested ",
                            static_cast<int64_t>(prompt_tokens) + gen.max_tokens, " tokens (", prompt_tokens,
                            " in the prompt, ", gen.max_tokens, " for the completion)"),
                   "context_length_exceeded", "max_tokens");
  }
}

Clock::time_point deadline(const ServerContext& ctx) {
  return Clock::now() + std::chrono::milliseconds(static_cast<int64_t>(ctx.opt.timeout_s * 1000));
}

std::shared_ptr<Task> submit(ServerContext& ctx, std::shared_ptr<Task> task) {
  switch (ctx.engine->submit(task)) {
    case Engine::Admit::Ok: return task;
    case Engine::Admit::QueueFull:
      ctx.metrics.rejected("queue_full");
      throw ApiError(429, cat("the server is busy: all ", ctx.engine->parallel(), " slots are in use and ",
                              ctx.opt.queue, " requests are already waiting; retry later"),
                     "server_busy", "", "rate_limit_error");
    case Engine::Admit::Stopped: break;
  }
  throw ApiError(503, "the server is shutting down", "shutting_down", "", "server_error");
}

}  // namespace

void chat_completion(ServerContext& ctx, const HttpRequest& req, Exchange& ex, AnswerTo to) {
  const ojson body = parse_body(req.body);
  ChatRequest cr = parse_chat_request(body, ctx.defaults, ctx.vocab);
  require_vision(ctx, cr.images);
  std::string prompt = ctx.fmt->render(cr.messages, cr.render);
  const bool in_think = ChatFormatter::ends_inside_think(prompt);
  std::string forced;  // output text the server writes for the model (tool_choice required / named)
  if (cr.tool_choice == ToolChoice::Required || cr.tool_choice == ToolChoice::Named) {
    if (in_think) forced += "</think>\n\n";
    forced += "<zyphra_tool_call>\n<function=";
    if (cr.tool_choice == ToolChoice::Named) forced += cr.tool_name + ">\n";
  }
  if (cr.tool_choice == ToolChoice::None && ctx.tool_call_token >= 0)
    cr.gen.sampling.logit_bias[ctx.tool_call_token] = -std::numeric_limits<float>::infinity();
  // A prompt with images: its ids hold each image's tokens, and the task carries the features (server/images.h).
  std::optional<ImagePrompt> images;
  if (!cr.images.empty()) images = image_prompt(ctx, prompt + forced, cr.images);
  std::vector<int32_t> ids = images ? std::vector<int32_t>() : ctx.tok.encode(prompt + forced, false);
  fit_context(ctx, images ? images->prompt.ids.size() : ids.size(), cr.gen, cr.max_tokens_given);

  // The generation step parses the answer: the forced text is the start of its output, and an EOS inside a call
  // (between parameters) closes the call.
  OutputParsing& parse = cr.gen.parse.emplace();
  parse.parser.start_in_reasoning = in_think;
  parse.parser.parse_tool_calls = !cr.tools.is_null() && cr.tool_choice != ToolChoice::None;
  if (!cr.tools.is_null()) parse.parser.tools = cr.tools;
  parse.parser.id_prefix = random_id("call_", 8) + "_";
  parse.prefix = forced;
  parse.close_call_at_stop = true;
  parse.single_tool_call = !cr.parallel_tool_calls;

  auto task = submit(ctx, images ? std::make_shared<Task>(std::move(images->prompt), cr.images.size(),
                                                         images->vision_ms, cr.gen, deadline(ctx))
                                 : std::make_shared<Task>(std::move(ids), cr.gen, deadline(ctx)));
  auto reply = std::make_unique<ChatReply>(
      Reply::Setup{ctx.tok, random_id("chatcmpl-"), ctx.model_name, cr.stream, cr.include_usage}, cr.logprobs);
  answer(std::move(task), std::move(reply), ex, std::move(to));
}

void text_completion(ServerContext& ctx, const HttpRequest& req, Exchange& ex, AnswerTo to) {
  const ojson body = parse_body(req.body);
  CompletionRequest cr = parse_completion_request(body, ctx.defaults, ctx.vocab);
  std::vector<int32_t> ids = cr.prompt_text ? ctx.tok.encode(*cr.prompt_text, true) : cr.prompt_ids;
  fit_context(ctx, ids.size(), cr.gen, cr.max_tokens_given);
  std::string echo_text = !cr.echo ? "" : cr.prompt_text ? *cr.prompt_text : ctx.tok.decode(ids, false);

  auto task = submit(ctx, std::make_shared<Task>(std::move(ids), cr.gen, deadline(ctx)));
  auto reply = std::make_unique<CompletionReply>(
      Reply::Setup{ctx.tok, random_id("cmpl-"), ctx.model_name, cr.stream, cr.include_usage}, cr.logprobs,
      cr.gen.skip_special_tokens, std::move(echo_text));
  answer(std::move(task), std::move(reply), ex, std::move(to));
}

}  // namespace zaya::server
