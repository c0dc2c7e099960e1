#pragma once
// The two generation endpoints: an OpenAI request → the prompt (chat template, forced tool-call start) and the
// generation options → a task for the engine → its answer (src/server/reply.h).
#include "server/context.h"
#include "server/http.h"
#include "server/reply.h"

namespace zaya::server {

void chat_completion(ServerContext& ctx, const HttpRequest& req, Exchange& ex, AnswerTo to);  // /v1/chat/completions
void text_completion(ServerContext& ctx, const HttpRequest& req, Exchange& ex, AnswerTo to);  // /v1/completions

}  // namespace zaya::server
