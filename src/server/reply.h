#pragma once
// Answers a submitted generation task: waits for it to reach a slot (so queue timeouts are still HTTP errors), then
// runs ONE loop that drains the task's steps into a sink — a JSON sink (fold everything, then one response) or an
// SSE sink (the chunks of each batch at once, then the finish and usage chunks and [DONE]).
#include <functional>
#include <memory>

#include "server/engine.h"
#include "server/http.h"
#include "server/openai.h"

namespace zaya::server {

// How an answer goes out: the headers it carries (CORS), and what runs once a streamed answer is over (the request
// log line; completed: the client got all of it).
struct AnswerTo {
  Headers headers;
  std::function<void(bool completed)> on_stream_end;
};

// Throws ApiError for answers that are errors while no stream has started.
void answer(std::shared_ptr<Task> task, std::unique_ptr<Reply> reply, Exchange& ex, AnswerTo to);

}  // namespace zaya::server
