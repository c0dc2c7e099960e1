#include "server/openai.h"

#include <ctime>
#include <random>
#include <span>

#include "zaya/tokenizer.h"

namespace zaya::server {

namespace {

ojson usage_json(const TaskSummary& s, size_t reasoning_tokens, bool chat) {
  ojson u = {{"prompt_tokens", s.prompt_tokens}, {"completion_tokens", s.completion_tokens},
             {"total_tokens", s.prompt_tokens + s.completion_tokens},
             {"prompt_tokens_details", {{"cached_tokens", s.cached_tokens}}}};
  if (chat) u["completion_tokens_details"] = {{"reasoning_tokens", reasoning_tokens}};
  return u;
}

// llama.cpp-style speed figures, in every final answer.
ojson timings_json(const TaskSummary& s) {
  const double processed = static_cast<double>(s.prompt_tokens - s.cached_tokens);
  ojson t = {{"queue_ms", s.queue_ms},
             {"prompt_ms", s.prompt_ms},
             {"prompt_tokens_processed", s.prompt_tokens - s.cached_tokens},
             {"prompt_per_second", s.prompt_ms > 0 ? processed * 1000.0 / s.prompt_ms : 0.0},
             {"predicted_ms", s.generation_ms},
             {"predicted_per_second", s.generation_ms > 0 ? s.completion_tokens * 1000.0 / s.generation_ms : 0.0},
             {"slot", s.slot}};
  if (s.images > 0) {  // a prompt with images: the vision encoder's share (decoding and preprocessing included)
    t["images"] = s.images;
    t["vision_ms"] = s.vision_ms;
  }
  return t;
}

std::string decode_one(const Tokenizer& tok, int32_t id, bool skip_special) {
  return tok.decode(std::span(&id, 1), skip_special);
}

}  // namespace

std::string ApiError::json() const {
  ojson e = {{"message", message}, {"type", type}, {"param", nullptr}, {"code", nullptr}};
  if (!param.empty()) e["param"] = param;
  if (!code.empty()) e["code"] = code;
  return dump(ojson{{"error", e}});
}

std::string dump(const ojson& j) { return j.dump(-1, ' ', false, ojson::error_handler_t::replace); }

std::string random_id(const char* prefix, size_t n) {
  static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  thread_local std::mt19937_64 rng(std::random_device{}());
  std::string s = prefix;
  for (size_t i = 0; i < n; ++i) s += alphabet[rng() % (sizeof alphabet - 1)];
  return s;
}

int64_t unix_now() { return static_cast<int64_t>(std::time(nullptr)); }

// ---------------------------------------------------------------------------------------------------------------
// Reply: what both endpoints share (the envelope, usage and timings placement, finish reasons).

Reply::Reply(Setup s)
    : tok_(s.tok), id_(std::move(s.id)), model_(std::move(s.model)), created_(unix_now()), stream_(s.stream),
      include_usage_(s.include_usage) {}

ojson Reply::envelope(bool chunk, ojson choices) const {
  return {{"id", id_},       {"object", object(chunk)},       {"created", created_},
          {"model", model_}, {"system_fingerprint", "fp_zaya"}, {"choices", std::move(choices)}};
}

ojson Reply::chunk(ojson choice) const {
  ojson c = envelope(true, ojson::array({std::move(choice)}));
  if (include_usage_) c["usage"] = nullptr;
  return c;
}

std::string Reply::finish_reason(const TaskSummary& s) const {
  if (s.finish == "timeout") return "length";  // the request's time ran out: cut like a length limit
  return s.finish;
}

ojson Reply::response(const TaskSummary& s) const {
  ojson j = envelope(false, ojson::array({plain_choice(finish_reason(s))}));
  j["usage"] = usage(s);
  j["timings"] = timings_json(s);
  return j;
}

ojson Reply::finish_chunk(const TaskSummary& s) const {
  ojson c = chunk(final_choice(finish_reason(s)));
  c["timings"] = timings_json(s);
  return c;
}

ojson Reply::usage_chunk(const TaskSummary& s) const {
  ojson u = envelope(true, ojson::array());
  u["usage"] = usage(s);
  return u;
}

// ---------------------------------------------------------------------------------------------------------------
// Chat

ChatReply::ChatReply(Setup s, bool logprobs) : Reply(std::move(s)), logprobs_(logprobs) {}

std::vector<ojson> ChatReply::opening() {
  return {chunk({{"index", 0}, {"delta", {{"role", "assistant"}, {"content", ""}}}, {"logprobs", nullptr},
                 {"finish_reason", nullptr}})};
}

std::vector<ojson> ChatReply::add(std::vector<StepOutput>& steps) {
  ojson lp = ojson::array();
  for (auto& p : steps) {
    handle(p.events);  // a stop token's step may still carry events (those of a forced prefix)
    if (p.has_logprob && logprobs_ && !p.stop_token) lp.push_back(logprob_entry(p));
  }
  steps.clear();
  if (!stream()) {
    for (auto& x : lp) all_logprobs_.push_back(std::move(x));
    return {};
  }
  // Logprobs ride on the last chunk of the batch (or an empty delta when the text is still held back).
  if (deltas_.empty() && !lp.empty()) deltas_.push_back(ojson::object());
  std::vector<ojson> out;
  for (size_t i = 0; i < deltas_.size(); ++i) {
    const bool last = i + 1 == deltas_.size();
    ojson l = (last && !lp.empty()) ? ojson{{"content", lp}, {"refusal", nullptr}} : ojson(nullptr);
    out.push_back(chunk({{"index", 0}, {"delta", std::move(deltas_[i])}, {"logprobs", l}, {"finish_reason", nullptr}}));
  }
  deltas_.clear();
  return out;
}

void ChatReply::handle(std::vector<OutputEvent>& events) {
  for (auto& e : events) {
    switch (e.type) {
      case OutputEvent::Type::Reasoning:
        reasoning_ += e.text;
        push_delta("reasoning_content", e.text);
        break;
      case OutputEvent::Type::Content:
        content_ += e.text;
        push_delta("content", e.text);
        break;
      case OutputEvent::Type::ToolCallBegin: {
        const int idx = static_cast<int>(stream_index_.size());
        stream_index_[e.index] = idx;
        if (stream())
          deltas_.push_back({{"tool_calls", ojson::array({{{"index", idx}, {"id", e.call.id}, {"type", "function"},
                                                           {"function", {{"name", e.call.name}, {"arguments", ""}}}}})}});
        break;
      }
      case OutputEvent::Type::ToolCallArgs:
        if (stream())
          deltas_.push_back({{"tool_calls", ojson::array({{{"index", stream_index_[e.index]},
                                                           {"function", {{"arguments", e.text}}}}})}});
        break;
      case OutputEvent::Type::ToolCallEnd: calls_.push_back(std::move(e.call)); break;
      case OutputEvent::Type::ToolCallError:
        // Not a usable call: its text is shown as content instead.
        content_ += e.raw;
        push_delta("content", e.raw);
        break;
    }
  }
}

void ChatReply::push_delta(const char* key, const std::string& text) {
  if (!stream() || text.empty()) return;
  if (!deltas_.empty() && deltas_.back().size() == 1 && deltas_.back().contains(key)) {
    deltas_.back()[key] = deltas_.back()[key].get<std::string>() + text;
    return;
  }
  deltas_.push_back({{key, text}});
}

ojson ChatReply::logprob_entry(const StepOutput& p) const {
  auto entry = [&](int32_t id, float lp) {
    const std::string t = decode_one(tok_, id, false);
    ojson bytes = ojson::array();
    for (unsigned char c : t) bytes.push_back(static_cast<int>(c));
    return ojson{{"token", t}, {"logprob", lp}, {"bytes", bytes}};
  };
  ojson e = entry(p.token, p.logprob.logprob);
  ojson top = ojson::array();
  for (const auto& t : p.logprob.top) top.push_back(entry(t.token, t.logprob));
  e["top_logprobs"] = top;
  return e;
}

std::string ChatReply::finish_reason(const TaskSummary& s) const {
  return calls_.empty() ? Reply::finish_reason(s) : "tool_calls";
}

ojson ChatReply::final_choice(const std::string& finish) const {
  return {{"index", 0}, {"delta", ojson::object()}, {"logprobs", nullptr}, {"finish_reason", finish}};
}

ojson ChatReply::plain_choice(const std::string& finish) const {
  ojson msg = {{"role", "assistant"}, {"content", content_}};
  if (!reasoning_.empty()) msg["reasoning_content"] = reasoning_;
  if (!calls_.empty()) {
    ojson calls = ojson::array();
    for (const auto& c : calls_)
      calls.push_back({{"id", c.id}, {"type", "function"}, {"function", {{"name", c.name}, {"arguments", dump(c.arguments)}}}});
    msg["tool_calls"] = calls;
    if (content_.empty()) msg["content"] = nullptr;
  }
  msg["refusal"] = nullptr;
  ojson choice = {{"index", 0}, {"message", msg}, {"logprobs", nullptr}, {"finish_reason", finish}};
  if (logprobs_) choice["logprobs"] = {{"content", all_logprobs_}, {"refusal", nullptr}};
  return choice;
}

ojson ChatReply::usage(const TaskSummary& s) const {
  const size_t reasoning_tokens = reasoning_.empty() ? 0 : tok_.encode(reasoning_, false).size();
  return usage_json(s, reasoning_tokens, true);
}

// ---------------------------------------------------------------------------------------------------------------
// Completions

namespace {
ojson empty_logprobs() {
  return {{"tokens", ojson::array()}, {"token_logprobs", ojson::array()}, {"top_logprobs", ojson::array()},
          {"text_offset", ojson::array()}};
}
}  // namespace

CompletionReply::CompletionReply(Setup s, int logprobs, bool skip_special_tokens, std::string echo_text)
    : Reply(std::move(s)), logprobs_(logprobs), skip_special_(skip_special_tokens), echo_(std::move(echo_text)),
      text_(echo_), offset_(echo_.size()), all_logprobs_(empty_logprobs()) {}

std::string CompletionReply::token_text(int32_t id) const { return decode_one(tok_, id, skip_special_); }

std::vector<ojson> CompletionReply::opening() {
  if (echo_.empty()) return {};
  return {chunk({{"text", echo_}, {"index", 0}, {"logprobs", nullptr}, {"finish_reason", nullptr}})};
}

std::vector<ojson> CompletionReply::add(std::vector<StepOutput>& steps) {
  std::string out;
  ojson batch = empty_logprobs();
  ojson& lp = stream() ? batch : all_logprobs_;
  for (auto& p : steps) {
    if (p.has_logprob && !p.stop_token && logprobs_ >= 0) {
      // Token strings as they appear in the text (special tokens skipped there are empty here too).
      const std::string t = token_text(p.token);
      ojson top = ojson::object();
      for (const auto& x : p.logprob.top) top[token_text(x.token)] = x.logprob;
      lp["tokens"].push_back(t);
      lp["token_logprobs"].push_back(p.logprob.logprob);
      lp["top_logprobs"].push_back(top);
      lp["text_offset"].push_back(offset_);
      offset_ += t.size();
    }
    out += p.text;
  }
  steps.clear();
  if (!stream()) {
    text_ += out;
    return {};
  }
  const bool has_lp = logprobs_ >= 0 && !batch["tokens"].empty();
  if (out.empty() && !has_lp) return {};
  return {chunk({{"text", out}, {"index", 0}, {"logprobs", has_lp ? batch : ojson(nullptr)}, {"finish_reason", nullptr}})};
}

ojson CompletionReply::final_choice(const std::string& finish) const {
  return {{"text", ""}, {"index", 0}, {"logprobs", nullptr}, {"finish_reason", finish}};
}

ojson CompletionReply::plain_choice(const std::string& finish) const {
  ojson choice = {{"text", text_}, {"index", 0}, {"logprobs", nullptr}, {"finish_reason", finish}};
  if (logprobs_ >= 0) choice["logprobs"] = all_logprobs_;
  return choice;
}

ojson CompletionReply::usage(const TaskSummary& s) const { return usage_json(s, 0, false); }

}  // namespace zaya::server
