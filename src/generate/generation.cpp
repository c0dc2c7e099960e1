#include "generate/generation.h"

#include <algorithm>
#include <string_view>

#include "zaya/error.h"

namespace zaya {

namespace {
// Tool-call closing text fed to the parser when the model stops (EOS) inside a call at a parameter boundary.
constexpr std::string_view kCloseCall = "</function>\n</zyphra_tool_call>";

const GenerateOptions& checked(const GenerateOptions& o) {
  if (o.max_tokens < 0) throw Error("max_tokens must be >= 0");
  return o;
}

void append(std::vector<OutputEvent>& to, std::vector<OutputEvent> from) {
  for (auto& e : from) to.push_back(std::move(e));
}
}  // namespace

const char* finish_reason_name(FinishReason r) {
  switch (r) {
    case FinishReason::Stop: return "stop";
    case FinishReason::Length: return "length";
    case FinishReason::Cancelled: return "cancelled";
  }
  return "?";
}

Generation::Generation(const ModelConfig& cfg, const Tokenizer* tok, const GenerateOptions& opts,
                       std::span<const int32_t> history, size_t room)
    : opt_(checked(opts)), sampler_(opts.sampling, static_cast<size_t>(cfg.vocab)), stop_ids_(opts.stop_token_ids),
      history_(history.begin(), history.end()), room_(room), stopper_(opts.stop) {
  if (!opt_.ignore_eos) {
    for (int64_t e : cfg.eos_token_ids) stop_ids_.push_back(static_cast<int32_t>(e));
    if (tok)
      for (int32_t e : tok->eos_ids()) stop_ids_.push_back(e);
  }
  if (tok) detok_ = std::make_unique<StreamingDetokenizer>(*tok, opt_.skip_special_tokens);
  if (tok && opt_.parse) {
    parser_ = std::make_unique<OutputParser>(opt_.parse->parser);
    if (!opt_.parse->prefix.empty()) parse(opt_.parse->prefix, prefix_events_);
  }
  if (opt_.max_tokens == 0) end(FinishReason::Length);
}

void Generation::parse(const std::string& text, std::vector<OutputEvent>& out) {
  if (!parser_ || text.empty()) return;
  auto events = parser_->feed(text);
  track(events);
  append(out, std::move(events));
}

void Generation::track(std::vector<OutputEvent>& events) {
  for (auto& e : events) {
    switch (e.type) {
      case OutputEvent::Type::ToolCallBegin: open_calls_.insert(e.index); break;
      case OutputEvent::Type::ToolCallEnd:
        open_calls_.erase(e.index);
        ++calls_done_;
        break;
      case OutputEvent::Type::ToolCallError:
        open_calls_.erase(e.index);
        // The closing text we injected is not the model's: keep it out of the raw block shown instead.
        if (injected_close_ && e.raw.size() >= kCloseCall.size() &&
            std::string_view(e.raw).substr(e.raw.size() - kCloseCall.size()) == kCloseCall)
          e.raw.resize(e.raw.size() - kCloseCall.size());
        break;
      default: break;
    }
  }
}

StepOutput Generation::step(const float* logits) {
  if (done_) throw Error("generate: the generation has ended");
  StepOutput out;
  out.events = std::move(prefix_events_);
  prefix_events_.clear();
  if (opt_.top_logprobs >= 0) {
    out.logprob = sampler_.sample_with_logprobs(logits, history_, opt_.top_logprobs);
    out.has_logprob = true;
    out.token = out.logprob.token;
  } else {
    out.token = sampler_.sample(logits, history_);
  }
  const int32_t id = out.token;
  ++generated_;
  history_.push_back(id);
  if (std::find(stop_ids_.begin(), stop_ids_.end(), id) != stop_ids_.end()) {
    out.stop_token = true;
    stop_token_ = id;
    end(FinishReason::Stop);
    return out;
  }
  if (detok_) {
    auto r = stopper_.feed(detok_->put(id));
    out.text = std::move(r.text);
    parse(out.text, out.events);
    if (r.stopped) stop_string_ = r.stop, end(FinishReason::Stop);
    if (!done_ && opt_.parse && opt_.parse->single_tool_call && calls_done_ > 0) {
      cut_ = true;
      end(FinishReason::Stop);
    }
  }
  if (!done_ && static_cast<int>(generated_) >= opt_.max_tokens) end(FinishReason::Length);
  if (!done_ && generated_ > room_) end(FinishReason::Length);  // the context is full: this token cannot be fed
  return out;
}

StepOutput Generation::flush() {
  StepOutput out;
  out.events = std::move(prefix_events_);
  prefix_events_.clear();
  if (detok_ && !stopper_.stopped() && !cut_) {
    auto r = stopper_.feed(detok_->flush());
    out.text = r.text + stopper_.finish();
  }
  if (!parser_) return out;
  parse(out.text, out.events);
  if (opt_.parse->close_call_at_stop && stop_token_ >= 0 && !open_calls_.empty()) {
    injected_close_ = true;
    parse(std::string(kCloseCall), out.events);
  }
  auto last = parser_->finish();
  track(last);
  append(out.events, std::move(last));
  return out;
}

}  // namespace zaya
