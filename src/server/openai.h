#pragma once
// The OpenAI wire format of `zaya serve`: error objects, and the answers of the two generation endpoints — the
// plain response and the stream's chunks — built from the engine's steps (text, parsed reasoning / tool-call events,
// logprobs) and the task's summary (finish reason, usage, timings).
#include <cstddef>
#include <cstdint>
#include <exception>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "server/engine.h"
#include "zaya/generate.h"

namespace zaya {
class Tokenizer;
}

namespace zaya::server {

using ojson = nlohmann::ordered_json;

// An answer that is an OpenAI error object ({"error": {"message", "type", "param", "code"}}) with its HTTP status.
struct ApiError : std::exception {
  int status;
  std::string message, code, param, type;
  ApiError(int status, std::string message, std::string code = "", std::string param = "",
           std::string type = "invalid_request_error")
      : status(status), message(std::move(message)), code(std::move(code)), param(std::move(param)),
        type(std::move(type)) {}
  const char* what() const noexcept override { return message.c_str(); }
  std::string json() const;
};

// Compact JSON; invalid UTF-8 in model text becomes U+FFFD instead of throwing.
std::string dump(const ojson& j);
// prefix + n random letters and digits.
std::string random_id(const char* prefix, size_t n = 24);
int64_t unix_now();

// One generation's answer for one endpoint. The engine's steps are folded in as they come; a stream turns each
// batch into chunks at once, a plain answer keeps everything for response().
class Reply {
 public:
  struct Setup {
    const Tokenizer& tok;
    std::string id;      // chatcmpl-… / cmpl-…
    std::string model;   // the served model's id
    bool stream = false, include_usage = false;
  };
  explicit Reply(Setup s);
  virtual ~Reply() = default;

  // Stream: the chunks that go out before any output.
  virtual std::vector<ojson> opening() = 0;
  // Folds a batch of steps in; a stream gets back the chunks they make (none while text is held back).
  virtual std::vector<ojson> add(std::vector<StepOutput>& steps) = 0;
  // The finish_reason on the wire for how the task ended ("cancelled" for a task that gets no answer).
  virtual std::string finish_reason(const TaskSummary& s) const;
  // The plain answer.
  ojson response(const TaskSummary& s) const;
  // Stream: the chunk carrying the finish reason (and timings), then the usage chunk.
  ojson finish_chunk(const TaskSummary& s) const;
  ojson usage_chunk(const TaskSummary& s) const;

  bool stream() const { return stream_; }
  bool include_usage() const { return include_usage_; }

 protected:
  // A stream chunk with one choice.
  ojson chunk(ojson choice) const;
  virtual const char* object(bool chunk) const = 0;
  virtual ojson final_choice(const std::string& finish) const = 0;  // the finish chunk's choice
  virtual ojson plain_choice(const std::string& finish) const = 0;  // the plain answer's choice
  virtual ojson usage(const TaskSummary& s) const = 0;

  const Tokenizer& tok_;

 private:
  ojson envelope(bool chunk, ojson choices) const;

  std::string id_, model_;
  int64_t created_;
  bool stream_, include_usage_;
};

// /v1/chat/completions: reasoning_content, content and tool_calls from the parsed events.
class ChatReply : public Reply {
 public:
  ChatReply(Setup s, bool logprobs);
  std::vector<ojson> opening() override;
  std::vector<ojson> add(std::vector<StepOutput>& steps) override;
  std::string finish_reason(const TaskSummary& s) const override;

 private:
  const char* object(bool chunk) const override { return chunk ? "chat.completion.chunk" : "chat.completion"; }
  ojson final_choice(const std::string& finish) const override;
  ojson plain_choice(const std::string& finish) const override;
  ojson usage(const TaskSummary& s) const override;
  void handle(std::vector<OutputEvent>& events);
  void push_delta(const char* key, const std::string& text);
  ojson logprob_entry(const StepOutput& p) const;

  bool logprobs_;
  std::string content_, reasoning_;
  std::vector<ToolCall> calls_;
  ojson all_logprobs_ = ojson::array();  // plain answer
  std::vector<ojson> deltas_;            // stream: deltas of the current batch
  std::map<int, int> stream_index_;      // parser index → index in the response (failed calls are skipped)
};

// /v1/completions: the text (after the echoed prompt) and per-token logprobs.
class CompletionReply : public Reply {
 public:
  CompletionReply(Setup s, int logprobs, bool skip_special_tokens, std::string echo_text);
  std::vector<ojson> opening() override;
  std::vector<ojson> add(std::vector<StepOutput>& steps) override;

 private:
  const char* object(bool) const override { return "text_completion"; }
  ojson final_choice(const std::string& finish) const override;
  ojson plain_choice(const std::string& finish) const override;
  ojson usage(const TaskSummary& s) const override;
  std::string token_text(int32_t id) const;

  int logprobs_;  // -1: none
  bool skip_special_;
  std::string echo_, text_;
  size_t offset_;   // text_offset of the next token
  ojson all_logprobs_;
};

}  // namespace zaya::server
