#include "server/reply.h"

#include <chrono>
#include <string>
#include <vector>

namespace zaya::server {

namespace {

constexpr std::chrono::milliseconds kPoll{50};  // how often a waiting answer looks for a client that left

// A task being answered: the steps not yet folded into the reply, and whether the task has ended.
struct Run {
  std::shared_ptr<Task> task;
  std::unique_ptr<Reply> reply;
  std::vector<StepOutput> steps;
  bool done = false;
};

class Sink {
 public:
  virtual ~Sink() = default;
  // Sends chunks (a stream's); false: the client is gone.
  virtual bool send(const std::vector<ojson>& chunks) = 0;
  // Has the client left? `idle`: no output came during the last wait.
  virtual bool gone(bool idle) = 0;
  virtual void error(const ApiError& e) = 0;             // the generation failed
  virtual void cancelled(const TaskSummary& s) = 0;      // the task ended without an answer
  virtual void finished(const Reply& r, const TaskSummary& s) = 0;
};

// Plain answer: everything is folded into the reply, then one response.
class JsonSink : public Sink {
 public:
  JsonSink(Exchange& ex, const Headers& headers) : ex_(ex), headers_(headers) {}
  bool send(const std::vector<ojson>&) override { return true; }
  // Nothing is written while the task runs, so only asking the socket tells that the client left.
  bool gone(bool) override { return ex_.client_gone(); }
  void error(const ApiError& e) override { throw e; }
  void cancelled(const TaskSummary& s) override {
    // A cancel with a reason is the server shutting down; without one the client left (nobody to answer).
    if (!s.error.empty()) throw ApiError(503, s.error, "shutting_down", "", "server_error");
  }
  void finished(const Reply& r, const TaskSummary& s) override {
    ex_.respond(200, "application/json", dump(r.response(s)), headers_);
  }

 private:
  Exchange& ex_;
  const Headers& headers_;
};

// Server-sent events: each batch's chunks at once, then the finish chunk, the usage chunk if asked, [DONE].
class SseSink : public Sink {
 public:
  SseSink(const Exchange::Writer& write, const Exchange::Gone& gone) : write_(write), gone_(gone) {}
  bool send(const std::vector<ojson>& chunks) override {
    for (const auto& c : chunks)
      if (!write_("data: " + dump(c) + "\n\n")) return false;
    return true;
  }
  // While output flows a failed write tells; only an idle stream needs to ask the socket.
  bool gone(bool idle) override { return idle && gone_(); }
  void error(const ApiError& e) override {
    write_("data: " + e.json() + "\n\n");
    write_("data: [DONE]\n\n");
  }
  void cancelled(const TaskSummary&) override {}  // the stream just ends, without [DONE]
  void finished(const Reply& r, const TaskSummary& s) override {
    if (!send({r.finish_chunk(s)})) return;
    if (r.include_usage() && !send({r.usage_chunk(s)})) return;
    write_("data: [DONE]\n\n");
  }

 private:
  const Exchange::Writer& write_;
  const Exchange::Gone& gone_;
};

// The one loop: fold each batch of steps into the reply and hand what it makes to the sink, until the task ends.
void drain(Run& run, Sink& sink) {
  Task& task = *run.task;
  for (;;) {
    if (!sink.send(run.reply->add(run.steps))) return task.cancel();
    if (run.done) break;
    run.done = task.wait(run.steps, kPoll);
    if (!run.done && sink.gone(run.steps.empty())) return task.cancel();
  }
  const TaskSummary s = task.summary();
  if (s.finish == "error") return sink.error(ApiError(500, s.error, "generation_error", "", "server_error"));
  if (run.reply->finish_reason(s) == "cancelled") return sink.cancelled(s);
  sink.finished(*run.reply, s);
}

// Waits for the task's first output (or its end), so that a task that never ran is answered with an HTTP error.
// false: the client left (the task is cancelled).
bool await_start(Run& run, Exchange& ex) {
  Task& task = *run.task;
  for (;;) {
    run.done = task.wait(run.steps, kPoll);
    if (run.done || !run.steps.empty()) break;
    if (ex.client_gone()) {
      task.cancel();
      return false;
    }
  }
  if (run.done) {
    const TaskSummary s = task.summary();
    if (!s.started) {
      if (s.finish == "timeout") throw ApiError(503, s.error, "queue_timeout", "", "server_error");
      throw ApiError(503, s.error.empty() ? "the request was not run" : s.error, "not_run", "", "server_error");
    }
    if (s.finish == "error" && run.steps.empty()) throw ApiError(500, s.error, "generation_error", "", "server_error");
  }
  return true;
}

}  // namespace

void answer(std::shared_ptr<Task> task, std::unique_ptr<Reply> reply, Exchange& ex, AnswerTo to) {
  // Shared with the stream body, which runs after the handler has returned.
  auto run = std::make_shared<Run>(Run{std::move(task), std::move(reply), {}, false});
  if (!await_start(*run, ex)) return;
  if (!run->reply->stream()) {
    JsonSink sink(ex, to.headers);
    return drain(*run, sink);
  }
  ex.stream(
      200, "text/event-stream",
      [run](const Exchange::Writer& write, const Exchange::Gone& gone) {
        SseSink sink(write, gone);
        if (!sink.send(run->reply->opening())) return run->task->cancel();
        drain(*run, sink);
      },
      [run, end = std::move(to.on_stream_end)](bool completed) {
        if (!completed) run->task->cancel();
        if (end) end(completed);
      },
      to.headers);
}

}  // namespace zaya::server
